//! A growable FIFO of byte records in shared memory: the backend of the
//! cross-process `Queue`.
//!
//! Many processes (and threads) use one ring at once, each through its own
//! [`ShmRing`] handle; a handle travels to another process as two
//! descriptors ([`ShmRing::fds`], rebuilt with [`ShmRing::from_fds`]), and a
//! fork child inherits its parent's handles as they are.
//!
//! # Layout
//!
//! Two sealed memory files (`memfd_create`, close-on-exec):
//!
//! - the *control* file, [`CONTROL_SIZE`] bytes, mapped once per handle and
//!   never remapped. It holds the lock (a process-shared, robust,
//!   error-checking `pthread_mutex_t`) and a [`Header`] of atomics. The lock
//!   cannot live with the records: glibc's robust list records the mutex's
//!   address, and the data mapping moves when the ring grows.
//! - the *data* file: the ring bytes, a power of two of at least 4 KiB,
//!   grown (never shrunk) by doubling when a record does not fit.
//!
//! Both files are sealed against shrinking (the control file also against
//! growing): a handle built from received descriptors maps them only after
//! checking the seals and the sizes, so no other process can truncate a
//! mapping under it (which would be `SIGBUS`, not an error). Shrinking the
//! ring is therefore not offered: a ring keeps its peak size.
//!
//! A record is a native-endian `u64` payload length followed by the payload,
//! padded to a multiple of 8 bytes (so headers are aligned and never split);
//! the payload wraps around the end of the ring (copied in two pieces). A
//! record larger than the ring grows the ring to fit.
//!
//! # State and commits
//!
//! The ring's state ([`Slot`]: capacity, generation, head, tail, record
//! count, unfinished tasks) exists twice in the header; `active` names the
//! current copy. `head` and `tail` are byte offsets with
//! `head <= tail <= head + capacity`; a byte's position in the data file is
//! `offset % capacity`. Both are reset to 0 when the ring empties and
//! renormalised (`head < capacity`) when it grows; between those they only
//! increase, and a `u64` of bytes does not overflow.
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
//! - a growth extends the file (`ftruncate`), maps it, copies the wrapped
//!   prefix `[0, tail % capacity)` to just after the old end (a region the
//!   old state does not use), then commits capacity, the renormalised head
//!   and tail and the bumped generation in one flip. A growth that dies
//!   before the flip leaves a larger file and the old, intact state.
//!
//! Each handle has a private mapping of the data file; under the lock, a
//! handle whose mapping is of an older generation remaps before touching
//! data. All record bytes are only touched under the lock, with raw copies.
//!
//! A copy of the record count (`count`) lives outside the slots so that
//! [`ShmRing::len`] needs no lock; it is stored right after the flip, so
//! when an operation returns, `len` reflects it (a process that dies between
//! the flip and that store leaves it stale until the next locker recovers).
//!
//! # A process that dies holding the lock
//!
//! The next locker gets `EOWNERDEAD`. It marks the header `needs_check`,
//! makes the mutex consistent, then validates the state: `active` is 0 or
//! 1, the capacity is a power of two in range and not above the file size,
//! head and tail are aligned and ordered, and walking the records from head
//! must land exactly on tail after `count` records, each length within
//! bounds. On success it refreshes the `len` copy, clears `needs_check`,
//! and wakes every waiter (the dead process may have committed without
//! waking anyone); on failure it sets `broken`, and every later operation in
//! every process fails with [`RingError::Broken`]. If validation cannot run
//! (a remap fails for lack of memory), `needs_check` stays set and the next
//! locker tries again. Since the flip makes every state consistent, `broken`
//! only reports memory that was scribbled on.
//!
//! The callbacks run before the flip, so a death there is uncommitted too:
//! a producer that dies after `before_commit` sent descriptors on a side
//! channel leaves those descriptors without a record, and a consumer that
//! dies after `after_read` received them leaves the record without its
//! descriptors. Keeping a side channel in step through such a death is the
//! caller's concern.
//!
//! # Waiting
//!
//! Three futex words count events: `put_seq` (a record was committed),
//! `get_seq` (a record was removed), `done_seq` (`unfinished` reached 0).
//! A waiter reads the word and registers in the matching waiter counter
//! under the lock, unlocks, and sleeps with `FUTEX_WAIT` (not the
//! `_PRIVATE` variant: the words are shared between processes) while the
//! word is unchanged; then it relocks and rechecks. An event bumps the word
//! and, only when the counter is nonzero, calls `FUTEX_WAKE` for all
//! sleepers (waking one would be lost if that one died or was a
//! [`ShmRing::wait_put_seq_change`] watcher). The wake happens before the
//! unlock, so an owner that dies before waking is found by the next locker,
//! which wakes everyone. Every sleep lasts at most [`SLICE`]: a waiter then
//! relocks (or, for a watcher, probes the lock with `trylock`), so a process
//! that died holding the lock is recovered within a slice even when nobody
//! else touches the ring. A waiter that dies leaves its counter raised,
//! which only costs later events a wake syscall.
//!
//! A fourth counter, `watchers`, counts callers of `wait()` that watch the
//! ring through a descriptor instead (the queue's eventfd, which this module
//! does not know): after a push returns, the queue signals that descriptor
//! when the count is nonzero ([`ShmRing::watch`], [`ShmRing::has_watchers`]).
//!
//! # Deadlines
//!
//! `None` waits forever; `Some(t)` waits for the condition (not full, not
//! empty, all done) until `t`, so a past `t` does not wait for it at all.
//! The lock itself is awaited until `max(t, now + LOCK_GRACE)`: a lock held
//! for a few hundred nanoseconds by another process must not turn a
//! non-blocking call into a spurious `Timeout`, and one held by a stopped
//! process must not hang a call that has a deadline. libc 0.2 does not
//! expose `pthread_mutex_clocklock` for glibc, so the lock uses
//! `pthread_mutex_timedlock` on `CLOCK_REALTIME`, one [`SLICE`] at a time,
//! checking the monotonic deadline between slices: a jump of the wall clock
//! costs at most one slice.
//!
//! # Threads and fork
//!
//! The local mapping is behind a std `Mutex`, taken (with `try_lock`) only
//! while holding the shared lock and released before it, so it is never
//! contended. A child forked while another thread of its parent held it
//! (possible only through the `unsafe` multithreaded-fork opt-in) gets an
//! error instead of a deadlock. The mutex is error-checking: a ring call
//! made from inside one of its own callbacks is an error, not a deadlock.

use std::{
    cell::UnsafeCell,
    fmt, io,
    mem::{self, MaybeUninit},
    ptr::{self, NonNull},
    sync::{
        Mutex, MutexGuard, TryLockError,
        atomic::{
            AtomicU32, AtomicU64,
            Ordering::{Acquire, Relaxed, Release, SeqCst},
        },
    },
    time::{Duration, Instant},
};

use super::{
    Fd, cvt_r,
    shm::{
        check_sealed, create_memfd, file_size, futex_wait, futex_wake_all, init_mutex, invalid, map_shared, passed,
        realtime_after, recover_owner_died,
    },
};

/// Size of the control file.
const CONTROL_SIZE: usize = 4096;
/// First word of a control file: "mpshring".
const MAGIC: u64 = u64::from_le_bytes(*b"mpshring");
/// Layout version of the control file and records.
const VERSION: u32 = 3;
/// Smallest ring, one page.
const MIN_CAPACITY: u64 = 4096;
/// Largest ring: 64 TiB, far above any mapping that could succeed, low
/// enough that offsets and sizes never overflow.
const MAX_CAPACITY: u64 = 1 << 46;
/// Bytes of the length that precedes each payload.
const RECORD_HEADER: u64 = 8;
/// Longest single sleep (on the lock or a futex) before rechecking.
const SLICE: Duration = Duration::from_secs(1);
/// How long a call whose deadline has passed still waits for the lock.
const LOCK_GRACE: Duration = Duration::from_millis(50);

/// `broken` code (shared by every process): the state failed validation.
const BROKEN_STATE: u32 = 1;
/// A record's length overruns the committed bytes.
const BROKEN_RECORD: u32 = 2;
/// The mutex was unlocked without being made consistent.
const BROKEN_LOCK: u32 = 3;
/// The data file is smaller than the committed capacity.
const BROKEN_FILE: u32 = 4;

/// Successful recoveries from a dead lock owner in this process.
#[cfg(test)]
static RECOVERIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(test)]
thread_local! {
    /// The fail point at which this thread dies (tests only).
    static DIE_AT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// The message for a `broken` code.
fn broken_message(code: u32) -> String {
    let why = match code {
        BROKEN_STATE => "its shared state is inconsistent",
        BROKEN_RECORD => "a record's length overruns the ring",
        BROKEN_LOCK => "its lock is not recoverable",
        BROKEN_FILE => "its data file is smaller than its capacity",
        _ => "it is marked with an unknown code",
    };
    format!("the queue's shared memory is unusable: {why}")
}

/// How long a waiter spins before it sleeps on the futex.
const SPIN: Duration = Duration::from_micros(20);
/// How long a locker retries a busy lock before it sleeps in the kernel.
const LOCK_SPIN: Duration = Duration::from_micros(10);

/// Why a ring operation failed.
#[derive(Debug)]
pub(crate) enum RingError {
    /// The deadline passed: the ring stayed full (push), empty (pop), or
    /// had unfinished tasks (join), or its lock stayed held.
    Timeout,
    /// The shared memory failed validation; every later call fails too.
    Broken(String),
    /// `task_done` was called more times than records were pushed.
    TooManyTaskDone,
    /// A system call or a callback failed.
    Io(io::Error),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Timeout => f.write_str("timed out"),
            RingError::Broken(why) => f.write_str(why),
            RingError::TooManyTaskDone => f.write_str("task_done() called more times than there were items"),
            RingError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RingError {}

impl From<io::Error> for RingError {
    fn from(e: io::Error) -> RingError {
        RingError::Io(e)
    }
}

/// One copy of the ring's state (see the module docs: two copies, one
/// active).
#[repr(C)]
struct Slot {
    /// Bytes in the ring: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    capacity: AtomicU64,
    /// Bumped at each growth.
    generation: AtomicU64,
    /// Offset of the oldest record.
    head: AtomicU64,
    /// Offset just past the newest record.
    tail: AtomicU64,
    /// Committed records.
    count: AtomicU64,
    /// Pushes not yet matched by `task_done`.
    unfinished: AtomicU64,
    /// Records ever committed: the newest record's index is `pushed - 1`,
    /// the oldest's `pushed - count`.
    pushed: AtomicU64,
}

/// The shared header, after the mutex in the control file.
#[repr(C)]
struct Header {
    /// [`MAGIC`].
    magic: AtomicU64,
    /// [`VERSION`].
    version: AtomicU32,
    /// `size_of::<Control>()` of the creator.
    layout: AtomicU32,
    /// Bound on `count`; `u64::MAX` when unbounded.
    max_count: AtomicU64,
    /// 0, or a `BROKEN_*` code.
    broken: AtomicU32,
    /// Nonzero from `EOWNERDEAD` until the state has been validated.
    needs_check: AtomicU32,
    /// Which slot holds the state: 0 or 1.
    active: AtomicU32,
    /// Futex word bumped when a record is committed.
    put_seq: AtomicU32,
    /// Copy of the active slot's `count`, for [`ShmRing::len`].
    count: AtomicU64,
    /// Futex word bumped when a record is removed.
    get_seq: AtomicU32,
    /// Futex word bumped when `unfinished` reaches 0.
    done_seq: AtomicU32,
    /// Sleepers on `put_seq`.
    put_waiters: AtomicU32,
    /// Sleepers on `get_seq`.
    get_waiters: AtomicU32,
    /// Sleepers on `done_seq`.
    done_waiters: AtomicU32,
    /// Callers of `wait()` watching this ring through its owner's
    /// eventfd (see [`ShmRing::watch`]); also keeps the slots 8-aligned.
    watchers: AtomicU32,
    /// The two copies of the state.
    slots: [Slot; 2],
}

/// The control file's contents. Every bit pattern is a valid value, so a
/// mapping of any file of the right size can be viewed as one.
#[repr(C, align(64))]
struct Control {
    /// The ring's lock: process-shared, robust, error-checking.
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    /// Everything else.
    hdr: Header,
}

const _: () = assert!(mem::size_of::<Control>() <= CONTROL_SIZE);

// SAFETY: the mutex is only touched through the pthread functions, which
// synchronise concurrent callers (it is process-shared); every other field
// is an atomic.
unsafe impl Sync for Control {}

/// This handle's mapping of the control file; never moves.
struct ControlMap {
    /// Start of the mapping, `CONTROL_SIZE` bytes.
    ptr: NonNull<Control>,
}

// SAFETY: the mapping is process-wide memory, usable from any thread, and
// only viewed as a `Control` (itself `Sync`).
unsafe impl Send for ControlMap {}
// SAFETY: as above.
unsafe impl Sync for ControlMap {}

impl ControlMap {
    /// Maps the control file `fd`, which must be `CONTROL_SIZE` bytes long
    /// and sealed against shrinking.
    fn new(fd: &Fd) -> io::Result<ControlMap> {
        Ok(ControlMap {
            ptr: map_shared(fd, CONTROL_SIZE)?.cast(),
        })
    }

    /// The shared contents.
    fn get(&self) -> &Control {
        // SAFETY: the mapping is CONTROL_SIZE readable and writable bytes,
        // page-aligned, living as long as `self`; Control fits in them and
        // any bit pattern is a valid Control.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for ControlMap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), CONTROL_SIZE) };
    }
}

/// This handle's mapping of the data file.
///
/// Invariant: `len` is 0 (nothing mapped) or a power of two, and `ptr`
/// then starts `len` mapped bytes. The bytes are shared with other
/// processes, which touch them only under the ring's lock, as does this
/// handle; they are only ever accessed with raw copies.
struct DataMap {
    /// Start of the mapping; dangling when `len` is 0.
    ptr: NonNull<u8>,
    /// Mapped bytes.
    len: usize,
    /// The ring generation the mapping was made for.
    generation: u64,
}

// SAFETY: the mapping is process-wide memory, not tied to a thread.
unsafe impl Send for DataMap {}

impl DataMap {
    /// No mapping yet: the first lock maps the file.
    fn empty() -> DataMap {
        DataMap {
            ptr: NonNull::dangling(),
            len: 0,
            generation: u64::MAX,
        }
    }

    /// Maps `capacity` (a power of two) bytes of `fd`, after checking that
    /// the file holds them.
    fn map(fd: &Fd, capacity: u64, generation: u64) -> Result<DataMap, RingError> {
        assert!(capacity.is_power_of_two() && capacity <= MAX_CAPACITY);
        let size = file_size(fd)?;
        if size < capacity {
            return Err(RingError::Broken(broken_message(BROKEN_FILE)));
        }
        let len = capacity as usize;
        Ok(DataMap {
            ptr: map_shared(fd, len)?,
            len,
            generation,
        })
    }

    /// `(position, bytes before the end)` of logical offset `off`.
    fn split(&self, off: u64, n: usize) -> (usize, usize) {
        assert!(self.len != 0 && n <= self.len, "ring access beyond its capacity");
        let pos = (off as usize) & (self.len - 1);
        (pos, n.min(self.len - pos))
    }

    /// Copies `bytes` to the ring at logical offset `off`, wrapping.
    fn write(&self, off: u64, bytes: &[u8]) {
        let (pos, first) = self.split(off, bytes.len());
        let base = self.ptr.as_ptr();
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
    fn read(&self, off: u64, out: &mut [MaybeUninit<u8>]) {
        let (pos, first) = self.split(off, out.len());
        let base = self.ptr.as_ptr();
        let dst = out.as_mut_ptr().cast::<u8>();
        // SAFETY: as in `write`, [pos, pos + first) lies inside the
        // mapping, and `out` has room for `first <= out.len()` bytes.
        unsafe { ptr::copy_nonoverlapping(base.wrapping_add(pos), dst, first) };
        // SAFETY: as in `write`, [0, out.len() - first) lies inside the
        // mapping, and `out` has that many bytes after its first `first`.
        unsafe { ptr::copy_nonoverlapping(base, dst.wrapping_add(first), out.len() - first) };
    }

    /// Writes a record length at logical offset `off`.
    fn write_u64(&self, off: u64, v: u64) {
        self.write(off, &v.to_ne_bytes());
    }

    /// Reads a record length at logical offset `off`.
    fn read_u64(&self, off: u64) -> u64 {
        let mut b = [MaybeUninit::new(0u8); 8];
        self.read(off, &mut b);
        // SAFETY: the array was initialised (and then overwritten by `read`).
        u64::from_ne_bytes(b.map(|x| unsafe { x.assume_init() }))
    }

    /// Copies `n` bytes from position `from` to position `to` (no wrapping).
    fn copy_within(&self, from: usize, to: usize, n: usize) {
        assert!(
            from.checked_add(n).is_some_and(|e| e <= self.len) && to.checked_add(n).is_some_and(|e| e <= self.len),
            "ring copy beyond its capacity"
        );
        let base = self.ptr.as_ptr();
        // SAFETY: both ranges lie inside the mapping (checked above); `copy`
        // allows overlap.
        unsafe { ptr::copy(base.wrapping_add(from), base.wrapping_add(to), n) };
    }
}

impl Drop for DataMap {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmapping our own mapping, which nothing references
            // past this point.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// A local copy of the active slot, edited under the lock and committed
/// whole.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    /// See [`Slot`].
    capacity: u64,
    /// See [`Slot`].
    generation: u64,
    /// See [`Slot`].
    head: u64,
    /// See [`Slot`].
    tail: u64,
    /// See [`Slot`].
    count: u64,
    /// See [`Slot`].
    unfinished: u64,
    /// See [`Slot`].
    pushed: u64,
}

impl State {
    /// Bytes held by committed records.
    fn used(&self) -> u64 {
        self.tail - self.head
    }

    /// The cheap invariants that keep every access inside the mapping.
    fn check(&self) -> Result<(), ()> {
        let ok = self.capacity.is_power_of_two()
            && (MIN_CAPACITY..=MAX_CAPACITY).contains(&self.capacity)
            && self.head % RECORD_HEADER == 0
            && self.tail % RECORD_HEADER == 0
            && self.head <= self.tail
            && self.tail - self.head <= self.capacity
            && self.count <= (self.tail - self.head) / RECORD_HEADER;
        if ok { Ok(()) } else { Err(()) }
    }
}

/// Bytes a record with a payload of `len` bytes takes in the ring, `None`
/// beyond any possible ring.
fn record_size(len: u64) -> Option<u64> {
    let size = len
        .checked_next_multiple_of(RECORD_HEADER)?
        .checked_add(RECORD_HEADER)?;
    (size <= MAX_CAPACITY).then_some(size)
}

/// Which event a waiter sleeps on.
#[derive(Clone, Copy)]
enum Event {
    /// A record was committed.
    Put,
    /// A record was removed.
    Get,
    /// `unfinished` reached 0.
    Done,
}

/// How to take the lock.
#[derive(Clone, Copy)]
enum LockWait {
    /// Block until it is free.
    Forever,
    /// Block until this instant.
    Until(Instant),
    /// Do not block.
    Try,
}

/// A growable FIFO of byte records in shared memory (see the module docs).
pub(crate) struct ShmRing {
    /// The lock and header.
    control: ControlMap,
    /// This handle's mapping of the records; only used under the lock.
    data: Mutex<DataMap>,
    /// The control memory file.
    control_fd: Fd,
    /// The data memory file.
    data_fd: Fd,
}

impl fmt::Debug for ShmRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmRing")
            .field("control_fd", &self.control_fd.raw())
            .field("data_fd", &self.data_fd.raw())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl ShmRing {
    /// Creates a ring of at least `initial_capacity` bytes (rounded up to a
    /// power of two, at least 4 KiB) holding at most `max_count` records
    /// (`None`: unbounded).
    pub(crate) fn new(initial_capacity: usize, max_count: Option<u64>) -> io::Result<ShmRing> {
        if max_count == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a bounded queue needs room for at least one item",
            ));
        }
        let capacity = (initial_capacity as u64)
            .max(MIN_CAPACITY)
            .checked_next_power_of_two()
            .filter(|&c| c <= MAX_CAPACITY)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "initial queue capacity is too large"))?;
        let control_fd = create_memfd(
            c"multiproc-queue-control",
            CONTROL_SIZE as u64,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        )?;
        let data_fd = create_memfd(
            c"multiproc-queue-data",
            capacity,
            libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL,
        )?;
        let control = ControlMap::new(&control_fd)?;
        init_mutex(control.get().mutex.get(), libc::PTHREAD_MUTEX_ERRORCHECK)?;
        let hdr = &control.get().hdr;
        hdr.version.store(VERSION, Relaxed);
        hdr.layout.store(mem::size_of::<Control>() as u32, Relaxed);
        hdr.max_count.store(max_count.unwrap_or(u64::MAX), Relaxed);
        hdr.slots[0].capacity.store(capacity, Relaxed);
        hdr.magic.store(MAGIC, Release);
        let data = DataMap::map(&data_fd, capacity, 0).map_err(into_io)?;
        Ok(ShmRing {
            control,
            data: Mutex::new(data),
            control_fd,
            data_fd,
        })
    }

    /// The two descriptors to send to another process: control, then data.
    pub(crate) fn fds(&self) -> [&Fd; 2] {
        [&self.control_fd, &self.data_fd]
    }

    /// Rebuilds a handle from descriptors received from another process.
    ///
    /// Checks that both are memory files sealed against shrinking, that the
    /// control file has the right size, magic, version and layout; the data
    /// file's size is checked against the ring's capacity before each
    /// (re)mapping. Anything else is an `InvalidData` error.
    pub(crate) fn from_fds(control: Fd, data: Fd) -> io::Result<ShmRing> {
        let c = check_sealed(
            &control,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
            0,
            "the queue's control",
        )?;
        let d = check_sealed(
            &data,
            libc::F_SEAL_SHRINK,
            libc::F_SEAL_GROW | libc::F_SEAL_WRITE,
            "the queue's data",
        )?;
        if (c.st_dev, c.st_ino) == (d.st_dev, d.st_ino) {
            return Err(invalid("the queue's control and data descriptors are the same file"));
        }
        if c.st_size as u64 != CONTROL_SIZE as u64 {
            return Err(invalid("the queue's control file has the wrong size"));
        }
        if (d.st_size as u64) < MIN_CAPACITY {
            return Err(invalid("the queue's data file is too small"));
        }
        let map = ControlMap::new(&control)?;
        let hdr = &map.get().hdr;
        if hdr.magic.load(Acquire) != MAGIC {
            return Err(invalid("the descriptor is not a queue's control file"));
        }
        if hdr.version.load(Relaxed) != VERSION || hdr.layout.load(Relaxed) != mem::size_of::<Control>() as u32 {
            return Err(invalid("the queue was made by an incompatible version of the library"));
        }
        if hdr.max_count.load(Relaxed) == 0 {
            return Err(invalid("the queue's control file is corrupt"));
        }
        Ok(ShmRing {
            control: map,
            data: Mutex::new(DataMap::empty()),
            control_fd: control,
            data_fd: data,
        })
    }

    /// Appends one record made of the concatenation of `parts`.
    ///
    /// Waits while the ring holds `max_count` records (`deadline`: see the
    /// module docs). `before_commit` runs under the lock, after the bytes
    /// are written and just before the record is committed; if it fails,
    /// nothing is committed and its error is returned as `Io`.
    pub(crate) fn push(
        &self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
        before_commit: &mut dyn FnMut(u64) -> io::Result<()>,
    ) -> Result<(), RingError> {
        let len = parts
            .iter()
            .try_fold(0u64, |sum, p| sum.checked_add(p.len() as u64))
            .filter(|&l| record_size(l).is_some())
            .ok_or_else(|| {
                RingError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the item is too large for a queue",
                ))
            })?;
        let size = record_size(len).expect("checked above");
        let max = self.hdr().max_count.load(Relaxed);
        let mut g = self.lock(deadline)?;
        while g.st.count >= max {
            if passed(deadline) {
                return Err(RingError::Timeout);
            }
            g = g.wait(Event::Get, deadline)?;
        }
        if g.st.capacity - g.st.used() < size {
            g.grow(size)?;
        }
        let map = g.map();
        let mut off = g.st.tail;
        map.write_u64(off, len);
        off += RECORD_HEADER;
        for part in parts {
            map.write(off, part);
            off += part.len() as u64;
        }
        before_commit(g.st.pushed)?;
        g.fail_point("push:written");
        g.st.tail += size;
        g.st.count += 1;
        g.st.pushed = g.st.pushed.wrapping_add(1);
        g.st.unfinished = g.st.unfinished.saturating_add(1);
        g.commit();
        g.signal(Event::Put);
        Ok(())
    }

    /// Removes and returns the oldest record.
    ///
    /// Waits while the ring is empty (`deadline`: see the module docs).
    /// `after_read` sees the record under the lock before it is removed; if
    /// it fails, the record stays and its error is returned as `Io`.
    pub(crate) fn pop(
        &self,
        deadline: Option<Instant>,
        after_read: &mut dyn FnMut(&[u8], u64) -> io::Result<()>,
    ) -> Result<Vec<u8>, RingError> {
        let mut g = self.lock(deadline)?;
        while g.st.count == 0 {
            if passed(deadline) {
                return Err(RingError::Timeout);
            }
            g = g.wait(Event::Put, deadline)?;
        }
        let len = g.map().read_u64(g.st.head);
        let size = match record_size(len) {
            Some(size) if size <= g.st.used() => size,
            _ => return Err(g.break_ring(BROKEN_RECORD)),
        };
        // len < size <= capacity, which is mapped: it fits a usize.
        let len = len as usize;
        let mut out = Vec::new();
        out.try_reserve_exact(len).map_err(|_| {
            RingError::Io(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate {len} bytes for a queue item"),
            ))
        })?;
        g.map()
            .read(g.st.head + RECORD_HEADER, &mut out.spare_capacity_mut()[..len]);
        // SAFETY: `read` initialised the first `len` bytes.
        unsafe { out.set_len(len) };
        after_read(&out, g.st.pushed.wrapping_sub(g.st.count))?;
        g.fail_point("pop:read");
        g.st.head += size;
        g.st.count -= 1;
        if g.st.count == 0 && g.st.head == g.st.tail {
            g.st.head = 0;
            g.st.tail = 0;
        }
        g.commit();
        g.signal(Event::Get);
        Ok(out)
    }

    /// The number of committed records, exact: an operation that has
    /// returned is counted.
    pub(crate) fn len(&self) -> u64 {
        self.hdr().count.load(Acquire)
    }

    /// The bound on the number of records, `None` when unbounded.
    pub(crate) fn max_count(&self) -> Option<u64> {
        let max = self.hdr().max_count.load(Relaxed);
        (max != u64::MAX).then_some(max)
    }

    /// Marks one pushed record as processed (`JoinableQueue.task_done`).
    pub(crate) fn task_done(&self) -> Result<(), RingError> {
        let mut g = self.lock(None)?;
        if g.st.unfinished == 0 {
            return Err(RingError::TooManyTaskDone);
        }
        g.st.unfinished -= 1;
        g.commit();
        if g.st.unfinished == 0 {
            g.signal(Event::Done);
        }
        Ok(())
    }

    /// Waits until every pushed record has been marked done.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<(), RingError> {
        let mut g = self.lock(deadline)?;
        while g.st.unfinished != 0 {
            if passed(deadline) {
                return Err(RingError::Timeout);
            }
            g = g.wait(Event::Done, deadline)?;
        }
        Ok(())
    }

    /// The current value of the word bumped at each committed record.
    pub(crate) fn put_seq(&self) -> u32 {
        self.hdr().put_seq.load(SeqCst)
    }

    /// Waits until the put word differs from `seen` (`true`) or the deadline
    /// passes (`false`). Also `true` once the ring is broken, so that the
    /// caller's next call reports it. A `true` may be spurious (a record
    /// already taken by someone else): recheck with a non-blocking pop.
    pub(crate) fn wait_put_seq_change(&self, seen: u32, deadline: Option<Instant>) -> bool {
        let hdr = self.hdr();
        loop {
            if hdr.put_seq.load(SeqCst) != seen || hdr.broken.load(Acquire) != 0 {
                return true;
            }
            if passed(deadline) {
                return false;
            }
            hdr.put_waiters.fetch_add(1, SeqCst);
            if hdr.put_seq.load(SeqCst) == seen {
                futex_wait(&hdr.put_seq, seen, deadline, SLICE);
            }
            hdr.put_waiters.fetch_sub(1, SeqCst);
            if hdr.put_seq.load(SeqCst) == seen && !passed(deadline) {
                // A slice passed or the wake was spurious: if the lock's
                // owner died, recover now (which bumps the word).
                let _ = self.lock_with(LockWait::Try);
            }
        }
    }

    /// Counts the caller as a watcher until [`unwatch`](Self::unwatch):
    /// someone who wants to hear of every committed record by another
    /// means than the futex (the queue's eventfd). The caller then reads
    /// the ring's state; the fence pairs with the one in
    /// [`has_watchers`](Self::has_watchers), so either the caller sees a
    /// record or its putter sees the watcher. A watcher that dies leaves
    /// the count raised, which only costs later puts a signal.
    pub(crate) fn watch(&self) {
        self.hdr().watchers.fetch_add(1, SeqCst);
        std::sync::atomic::fence(SeqCst);
    }

    /// Ends a [`watch`](Self::watch).
    pub(crate) fn unwatch(&self) {
        // Saturating: a count is never taken below what was added.
        let _ = self.hdr().watchers.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }

    /// Whether anyone watches; called after a push has returned.
    pub(crate) fn has_watchers(&self) -> bool {
        std::sync::atomic::fence(SeqCst);
        self.hdr().watchers.load(Relaxed) != 0
    }

    /// Takes the lock and never releases it; called from a thread that then
    /// exits, to make the next locker see `EOWNERDEAD`.
    #[cfg(test)]
    fn leak_lock_for_test(&self) {
        let mut g = self.lock(None).unwrap_or_else(|e| panic!("lock: {e}"));
        drop(g.map.take());
        mem::forget(g);
    }

    /// The active state: `(capacity, head, tail, count, unfinished)`.
    #[cfg(test)]
    fn state_for_test(&self) -> (u64, u64, u64, u64, u64) {
        let g = self.lock(None).unwrap_or_else(|e| panic!("lock: {e}"));
        (g.st.capacity, g.st.head, g.st.tail, g.st.count, g.st.unfinished)
    }

    /// The waiter counters: put, get, done.
    #[cfg(test)]
    fn waiters_for_test(&self) -> [u32; 3] {
        let h = self.hdr();
        [
            h.put_waiters.load(SeqCst),
            h.get_waiters.load(SeqCst),
            h.done_waiters.load(SeqCst),
        ]
    }

    /// Writes `tail` into the active slot without the lock, as a wild
    /// write would.
    #[cfg(test)]
    fn scribble_tail_for_test(&self, tail: u64) {
        let h = self.hdr();
        h.slots[h.active.load(SeqCst) as usize & 1].tail.store(tail, SeqCst);
    }

    /// The shared header.
    fn hdr(&self) -> &Header {
        &self.control.get().hdr
    }

    /// The shared mutex.
    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.control.get().mutex.get()
    }

    /// Takes the lock for an operation with `deadline` (see the module docs
    /// for the grace given to past deadlines).
    fn lock(&self, deadline: Option<Instant>) -> Result<Locked<'_>, RingError> {
        let how = match deadline {
            None => LockWait::Forever,
            Some(d) => LockWait::Until(d.max(Instant::now() + LOCK_GRACE)),
        };
        self.lock_with(how)
    }

    /// Takes the lock, recovers from a dead owner, checks the state and
    /// remaps the data if it grew; `Timeout` when the lock stayed busy.
    #[inline]
    fn lock_with(&self, how: LockWait) -> Result<Locked<'_>, RingError> {
        let m = self.mutex();
        // A lock held by another CPU is usually free within a microsecond or
        // two: try for a while before sleeping in the kernel, whose wake-up
        // costs both sides a system call.
        let mut rc = libc::EBUSY;
        if !matches!(how, LockWait::Try) {
            let start = Instant::now();
            let mut tries = 0u32;
            loop {
                // SAFETY: m is the initialised process-shared mutex of our mapping.
                rc = unsafe { libc::pthread_mutex_trylock(m) };
                if rc != libc::EBUSY {
                    break;
                }
                std::hint::spin_loop();
                tries += 1;
                if tries % 32 == 0 && start.elapsed() >= LOCK_SPIN {
                    break;
                }
            }
        }
        let rc = if rc != libc::EBUSY {
            rc
        } else {
            match how {
                // SAFETY: m is the initialised process-shared mutex of our mapping.
                LockWait::Forever => unsafe { libc::pthread_mutex_lock(m) },
                // SAFETY: as above.
                LockWait::Try => unsafe { libc::pthread_mutex_trylock(m) },
                LockWait::Until(deadline) => loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // SAFETY: as above.
                        break unsafe { libc::pthread_mutex_trylock(m) };
                    }
                    let at = realtime_after(left.min(SLICE));
                    // SAFETY: as above; `at` is a valid timespec.
                    let rc = unsafe { libc::pthread_mutex_timedlock(m, &at) };
                    if rc != libc::ETIMEDOUT {
                        break rc;
                    }
                },
            }
        };
        let hdr = self.hdr();
        match rc {
            0 => {}
            libc::EBUSY | libc::ETIMEDOUT => return Err(RingError::Timeout),
            libc::EOWNERDEAD => {
                hdr.needs_check.store(1, SeqCst);
                // SAFETY: our lock call on the initialised mutex m just
                // returned EOWNERDEAD.
                unsafe { recover_owner_died(m) }.map_err(RingError::Io)?;
            }
            libc::ENOTRECOVERABLE => {
                let _ = hdr.broken.compare_exchange(0, BROKEN_LOCK, SeqCst, SeqCst);
                self.wake_all();
                return Err(RingError::Broken(broken_message(hdr.broken.load(SeqCst))));
            }
            libc::EDEADLK => {
                return Err(RingError::Io(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "a queue operation was called from inside one of its own callbacks",
                )));
            }
            e => return Err(RingError::Io(io::Error::from_raw_os_error(e))),
        }
        // From here the guard unlocks on every path.
        let mut g = Locked {
            ring: self,
            map: None,
            st: State::default(),
            active: 0,
            #[cfg(test)]
            leak: false,
        };
        g.map = Some(match self.data.try_lock() {
            Ok(map) => map,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(RingError::Io(io::Error::other(
                    "the queue's local mapping was in use when this process was forked",
                )));
            }
        });
        let broken = hdr.broken.load(Acquire);
        if broken != 0 {
            return Err(RingError::Broken(broken_message(broken)));
        }
        if hdr.needs_check.load(SeqCst) != 0 {
            g.recover()?;
        } else {
            g.load()?;
        }
        Ok(g)
    }

    /// Bumps every futex word and wakes every sleeper.
    fn wake_all(&self) {
        let hdr = self.hdr();
        for word in [&hdr.put_seq, &hdr.get_seq, &hdr.done_seq] {
            word.fetch_add(1, SeqCst);
            futex_wake_all(word);
        }
    }

    /// The futex word and waiter counter of `event`.
    fn event(&self, event: Event) -> (&AtomicU32, &AtomicU32) {
        let h = self.hdr();
        match event {
            Event::Put => (&h.put_seq, &h.put_waiters),
            Event::Get => (&h.get_seq, &h.get_waiters),
            Event::Done => (&h.done_seq, &h.done_waiters),
        }
    }
}

/// The lock held, with this handle's data mapping and a local copy of the
/// active state. Dropping it releases both (the local mapping first, so
/// another thread of this process that takes the shared lock finds the
/// local one free).
struct Locked<'a> {
    /// The ring.
    ring: &'a ShmRing,
    /// The local mapping; `Some` except while being built or dropped.
    map: Option<MutexGuard<'a, DataMap>>,
    /// The state being edited.
    st: State,
    /// The slot `st` was read from.
    active: u32,
    /// Set by a test's fail point: keep the lock, as a killed process would.
    #[cfg(test)]
    leak: bool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        drop(self.map.take());
        #[cfg(test)]
        if self.leak {
            return;
        }
        // SAFETY: this thread holds the mutex (the guard exists only then).
        unsafe { libc::pthread_mutex_unlock(self.ring.mutex()) };
    }
}

impl<'a> Locked<'a> {
    /// In tests, dies at `point` if this thread asked to (see `DIE_AT`):
    /// unwinds keeping the lock, so the next locker sees `EOWNERDEAD` with
    /// the shared memory exactly as a process killed there leaves it.
    #[cfg(test)]
    fn fail_point(&mut self, point: &'static str) {
        if DIE_AT.with(|d| d.get()) == Some(point) {
            self.leak = true;
            panic!("died at {point}");
        }
    }

    /// Outside tests, nothing.
    #[cfg(not(test))]
    #[inline(always)]
    fn fail_point(&mut self, _point: &'static str) {}

    /// The data mapping.
    fn map(&self) -> &DataMap {
        self.map.as_ref().expect("the mapping is held while locked")
    }

    /// Reads the active slot, checks it, and remaps if the ring grew.
    fn load(&mut self) -> Result<(), RingError> {
        let hdr = self.ring.hdr();
        let active = hdr.active.load(Acquire);
        if active > 1 {
            return Err(self.break_ring(BROKEN_STATE));
        }
        let s = &hdr.slots[active as usize];
        self.active = active;
        self.st = State {
            capacity: s.capacity.load(Relaxed),
            generation: s.generation.load(Relaxed),
            head: s.head.load(Relaxed),
            tail: s.tail.load(Relaxed),
            count: s.count.load(Relaxed),
            unfinished: s.unfinished.load(Relaxed),
            pushed: s.pushed.load(Relaxed),
        };
        if self.st.check().is_err() {
            return Err(self.break_ring(BROKEN_STATE));
        }
        let map = self.map();
        if map.generation != self.st.generation || map.len as u64 != self.st.capacity {
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
    fn recover(&mut self) -> Result<(), RingError> {
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
    fn break_ring(&self, code: u32) -> RingError {
        let hdr = self.ring.hdr();
        let _ = hdr.broken.compare_exchange(0, code, SeqCst, SeqCst);
        self.ring.wake_all();
        RingError::Broken(broken_message(hdr.broken.load(SeqCst)))
    }

    /// Publishes `st`: writes the inactive slot, flips `active`, refreshes
    /// the count copy.
    fn commit(&mut self) {
        let hdr = self.ring.hdr();
        let next = self.active ^ 1;
        let s = &hdr.slots[next as usize];
        s.capacity.store(self.st.capacity, Relaxed);
        s.generation.store(self.st.generation, Relaxed);
        s.head.store(self.st.head, Relaxed);
        s.tail.store(self.st.tail, Relaxed);
        s.count.store(self.st.count, Relaxed);
        s.unfinished.store(self.st.unfinished, Relaxed);
        s.pushed.store(self.st.pushed, Relaxed);
        self.fail_point("commit:slot");
        hdr.active.store(next, Release);
        self.fail_point("commit:flipped");
        self.active = next;
        hdr.count.store(self.st.count, Release);
    }

    /// Reports `event` (under the lock): bumps its word and wakes its
    /// sleepers if there are any.
    fn signal(&self, event: Event) {
        let (word, waiters) = self.ring.event(event);
        word.fetch_add(1, SeqCst);
        if waiters.load(SeqCst) != 0 {
            futex_wake_all(word);
        }
    }

    /// Releases the lock, sleeps until `event` (at most one slice, or until
    /// the deadline) and takes the lock again.
    ///
    /// It first spins for up to [`SPIN`] with the lock released: a peer on
    /// another CPU usually acts within microseconds, and a waiter that never
    /// registers costs the peer no wake-up system call (this halves the
    /// cost of a pipelined exchange). Registering after the spin is safe: a
    /// signal in between changes the word, and `FUTEX_WAIT` then returns at
    /// once.
    fn wait(self, event: Event, deadline: Option<Instant>) -> Result<Locked<'a>, RingError> {
        let ring = self.ring;
        let (word, waiters) = ring.event(event);
        let seen = word.load(SeqCst);
        drop(self);
        let spin_start = Instant::now();
        let mut spins = 0u32;
        while word.load(SeqCst) == seen {
            std::hint::spin_loop();
            spins += 1;
            if spins % 64 == 0 && (spin_start.elapsed() >= SPIN || passed(deadline)) {
                break;
            }
        }
        if word.load(SeqCst) == seen {
            waiters.fetch_add(1, SeqCst);
            futex_wait(word, seen, deadline, SLICE);
            waiters.fetch_sub(1, SeqCst);
        }
        ring.lock(deadline)
    }

    /// Makes room for a record of `size` bytes: a larger file, a new
    /// mapping, the wrapped prefix copied after the old end, then one
    /// commit (see the module docs).
    fn grow(&mut self, size: u64) -> Result<(), RingError> {
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
        if file_size(fd)? < capacity {
            // SAFETY: ftruncate on our descriptor; the seals allow growing.
            cvt_r(|| unsafe { libc::ftruncate(fd.raw(), capacity as libc::off_t) })?;
        }
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

/// A ring error as an `io::Error`, for constructors.
fn into_io(e: RingError) -> io::Error {
    match e {
        RingError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
