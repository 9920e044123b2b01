//! The shared page behind every synchronisation primitive: its layout,
//! the mapping, the internal lock, and the helpers the primitives' files
//! (`lock.rs`, `rlock.rs`, `semaphore.rs`, `event.rs`, `condition.rs`,
//! `barrier.rs`) build their algorithms from. Only the `crate::sys`
//! contract is used: a sealed memory file, a `Mapping`, a `RobustMutex`,
//! futex waits, thread and process identity.
//!
//! # Layout
//!
//! Every object is one anonymous memory file of [`SIZE`] bytes, sealed
//! against growing and shrinking, mapped shared by every handle (a handle
//! travels to another process as that one descriptor; a fork child inherits
//! the mapping). The file holds a `RobustMutex` of the contract, then one
//! [`Page`]: a [`Header`] of atomics and a table of [`Slot`]s.
//! Every bit pattern is a valid `Page`, so a received file of the right size
//! and seals can be viewed as one; a magic word and a kind word refuse a
//! descriptor of another kind of object.
//!
//! # Lock and RLock
//!
//! The mutex *is* the lock: error-checking for `Lock`, recursive for
//! `RLock`. The contract's mutex hands the next locker a lock whose holder
//! died at once (no polling), consistent again, and this reports
//! [`Acquired::OwnerDied`]. Its owner (a thread id) is how a non-owner's
//! release is told apart from a release of an unlocked lock. `RLock`'s
//! recursion depth is kept in the header by the owner (reset to 1 after a
//! dead owner).
//!
//! # The other primitives
//!
//! For the others the mutex is an internal lock held for a few stores at a
//! time; waits sleep on futex words of the header, in slices of at most
//! [`SLICE`], after which the waiter rechecks the processes it depends on.
//! A process is named by (pid, thread id, start time from
//! `/proc/<pid>/stat`), so a reused pid is not taken for the old process.
//!
//! - *Semaphore*: `value` free permits. Permits taken through a guard are
//!   counted per process in the slot table; a waiter that has seen no
//!   release for a whole slice reclaims the permits of dead processes and
//!   is told (the one that reclaims is the one that reports it). A change of
//!   `value` and a slot count is journalled first, so a process killed in
//!   the middle is rolled back by the next locker.
//! - *Event*: a flag and a sequence word bumped by each `set` that changes
//!   the flag; no lock at all.
//! - *Condition*: a slot per waiter with a ticket (its arrival order) and a
//!   futex word of its own; `notify(n)` marks the `n` oldest live waiters
//!   notified and wakes exactly them. The condition's state is only changed
//!   while holding the user's lock, as Python requires of its callers.
//! - *Barrier*: `count` arrivals of the current generation, registered in
//!   the slot table; the generation word is bumped when the barrier passes,
//!   breaks or is reset, and a 64-bit history says which of the last 64
//!   generations passed. Each waiter watches one other registered party
//!   (its predecessor in arrival order; the first watches the latest); a
//!   waiter that finds the party it watches dead, or whose deadline
//!   passes, breaks the barrier; so does a death under the internal lock.

// One block: the view of the mapped page as a `Page` (`SyncMem::page`).
#![allow(unsafe_code)]

use std::{
    fmt, io, mem,
    sync::atomic::{
        AtomicU32, AtomicU64,
        Ordering::{Acquire, Relaxed, Release, SeqCst},
    },
    time::{Duration, Instant},
};

use crate::sys::{
    Fd, LockError, Locked, MUTEX_ALIGN, MUTEX_SIZE, Mapping, MutexKind, RobustMutex, file_size, is_alive,
    is_size_sealed, may_spin, memfd_sealed_labelled, passed,
};

/// Bytes of one object's memory file.
const SIZE: usize = 16384;
/// First word of the file: "mpsync01".
const MAGIC: u64 = u64::from_le_bytes(*b"mpsync01");
/// Longest sleep before a waiter rechecks the processes it depends on.
pub(super) const SLICE: Duration = Duration::from_millis(200);
/// How long a waiter spins before sleeping in the kernel (only when this
/// thread may run on more than one CPU).
const SPIN: Duration = Duration::from_micros(20);
/// How long a timed operation waits for the internal lock at least, even
/// past its deadline (a try): its holders keep it for a few stores, unless
/// stopped or descheduled.
const INNER_GRACE: Duration = Duration::from_millis(20);

/// Slot states.
pub(super) const FREE: u32 = 0;
pub(super) const WAITING: u32 = 1;
pub(super) const NOTIFIED: u32 = 2;

/// What an object is; stored in its header and checked on import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Kind {
    Lock = 1,
    RLock = 2,
    Semaphore = 3,
    Event = 4,
    Condition = 5,
    Barrier = 6,
}

/// How an acquisition went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Acquired {
    /// Normally.
    Clean,
    /// A process or thread died holding it (a lock, or semaphore permits
    /// that this acquisition reclaimed); the caller holds it now.
    OwnerDied,
}

/// Why an operation failed.
#[derive(Debug)]
pub(super) enum SyncError {
    /// The deadline passed.
    Timeout,
    /// A non-recursive lock was acquired again by the thread holding it.
    Deadlock,
    /// A lock released (or a condition used) by a thread that does not
    /// hold the lock.
    NotOwner,
    /// A lock released while unlocked.
    NotLocked,
    /// A bounded semaphore released above its initial value.
    TooManyReleases,
    /// The barrier is broken (or was broken or reset while waiting).
    Broken,
    /// The object's table of waiters or holders is full.
    Full,
    /// A system call failed.
    Io(io::Error),
}

impl From<LockError> for SyncError {
    fn from(e: LockError) -> SyncError {
        match e {
            LockError::Timeout => SyncError::Timeout,
            LockError::Deadlock => SyncError::Deadlock,
            e @ (LockError::NotRecoverable | LockError::Io(_)) => SyncError::Io(e.into()),
        }
    }
}

/// An `InvalidData` error.
fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncError::Timeout => "timed out",
            SyncError::Deadlock => "the lock is already held by this thread",
            SyncError::NotOwner => "the lock is not held by this thread",
            SyncError::NotLocked => "semaphore or lock released too many times",
            SyncError::TooManyReleases => "semaphore or lock released too many times",
            SyncError::Broken => "the barrier is broken",
            SyncError::Full => "too many processes wait on or hold this object at once",
            SyncError::Io(e) => return write!(f, "{e}"),
        })
    }
}

/// One entry of the table: a holder (semaphore), a waiter (condition) or a
/// party (barrier).
#[repr(C)]
pub(super) struct Slot {
    /// Process id; 0 when the slot is free (semaphore, barrier).
    pub(super) pid: AtomicU32,
    /// Thread id (condition, barrier).
    pub(super) tid: AtomicU32,
    /// Start time of the process, in clock ticks after boot; 0 = unchecked.
    pub(super) start: AtomicU64,
    /// Permits held (semaphore) or ticket (condition).
    pub(super) n: AtomicU64,
    /// Futex word: `FREE`, `WAITING` or `NOTIFIED` (condition, barrier).
    pub(super) state: AtomicU32,
    _pad: AtomicU32,
}

impl Slot {
    /// Whether the condition waiter or barrier party in this slot is
    /// alive: by thread id, and by process start time too for a main
    /// thread (a dead process's pid reused by a new process names the new
    /// main thread; a reused id of another thread is much less likely to
    /// fall in the same thread group, and reading `/proc` for every slot
    /// checked is not free).
    pub(super) fn holder_alive(&self) -> bool {
        let (pid, tid) = (self.pid.load(SeqCst), self.tid.load(SeqCst));
        is_alive(pid, tid, if tid == pid { self.start.load(SeqCst) } else { 0 })
    }
}

/// The shared state after the mutex. Fields unused by a kind stay 0.
#[repr(C)]
pub(super) struct Header {
    pub(super) magic: AtomicU64,
    pub(super) kind: AtomicU32,
    /// `size_of::<Page>()` of the creator.
    pub(super) layout: AtomicU32,
    /// RLock: recursion depth, written by the owner only.
    pub(super) rcount: AtomicU32,
    /// Futex word: bumped by a semaphore release, an event set.
    pub(super) seq: AtomicU32,
    /// Sleepers on `seq`.
    pub(super) waiters: AtomicU32,
    /// Event: 1 when set.
    pub(super) flag: AtomicU32,
    /// Semaphore: free permits.
    pub(super) value: AtomicU64,
    /// Semaphore: bound on `value` (`u64::MAX`: unbounded).
    pub(super) max: AtomicU64,
    /// Semaphore journal: 1 while `value` and a slot count are changing.
    pub(super) journal: AtomicU32,
    pub(super) j_slot: AtomicU32,
    pub(super) j_value: AtomicU64,
    pub(super) j_n: AtomicU64,
    /// Condition: next ticket; waiters not yet notified.
    pub(super) next_ticket: AtomicU64,
    pub(super) nwaiting: AtomicU32,
    /// Barrier: parties, arrivals, generation (futex word), broken flag.
    pub(super) parties: AtomicU32,
    pub(super) count: AtomicU32,
    pub(super) generation: AtomicU32,
    pub(super) broken: AtomicU32,
    _pad: AtomicU32,
    /// Barrier: bit `g % 64` is set when generation `g` passed.
    pub(super) outcomes: AtomicU64,
}

/// Where the page starts in the file: the mutex comes first.
const PAGE_OFF: usize = 64;
/// Bytes of the page before the slot table.
const FIXED: usize = 512 - PAGE_OFF;
/// Entries of the slot table.
pub(super) const NSLOTS: usize = (SIZE - PAGE_OFF - FIXED) / mem::size_of::<Slot>();

/// The file's contents after the mutex.
#[repr(C, align(64))]
pub(super) struct Page {
    pub(super) hdr: Header,
    _pad: [u8; FIXED - mem::size_of::<Header>()],
    pub(super) slots: [Slot; NSLOTS],
}

const _: () = assert!(MUTEX_SIZE <= PAGE_OFF && PAGE_OFF % MUTEX_ALIGN == 0);
const _: () = assert!(mem::size_of::<Header>() <= FIXED);
const _: () = assert!(PAGE_OFF + mem::size_of::<Page>() <= SIZE);
// `Barrier::MAX_PARTIES`'s documentation says 497.
const _: () = assert!(NSLOTS == 496);

/// One object's shared memory, mapped.
pub(super) struct SyncMem {
    fd: Fd,
    map: Mapping,
    mutex: RobustMutex,
}

impl Drop for SyncMem {
    fn drop(&mut self) {
        // A thread of this process that still holds the mutex (a lock
        // acquired without a guard, a leaked guard) keeps it on that
        // thread's robust list, which glibc walks on every later robust
        // lock and unlock: unmapping would leave the list pointing at
        // unmapped memory (or whatever is mapped there next). Leave the
        // small mapping in place then; the descriptor is still closed.
        if self.mutex.held_by_this_process() {
            self.map.keep_mapped();
        }
    }
}

impl fmt::Debug for SyncMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncMem")
            .field("fd", &self.fd.raw())
            .finish_non_exhaustive()
    }
}

/// Spins up to [`SPIN`] while `f` is false; returns its last value.
pub(super) fn spin_until(mut f: impl FnMut() -> bool, deadline: Option<Instant>) -> bool {
    // `f` may have side effects (a trylock): call it once per decision.
    if f() {
        return true;
    }
    if !may_spin() {
        return false;
    }
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if f() {
            return true;
        }
        std::hint::spin_loop();
        spins += 1;
        if spins % 64 == 0 && (start.elapsed() >= SPIN || passed(deadline)) {
            return f();
        }
    }
}

/// The internal lock held (semaphore, barrier); unlocks on drop.
pub(super) struct Inner<'a> {
    mem: &'a SyncMem,
    /// The previous holder died (the caller repairs the state).
    pub(super) recovered: bool,
}

impl Drop for Inner<'_> {
    fn drop(&mut self) {
        // Cannot fail: this thread holds the mutex (the guard exists only
        // then).
        let unlocked = self.mem.mutex.unlock();
        debug_assert!(unlocked.is_ok(), "unlocking the internal lock");
    }
}

impl SyncMem {
    /// Most parties of a barrier: every party but the last to arrive takes
    /// a slot.
    pub(super) const MAX_PARTIES: usize = NSLOTS + 1;

    /// A new object of `kind`; `value` and `max` are a semaphore's initial
    /// and maximal values, or a barrier's parties in `value` and its
    /// default timeout in `max` (see [`bar_timeout`](Self::bar_timeout)).
    pub(super) fn new(kind: Kind, value: u64, max: u64) -> io::Result<SyncMem> {
        let fd = memfd_sealed_labelled(c"multiproc-sync", SIZE)?;
        let map = Mapping::new(&fd, SIZE)?;
        let mtype = match kind {
            Kind::RLock => MutexKind::Recursive,
            _ => MutexKind::ErrorCheck,
        };
        // A new file's bytes are zeroed, as the mutex needs.
        let mutex = RobustMutex::init(&map, 0, mtype)?;
        let mem = SyncMem { fd, map, mutex };
        let h = mem.hdr();
        h.kind.store(kind as u32, Relaxed);
        h.layout.store(mem::size_of::<Page>() as u32, Relaxed);
        h.value.store(value, Relaxed);
        h.max.store(max, Relaxed);
        if kind == Kind::Barrier {
            h.parties.store(value as u32, Relaxed);
        }
        h.magic.store(MAGIC, Release);
        Ok(mem)
    }

    /// A handle from a descriptor received from another process; checks
    /// the seals, the size, the magic word, the layout and the kind.
    pub(super) fn from_fd(fd: Fd, kind: Kind) -> io::Result<SyncMem> {
        if !is_size_sealed(&fd) {
            return Err(invalid(
                "the synchronisation object's descriptor is not a suitably sealed memory file",
            ));
        }
        if !crate::sys::size_matches(file_size(&fd)?, SIZE as u64) {
            return Err(invalid("the synchronisation object's file has the wrong size"));
        }
        let map = Mapping::new(&fd, SIZE)?;
        let mutex = RobustMutex::attach(&map, 0);
        let mem = SyncMem { fd, map, mutex };
        let h = mem.hdr();
        if h.magic.load(Acquire) != MAGIC || h.layout.load(Relaxed) != mem::size_of::<Page>() as u32 {
            return Err(invalid(
                "the descriptor is not a synchronisation object of this version of the library",
            ));
        }
        if h.kind.load(Relaxed) != kind as u32 {
            return Err(invalid(&format!("the descriptor is not a {kind:?}")));
        }
        Ok(mem)
    }

    /// The descriptor to send to another process.
    pub(super) fn fd(&self) -> &Fd {
        &self.fd
    }

    pub(super) fn page(&self) -> &Page {
        // SAFETY: the mapping is SIZE readable and writable bytes,
        // page-aligned, living as long as `self`; a Page fits after
        // PAGE_OFF (asserted above), its fields are atomics (so shared
        // access races with nobody; the padding is never accessed) and any
        // bit pattern is a valid Page.
        unsafe { &*self.map.as_ptr().wrapping_add(PAGE_OFF).cast::<Page>() }
    }

    pub(super) fn hdr(&self) -> &Header {
        &self.page().hdr
    }

    pub(super) fn kind(&self) -> u32 {
        self.hdr().kind.load(Relaxed)
    }

    /// The thread id of the lock's owner, 0 when unlocked.
    pub(super) fn owner(&self) -> u32 {
        self.mutex.owner()
    }

    /// The object's mutex: the lock itself for `Lock` and `RLock`, the
    /// internal lock of the others.
    pub(super) fn mutex(&self) -> &RobustMutex {
        &self.mutex
    }

    /// Takes the internal lock (its holders keep it for a few stores), until
    /// `deadline` but at least [`INNER_GRACE`] from now (`None`: as long as
    /// it takes, for a release): a holder that is stopped (`SIGSTOP`, a
    /// debugger) must not make a timed operation hang.
    pub(super) fn inner(&self, deadline: Option<Instant>) -> Result<Inner<'_>, SyncError> {
        let recovered = match self.mutex.lock(deadline.map(|d| d.max(Instant::now() + INNER_GRACE)))? {
            Locked::Clean => false,
            Locked::OwnerDied => true,
        };
        Ok(Inner { mem: self, recovered })
    }
}
