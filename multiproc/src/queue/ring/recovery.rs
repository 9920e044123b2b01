//! Checking the state each time the lock is taken, and recovering it after
//! a process died holding the lock.
//!
//! # A process that dies holding the lock
//!
//! The next locker is told by the backend's robust mutex, which is made
//! consistent again. The locker marks the header `needs_check`, then
//! validates the state: `active` is 0 or 1, the capacity is a power of two
//! in range and not above the file size, head and tail are aligned and
//! ordered, and walking the records from head must land exactly on tail
//! after `count` records, each length within bounds. On success it
//! refreshes the `len` copy, clears `needs_check`, and wakes every waiter
//! (the dead process may have committed without waking anyone); on failure
//! it sets `broken`, and every later operation in every process fails with
//! [`RingError::Broken`]. If validation cannot run (a remap fails for lack
//! of memory), `needs_check` stays set and the next locker tries again.
//! Since the commit's flip makes every state consistent, `broken` only
//! reports memory that was scribbled on.
//!
//! The callbacks run before the flip, so a death there is uncommitted too:
//! a producer that dies after `before_commit` sent descriptors on a side
//! channel leaves those descriptors without a record, and a consumer that
//! dies after `after_read` received them leaves the record without its
//! descriptors. Keeping a side channel in step through such a death is the
//! caller's concern.

use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};

use super::{
    RingError,
    layout::{BROKEN_FILE, BROKEN_STATE, DataMap, State, broken_message, record_size},
    lock::Locked,
};

/// Successful recoveries from a dead lock owner in this process.
#[cfg(test)]
pub(super) static RECOVERIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Locked<'_> {
    /// Reads the active slot, checks it, and remaps if the ring grew.
    pub(super) fn load(&mut self) -> Result<(), RingError> {
        let hdr = self.ring.hdr();
        let active = hdr.active.load(Acquire);
        if active > 1 {
            return Err(self.break_ring(BROKEN_STATE));
        }
        self.active = active;
        self.st = State::read(&hdr.slots[active as usize]);
        if self.st.check().is_err() {
            return Err(self.break_ring(BROKEN_STATE));
        }
        let map = self.map();
        if map.generation != self.st.generation || map.len() as u64 != self.st.capacity {
            self.remap()?;
        }
        Ok(())
    }

    /// Replaces this handle's mapping with one of the current capacity.
    #[cold]
    fn remap(&mut self) -> Result<(), RingError> {
        match DataMap::map(&self.ring.data_fd, self.st.capacity, self.st.generation) {
            Ok(new) => {
                **self.map.as_mut().expect("the mapping is held while locked") = new;
                Ok(())
            }
            Err(RingError::Broken(_)) => Err(self.break_ring(BROKEN_FILE)),
            Err(e) => Err(e),
        }
    }

    /// Validates the state after a lock owner died (see the module docs).
    #[cold]
    pub(super) fn recover(&mut self) -> Result<(), RingError> {
        self.load()?;
        let map = self.map();
        let st = self.st;
        let mut at = st.head;
        let mut records = 0u64;
        while at != st.tail {
            let left = st.tail - at;
            let size = match record_size(map.read_u64(at)) {
                Some(size) if size <= left => size,
                _ => return Err(self.break_ring(BROKEN_STATE)),
            };
            at += size;
            records += 1;
        }
        if records != st.count {
            return Err(self.break_ring(BROKEN_STATE));
        }
        let hdr = self.ring.hdr();
        hdr.count.store(st.count, Release);
        self.ring.wake_all();
        hdr.needs_check.store(0, SeqCst);
        #[cfg(test)]
        RECOVERIES.fetch_add(1, SeqCst);
        Ok(())
    }

    /// Marks the ring broken with `code` (unless it already is), wakes every
    /// sleeper, and returns the error to report.
    #[cold]
    pub(super) fn break_ring(&self, code: u32) -> RingError {
        let hdr = self.ring.hdr();
        let _ = hdr.broken.compare_exchange(0, code, SeqCst, SeqCst);
        self.ring.wake_all();
        RingError::Broken(broken_message(hdr.broken.load(SeqCst)))
    }
}
