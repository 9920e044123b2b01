//! Publishing a change of the ring's state so that a process dying at any
//! instruction leaves either the old state or the new one.
//!
//! # State and commits
//!
//! `head` and `tail` are reset to 0 when the ring empties and renormalised
//! (`head < capacity`) when it grows; between those they only increase, and
//! a `u64` of bytes does not overflow.
//!
//! Every change is made under the lock in this order: data bytes first
//! (written beyond `tail`, or read at `head`), then the complete new state
//! into the *inactive* slot, then one atomic store that flips `active`. This
//! deviates from the simpler plan of updating `tail`, `count` and
//! `unfinished` in place: with separate stores, a process dying between two
//! of them leaves a state that can only be detected (and the queue declared
//! broken), while with the flip every instruction boundary leaves either the
//! old or the new state, both consistent:
//!
//! - a push that dies before the flip leaves bytes beyond `tail` that nobody
//!   reads; after the flip the record is fully committed;
//! - a pop that dies before the flip leaves the record in place (it will be
//!   read again); after the flip it is gone;
//! - a growth extends the file, maps it, copies the wrapped prefix
//!   `[0, tail % capacity)` to just after the old end (a region the old
//!   state does not use), then commits capacity, the renormalised head and
//!   tail and the bumped generation in one flip. A growth that dies before
//!   the flip leaves a larger file and the old, intact state.
//!
//! Each handle has a private mapping of the data file; under the lock, a
//! handle whose mapping is of an older generation remaps before touching
//! data. All record bytes are only touched under the lock, with raw copies.
//!
//! A copy of the record count (`count`) lives outside the slots so that
//! `ShmRing::len` needs no lock; it is stored right after the flip, so when
//! an operation returns, `len` reflects it (a process that dies between the
//! flip and that store leaves it stale until the next locker recovers).

use std::{io, sync::atomic::Ordering::Release};

use super::{
    RingError,
    layout::{DataMap, MAX_CAPACITY, State},
    lock::Locked,
};
use crate::sys;

impl Locked<'_> {
    /// Publishes `st`: writes the inactive slot, flips `active`, refreshes
    /// the count copy.
    pub(super) fn commit(&mut self) {
        let hdr = self.ring.hdr();
        let next = self.active ^ 1;
        self.st.write(&hdr.slots[next as usize]);
        self.fail_point("commit:slot");
        hdr.active.store(next, Release);
        self.fail_point("commit:flipped");
        self.active = next;
        hdr.count.store(self.st.count, Release);
    }

    /// Makes room for a record of `size` bytes: a larger file, a new
    /// mapping, the wrapped prefix copied after the old end, then one
    /// commit (see the module docs).
    pub(super) fn grow(&mut self, size: u64) -> Result<(), RingError> {
        let old = self.st;
        let used = old.used();
        let capacity = used
            .checked_add(size)
            .and_then(u64::checked_next_power_of_two)
            .map(|c| c.max(old.capacity * 2))
            .filter(|&c| c <= MAX_CAPACITY)
            .ok_or_else(|| {
                RingError::Io(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "the queue cannot grow that large",
                ))
            })?;
        let fd = &self.ring.data_fd;
        sys::memfile_grow(fd, capacity)?;
        let generation = old.generation.wrapping_add(1);
        let new = DataMap::map(fd, capacity, generation)?;
        let head = old.head & (old.capacity - 1);
        if head + used > old.capacity {
            let wrapped = (head + used - old.capacity) as usize;
            new.copy_within(0, old.capacity as usize, wrapped);
        }
        self.fail_point("grow:copied");
        **self.map.as_mut().expect("the mapping is held while locked") = new;
        self.st = State {
            capacity,
            generation,
            head,
            tail: head + used,
            ..old
        };
        self.commit();
        Ok(())
    }
}
