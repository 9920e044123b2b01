//! The one robust, process-shared mutex of the contract
//! ([`RobustMutex`]): a glibc `pthread_mutex_t` in shared memory, with the
//! robust attribute (the kernel marks it when its owner dies) and a
//! deadline.
//!
//! # Deadlines
//!
//! [`RobustMutex::lock`] takes a monotonic deadline (`None`: forever; a
//! past instant: try once). libc 0.2 does not expose glibc's
//! `pthread_mutex_clocklock`, so a timed wait uses
//! `pthread_mutex_timedlock`, which measures against the wall clock
//! (`CLOCK_REALTIME`): it sleeps in slices of at most [`SLICE`], each
//! recomputed from the monotonic deadline, so a jump of the wall clock
//! lengthens or shortens one slice by the jump and later slices keep to
//! the deadline. A lock held by another CPU is usually free within a
//! microsecond or two: a contended lock is retried for up to [`SPIN`]
//! (when this thread may run on more than one CPU) before sleeping in the
//! kernel.
//!
//! # Owner
//!
//! glibc's `pthread_mutex_t` begins with the mutex's futex word, which the
//! robust-futex ABI makes the owner's kernel thread id plus flag bits: that
//! is how [`RobustMutex::owner`] answers without locking.

// The owner of a robust mutex is read from glibc's `pthread_mutex_t`
// layout (its first word is the robust futex word).
#[cfg(not(target_env = "gnu"))]
compile_error!("multiproc's shared locks read glibc's pthread_mutex_t layout: Linux with glibc only");

use std::{
    io,
    mem::MaybeUninit,
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering::SeqCst},
    time::{Duration, Instant},
};

use super::{Mapping, identity};
use crate::sys::{LockError, Locked, MutexKind, UnlockError};

/// Longest single sleep in `pthread_mutex_timedlock` before the monotonic
/// deadline is consulted again.
const SLICE: Duration = Duration::from_secs(1);
/// How long a locker retries a busy lock before sleeping in the kernel.
const SPIN: Duration = Duration::from_micros(10);
/// The owner's thread id in a robust mutex's futex word.
const TID_MASK: u32 = 0x3fff_ffff;

/// Bytes a [`RobustMutex`] takes in shared memory.
pub(crate) const MUTEX_SIZE: usize = size_of::<libc::pthread_mutex_t>();
/// The alignment its offset needs.
pub(crate) const MUTEX_ALIGN: usize = align_of::<libc::pthread_mutex_t>();

/// A process-shared, robust `pthread_mutex_t` at a fixed address inside a
/// [`Mapping`].
///
/// Invariant: `ptr` points at an initialised mutex in shared memory that
/// stays mapped as long as this value lives (the owner of the mapping
/// keeps both).
#[derive(Debug)]
pub(crate) struct RobustMutex {
    ptr: NonNull<libc::pthread_mutex_t>,
}

// SAFETY: a process-shared pthread mutex is meant to be used from any
// thread of any process.
unsafe impl Send for RobustMutex {}
// SAFETY: as above.
unsafe impl Sync for RobustMutex {}

impl RobustMutex {
    /// Initialises a new mutex of `kind` at byte `off` of `map`, whose
    /// bytes there are zeroed and used by nobody yet.
    pub(crate) fn init(map: &Mapping, off: usize, kind: MutexKind) -> io::Result<RobustMutex> {
        let m = Self::attach(map, off);
        let kind = match kind {
            MutexKind::ErrorCheck => libc::PTHREAD_MUTEX_ERRORCHECK,
            MutexKind::Recursive => libc::PTHREAD_MUTEX_RECURSIVE,
        };
        init_mutex(m.ptr.as_ptr(), kind)?;
        Ok(m)
    }

    /// The mutex another handle (of this or another process) initialised
    /// at byte `off` of `map`.
    pub(crate) fn attach(map: &Mapping, off: usize) -> RobustMutex {
        map.check(off, MUTEX_SIZE);
        assert_eq!(off % MUTEX_ALIGN, 0, "mutex offset is aligned");
        let ptr = NonNull::new(map.as_ptr().wrapping_add(off).cast()).expect("a mapping is not null");
        RobustMutex { ptr }
    }

    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.ptr.as_ptr()
    }

    /// Locks, waiting until `deadline` (`None`: forever; a past instant:
    /// one try). A dead previous owner is reported as
    /// [`Locked::OwnerDied`] after the mutex has been made consistent.
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Locked, LockError> {
        // SAFETY: the mutex is initialised and mapped (invariant).
        let mut rc = unsafe { libc::pthread_mutex_trylock(self.raw()) };
        if rc == libc::EBUSY {
            rc = self.lock_slow(deadline);
        }
        match rc {
            0 => Ok(Locked::Clean),
            libc::EOWNERDEAD => {
                // SAFETY: our lock call on the initialised mutex just
                // returned EOWNERDEAD.
                unsafe { recover_owner_died(self.raw()) }.map_err(LockError::Io)?;
                Ok(Locked::OwnerDied)
            }
            libc::EBUSY | libc::ETIMEDOUT => Err(LockError::Timeout),
            libc::EDEADLK => Err(LockError::Deadlock),
            libc::ENOTRECOVERABLE => Err(LockError::NotRecoverable),
            e => Err(LockError::Io(io::Error::from_raw_os_error(e))),
        }
    }

    /// The contended path of [`lock`](Self::lock): spin, then sleep in the
    /// kernel in slices.
    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> libc::c_int {
        let m = self.raw();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return libc::EBUSY;
        }
        if identity::may_spin() {
            let start = Instant::now();
            let mut tries = 0u32;
            loop {
                // SAFETY: as in `lock`.
                let rc = unsafe { libc::pthread_mutex_trylock(m) };
                if rc != libc::EBUSY {
                    return rc;
                }
                std::hint::spin_loop();
                tries += 1;
                if tries % 32 == 0 && (start.elapsed() >= SPIN || deadline.is_some_and(|d| Instant::now() >= d)) {
                    break;
                }
            }
        }
        match deadline {
            // SAFETY: as in `lock`.
            None => unsafe { libc::pthread_mutex_lock(m) },
            Some(deadline) => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // SAFETY: as in `lock`.
                    break unsafe { libc::pthread_mutex_trylock(m) };
                }
                let at = realtime_after(left.min(SLICE));
                // SAFETY: as in `lock`; `at` is a valid timespec.
                let rc = unsafe { libc::pthread_mutex_timedlock(m, &at) };
                if rc != libc::ETIMEDOUT {
                    break rc;
                }
            },
        }
    }

    /// Unlocks once: refused for a thread that does not hold it
    /// ([`UnlockError::NotOwner`], or [`UnlockError::NotLocked`] when
    /// nobody does).
    #[inline]
    pub(crate) fn unlock(&self) -> Result<(), UnlockError> {
        // SAFETY: the mutex is initialised and mapped (invariant); an
        // error-checking or recursive mutex refuses a non-owner.
        match unsafe { libc::pthread_mutex_unlock(self.raw()) } {
            0 => Ok(()),
            libc::EPERM if self.owner() == 0 => Err(UnlockError::NotLocked),
            libc::EPERM => Err(UnlockError::NotOwner),
            e => Err(UnlockError::Io(io::Error::from_raw_os_error(e))),
        }
    }

    /// The kernel thread id of the owner, 0 when unlocked.
    pub(crate) fn owner(&self) -> u32 {
        // SAFETY: glibc's pthread_mutex_t begins with the mutex's futex word
        // (`__lock`, an aligned int changed only atomically); for a robust
        // mutex the kernel's robust-futex ABI makes it the owner's thread id
        // plus flag bits. Reading it atomically races with nobody.
        let word = unsafe { AtomicU32::from_ptr(self.raw().cast::<u32>()) };
        word.load(SeqCst) & TID_MASK
    }

    /// Whether the calling thread holds the mutex.
    pub(crate) fn held_by_current_thread(&self) -> bool {
        self.owner() == identity::thread_id()
    }

    /// Whether a thread of this process holds the mutex, so that it is on
    /// that thread's robust list and its memory must stay mapped (see
    /// [`Mapping::keep_mapped`]).
    pub(crate) fn held_by_this_process(&self) -> bool {
        identity::is_thread_of_this_process(self.owner())
    }
}

/// `CLOCK_REALTIME` `after` from now, for `pthread_mutex_timedlock`,
/// saturating far in the future.
pub(crate) fn realtime_after(after: Duration) -> libc::timespec {
    let mut now = MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: now is a valid out-pointer; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, now.as_mut_ptr()) };
    // SAFETY: clock_gettime filled it.
    let now = unsafe { now.assume_init() };
    let nanos = (now.tv_sec as u128) * 1_000_000_000 + now.tv_nsec as u128 + after.as_nanos();
    let secs = (nanos / 1_000_000_000).min(libc::time_t::MAX as u128);
    libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

/// A pthread return code as a result.
fn check_pthread(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Initialises a process-shared, robust mutex of type `kind`
/// (`PTHREAD_MUTEX_ERRORCHECK` or `PTHREAD_MUTEX_RECURSIVE`) at `m`, which
/// must point at zeroed, writable, shared memory that nobody uses yet.
pub(crate) fn init_mutex(m: *mut libc::pthread_mutex_t, kind: libc::c_int) -> io::Result<()> {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: attr is writable storage for an attribute object.
    check_pthread(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
    let a = attr.as_mut_ptr();
    // The attribute is destroyed on every path, hence the closure.
    let res = (|| {
        // SAFETY: a is an initialised attribute object.
        check_pthread(unsafe { libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED) })?;
        // SAFETY: as above.
        check_pthread(unsafe { libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST) })?;
        // SAFETY: as above.
        check_pthread(unsafe { libc::pthread_mutexattr_settype(a, kind) })?;
        // SAFETY: a is initialised; m points at zeroed, writable, shared
        // memory that no one else uses yet (the caller's contract).
        check_pthread(unsafe { libc::pthread_mutex_init(m, a) })
    })();
    // SAFETY: a was initialised above.
    unsafe { libc::pthread_mutexattr_destroy(a) };
    res
}

/// Marks a robust mutex consistent after `EOWNERDEAD` handed it to this
/// thread, so that it stays usable for every process.
///
/// `pthread_mutex_consistent` fails (`EINVAL`) only when the mutex is not
/// robust or not in the owner-died state, that is when our own invariants
/// broke. Then the mutex is unlocked without being made consistent (glibc
/// then marks it not recoverable, so every later lock fails with
/// `ENOTRECOVERABLE` instead of waiting on a holder that went away), and
/// the failure is returned: the caller holds no lock.
///
/// # Safety
///
/// `m` points at an initialised mutex, and this thread's last lock call
/// on it returned `EOWNERDEAD` (so this thread holds it).
pub(crate) unsafe fn recover_owner_died(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
    // SAFETY: m is initialised and held by this thread (the contract).
    let rc = unsafe { libc::pthread_mutex_consistent(m) };
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: m is initialised and still held by this thread: a failed
    // `pthread_mutex_consistent` changes nothing.
    unsafe { libc::pthread_mutex_unlock(m) };
    let e = io::Error::from_raw_os_error(rc);
    Err(io::Error::new(
        e.kind(),
        format!("could not make a lock consistent after its owner died: {e}"),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sys::memfd_sealed;

    /// A robust error-checking mutex in private memory (robustness works
    /// between threads too).
    fn robust_mutex() -> Box<libc::pthread_mutex_t> {
        // SAFETY: an all-zero pthread_mutex_t is valid storage to initialise.
        let mut m = Box::new(unsafe { MaybeUninit::<libc::pthread_mutex_t>::zeroed().assume_init() });
        init_mutex(&mut *m, libc::PTHREAD_MUTEX_ERRORCHECK).expect("init mutex");
        m
    }

    /// Address of the boxed mutex, sendable to another thread.
    struct Addr(usize);

    #[test]
    fn recovery_after_a_dead_owner_keeps_the_mutex_usable() {
        let mut m = robust_mutex();
        let addr = Addr(&raw mut *m as usize);
        std::thread::spawn(move || {
            let addr = addr;
            // SAFETY: the mutex is initialised and outlives this thread,
            // which exits holding it.
            let rc = unsafe { libc::pthread_mutex_lock(addr.0 as *mut libc::pthread_mutex_t) };
            assert_eq!(rc, 0);
        })
        .join()
        .expect("locking thread");
        // SAFETY: initialised; its owner thread exited holding it.
        let rc = unsafe { libc::pthread_mutex_lock(&mut *m) };
        assert_eq!(rc, libc::EOWNERDEAD);
        // SAFETY: our lock call just returned EOWNERDEAD.
        unsafe { recover_owner_died(&mut *m) }.expect("consistent");
        // SAFETY: held by this thread (recovered above).
        assert_eq!(unsafe { libc::pthread_mutex_unlock(&mut *m) }, 0);
        // SAFETY: initialised, unlocked.
        assert_eq!(unsafe { libc::pthread_mutex_trylock(&mut *m) }, 0, "consistent again");
        // SAFETY: held by this thread.
        assert_eq!(unsafe { libc::pthread_mutex_unlock(&mut *m) }, 0);
    }

    #[test]
    fn failed_recovery_is_an_error_and_releases_the_mutex() {
        let mut m = robust_mutex();
        // SAFETY: initialised, unlocked.
        assert_eq!(unsafe { libc::pthread_mutex_lock(&mut *m) }, 0);
        // Breaks the contract on purpose (the mutex is not in the
        // owner-died state), which is the failure the check is for.
        // SAFETY: initialised and held by this thread, which is all
        // `pthread_mutex_consistent` needs to report EINVAL safely.
        let err = unsafe { recover_owner_died(&mut *m) }.expect_err("not in the owner-died state");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("owner died"), "{err}");
        // SAFETY: initialised; the failed recovery must have unlocked it.
        assert_eq!(unsafe { libc::pthread_mutex_trylock(&mut *m) }, 0, "released");
        // SAFETY: held by this thread.
        assert_eq!(unsafe { libc::pthread_mutex_unlock(&mut *m) }, 0);
    }

    /// A shared mapping holding one mutex, and the mutex.
    fn shared(kind: MutexKind) -> (Arc<Mapping>, Arc<RobustMutex>) {
        let fd = memfd_sealed(4096).expect("memfd");
        let map = Arc::new(Mapping::new(&fd, 4096).expect("map"));
        let m = Arc::new(RobustMutex::init(&map, 0, kind).expect("init"));
        (map, m)
    }

    #[test]
    fn the_owner_is_the_locking_thread_and_a_relock_is_refused() {
        let (_map, m) = shared(MutexKind::ErrorCheck);
        assert_eq!(m.owner(), 0);
        assert_eq!(m.lock(None).unwrap(), Locked::Clean);
        assert!(m.held_by_current_thread());
        assert!(m.held_by_this_process());
        assert!(matches!(m.lock(None), Err(LockError::Deadlock)));
        m.unlock().unwrap();
        assert!(matches!(m.unlock(), Err(UnlockError::NotLocked)));
    }

    #[test]
    fn a_busy_mutex_times_out_at_its_deadline_and_refuses_other_unlockers() {
        let (_map, m) = shared(MutexKind::ErrorCheck);
        m.lock(None).unwrap();
        let m2 = m.clone();
        std::thread::spawn(move || {
            assert!(matches!(m2.lock(Some(Instant::now())), Err(LockError::Timeout)));
            let soon = Instant::now() + Duration::from_millis(20);
            assert!(matches!(m2.lock(Some(soon)), Err(LockError::Timeout)));
            assert!(Instant::now() >= soon);
            assert!(matches!(m2.unlock(), Err(UnlockError::NotOwner)));
        })
        .join()
        .unwrap();
        m.unlock().unwrap();
    }

    #[test]
    fn a_thread_that_exits_holding_it_is_reported_once() {
        let (_map, m) = shared(MutexKind::Recursive);
        let m2 = m.clone();
        std::thread::spawn(move || {
            m2.lock(None).unwrap();
            m2.lock(None).unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(m.lock(None).unwrap(), Locked::OwnerDied);
        m.unlock().unwrap();
        assert_eq!(m.lock(Some(Instant::now())).unwrap(), Locked::Clean);
        m.unlock().unwrap();
    }
}
