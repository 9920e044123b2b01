//! Synchronisation primitives shared by processes: [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`] and
//! [`Barrier`] (Python's `multiprocessing.synchronize`).
//!
//! Each object lives in an anonymous, sealed memory file (no name in
//! `/dev/shm`, no POSIX named semaphore, nothing to leak or unlink: the
//! memory goes when the last process holding the descriptor closes it).
//! Handles are `Clone` (for threads) and serde-serialisable by descriptor,
//! so they are passed to children as (part of) a target's argument, or
//! through a [`Connection`](crate::Connection) or [`Queue`](crate::Queue),
//! under every start method.
//!
//! # Using them
//!
//! Acquisition has two styles. The Rust style returns a guard that releases
//! on drop:
//!
//! ```
//! # fn main() -> multiproc::Result<()> {
//! let lock = multiproc::Lock::new()?;
//! {
//!     let _guard = lock.acquire()?;
//!     // ... exclusive with every process holding `lock`
//! }
//! assert!(!lock.is_locked());
//! # Ok(()) }
//! ```
//!
//! The Python style (`acquire_unguarded` / `release`) keeps no guard:
//! [`Semaphore::release`] may be called by another process (a signal),
//! [`Lock::release`] only by the holder (see below).
//!
//! # A holder that dies
//!
//! When a process (or thread) dies holding a [`Lock`] or [`RLock`], or
//! permits of a [`Semaphore`] taken through a guard, the next acquisition
//! gets [`AcquireError::OwnerDied`]. It carries the guard: the caller holds
//! the lock, must decide whether what it protects is consistent, and says so
//! by taking the guard out, with [`AcquireError::recover`] (in the manner of
//! `std::sync::Mutex` poisoning, except that the report is given once: the
//! lock is healthy again afterwards). Nobody is ever blocked forever by a
//! dead holder:
//!
//! ```
//! # fn main() -> multiproc::Result<()> {
//! let lock = multiproc::Lock::new()?;
//! let guard = match lock.acquire() {
//!     Ok(guard) => guard,
//!     Err(e) if e.is_owner_died() => {
//!         // repair the protected state here, then carry on
//!         e.recover()?
//!     }
//!     Err(e) => return Err(e.into()),
//! };
//! drop(guard);
//! # Ok(()) }
//! ```
//!
//! A [`Barrier`] whose party dies while waiting breaks: the other parties
//! get [`ErrorKind::BrokenBarrier`](crate::ErrorKind::BrokenBarrier). A
//! party that dies *before* it arrives is not noticed (the barrier does not
//! know who its parties are): the others wait for it as long as their
//! timeout allows, so use [`Barrier::wait_timeout`] when a party may die.
//! [`Event`] and [`Condition`] have no holder to lose (a condition's lock is
//! a [`Lock`] or [`RLock`], reported as above).
//!
//! # Design
//!
//! `Lock` and `RLock` are robust, process-shared pthread mutexes
//! (error-checking, recursive): the kernel tells the next locker at once
//! when the holder dies (the robust list), with no polling, and an
//! uncontended acquire and release is one atomic each way. The other
//! primitives keep counters under such a mutex and sleep on futex words in
//! slices of at most 200 ms, after which a waiter checks the processes it
//! depends on (pid, thread id and start time, so a reused pid is not taken
//! for the dead one). Details are in `shared.rs` (the page) and each
//! primitive's file (its algorithm).
//!
//! Timed acquisitions of a `Lock` or `RLock` (and of the internal lock of
//! the others) use `pthread_mutex_timedlock`, which measures against the
//! wall clock (`CLOCK_REALTIME`); they wait in slices of at most a second,
//! each recomputed from the monotonic deadline: a jump of the wall clock
//! during a slice lengthens or shortens that slice by the jump, later
//! slices keep to the deadline. A `Semaphore` or `Barrier` operation with
//! a timeout waits at most about 20 ms for the internal lock even past its
//! deadline (a `try_` call too),
//! so that a process stopped while holding it (`SIGSTOP`, a debugger) makes
//! it time out rather than hang.
//!
//! # Differences from Python
//!
//! - A `Lock` is released by the thread that acquired it (Python lets any
//!   thread or process release it): a pthread mutex has an owner, and the
//!   owner is what makes death detection possible. Another thread's release
//!   is [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState). Use a
//!   [`Semaphore`] of 1 (or a [`BoundedSemaphore`]) for a lock that one
//!   process takes and another releases.
//! - Acquiring a `Lock` again from the thread holding it is an
//!   `InvalidState` error instead of a deadlock (a try or a timed
//!   acquisition of it is a timeout, as in Python).
//! - Semaphore permits are tracked per process only when taken through a
//!   guard; [`Semaphore::acquire_unguarded`] permits are anonymous (they
//!   are meant to be released by someone else) and are not reclaimed.
//! - `Barrier` takes no `action` (a closure cannot travel between
//!   processes): the party whose [`Barrier::wait`] returns 0 is unique,
//!   and can run it.
//! - `Condition::notify(n)` wakes exactly the `n` longest-waiting live
//!   waiters.

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;
mod shared;

pub use crate::error::AcquireError;

use self::shared::{Acquired, SyncError};
pub use self::{
    barrier::Barrier,
    condition::{Condition, ConditionGuard},
    event::Event,
    lock::{Lock, LockGuard},
    rlock::{RLock, RLockGuard},
    semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard},
};
use crate::error::{Error, ErrorKind};

/// The crate error for a failed operation on `what` ("lock", ...).
#[cold]
fn error(e: SyncError, what: &str) -> Error {
    match e {
        SyncError::Timeout => Error::new(ErrorKind::Timeout, format!("{what} timed out")),
        SyncError::Deadlock => Error::new(
            ErrorKind::InvalidState,
            "the lock is already held by this thread (a Lock is not recursive; RLock is)",
        ),
        SyncError::NotOwner if what == "rlock" => Error::new(
            ErrorKind::InvalidState,
            "attempt to release recursive lock not owned by thread",
        ),
        SyncError::NotOwner if what == "condition" => Error::new(
            ErrorKind::InvalidState,
            "must acquire() the condition's lock before using it",
        ),
        SyncError::NotOwner => Error::new(
            ErrorKind::InvalidState,
            "the lock is held by another thread or process (only the holder may release a Lock)",
        ),
        SyncError::NotLocked | SyncError::TooManyReleases => {
            Error::new(ErrorKind::InvalidState, "semaphore or lock released too many times")
        }
        SyncError::Broken => Error::new(ErrorKind::BrokenBarrier, "the barrier is broken"),
        SyncError::Full => Error::new(
            ErrorKind::InvalidState,
            format!("too many processes wait on or hold this {what} at once"),
        ),
        SyncError::Io(e) => Error::io(format!("{what} operation failed"), e),
    }
}

/// Maps an acquisition's outcome: `ok` builds the result.
fn acquired<G>(r: Result<Acquired, SyncError>, what: &str, ok: impl FnOnce() -> G) -> Result<G, AcquireError<G>> {
    match r {
        Ok(Acquired::Clean) => Ok(ok()),
        Ok(Acquired::OwnerDied) => Err(AcquireError::OwnerDied(ok())),
        Err(SyncError::Timeout) => Err(AcquireError::Timeout),
        Err(e) => Err(AcquireError::Failed(error(e, what))),
    }
}

/// The error for a failure to create an object.
#[cold]
fn create_error(what: &str, e: std::io::Error) -> Error {
    Error::io(format!("failed to create the {what}'s shared memory"), e)
}

/// `Serialize`/`Deserialize` for a handle `$t { mem: Arc<SyncMem>, .. }`
/// of kind `$kind`: one descriptor, by index (see `crate::codec::fds`).
macro_rules! by_descriptor {
    ($t:ident, $kind:ident, |$mem:ident| $build:expr) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use serde::ser::Error as _;
                let i = crate::codec::fds::export(self.mem.fd().raw()).map_err(S::Error::custom)?;
                serde::Serialize::serialize(&i, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<$t, D::Error> {
                use serde::de::Error as _;
                let i = u32::deserialize(d)?;
                let fd = crate::codec::fds::import(i).map_err(D::Error::custom)?;
                let $mem = std::sync::Arc::new(
                    crate::sync::shared::SyncMem::from_fd(fd, crate::sync::shared::Kind::$kind)
                        .map_err(|e| D::Error::custom(format!("not a {}: {e}", stringify!($t))))?,
                );
                Ok($build)
            }
        }
    };
}
use by_descriptor;
