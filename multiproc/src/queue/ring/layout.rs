//! Where the ring's bytes are: the control file (lock and header), the
//! data file (the records), the state kept twice in the header, and the
//! record format.
//!
//! # Layout
//!
//! Two sealed memory files:
//!
//! - the *control* file, [`CONTROL_SIZE`] bytes, mapped once per handle and
//!   never remapped. It starts with the lock (the backend's robust
//!   process-shared mutex, [`sys::RobustMutex`]) followed, at
//!   [`HEADER_OFFSET`], by a [`Header`] of atomics. The lock cannot live
//!   with the records: glibc's robust list records the mutex's address,
//!   and the data mapping moves when the ring grows.
//! - the *data* file: the ring bytes, a power of two of at least 4 KiB,
//!   grown (never shrunk) by doubling when a record does not fit.
//!
//! Both files are sealed against shrinking (the control file also against
//! growing): a handle built from received descriptors maps them only after
//! checking the seals and the sizes, so no other process can truncate a
//! mapping under it. Shrinking the ring is therefore not offered: a ring
//! keeps its peak size.
//!
//! A record is a native-endian `u64` payload length followed by the payload,
//! padded to a multiple of 8 bytes (so headers are aligned and never split);
//! the payload wraps around the end of the ring (copied in two pieces). A
//! record larger than the ring grows the ring to fit.
//!
//! The state ([`Slot`]) exists twice in the header; `active` names the
//! current copy (see the commit module for why). `head` and `tail` are byte
//! offsets with `head <= tail <= head + capacity`; a byte's position in the
//! data file is `offset % capacity`.
// Viewing the shared control bytes as a `Header`, and raw copies in and
// out of the data mapping: each block says why it is sound.
#![allow(unsafe_code)]

use std::{
    io,
    mem::{self, MaybeUninit},
    ptr,
    sync::atomic::{AtomicU32, AtomicU64},
};

use super::RingError;
use crate::sys::{self, Fd, MUTEX_SIZE, Mapping};

/// Size of the control file.
pub(super) const CONTROL_SIZE: usize = 4096;
/// Byte offset of the [`Header`] in the control file, after the mutex.
pub(super) const HEADER_OFFSET: usize = MUTEX_SIZE.next_multiple_of(mem::align_of::<Header>());
/// Bytes of the control file in use: the `layout` the creator records.
pub(super) const CONTROL_USED: usize = (HEADER_OFFSET + mem::size_of::<Header>()).next_multiple_of(64);
/// First word of a control file: "mpshring".
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"mpshring");
/// Layout version of the control file and records.
pub(super) const VERSION: u32 = 5;
/// Smallest ring, one page.
pub(super) const MIN_CAPACITY: u64 = 4096;
/// Largest ring: 64 TiB, far above any mapping that could succeed, low
/// enough that offsets and sizes never overflow.
pub(super) const MAX_CAPACITY: u64 = 1 << 46;
/// Bytes of the length that precedes each payload.
pub(super) const RECORD_HEADER: u64 = 8;

const _: () = assert!(CONTROL_USED <= CONTROL_SIZE);

/// One copy of the ring's state (two copies, one active).
#[repr(C)]
pub(super) struct Slot {
    /// Bytes in the ring: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    pub(super) capacity: AtomicU64,
    /// Bumped at each growth.
    pub(super) generation: AtomicU64,
    /// Offset of the oldest record.
    pub(super) head: AtomicU64,
    /// Offset just past the newest record.
    pub(super) tail: AtomicU64,
    /// Committed records.
    pub(super) count: AtomicU64,
    /// Pushes not yet matched by `task_done`.
    pub(super) unfinished: AtomicU64,
    /// Records ever committed: the newest record's index is `pushed - 1`,
    /// the oldest's `pushed - count`.
    pub(super) pushed: AtomicU64,
}

/// The shared header, after the mutex in the control file. Every field is
/// an atomic, so every bit pattern is a valid value.
#[repr(C)]
pub(super) struct Header {
    /// [`MAGIC`].
    pub(super) magic: AtomicU64,
    /// [`VERSION`].
    pub(super) version: AtomicU32,
    /// [`CONTROL_USED`] of the creator.
    pub(super) layout: AtomicU32,
    /// Bound on `count`; `u64::MAX` when unbounded.
    pub(super) max_count: AtomicU64,
    /// 0, or a `BROKEN_*` code.
    pub(super) broken: AtomicU32,
    /// Nonzero from `EOWNERDEAD` until the state has been validated.
    pub(super) needs_check: AtomicU32,
    /// Which slot holds the state: 0 or 1.
    pub(super) active: AtomicU32,
    /// Futex word bumped when a record is committed.
    pub(super) put_seq: AtomicU32,
    /// Copy of the active slot's `count`, for `ShmRing::len`.
    pub(super) count: AtomicU64,
    /// Futex word bumped when a record is removed.
    pub(super) get_seq: AtomicU32,
    /// Futex word bumped when `unfinished` reaches 0.
    pub(super) done_seq: AtomicU32,
    /// Sleepers on `put_seq`.
    pub(super) put_waiters: AtomicU32,
    /// Sleepers on `get_seq`.
    pub(super) get_waiters: AtomicU32,
    /// Sleepers on `done_seq`.
    pub(super) done_waiters: AtomicU32,
    /// Callers of `wait()` watching this ring through its owner's
    /// eventfd (see `ShmRing::watch`).
    pub(super) watchers: AtomicU32,
    /// Nonzero once the ring is closed for every process: pushes fail,
    /// pops take what is left and then report the end.
    pub(super) closed: AtomicU32,
    /// Async putters waiting for room in a full queue through its room
    /// eventfd (see `ShmRing::watch_room`); also keeps the slots 8-aligned.
    pub(super) room_watchers: AtomicU32,
    /// The two copies of the state.
    pub(super) slots: [Slot; 2],
}

/// This handle's mapping of the control file; never moves.
pub(super) struct ControlMap {
    /// [`CONTROL_SIZE`] bytes, page-aligned.
    map: Mapping,
}

impl ControlMap {
    /// Maps the control file `fd`, which must be `CONTROL_SIZE` bytes long
    /// and sealed against shrinking.
    pub(super) fn new(fd: &Fd) -> io::Result<ControlMap> {
        let map = Mapping::new(fd, CONTROL_SIZE)?;
        Ok(ControlMap { map })
    }

    /// The mapping, where the mutex lives at offset 0.
    pub(super) fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// The shared header.
    pub(super) fn header(&self) -> &Header {
        // SAFETY: the mapping is CONTROL_SIZE readable and writable bytes,
        // page-aligned, living as long as `self`; the Header at
        // HEADER_OFFSET (a multiple of its alignment) fits in them
        // (CONTROL_USED <= CONTROL_SIZE), is made of atomics only (any bit
        // pattern is valid, shared access is what they are for) and no
        // other Rust reference to those bytes exists but through atomics.
        unsafe { &*self.map.as_ptr().wrapping_add(HEADER_OFFSET).cast::<Header>() }
    }
}

/// This handle's mapping of the data file.
///
/// Invariant: `map` is `None` (nothing mapped yet) or a mapping whose
/// length is a power of two. The bytes are shared with other processes,
/// which touch them only under the ring's lock, as does this handle; they
/// are only ever accessed with raw copies.
pub(super) struct DataMap {
    /// The mapping; `None` until the first lock maps the file.
    map: Option<Mapping>,
    /// The ring generation the mapping was made for.
    pub(super) generation: u64,
}

impl DataMap {
    /// No mapping yet: the first lock maps the file.
    pub(super) fn empty() -> DataMap {
        DataMap {
            map: None,
            generation: u64::MAX,
        }
    }

    /// Maps `capacity` (a power of two) bytes of `fd`, after checking that
    /// the file holds them.
    pub(super) fn map(fd: &Fd, capacity: u64, generation: u64) -> Result<DataMap, RingError> {
        assert!(capacity.is_power_of_two() && capacity <= MAX_CAPACITY);
        let size = sys::memfile_size(fd)?;
        if size < capacity {
            return Err(RingError::Broken(broken_message(BROKEN_FILE)));
        }
        Ok(DataMap {
            map: Some(Mapping::new(fd, capacity as usize)?),
            generation,
        })
    }

    /// Mapped bytes (0 before the first mapping).
    pub(super) fn len(&self) -> usize {
        self.map.as_ref().map_or(0, Mapping::len)
    }

    /// Start of the mapping and its length; panics when nothing is mapped.
    fn base(&self) -> (*mut u8, usize) {
        let map = self.map.as_ref().expect("ring access before its data is mapped");
        (map.as_ptr(), map.len())
    }

    /// `(base, position, bytes before the end)` of logical offset `off`
    /// for an access of `n` bytes.
    fn split(&self, off: u64, n: usize) -> (*mut u8, usize, usize) {
        let (base, len) = self.base();
        assert!(n <= len, "ring access beyond its capacity");
        let pos = (off as usize) & (len - 1);
        (base, pos, n.min(len - pos))
    }

    /// Copies `bytes` to the ring at logical offset `off`, wrapping.
    pub(super) fn write(&self, off: u64, bytes: &[u8]) {
        let (base, pos, first) = self.split(off, bytes.len());
        let (head, tail) = bytes.split_at(first);
        // SAFETY: `split` made [pos, pos + first) lie inside the mapping; a
        // mapping never overlaps a Rust slice. The ring's lock keeps other
        // writers and readers out.
        unsafe { ptr::copy_nonoverlapping(head.as_ptr(), base.wrapping_add(pos), head.len()) };
        // SAFETY: `split` checked bytes.len() <= len, so the wrapped part
        // [0, bytes.len() - first) lies inside the mapping too; as above.
        unsafe { ptr::copy_nonoverlapping(tail.as_ptr(), base, tail.len()) };
    }

    /// Copies `out.len()` bytes of the ring from logical offset `off` into
    /// `out`, wrapping.
    pub(super) fn read(&self, off: u64, out: &mut [MaybeUninit<u8>]) {
        let (base, pos, first) = self.split(off, out.len());
        let dst = out.as_mut_ptr().cast::<u8>();
        // SAFETY: as in `write`, [pos, pos + first) lies inside the
        // mapping, and `out` has room for `first <= out.len()` bytes.
        unsafe { ptr::copy_nonoverlapping(base.wrapping_add(pos), dst, first) };
        // SAFETY: as in `write`, [0, out.len() - first) lies inside the
        // mapping, and `out` has that many bytes after its first `first`.
        unsafe { ptr::copy_nonoverlapping(base, dst.wrapping_add(first), out.len() - first) };
    }

    /// Copies the `len` bytes at logical offset `off` into a new vector;
    /// an `OutOfMemory` error when it cannot be allocated.
    pub(super) fn read_vec(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        out.try_reserve_exact(len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate {len} bytes for a queue item"),
            )
        })?;
        self.read(off, &mut out.spare_capacity_mut()[..len]);
        // SAFETY: `read` initialised the first `len` bytes, within the
        // capacity reserved above.
        unsafe { out.set_len(len) };
        Ok(out)
    }

    /// Writes a record length at logical offset `off`.
    pub(super) fn write_u64(&self, off: u64, v: u64) {
        self.write(off, &v.to_ne_bytes());
    }

    /// Reads a record length at logical offset `off`.
    pub(super) fn read_u64(&self, off: u64) -> u64 {
        let mut b = [MaybeUninit::new(0u8); 8];
        self.read(off, &mut b);
        // SAFETY: the array was initialised (and then overwritten by `read`).
        u64::from_ne_bytes(b.map(|x| unsafe { x.assume_init() }))
    }

    /// Copies `n` bytes from position `from` to position `to` (no wrapping).
    pub(super) fn copy_within(&self, from: usize, to: usize, n: usize) {
        let (base, len) = self.base();
        assert!(
            from.checked_add(n).is_some_and(|e| e <= len) && to.checked_add(n).is_some_and(|e| e <= len),
            "ring copy beyond its capacity"
        );
        // SAFETY: both ranges lie inside the mapping (checked above); `copy`
        // allows overlap.
        unsafe { ptr::copy(base.wrapping_add(from), base.wrapping_add(to), n) };
    }
}

/// A local copy of the active slot, edited under the lock and committed
/// whole.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct State {
    /// See [`Slot`].
    pub(super) capacity: u64,
    /// See [`Slot`].
    pub(super) generation: u64,
    /// See [`Slot`].
    pub(super) head: u64,
    /// See [`Slot`].
    pub(super) tail: u64,
    /// See [`Slot`].
    pub(super) count: u64,
    /// See [`Slot`].
    pub(super) unfinished: u64,
    /// See [`Slot`].
    pub(super) pushed: u64,
}

impl State {
    /// Bytes held by committed records.
    pub(super) fn used(&self) -> u64 {
        self.tail - self.head
    }

    /// The cheap invariants that keep every access inside the mapping.
    pub(super) fn check(&self) -> Result<(), ()> {
        let ok = self.capacity.is_power_of_two()
            && (MIN_CAPACITY..=MAX_CAPACITY).contains(&self.capacity)
            && self.head % RECORD_HEADER == 0
            && self.tail % RECORD_HEADER == 0
            && self.head <= self.tail
            && self.tail - self.head <= self.capacity
            && self.count <= (self.tail - self.head) / RECORD_HEADER;
        if ok { Ok(()) } else { Err(()) }
    }

    /// Reads the slot `s` (under the lock).
    pub(super) fn read(s: &Slot) -> State {
        use std::sync::atomic::Ordering::Relaxed;
        State {
            capacity: s.capacity.load(Relaxed),
            generation: s.generation.load(Relaxed),
            head: s.head.load(Relaxed),
            tail: s.tail.load(Relaxed),
            count: s.count.load(Relaxed),
            unfinished: s.unfinished.load(Relaxed),
            pushed: s.pushed.load(Relaxed),
        }
    }

    /// Writes the slot `s` (under the lock, before it becomes active).
    pub(super) fn write(&self, s: &Slot) {
        use std::sync::atomic::Ordering::Relaxed;
        s.capacity.store(self.capacity, Relaxed);
        s.generation.store(self.generation, Relaxed);
        s.head.store(self.head, Relaxed);
        s.tail.store(self.tail, Relaxed);
        s.count.store(self.count, Relaxed);
        s.unfinished.store(self.unfinished, Relaxed);
        s.pushed.store(self.pushed, Relaxed);
    }
}

/// Bytes a record with a payload of `len` bytes takes in the ring, `None`
/// beyond any possible ring.
pub(super) fn record_size(len: u64) -> Option<u64> {
    let size = len
        .checked_next_multiple_of(RECORD_HEADER)?
        .checked_add(RECORD_HEADER)?;
    (size <= MAX_CAPACITY).then_some(size)
}

/// Which event a waiter sleeps on (each has its futex word in the
/// header).
#[derive(Clone, Copy)]
pub(super) enum Event {
    /// A record was committed.
    Put,
    /// A record was removed.
    Get,
    /// `unfinished` reached 0.
    Done,
}

/// `broken` code (shared by every process): the state failed validation.
pub(super) const BROKEN_STATE: u32 = 1;
/// A record's length overruns the committed bytes.
pub(super) const BROKEN_RECORD: u32 = 2;
/// The mutex was unlocked without being made consistent.
pub(super) const BROKEN_LOCK: u32 = 3;
/// The data file is smaller than the committed capacity.
pub(super) const BROKEN_FILE: u32 = 4;

/// The message for a `broken` code.
pub(super) fn broken_message(code: u32) -> String {
    let why = match code {
        BROKEN_STATE => "its shared state is inconsistent",
        BROKEN_RECORD => "a record's length overruns the ring",
        BROKEN_LOCK => "its lock is not recoverable",
        BROKEN_FILE => "its data file is smaller than its capacity",
        _ => "it is marked with an unknown code",
    };
    format!("the queue's shared memory is unusable: {why}")
}
