//! The owner-word lock: a process-shared mutex that notices a dead
//! holder without robust pthread mutexes. The Apple backend's
//! `RobustMutex` is this algorithm; it compiles on Linux too, where its
//! unit tests run it over futexes with real processes dying while they
//! hold it.
//!
//! # Why
//!
//! The contract's mutex must hand the next locker [`Locked::OwnerDied`]
//! when its holder dies, and stay usable. Linux does it in the kernel
//! (robust futex lists, `EOWNERDEAD`). macOS has no robust mutexes
//! (`pthread_mutexattr_setrobust` does not exist there), no futex, and a
//! process-shared `pthread_mutex_t` whose holder dies stays locked
//! forever. So the holder writes who it is into the lock, and a waiter
//! asks the system whether that holder still exists.
//!
//! # The words (32 bytes in shared memory, [`OwnerWord`])
//!
//! - `owner` (64 bits): 0 when free; else the holder's pid (high half)
//!   and a 32-bit tag of its process start time (low half), written by
//!   the one compare-and-swap that takes the lock, so "who holds it" is
//!   never half written; [`ABANDONED`] when a thread of a living process
//!   ended holding it.
//! - `tid`: the holding thread's id (written by the holder right after
//!   taking it, cleared before it lets go): recursion, the contract's
//!   `owner()`, and which thread of a process holds it.
//! - `depth`: how many times the holder locked a recursive lock.
//! - `kind`: error-checking or recursive ([`MutexKind`]).
//! - `seq`: the word waiters sleep on; every release adds one.
//! - `sleepers`: how many waiters sleep on `seq` (a release with none
//!   makes no wake call).
//!
//! # Taking it
//!
//! A locker swaps `owner` from 0 to itself. When it is taken, the locker
//! sleeps on `seq` (a futex on Linux, `os_sync_wait_on_address` with the
//! shared flag on macOS 14.4 or later, a bounded sleep before) in slices
//! of at most [`SLICE`]. Before its first sleep and after every slice that
//! ended without a release, it asks the system about the holder
//! ([`LockOs::holder`]): a pid that names no process, a zombie, or a
//! process whose start time does not match the tag (the pid was reused)
//! is a dead holder. The locker then swaps `owner` from that dead value to
//! itself: of several lockers that saw the same death, exactly one wins,
//! gets [`Locked::OwnerDied`], and the lock is consistent at once (there
//! is no inconsistent state to repair: the words are the whole lock).
//!
//! A thread that ends holding the lock while its process lives on is
//! seen by a thread-local list of the locks it holds, whose destructor
//! marks each [`ABANDONED`] and wakes a waiter: that is the contract's
//! "thread dies". Like glibc's robust list, it needs the lock's memory
//! still mapped when the thread ends (the contract's `keep_mapped`).
//!
//! # What differs from the kernel's robust mutexes
//!
//! - **Latency.** A locker arriving after the death learns it at once; one
//!   already asleep learns it at its next slice ([`SLICE`]), not at the
//!   instant of the death. No wait outlives its deadline.
//! - **A zombie counts as dead**: a holder killed but not yet reaped by
//!   its parent can never unlock.
//! - **Uninspectable holders.** A holder the system will not describe
//!   (another user's process) is judged by its pid alone.
//! - **Threads of other processes.** A thread of another process that
//!   ends holding the lock is noticed only if it ends normally (its
//!   thread-local destructor runs); a process dies as a whole.
//! - **Tags.** The start time is folded into 32 bits: a reused pid whose
//!   new process's tag equals the dead one's (one chance in 2^32) would be
//!   taken for the holder, and the lock would wait for that process.

use std::{
    cell::RefCell,
    sync::atomic::{
        AtomicU32, AtomicU64,
        Ordering::{Acquire, Relaxed, Release, SeqCst},
    },
    time::{Duration, Instant},
};

use crate::sys::{LockError, Locked, MutexKind, UnlockError};

/// Longest sleep before a waiter looks at the holder again.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// `owner` of a lock whose holding thread ended while its process lives.
pub(crate) const ABANDONED: u64 = u64::MAX;

/// `kind` values (0: never initialised).
const KIND_ERRORCHECK: u32 = 1;
const KIND_RECURSIVE: u32 = 2;

/// What the lock asks of the system.
pub(crate) trait LockOs {
    /// This process's pid and start time (0: unknown).
    fn this_process() -> (u32, u64);
    /// The calling thread's id (never 0).
    fn this_thread() -> u32;
    /// What the system says of process `pid`.
    fn holder(pid: u32) -> Holder;
    /// Sleeps while `word` holds `seen`, at most `slice`, not past
    /// `deadline`; may return early for any reason.
    fn wait(word: &AtomicU32, seen: u32, deadline: Option<Instant>, slice: Duration);
    /// Wakes one sleeper on `word` (of any process).
    fn wake_one(word: &AtomicU32);
}

/// What the system says of a holder's pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// No process (or a zombie): whoever held the lock is dead.
    Dead,
    /// A process, started at this time (`None`: the system did not say).
    Alive(Option<u64>),
}

/// The lock's words in shared memory (zeroed: free and uninitialised).
#[derive(Debug)]
#[repr(C, align(8))]
pub(crate) struct OwnerWord {
    owner: AtomicU64,
    tid: AtomicU32,
    depth: AtomicU32,
    kind: AtomicU32,
    seq: AtomicU32,
    sleepers: AtomicU32,
    _reserved: AtomicU32,
}

/// Bytes of an [`OwnerWord`].
pub(crate) const OWNER_WORD_SIZE: usize = size_of::<OwnerWord>();
/// Its alignment.
pub(crate) const OWNER_WORD_ALIGN: usize = align_of::<OwnerWord>();

/// The 32-bit tag of a start time (0 for an unknown one).
fn tag_of(start: u64) -> u32 {
    if start == 0 {
        return 0;
    }
    let mixed = start.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((mixed >> 32) as u32) | 1
}

/// The `owner` value of process `pid` started at `start`.
fn owner_value(pid: u32, start: u64) -> u64 {
    (u64::from(pid) << 32) | u64::from(tag_of(start))
}

/// Whether the process named by `owner` is gone.
fn holder_dead<O: LockOs>(owner: u64) -> bool {
    if owner == ABANDONED {
        return true;
    }
    let (pid, tag) = ((owner >> 32) as u32, owner as u32);
    match O::holder(pid) {
        Holder::Dead => true,
        Holder::Alive(Some(start)) if tag != 0 => tag_of(start) != tag,
        Holder::Alive(_) => false,
    }
}

/// The calling thread in a lock's terms.
struct Me {
    owner: u64,
    tid: u32,
}

impl Me {
    fn current<O: LockOs>() -> Me {
        let (pid, start) = O::this_process();
        Me {
            owner: owner_value(pid, start),
            tid: O::this_thread(),
        }
    }
}

impl OwnerWord {
    /// Makes zeroed words a free lock of `kind`.
    pub(crate) fn init(&self, kind: MutexKind) {
        let k = match kind {
            MutexKind::ErrorCheck => KIND_ERRORCHECK,
            MutexKind::Recursive => KIND_RECURSIVE,
        };
        self.kind.store(k, Release);
    }

    /// Locks, waiting until `deadline` (`None`: forever; a past instant:
    /// one try). A dead previous holder is [`Locked::OwnerDied`].
    pub(crate) fn lock<O: LockOs>(&self, deadline: Option<Instant>) -> Result<Locked, LockError> {
        let me = Me::current::<O>();
        // Whether the holder seen last must be looked at before sleeping.
        let mut check = true;
        let mut last = 0u64;
        loop {
            let cur = self.owner.load(Acquire);
            if cur == 0 {
                if self.owner.compare_exchange(0, me.owner, Acquire, Relaxed).is_ok() {
                    self.took::<O>(&me);
                    return Ok(Locked::Clean);
                }
                continue;
            }
            if cur == me.owner && self.tid.load(Relaxed) == me.tid {
                return self.relock();
            }
            if cur != last {
                // Another holder (or the first look): ask about it anew.
                last = cur;
                check = true;
            }
            if check && cur != me.owner && holder_dead::<O>(cur) {
                if self.owner.compare_exchange(cur, me.owner, Acquire, Relaxed).is_ok() {
                    self.took::<O>(&me);
                    return Ok(Locked::OwnerDied);
                }
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(LockError::Timeout);
            }
            let seen = self.seq.load(SeqCst);
            if self.owner.load(SeqCst) != cur {
                continue;
            }
            self.sleepers.fetch_add(1, SeqCst);
            O::wait(&self.seq, seen, deadline, SLICE);
            self.sleepers.fetch_sub(1, SeqCst);
            // Released meanwhile: try at once; a slice out: look at the
            // holder again.
            check = self.seq.load(SeqCst) == seen;
        }
    }

    /// The calling thread, which holds the lock, locks it again.
    fn relock(&self) -> Result<Locked, LockError> {
        if self.kind.load(Relaxed) != KIND_RECURSIVE {
            return Err(LockError::Deadlock);
        }
        let depth = self.depth.load(Relaxed);
        let deeper = depth.checked_add(1).ok_or_else(|| {
            LockError::Io(std::io::Error::other(
                "a recursive lock was locked too many times by one thread",
            ))
        })?;
        self.depth.store(deeper, Relaxed);
        Ok(Locked::Clean)
    }

    /// Records the calling thread as the holder it just became.
    fn took<O: LockOs>(&self, me: &Me) {
        self.tid.store(me.tid, Relaxed);
        self.depth.store(1, Relaxed);
        held::add(self, O::wake_one);
    }

    /// Unlocks once; refused for a thread that does not hold it.
    pub(crate) fn unlock<O: LockOs>(&self) -> Result<(), UnlockError> {
        let cur = self.owner.load(Acquire);
        if cur == 0 || cur == ABANDONED {
            return Err(UnlockError::NotLocked);
        }
        let me = Me::current::<O>();
        if cur != me.owner || self.tid.load(Relaxed) != me.tid {
            return Err(UnlockError::NotOwner);
        }
        let depth = self.depth.load(Relaxed);
        if depth > 1 {
            self.depth.store(depth - 1, Relaxed);
            return Ok(());
        }
        held::remove(self);
        self.release(0, O::wake_one);
        Ok(())
    }

    /// Lets go of the lock, leaving `owner` as `to` (0, or [`ABANDONED`]),
    /// and wakes a sleeper if there is one.
    fn release(&self, to: u64, wake_one: fn(&AtomicU32)) {
        self.depth.store(0, Relaxed);
        self.tid.store(0, Relaxed);
        self.owner.store(to, Release);
        self.seq.fetch_add(1, SeqCst);
        if self.sleepers.load(SeqCst) > 0 {
            wake_one(&self.seq);
        }
    }

    /// The holding thread's id, 0 when free.
    pub(crate) fn owner_thread(&self) -> u32 {
        match self.owner.load(Acquire) {
            0 | ABANDONED => 0,
            _ => self.tid.load(Relaxed),
        }
    }

    /// Whether the calling thread holds it.
    pub(crate) fn held_by_current_thread<O: LockOs>(&self) -> bool {
        let me = Me::current::<O>();
        self.owner.load(Acquire) == me.owner && self.tid.load(Relaxed) == me.tid
    }

    /// Whether a thread of this process holds it.
    pub(crate) fn held_by_this_process<O: LockOs>(&self) -> bool {
        self.owner.load(Acquire) == Me::current::<O>().owner
    }

    /// The words as a test sets them up (a holder that never was).
    #[cfg(all(test, target_os = "linux"))]
    fn force_owner(&self, pid: u32, start: u64, tid: u32) {
        self.owner.store(owner_value(pid, start), SeqCst);
        self.tid.store(tid, SeqCst);
        self.depth.store(1, SeqCst);
    }
}

/// The locks the calling thread holds, abandoned when it ends.
mod held {
    use super::*;

    /// A held lock: its address, and how to wake its sleepers.
    struct Entry {
        word: *const OwnerWord,
        wake_one: fn(&AtomicU32),
    }

    /// The list; its destructor runs when the thread ends.
    struct List(RefCell<Vec<Entry>>);

    impl Drop for List {
        fn drop(&mut self) {
            let me = crate::sys::getpid();
            for e in self.0.get_mut().drain(..) {
                // SAFETY: an entry is removed when its lock is released;
                // one still here is held by this thread, whose process
                // keeps the memory mapped while a thread holds it (the
                // contract's `keep_mapped`, decided by
                // `held_by_this_process`).
                let w = unsafe { &*e.word };
                // In a fork child the list is a copy of the forking
                // thread's, and the lock is its parent's, not its own.
                if (w.owner.load(Acquire) >> 32) as u32 == me {
                    w.release(ABANDONED, e.wake_one);
                }
            }
        }
    }

    thread_local! {
        static HELD: List = const { List(RefCell::new(Vec::new())) };
    }

    pub(super) fn add(word: &OwnerWord, wake_one: fn(&AtomicU32)) {
        // A thread already ending cannot record it: it then ends holding
        // a lock nobody marks, as a thread of another process would.
        let _ = HELD.try_with(|h| {
            h.0.borrow_mut().push(Entry {
                word: word as *const OwnerWord,
                wake_one,
            })
        });
    }

    pub(super) fn remove(word: &OwnerWord) {
        let _ = HELD.try_with(|h| {
            let mut list = h.0.borrow_mut();
            if let Some(i) = list.iter().rposition(|e| std::ptr::eq(e.word, word)) {
                list.swap_remove(i);
            }
        });
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sys::{self, ChildHandle, ForkSide, Mapping};

    /// The lock's system on Linux: `/proc` and futexes.
    struct Futex;
    /// The same, with the fallback of a system without wait-on-address:
    /// no wake, waits slept out in short sleeps.
    struct Sleeps;

    fn linux_holder(pid: u32) -> Holder {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return Holder::Dead;
        };
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let mut fields = rest.split_whitespace();
        if fields.next() == Some("Z") {
            return Holder::Dead;
        }
        // Field 22 (start time); `fields` is at field 4 now.
        Holder::Alive(fields.nth(22 - 4).and_then(|f| f.parse().ok()))
    }

    impl LockOs for Futex {
        fn this_process() -> (u32, u64) {
            sys::process_identity()
        }
        fn this_thread() -> u32 {
            sys::thread_id()
        }
        fn holder(pid: u32) -> Holder {
            linux_holder(pid)
        }
        fn wait(word: &AtomicU32, seen: u32, deadline: Option<Instant>, slice: Duration) {
            sys::futex_wait(word, seen, deadline, slice)
        }
        fn wake_one(word: &AtomicU32) {
            sys::futex_wake(word, 1)
        }
    }

    impl LockOs for Sleeps {
        fn this_process() -> (u32, u64) {
            sys::process_identity()
        }
        fn this_thread() -> u32 {
            sys::thread_id()
        }
        fn holder(pid: u32) -> Holder {
            linux_holder(pid)
        }
        fn wait(word: &AtomicU32, seen: u32, deadline: Option<Instant>, slice: Duration) {
            let left = deadline.map_or(slice, |d| d.saturating_duration_since(Instant::now()).min(slice));
            if word.load(SeqCst) == seen && !left.is_zero() {
                std::thread::sleep(left.min(Duration::from_millis(1)));
            }
        }
        fn wake_one(_word: &AtomicU32) {}
    }

    /// A lock in a shared memory file (so that fork children share it).
    struct Shared {
        map: Mapping,
    }

    impl Shared {
        fn new(kind: MutexKind) -> Arc<Shared> {
            let fd = sys::memfd_sealed(4096).expect("memfd");
            let s = Shared {
                map: Mapping::new(&fd, 4096).expect("map"),
            };
            s.word().init(kind);
            Arc::new(s)
        }

        fn word(&self) -> &OwnerWord {
            // SAFETY: the mapping is 4096 zero-initialised bytes, page
            // aligned, shared by every user only through the atomics of
            // an OwnerWord, and lives as long as `self`.
            unsafe { &*self.map.as_ptr().cast::<OwnerWord>() }
        }
    }

    const SOON: Duration = Duration::from_secs(30);

    #[test]
    fn the_words_fit_the_contracts_bound() {
        assert_eq!(OWNER_WORD_SIZE, 32);
        const { assert!(OWNER_WORD_SIZE <= 64 && OWNER_WORD_ALIGN <= 64) };
        assert_eq!(tag_of(0), 0);
        assert_ne!(tag_of(1), 0);
        assert_ne!(tag_of(12345), tag_of(12346));
    }

    #[test]
    fn a_free_lock_is_taken_clean_and_an_error_checking_one_refuses_its_holder() {
        let s = Shared::new(MutexKind::ErrorCheck);
        let w = s.word();
        assert_eq!(w.owner_thread(), 0);
        assert_eq!(w.lock::<Futex>(None).unwrap(), Locked::Clean);
        assert_eq!(w.owner_thread(), sys::thread_id());
        assert!(w.held_by_current_thread::<Futex>());
        assert!(w.held_by_this_process::<Futex>());
        assert!(matches!(w.lock::<Futex>(None), Err(LockError::Deadlock)));
        w.unlock::<Futex>().unwrap();
        assert!(matches!(w.unlock::<Futex>(), Err(UnlockError::NotLocked)));
        assert!(!w.held_by_this_process::<Futex>());
    }

    #[test]
    fn a_recursive_lock_is_free_after_as_many_unlocks() {
        let s = Shared::new(MutexKind::Recursive);
        let w = s.word();
        for _ in 0..3 {
            assert_eq!(w.lock::<Futex>(None).unwrap(), Locked::Clean);
        }
        for _ in 0..3 {
            assert!(w.held_by_current_thread::<Futex>());
            w.unlock::<Futex>().unwrap();
        }
        assert_eq!(w.owner_thread(), 0);
        assert!(matches!(w.unlock::<Futex>(), Err(UnlockError::NotLocked)));
    }

    #[test]
    fn a_busy_lock_times_out_and_refuses_other_unlockers() {
        let s = Shared::new(MutexKind::ErrorCheck);
        s.word().lock::<Futex>(None).unwrap();
        let s2 = s.clone();
        std::thread::spawn(move || {
            let w = s2.word();
            assert!(matches!(w.lock::<Futex>(Some(Instant::now())), Err(LockError::Timeout)));
            let soon = Instant::now() + Duration::from_millis(50);
            assert!(matches!(w.lock::<Futex>(Some(soon)), Err(LockError::Timeout)));
            assert!(Instant::now() >= soon);
            assert!(matches!(w.unlock::<Futex>(), Err(UnlockError::NotOwner)));
            assert!(!w.held_by_current_thread::<Futex>());
        })
        .join()
        .unwrap();
        s.word().unlock::<Futex>().unwrap();
    }

    /// Threads counting under the lock never lose an increment, with
    /// wake-ups (futex) and with the sleeping fallback alike.
    fn threads_exclude_each_other<O: LockOs>() {
        let s = Shared::new(MutexKind::ErrorCheck);
        let counter = Arc::new(AtomicU32::new(0));
        let rounds = 2000;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (s, counter) = (s.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        assert_eq!(s.word().lock::<O>(None).unwrap(), Locked::Clean);
                        // A read-modify-write in two steps: a second
                        // holder would lose an increment.
                        let v = counter.load(Relaxed);
                        std::hint::spin_loop();
                        counter.store(v + 1, Relaxed);
                        s.word().unlock::<O>().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Relaxed), 4 * rounds);
    }

    #[test]
    fn threads_exclude_each_other_with_futex_waits() {
        threads_exclude_each_other::<Futex>();
    }

    #[test]
    fn threads_exclude_each_other_with_the_sleeping_fallback() {
        threads_exclude_each_other::<Sleeps>();
    }

    #[test]
    fn a_thread_that_ends_holding_it_hands_the_next_locker_owner_died_once() {
        let s = Shared::new(MutexKind::Recursive);
        let s2 = s.clone();
        std::thread::spawn(move || {
            s2.word().lock::<Futex>(None).unwrap();
            s2.word().lock::<Futex>(None).unwrap();
        })
        .join()
        .unwrap();
        let w = s.word();
        assert_eq!(w.lock::<Futex>(Some(Instant::now() + SOON)).unwrap(), Locked::OwnerDied);
        w.unlock::<Futex>().unwrap();
        assert_eq!(w.lock::<Futex>(Some(Instant::now())).unwrap(), Locked::Clean);
        w.unlock::<Futex>().unwrap();
    }

    /// A holder named by a pid whose process started at another time (the
    /// pid was reused) is dead; one whose start matches is alive.
    #[test]
    fn a_reused_pid_is_not_taken_for_the_holder() {
        let (pid, start) = sys::process_identity();
        assert!(start != 0);
        let s = Shared::new(MutexKind::ErrorCheck);
        let w = s.word();
        // This process, another thread id: alive, so busy.
        w.force_owner(pid, start, sys::thread_id().wrapping_add(1));
        assert!(matches!(w.lock::<Futex>(Some(Instant::now())), Err(LockError::Timeout)));
        // This pid, another start: the holder is dead.
        w.force_owner(pid, start + 1, 7);
        assert_eq!(w.lock::<Futex>(Some(Instant::now())).unwrap(), Locked::OwnerDied);
        w.unlock::<Futex>().unwrap();
    }

    /// Forks a child that takes the lock, says so on a socket, then blocks
    /// reading it: a byte makes it unlock and exit. Returns the child's
    /// handle and the parent's end.
    fn child_holding(s: &Shared) -> (ChildHandle, sys::Fd) {
        let (ours, theirs) = sys::socketpair().unwrap();
        // SAFETY: the child only locks (atomics, getpid, gettid, a
        // thread-local push with glibc's fork-safe allocator), sends,
        // blocks, and leaves through exit_now.
        match unsafe { sys::fork_child() }.unwrap() {
            ForkSide::Child => {
                // The parent's end: only the parent may hold it.
                ours.close_now();
                let code = match s.word().lock::<Futex>(None) {
                    Ok(Locked::Clean) => 0,
                    _ => 1,
                };
                let _ = theirs.send_frame(&[code], &[], &[]);
                let mut buf = Vec::with_capacity(1);
                if theirs.recv_exact_into(&mut buf, 1).is_ok() && s.word().unlock::<Futex>().is_err() {
                    sys::exit_now(2);
                }
                sys::exit_now(0);
            }
            ForkSide::Parent(child) => {
                drop(theirs);
                let mut buf = Vec::with_capacity(1);
                ours.recv_exact_into(&mut buf, 1).unwrap();
                assert_eq!(buf, [0], "the child locked it");
                (child, ours)
            }
        }
    }

    #[test]
    fn a_process_killed_holding_it_hands_the_next_locker_owner_died_before_it_is_reaped() {
        let s = Shared::new(MutexKind::ErrorCheck);
        let (child, _sock) = child_holding(&s);
        let w = s.word();
        assert!(!w.held_by_this_process::<Futex>());
        assert!(matches!(w.lock::<Futex>(Some(Instant::now())), Err(LockError::Timeout)));
        child.signal(sys::SIGKILL).unwrap();
        assert!(child.poll_exit(Some(SOON)).unwrap());
        // A zombie now: dead, although its pid still exists.
        assert_eq!(w.lock::<Futex>(Some(Instant::now() + SOON)).unwrap(), Locked::OwnerDied);
        assert!(child.try_reap().unwrap().is_some());
        w.unlock::<Futex>().unwrap();
        assert_eq!(w.lock::<Futex>(Some(Instant::now())).unwrap(), Locked::Clean);
        w.unlock::<Futex>().unwrap();
    }

    #[test]
    fn a_waiter_asleep_when_the_holder_dies_gets_owner_died() {
        let s = Shared::new(MutexKind::ErrorCheck);
        let (child, sock) = child_holding(&s);
        let s2 = s.clone();
        let waiter = std::thread::spawn(move || {
            let got = s2.word().lock::<Futex>(Some(Instant::now() + SOON));
            if got.is_ok() {
                s2.word().unlock::<Futex>().unwrap();
            }
            got
        });
        // Give the waiter a chance to fall asleep; it must get the lock
        // whether or not it did.
        std::thread::sleep(Duration::from_millis(50));
        child.signal(sys::SIGKILL).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), Locked::OwnerDied);
        drop(sock);
        assert!(child.poll_exit(Some(SOON)).unwrap());
        assert!(child.try_reap().unwrap().is_some());
    }

    #[test]
    fn a_waiter_gets_the_lock_clean_when_another_process_unlocks_it() {
        let s = Shared::new(MutexKind::ErrorCheck);
        let (child, sock) = child_holding(&s);
        // Another process's hold: no one here may unlock it.
        assert!(matches!(s.word().unlock::<Futex>(), Err(UnlockError::NotOwner)));
        let s2 = s.clone();
        let waiter = std::thread::spawn(move || {
            let got = s2.word().lock::<Futex>(Some(Instant::now() + SOON));
            if got.is_ok() {
                s2.word().unlock::<Futex>().unwrap();
            }
            got
        });
        // Give the waiter a chance to fall asleep; it must get the lock
        // whether or not it did.
        std::thread::sleep(Duration::from_millis(20));
        sock.send_frame(&[1], &[], &[]).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), Locked::Clean);
        assert!(child.poll_exit(Some(SOON)).unwrap());
        assert_eq!(child.try_reap().unwrap(), Some(crate::sys::RawStatus::Exited(0)));
    }
}
