//! The shared memory behind the synchronisation primitives of
//! `crate::sync` (`Lock`, `RLock`, `Semaphore`, `Event`, `Condition`,
//! `Barrier`).
//!
//! # Layout
//!
//! Every object is one anonymous memory file of [`SIZE`] bytes, sealed
//! against growing and shrinking, mapped shared by every handle (a handle
//! travels to another process as that one descriptor; a fork child inherits
//! the mapping). The file holds one [`Page`]: a robust, process-shared
//! `pthread_mutex_t`, a [`Header`] of atomics, and a table of [`Slot`]s.
//! Every bit pattern is a valid `Page`, so a received file of the right size
//! and seals can be viewed as one; a magic word and a kind word refuse a
//! descriptor of another kind of object.
//!
//! # Lock and RLock
//!
//! The mutex *is* the lock: error-checking for `Lock`, recursive for
//! `RLock`. glibc keeps every robust mutex a thread holds on the thread's
//! robust list, and the kernel marks the mutex when the thread or its
//! process dies, so the next locker gets `EOWNERDEAD` at once (no polling).
//! It makes the mutex consistent at once and reports [`Acquired::OwnerDied`].
//! The owner is the kernel thread id stored in the mutex's futex word (the
//! robust-futex ABI), which is how a non-owner's release is told apart from
//! a release of an unlocked lock. `RLock`'s recursion depth is kept in the
//! header by the owner (reset to 1 after `EOWNERDEAD`).
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
//!   generations passed. A waiter that finds a registered party dead, or
//!   whose deadline passes, breaks the barrier; so does a death under the
//!   internal lock.

// The owner of a robust mutex is read from glibc's `pthread_mutex_t`
// layout (its first word is the robust futex word).
#[cfg(not(target_env = "gnu"))]
compile_error!("multiproc's shared locks read glibc's pthread_mutex_t layout: Linux with glibc only");

use std::{
    cell::{Cell, UnsafeCell},
    fmt, io, mem,
    ptr::NonNull,
    sync::{
        Once,
        atomic::{
            AtomicU32, AtomicU64,
            Ordering::{Acquire, Relaxed, Release, SeqCst},
        },
    },
    time::{Duration, Instant},
};

use super::{
    Fd,
    shm::{
        check_sealed, create_memfd, futex_wait, futex_wake, futex_wake_all, init_mutex, invalid, map_shared, passed,
        realtime_after, recover_owner_died,
    },
};

/// Bytes of one object's memory file.
const SIZE: usize = 16384;
/// First word of the file: "mpsync01".
const MAGIC: u64 = u64::from_le_bytes(*b"mpsync01");
/// Longest sleep before a waiter rechecks the processes it depends on.
pub(crate) const SLICE: Duration = Duration::from_millis(200);
/// How long a waiter spins before sleeping in the kernel (only when this
/// thread may run on more than one CPU).
const SPIN: Duration = Duration::from_micros(20);
/// How long a locker retries a busy lock before sleeping in the kernel.
const LOCK_SPIN: Duration = Duration::from_micros(10);
/// How long a timed operation waits for the internal lock at least, even
/// past its deadline (a try): its holders keep it for a few stores, unless
/// stopped or descheduled.
const INNER_GRACE: Duration = Duration::from_millis(20);
/// The owner's thread id in a robust mutex's futex word.
const TID_MASK: u32 = 0x3fff_ffff;

/// Slot states.
const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;

/// What an object is; stored in its header and checked on import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Lock = 1,
    RLock = 2,
    Semaphore = 3,
    Event = 4,
    Condition = 5,
    Barrier = 6,
}

/// How an acquisition went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Normally.
    Clean,
    /// A process or thread died holding it (a lock, or semaphore permits
    /// that this acquisition reclaimed); the caller holds it now.
    OwnerDied,
}

/// Why an operation failed.
#[derive(Debug)]
pub(crate) enum SyncError {
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
struct Slot {
    /// Process id; 0 when the slot is free (semaphore, barrier).
    pid: AtomicU32,
    /// Thread id (condition, barrier).
    tid: AtomicU32,
    /// Start time of the process, in clock ticks after boot; 0 = unchecked.
    start: AtomicU64,
    /// Permits held (semaphore) or ticket (condition).
    n: AtomicU64,
    /// Futex word: `FREE`, `WAITING` or `NOTIFIED` (condition, barrier).
    state: AtomicU32,
    _pad: AtomicU32,
}

/// The shared state after the mutex. Fields unused by a kind stay 0.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    kind: AtomicU32,
    /// `size_of::<Page>()` of the creator.
    layout: AtomicU32,
    /// RLock: recursion depth, written by the owner only.
    rcount: AtomicU32,
    /// Futex word: bumped by a semaphore release, an event set.
    seq: AtomicU32,
    /// Sleepers on `seq`.
    waiters: AtomicU32,
    /// Event: 1 when set.
    flag: AtomicU32,
    /// Semaphore: free permits.
    value: AtomicU64,
    /// Semaphore: bound on `value` (`u64::MAX`: unbounded).
    max: AtomicU64,
    /// Semaphore journal: 1 while `value` and a slot count are changing.
    journal: AtomicU32,
    j_slot: AtomicU32,
    j_value: AtomicU64,
    j_n: AtomicU64,
    /// Condition: next ticket; waiters not yet notified.
    next_ticket: AtomicU64,
    nwaiting: AtomicU32,
    /// Barrier: parties, arrivals, generation (futex word), broken flag.
    parties: AtomicU32,
    count: AtomicU32,
    generation: AtomicU32,
    broken: AtomicU32,
    _pad: AtomicU32,
    /// Barrier: bit `g % 64` is set when generation `g` passed.
    outcomes: AtomicU64,
}

/// Bytes before the slot table.
const FIXED: usize = 512;
/// Entries of the slot table.
const NSLOTS: usize = (SIZE - FIXED) / mem::size_of::<Slot>();

/// The file's contents.
#[repr(C, align(64))]
struct Page {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    hdr: Header,
    slots: [Slot; NSLOTS],
}

const _: () = assert!(mem::size_of::<libc::pthread_mutex_t>() + mem::size_of::<Header>() <= FIXED);
const _: () = assert!(mem::size_of::<Page>() <= SIZE);
// `Barrier::MAX_PARTIES`'s documentation says 497.
const _: () = assert!(NSLOTS == 496);

// SAFETY: the mutex is only touched through the pthread functions (which
// synchronise concurrent callers: it is process-shared) and an atomic view
// of its first word; every other field is an atomic.
unsafe impl Sync for Page {}

/// One object's shared memory, mapped.
pub(crate) struct SyncMem {
    fd: Fd,
    ptr: NonNull<Page>,
}

// SAFETY: the mapping is process-wide memory, usable from any thread, and
// only viewed as a `Page` (itself `Sync`).
unsafe impl Send for SyncMem {}
// SAFETY: as above.
unsafe impl Sync for SyncMem {}

impl Drop for SyncMem {
    fn drop(&mut self) {
        // A thread of this process that still holds the mutex (a lock
        // acquired without a guard, a leaked guard) keeps it on glibc's
        // robust list of that thread, which glibc walks on every later
        // robust lock and unlock: unmapping would leave the list pointing
        // at unmapped memory (or whatever is mapped there next). Leave the
        // small mapping in place then; the descriptor is still closed.
        if held_by_this_process(self.owner()) {
            return;
        }
        // SAFETY: unmapping our own mapping; no reference into it outlives
        // `self`, and no thread of this process holds its mutex (above).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), SIZE) };
    }
}

/// Whether `tid` (a robust mutex's owner, 0: none) is a live thread of
/// this process, so that the mutex is on that thread's robust list and its
/// memory must stay mapped.
pub(crate) fn held_by_this_process(tid: u32) -> bool {
    if tid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the thread exists in our thread group.
    unsafe { libc::syscall(libc::SYS_tgkill, super::getpid() as libc::pid_t, tid as libc::pid_t, 0) == 0 }
}

impl fmt::Debug for SyncMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncMem")
            .field("fd", &self.fd.raw())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// This thread's kernel id, 0 until first asked (reset in a fork child).
    static TID: Cell<u32> = const { Cell::new(0) };
}
/// This process's pid and start time, 0 until first asked (reset in a fork
/// child).
static ME_PID: AtomicU32 = AtomicU32::new(0);
static ME_START: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

/// Forgets the cached identities in a fork child (its thread and process
/// ids are new). Runs in the child right after `fork`: only stores.
fn forget_identity_after_fork() {
    TID.with(|t| t.set(0));
    ME_PID.store(0, SeqCst);
}

/// Registers [`forget_identity_after_fork`] once per process.
fn install_atfork() {
    ATFORK.call_once(|| crate::at_fork::after_fork_in_child(forget_identity_after_fork));
}

/// The calling thread's kernel id.
fn tid() -> u32 {
    TID.with(|t| {
        let v = t.get();
        if v != 0 {
            return v;
        }
        // SAFETY: gettid has no preconditions.
        let v = unsafe { libc::gettid() } as u32;
        t.set(v);
        v
    })
}

/// This process's (pid, start time).
fn me() -> (u32, u64) {
    let pid = ME_PID.load(Acquire);
    if pid != 0 {
        return (pid, ME_START.load(Relaxed));
    }
    let pid = super::getpid();
    let start = start_time(pid).unwrap_or(0);
    ME_START.store(start, Relaxed);
    ME_PID.store(pid, Release);
    (pid, start)
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks after boot.
fn start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold anything.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| invalid("odd /proc stat"))?;
    // `rest` starts at field 3.
    rest.split_whitespace()
        .nth(22 - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| invalid("odd /proc stat"))
}

/// Whether the condition waiter in slot `s` is alive (see
/// [`SyncMem::cond_notify`]).
fn cond_waiter_alive(s: &Slot) -> bool {
    let (pid, tid) = (s.pid.load(SeqCst), s.tid.load(SeqCst));
    alive(pid, tid, if tid == pid { s.start.load(SeqCst) } else { 0 })
}

/// Whether the thread `tid` (0: any) of process `pid`, started at `start`
/// (0: unchecked), still exists.
fn alive(pid: u32, tid: u32, start: u64) -> bool {
    let rc = if tid != 0 {
        // SAFETY: signal 0 only checks that the thread exists.
        unsafe { libc::syscall(libc::SYS_tgkill, pid as libc::pid_t, tid as libc::pid_t, 0) }
    } else {
        // SAFETY: as above, for the process.
        i64::from(unsafe { libc::kill(pid as libc::pid_t, 0) })
    };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    if start == 0 {
        return true;
    }
    match start_time(pid) {
        Ok(s) => s == start,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

thread_local! {
    /// [`may_spin`]'s last answer and how many more calls reuse it.
    static SPIN_OK: Cell<(bool, u32)> = const { Cell::new((false, 0)) };
}

/// Whether this thread may run on more than one CPU (spinning only helps
/// when the peer runs at the same time). The answer is reused for 64 calls:
/// asking the kernel costs a system call per wait otherwise.
fn may_spin() -> bool {
    SPIN_OK.with(|c| {
        let (ok, left) = c.get();
        if left > 0 {
            c.set((ok, left - 1));
            return ok;
        }
        let ok = affinity_allows_spin();
        c.set((ok, 63));
        ok
    })
}

/// Asks the kernel whether this thread may run on more than one CPU.
fn affinity_allows_spin() -> bool {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: set is a valid out-pointer of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    // SAFETY: set was filled by sched_getaffinity.
    rc == 0 && unsafe { libc::CPU_COUNT(&set) } > 1
}

/// Spins up to [`SPIN`] while `f` is false; returns its last value.
fn spin_until(mut f: impl FnMut() -> bool, deadline: Option<Instant>) -> bool {
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
struct Inner<'a> {
    mem: &'a SyncMem,
    /// The previous holder died (the caller repairs the state).
    recovered: bool,
}

impl Drop for Inner<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the mutex (the guard exists only then).
        unsafe { libc::pthread_mutex_unlock(self.mem.mutex()) };
    }
}

impl SyncMem {
    /// Most parties of a barrier: every party but the last to arrive takes
    /// a slot.
    pub(crate) const MAX_PARTIES: usize = NSLOTS + 1;

    /// A new object of `kind`; `value` and `max` are a semaphore's initial
    /// and maximal values, or a barrier's parties in `value` and its
    /// default timeout in `max` (see [`bar_timeout`](Self::bar_timeout)).
    pub(crate) fn new(kind: Kind, value: u64, max: u64) -> io::Result<SyncMem> {
        install_atfork();
        let fd = create_memfd(
            c"multiproc-sync",
            SIZE as u64,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        )?;
        let mem = SyncMem {
            ptr: map_shared(&fd, SIZE)?.cast(),
            fd,
        };
        let mtype = match kind {
            Kind::RLock => libc::PTHREAD_MUTEX_RECURSIVE,
            _ => libc::PTHREAD_MUTEX_ERRORCHECK,
        };
        init_mutex(mem.mutex(), mtype)?;
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
    pub(crate) fn from_fd(fd: Fd, kind: Kind) -> io::Result<SyncMem> {
        install_atfork();
        let st = check_sealed(
            &fd,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
            0,
            "the synchronisation object's",
        )?;
        if st.st_size as u64 != SIZE as u64 {
            return Err(invalid("the synchronisation object's file has the wrong size"));
        }
        let mem = SyncMem {
            ptr: map_shared(&fd, SIZE)?.cast(),
            fd,
        };
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
    pub(crate) fn fd(&self) -> &Fd {
        &self.fd
    }

    fn page(&self) -> &Page {
        // SAFETY: the mapping is SIZE readable and writable bytes,
        // page-aligned, living as long as `self`; Page fits in them and any
        // bit pattern is a valid Page.
        unsafe { self.ptr.as_ref() }
    }

    fn hdr(&self) -> &Header {
        &self.page().hdr
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.page().mutex.get()
    }

    fn kind(&self) -> u32 {
        self.hdr().kind.load(Relaxed)
    }

    /// The thread id of the lock's owner, 0 when unlocked.
    fn owner(&self) -> u32 {
        // SAFETY: glibc's pthread_mutex_t begins with the mutex's futex word
        // (`__lock`, an aligned int changed only atomically); for a robust
        // mutex the kernel's robust-futex ABI makes it the owner's thread id
        // plus flag bits. Reading it atomically races with nobody.
        let word = unsafe { AtomicU32::from_ptr(self.mutex().cast::<u32>()) };
        word.load(SeqCst) & TID_MASK
    }

    // ----- Lock and RLock -----

    /// Acquires the lock until `deadline` (`None`: forever; a past instant:
    /// try once).
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Acquired, SyncError> {
        let m = self.mutex();
        // SAFETY: m is the initialised process-shared mutex of our mapping.
        let mut rc = unsafe { libc::pthread_mutex_trylock(m) };
        if rc == libc::EBUSY {
            rc = self.lock_slow(deadline);
        }
        let got = match rc {
            0 => Acquired::Clean,
            libc::EOWNERDEAD => {
                // SAFETY: our lock call on the initialised mutex m just
                // returned EOWNERDEAD.
                unsafe { recover_owner_died(m) }.map_err(SyncError::Io)?;
                if self.kind() == Kind::RLock as u32 {
                    self.hdr().rcount.store(0, Relaxed);
                }
                Acquired::OwnerDied
            }
            libc::EBUSY | libc::ETIMEDOUT => return Err(SyncError::Timeout),
            libc::EDEADLK => return Err(SyncError::Deadlock),
            e => return Err(SyncError::Io(io::Error::from_raw_os_error(e))),
        };
        if self.kind() == Kind::RLock as u32 {
            let h = self.hdr();
            h.rcount.store(h.rcount.load(Relaxed) + 1, Relaxed);
        }
        Ok(got)
    }

    /// The contended path of [`lock`](Self::lock): spin, then sleep in the
    /// kernel (in slices, for `pthread_mutex_timedlock`'s wall clock).
    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> libc::c_int {
        let m = self.mutex();
        if passed(deadline) {
            return libc::EBUSY;
        }
        let mut rc = libc::EBUSY;
        spin_until(
            || {
                // SAFETY: as in `lock`.
                rc = unsafe { libc::pthread_mutex_trylock(m) };
                rc != libc::EBUSY
            },
            deadline
                .map(|d| d.min(Instant::now() + LOCK_SPIN))
                .or(Some(Instant::now() + LOCK_SPIN)),
        );
        if rc != libc::EBUSY {
            return rc;
        }
        match deadline {
            // SAFETY: as in `lock`.
            None => unsafe { libc::pthread_mutex_lock(m) },
            Some(deadline) => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // SAFETY: as above.
                    break unsafe { libc::pthread_mutex_trylock(m) };
                }
                let at = realtime_after(left.min(Duration::from_secs(1)));
                // SAFETY: as above; `at` is a valid timespec.
                let rc = unsafe { libc::pthread_mutex_timedlock(m, &at) };
                if rc != libc::ETIMEDOUT {
                    break rc;
                }
            },
        }
    }

    /// Releases the lock once.
    #[inline]
    pub(crate) fn unlock(&self) -> Result<(), SyncError> {
        if self.kind() == Kind::RLock as u32 {
            if self.owner() != tid() {
                return Err(SyncError::NotOwner);
            }
            let h = self.hdr();
            h.rcount.store(h.rcount.load(Relaxed).saturating_sub(1), Relaxed);
        }
        // SAFETY: m is the initialised process-shared mutex of our mapping;
        // an error-checking or recursive mutex refuses a non-owner.
        match unsafe { libc::pthread_mutex_unlock(self.mutex()) } {
            0 => Ok(()),
            libc::EPERM if self.owner() == 0 => Err(SyncError::NotLocked),
            libc::EPERM => Err(SyncError::NotOwner),
            e => Err(SyncError::Io(io::Error::from_raw_os_error(e))),
        }
    }

    /// Whether the calling thread holds the lock.
    pub(crate) fn owned_by_me(&self) -> bool {
        self.owner() == tid()
    }

    /// Whether some thread holds the lock.
    pub(crate) fn is_locked(&self) -> bool {
        self.owner() != 0
    }

    /// The owner's thread id, 0 when unlocked.
    pub(crate) fn owner_tid(&self) -> u32 {
        self.owner()
    }

    /// RLock: the recursion depth (meaningful to the owner).
    pub(crate) fn depth(&self) -> u32 {
        self.hdr().rcount.load(Relaxed)
    }

    /// Releases the lock entirely (every recursion level); returns the
    /// depth to restore. The caller holds it.
    fn release_all(&self) -> Result<u32, SyncError> {
        if !self.owned_by_me() {
            return Err(SyncError::NotOwner);
        }
        let depth = if self.kind() == Kind::RLock as u32 {
            self.depth().max(1)
        } else {
            1
        };
        for _ in 0..depth {
            self.unlock()?;
        }
        Ok(depth)
    }

    /// Acquires the lock again `depth` levels deep, after `release_all`.
    fn reacquire(&self, depth: u32) -> Result<Acquired, SyncError> {
        let got = self.lock(None)?;
        for _ in 1..depth {
            self.lock(None)?;
        }
        Ok(got)
    }

    // ----- the internal lock -----

    /// Takes the internal lock (its holders keep it for a few stores), until
    /// `deadline` but at least [`INNER_GRACE`] from now (`None`: as long as
    /// it takes, for a release): a holder that is stopped (`SIGSTOP`, a
    /// debugger) must not make a timed operation hang.
    fn inner(&self, deadline: Option<Instant>) -> Result<Inner<'_>, SyncError> {
        let m = self.mutex();
        // SAFETY: m is the initialised process-shared mutex of our mapping.
        let mut rc = unsafe { libc::pthread_mutex_trylock(m) };
        if rc == libc::EBUSY {
            rc = self.lock_slow(deadline.map(|d| d.max(Instant::now() + INNER_GRACE)));
        }
        match rc {
            0 => Ok(Inner {
                mem: self,
                recovered: false,
            }),
            libc::EOWNERDEAD => {
                // SAFETY: our lock call on the initialised mutex m just
                // returned EOWNERDEAD.
                unsafe { recover_owner_died(m) }.map_err(SyncError::Io)?;
                Ok(Inner {
                    mem: self,
                    recovered: true,
                })
            }
            libc::EBUSY | libc::ETIMEDOUT => Err(SyncError::Timeout),
            e => Err(SyncError::Io(io::Error::from_raw_os_error(e))),
        }
    }

    // ----- Semaphore -----

    /// Takes the internal lock (until `deadline`, as in
    /// [`inner`](Self::inner)) and rolls back a change that a dead holder
    /// left half done.
    fn sem_inner(&self, deadline: Option<Instant>) -> Result<Inner<'_>, SyncError> {
        let g = self.inner(deadline)?;
        if g.recovered {
            self.sem_rollback();
        }
        Ok(g)
    }

    /// Undoes a journalled change left half done (under the lock).
    #[cold]
    fn sem_rollback(&self) {
        let h = self.hdr();
        if h.journal.load(SeqCst) != 0 {
            h.value.store(h.j_value.load(SeqCst), SeqCst);
            let slot = h.j_slot.load(SeqCst) as usize;
            if let Some(s) = self.page().slots.get(slot) {
                s.n.store(h.j_n.load(SeqCst), SeqCst);
            }
            h.journal.store(0, SeqCst);
        }
    }

    /// Sets `value` and slot `i`'s count together, journalled.
    fn sem_commit(&self, value: u64, i: usize, n: u64) {
        let h = self.hdr();
        let s = &self.page().slots[i];
        h.j_value.store(h.value.load(SeqCst), SeqCst);
        h.j_slot.store(i as u32, SeqCst);
        h.j_n.store(s.n.load(SeqCst), SeqCst);
        h.journal.store(1, SeqCst);
        h.value.store(value, SeqCst);
        s.n.store(n, SeqCst);
        h.journal.store(0, SeqCst);
    }

    /// This process's slot in the holder table, allocated if `create`
    /// (`Full` when no slot is free).
    fn my_slot(&self, create: bool) -> Result<Option<usize>, SyncError> {
        let (pid, start) = me();
        let slots = &self.page().slots;
        let mut free = None;
        for (i, s) in slots.iter().enumerate() {
            let p = s.pid.load(SeqCst);
            if p == pid && s.start.load(SeqCst) == start {
                return Ok(Some(i));
            }
            if p == 0 && free.is_none() {
                free = Some(i);
            }
        }
        if !create {
            return Ok(None);
        }
        let i = free.ok_or(SyncError::Full)?;
        let s = &slots[i];
        s.n.store(0, SeqCst);
        s.start.store(start, SeqCst);
        s.pid.store(pid, SeqCst);
        Ok(Some(i))
    }

    /// Returns the permits of dead holders to `value` (never above the
    /// bound) and frees their slots; `true` if any permit came back.
    ///
    /// The holders' liveness is checked (reading `/proc`) with the internal
    /// lock released: `g` is given up and the lock taken again (until
    /// `deadline`, as in [`inner`](Self::inner)) before the table is
    /// changed, and a slot is only freed if it still names the same dead
    /// process.
    fn sem_reclaim<'a>(&'a self, g: Inner<'a>, deadline: Option<Instant>) -> Result<(Inner<'a>, bool), SyncError> {
        let holders: Vec<(usize, u32, u64)> = self
            .page()
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let pid = s.pid.load(SeqCst);
                (pid != 0).then(|| (i, pid, s.start.load(SeqCst)))
            })
            .collect();
        if holders.is_empty() {
            return Ok((g, false));
        }
        drop(g);
        let dead: Vec<_> = holders
            .into_iter()
            .filter(|&(_, pid, start)| !alive(pid, 0, start))
            .collect();
        let g = self.sem_inner(deadline)?;
        let h = self.hdr();
        let mut any = false;
        for (i, pid, start) in dead {
            let s = &self.page().slots[i];
            if s.pid.load(SeqCst) != pid || s.start.load(SeqCst) != start {
                continue;
            }
            let n = s.n.load(SeqCst);
            if n > 0 {
                let value = h.value.load(SeqCst).saturating_add(n).min(h.max.load(SeqCst));
                self.sem_commit(value, i, 0);
                any = true;
            }
            s.pid.store(0, SeqCst);
        }
        Ok((g, any))
    }

    /// Takes a permit until `deadline`; `tracked`: counted as held by this
    /// process until [`sem_release`](Self::sem_release) with `tracked`.
    pub(crate) fn sem_acquire(&self, deadline: Option<Instant>, tracked: bool) -> Result<Acquired, SyncError> {
        let h = self.hdr();
        let mut reclaimed = false;
        let mut swept = false;
        let mut g = self.sem_inner(deadline)?;
        loop {
            let value = h.value.load(SeqCst);
            if value > 0 {
                let slot = match tracked.then(|| self.my_slot(true)).transpose() {
                    Err(SyncError::Full) if !swept => {
                        // Dead holders' slots are only freed by a sweep.
                        swept = true;
                        let (g2, any) = self.sem_reclaim(g, deadline)?;
                        g = g2;
                        reclaimed |= any;
                        continue;
                    }
                    r => r?,
                };
                match slot {
                    Some(Some(i)) => {
                        let n = self.page().slots[i].n.load(SeqCst);
                        self.sem_commit(value - 1, i, n + 1);
                    }
                    _ => h.value.store(value - 1, SeqCst),
                }
                return Ok(if reclaimed {
                    Acquired::OwnerDied
                } else {
                    Acquired::Clean
                });
            }
            let seen = h.seq.load(SeqCst);
            if passed(deadline) {
                let (g2, any) = self.sem_reclaim(g, deadline)?;
                g = g2;
                if any {
                    reclaimed = true;
                    continue;
                }
                return Err(SyncError::Timeout);
            }
            drop(g);
            if !spin_until(|| h.seq.load(SeqCst) != seen, deadline) {
                h.waiters.fetch_add(1, SeqCst);
                futex_wait(&h.seq, seen, deadline, SLICE);
                h.waiters.fetch_sub(1, SeqCst);
            }
            g = self.sem_inner(deadline)?;
            if h.seq.load(SeqCst) == seen && h.value.load(SeqCst) == 0 {
                let (g2, any) = self.sem_reclaim(g, deadline)?;
                g = g2;
                reclaimed |= any;
            }
        }
    }

    /// Returns a permit (one taken with `tracked`, or any). A tracked
    /// release always ends this process's holding of the permit, even when
    /// the bound refuses the permit itself (`TooManyReleases`: anonymous
    /// releases filled the semaphore meanwhile).
    pub(crate) fn sem_release(&self, tracked: bool) -> Result<(), SyncError> {
        let h = self.hdr();
        let _g = self.sem_inner(None)?;
        let value = h.value.load(SeqCst);
        let full = value >= h.max.load(SeqCst);
        match tracked.then(|| self.my_slot(false)).transpose()? {
            Some(Some(i)) if self.page().slots[i].n.load(SeqCst) > 0 => {
                let s = &self.page().slots[i];
                let n = s.n.load(SeqCst);
                self.sem_commit(if full { value } else { value + 1 }, i, n - 1);
                if n == 1 {
                    // Holding nothing: give the slot back.
                    s.pid.store(0, SeqCst);
                }
            }
            _ if full => return Err(SyncError::TooManyReleases),
            _ => h.value.store(value + 1, SeqCst),
        }
        if full {
            return Err(SyncError::TooManyReleases);
        }
        h.seq.fetch_add(1, SeqCst);
        if h.waiters.load(SeqCst) != 0 {
            futex_wake(&h.seq, 1);
        }
        Ok(())
    }

    /// Free permits.
    pub(crate) fn sem_value(&self) -> u64 {
        self.hdr().value.load(SeqCst)
    }

    /// The bound (`u64::MAX`: none).
    pub(crate) fn sem_max(&self) -> u64 {
        self.hdr().max.load(Relaxed)
    }

    // ----- Event -----

    /// Sets the flag and wakes every waiter.
    pub(crate) fn event_set(&self) {
        let h = self.hdr();
        if h.flag.swap(1, SeqCst) == 0 {
            h.seq.fetch_add(1, SeqCst);
            if h.waiters.load(SeqCst) != 0 {
                futex_wake_all(&h.seq);
            }
        }
    }

    /// Clears the flag.
    pub(crate) fn event_clear(&self) {
        self.hdr().flag.store(0, SeqCst);
    }

    /// Whether the flag is set.
    pub(crate) fn event_is_set(&self) -> bool {
        self.hdr().flag.load(SeqCst) != 0
    }

    /// Waits until the flag is set (or was set since the call began);
    /// `false` when the deadline passed first.
    pub(crate) fn event_wait(&self, deadline: Option<Instant>) -> bool {
        let h = self.hdr();
        let seen = h.seq.load(SeqCst);
        let done = || h.flag.load(SeqCst) != 0 || h.seq.load(SeqCst) != seen;
        if spin_until(done, deadline) {
            return true;
        }
        loop {
            h.waiters.fetch_add(1, SeqCst);
            if !done() {
                futex_wait(&h.seq, seen, deadline, SLICE);
            }
            h.waiters.fetch_sub(1, SeqCst);
            if done() {
                return true;
            }
            if passed(deadline) {
                return false;
            }
        }
    }

    // ----- Condition (self) over a lock -----

    /// Waits for a notification: releases `lock` (every level), sleeps,
    /// takes it again. `(notified, how the lock was taken again)`.
    pub(crate) fn cond_wait(&self, lock: &SyncMem, deadline: Option<Instant>) -> Result<(bool, Acquired), SyncError> {
        if !lock.owned_by_me() {
            return Err(SyncError::NotOwner);
        }
        let h = self.hdr();
        let i = self.cond_slot()?;
        let s = &self.page().slots[i];
        let (pid, start) = me();
        let ticket = h.next_ticket.load(SeqCst);
        h.next_ticket.store(ticket + 1, SeqCst);
        s.n.store(ticket, SeqCst);
        s.start.store(start, SeqCst);
        s.pid.store(pid, SeqCst);
        s.tid.store(tid(), SeqCst);
        s.state.store(WAITING, SeqCst);
        h.nwaiting.fetch_add(1, SeqCst);
        let depth = match lock.release_all() {
            Ok(d) => d,
            Err(e) => {
                s.state.store(FREE, SeqCst);
                h.nwaiting.fetch_sub(1, SeqCst);
                return Err(e);
            }
        };
        while s.state.load(SeqCst) == WAITING && !passed(deadline) {
            futex_wait(&s.state, WAITING, deadline, SLICE);
        }
        let got = lock.reacquire(depth)?;
        let notified = s.state.load(SeqCst) == NOTIFIED;
        if !notified {
            h.nwaiting.fetch_sub(1, SeqCst);
        }
        s.state.store(FREE, SeqCst);
        Ok((notified, got))
    }

    /// A free waiter slot (under the user's lock); sweeps the slots of dead
    /// waiters when none is free.
    fn cond_slot(&self) -> Result<usize, SyncError> {
        let slots = &self.page().slots;
        if let Some(i) = slots.iter().position(|s| s.state.load(SeqCst) == FREE) {
            return Ok(i);
        }
        let h = self.hdr();
        for s in slots {
            if !alive(s.pid.load(SeqCst), s.tid.load(SeqCst), s.start.load(SeqCst))
                && s.state.swap(FREE, SeqCst) == WAITING
            {
                h.nwaiting.fetch_sub(1, SeqCst);
            }
        }
        slots
            .iter()
            .position(|s| s.state.load(SeqCst) == FREE)
            .ok_or(SyncError::Full)
    }

    /// Wakes the `n` oldest live waiters; returns how many.
    ///
    /// A waiter is checked by thread id, and by its process's start time
    /// too when it is the main thread of its process (`tid == pid`): a dead
    /// process's pid reused by a new process names the new main thread, a
    /// reused id of another thread is much less likely to fall in the same
    /// thread group, and reading `/proc` for every waiter notified is not
    /// free.
    pub(crate) fn cond_notify(&self, lock: &SyncMem, n: usize) -> Result<usize, SyncError> {
        if !lock.owned_by_me() {
            return Err(SyncError::NotOwner);
        }
        let h = self.hdr();
        let mut woken = 0;
        while woken < n && h.nwaiting.load(SeqCst) > 0 {
            let oldest = self
                .page()
                .slots
                .iter()
                .filter(|s| s.state.load(SeqCst) == WAITING)
                .min_by_key(|s| s.n.load(SeqCst));
            let Some(s) = oldest else {
                // The count was left high by a waiter that died.
                h.nwaiting.store(0, SeqCst);
                break;
            };
            h.nwaiting.fetch_sub(1, SeqCst);
            if !cond_waiter_alive(s) {
                s.state.store(FREE, SeqCst);
                continue;
            }
            s.state.store(NOTIFIED, SeqCst);
            futex_wake(&s.state, 1);
            woken += 1;
        }
        Ok(woken)
    }

    // ----- Barrier -----

    /// Takes the internal lock (until `deadline`, as in
    /// [`inner`](Self::inner)); a death under it breaks the barrier.
    fn bar_inner(&self, deadline: Option<Instant>) -> Result<Inner<'_>, SyncError> {
        let g = self.inner(deadline)?;
        if g.recovered {
            self.bar_break();
        }
        Ok(g)
    }

    /// Ends the current generation: passed or broken (under the lock).
    fn bar_end(&self, passed: bool) {
        let h = self.hdr();
        let generation = h.generation.load(SeqCst);
        let bit = 1u64 << (generation % 64);
        let outcomes = h.outcomes.load(SeqCst);
        h.outcomes
            .store(if passed { outcomes | bit } else { outcomes & !bit }, SeqCst);
        for s in &self.page().slots[..(h.parties.load(SeqCst) as usize).min(NSLOTS)] {
            s.pid.store(0, SeqCst);
        }
        h.count.store(0, SeqCst);
        h.generation.store(generation.wrapping_add(1), SeqCst);
        futex_wake_all(&h.generation);
    }

    /// Breaks the barrier (under the lock).
    fn bar_break(&self) {
        self.hdr().broken.store(1, SeqCst);
        self.bar_end(false);
    }

    /// A party that could not take the internal lock before its deadline
    /// gives up: it breaks the barrier without the lock (the flag only; the
    /// next party that takes the lock ends the generation, see
    /// [`bar_wait`](Self::bar_wait)), unless its generation (`waiting`:
    /// the generation and its arrival index) has ended meanwhile.
    fn bar_give_up(&self, waiting: Option<(u32, u32)>) -> Result<u32, SyncError> {
        let h = self.hdr();
        if let Some((generation, index)) = waiting
            && h.generation.load(SeqCst) != generation
        {
            return if h.outcomes.load(SeqCst) & (1u64 << (generation % 64)) != 0 {
                Ok(index)
            } else {
                Err(SyncError::Broken)
            };
        }
        h.broken.store(1, SeqCst);
        futex_wake_all(&h.generation);
        Err(SyncError::Broken)
    }

    /// Waits for the other parties; returns this party's arrival index.
    pub(crate) fn bar_wait(&self, deadline: Option<Instant>) -> Result<u32, SyncError> {
        let h = self.hdr();
        let mut g = match self.bar_inner(deadline) {
            Err(SyncError::Timeout) => return self.bar_give_up(None),
            r => r?,
        };
        if h.broken.load(SeqCst) != 0 {
            return Err(SyncError::Broken);
        }
        let parties = h.parties.load(SeqCst);
        let index = h.count.load(SeqCst);
        if index + 1 >= parties {
            self.bar_end(true);
            return Ok(index);
        }
        let (pid, start) = me();
        let Some(s) = self.page().slots.get(index as usize) else {
            return Err(SyncError::Full);
        };
        s.start.store(start, SeqCst);
        s.tid.store(tid(), SeqCst);
        s.pid.store(pid, SeqCst);
        h.count.store(index + 1, SeqCst);
        let generation = h.generation.load(SeqCst);
        loop {
            drop(g);
            if !spin_until(|| h.generation.load(SeqCst) != generation, deadline) {
                futex_wait(&h.generation, generation, deadline, SLICE);
            }
            g = match self.bar_inner(deadline) {
                Err(SyncError::Timeout) => return self.bar_give_up(Some((generation, index))),
                r => r?,
            };
            if h.generation.load(SeqCst) != generation {
                return if h.outcomes.load(SeqCst) & (1u64 << (generation % 64)) != 0 {
                    Ok(index)
                } else {
                    Err(SyncError::Broken)
                };
            }
            // A party that timed out on the internal lock set the flag.
            if h.broken.load(SeqCst) != 0 || passed(deadline) || self.bar_someone_died() {
                self.bar_break();
                return Err(SyncError::Broken);
            }
        }
    }

    /// Whether a registered party of the current generation is dead.
    fn bar_someone_died(&self) -> bool {
        let n = self.hdr().count.load(SeqCst) as usize;
        self.page().slots[..n.min(NSLOTS)].iter().any(|s| {
            let pid = s.pid.load(SeqCst);
            pid != 0 && !alive(pid, s.tid.load(SeqCst), s.start.load(SeqCst))
        })
    }

    /// Breaks the barrier: current and future waiters fail until a reset.
    pub(crate) fn bar_abort(&self) -> Result<(), SyncError> {
        let _g = self.bar_inner(None)?;
        self.bar_break();
        Ok(())
    }

    /// Returns the barrier to its initial state; current waiters fail.
    pub(crate) fn bar_reset(&self) -> Result<(), SyncError> {
        let _g = self.bar_inner(None)?;
        let h = self.hdr();
        if h.count.load(SeqCst) > 0 {
            self.bar_end(false);
        }
        h.broken.store(0, SeqCst);
        Ok(())
    }

    /// The word a barrier was created with as its default timeout (0:
    /// none, else nanoseconds + 1; the facade gives it meaning).
    pub(crate) fn bar_timeout(&self) -> u64 {
        self.hdr().max.load(Relaxed)
    }

    /// `(parties, waiting, broken)`.
    pub(crate) fn bar_state(&self) -> (u32, u32, bool) {
        let h = self.hdr();
        let broken = h.broken.load(SeqCst) != 0;
        let waiting = if broken { 0 } else { h.count.load(SeqCst) };
        (h.parties.load(SeqCst), waiting, broken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_is_stable() {
        let pid = std::process::id();
        let a = start_time(pid).unwrap();
        assert!(a > 0);
        assert_eq!(a, start_time(pid).unwrap());
        assert!(alive(pid, 0, a));
        assert!(!alive(pid, 0, a + 1));
    }

    #[test]
    fn owner_word_is_the_thread_id() {
        let m = SyncMem::new(Kind::Lock, 0, 0).unwrap();
        assert_eq!(m.owner_tid(), 0);
        m.lock(None).unwrap();
        assert_eq!(m.owner_tid(), tid());
        assert!(m.owned_by_me());
        m.unlock().unwrap();
        assert!(matches!(m.unlock(), Err(SyncError::NotLocked)));
    }

    #[test]
    fn a_thread_that_exits_holding_a_lock_is_reported() {
        let m = std::sync::Arc::new(SyncMem::new(Kind::RLock, 0, 0).unwrap());
        let m2 = m.clone();
        std::thread::spawn(move || {
            m2.lock(None).unwrap();
            m2.lock(None).unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(m.lock(None).unwrap(), Acquired::OwnerDied);
        assert_eq!(m.depth(), 1);
        m.unlock().unwrap();
        assert_eq!(m.lock(None).unwrap(), Acquired::Clean);
    }

    #[test]
    fn a_semaphore_journal_is_rolled_back() {
        let m = SyncMem::new(Kind::Semaphore, 2, u64::MAX).unwrap();
        m.sem_acquire(None, true).unwrap();
        assert_eq!(m.sem_value(), 1);
        // A holder killed between the two stores of a commit: value
        // changed, the slot count not.
        let h = m.hdr();
        h.j_value.store(1, SeqCst);
        h.j_slot.store(0, SeqCst);
        h.j_n.store(1, SeqCst);
        h.journal.store(1, SeqCst);
        h.value.store(0, SeqCst);
        m.sem_rollback();
        assert_eq!(m.sem_value(), 1);
        assert_eq!(m.page().slots[0].n.load(SeqCst), 1);
        m.sem_release(true).unwrap();
        assert_eq!(m.sem_value(), 2);
        assert_eq!(m.page().slots[0].n.load(SeqCst), 0);
    }
}
