//! [`Lock`] and [`RLock`].

use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use super::{AcquireError, acquired, by_descriptor, create_error, error};
use crate::{
    connection::deadline,
    error::Result,
    sys::{SyncKind, SyncMem},
};

/// A mutual-exclusion lock shared by processes (Python's
/// `multiprocessing.Lock`): not recursive, released by its holder.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Lock, Process};
///
/// fn child(lock: Lock) -> bool {
///     // The parent holds it: a timed acquisition times out.
///     lock.acquire_timeout(Duration::from_millis(10)).is_err()
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let lock = Lock::new()?;
/// let guard = lock.acquire()?;
/// let mut p = Process::with_args(child, lock.clone());
/// p.start()?;
/// assert!(p.join()?);
/// drop(guard);
/// # Ok(()) }
/// ```
///
/// A holder that dies (process or thread) is reported to the next
/// acquirer as [`AcquireError::OwnerDied`] (see [the module
/// docs](crate#synchronisation)). Unlike Python's, only the holding thread may
/// release it.
#[derive(Clone)]
pub struct Lock {
    pub(super) mem: Arc<SyncMem>,
}

/// Holds a [`Lock`]; releases it when dropped. Stays on the thread that
/// acquired it (the lock's owner is a thread).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the system refuses the
    /// shared memory.
    pub fn new() -> Result<Lock> {
        let mem = SyncMem::new(SyncKind::Lock, 0, 0).map_err(|e| create_error("lock", e))?;
        Ok(Lock { mem: Arc::new(mem) })
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] (holding the guard) when the previous
    /// holder died; [`AcquireError::Failed`] with
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) when this
    /// thread holds it already.
    #[inline]
    pub fn acquire(&self) -> std::result::Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        acquired(self.mem.lock(None), "lock", || self.guard())
    }

    /// Acquires the lock if it is free now (Python's `acquire(False)`).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] when it is held (also by this thread); as
    /// for [`acquire`](Self::acquire).
    #[inline]
    pub fn try_acquire(&self) -> std::result::Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        acquired(self.mem.lock(Some(std::time::Instant::now())), "lock", || self.guard())
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`]; as for [`acquire`](Self::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        acquired(self.mem.lock(Some(deadline(timeout))), "lock", || self.guard())
    }

    /// Acquires the lock without a guard (Python's `acquire(timeout=...)`),
    /// waiting at most `timeout` (`None`: as long as it takes). Release it
    /// with [`release`](Self::release) from the same thread.
    ///
    /// # Errors
    ///
    /// As for [`acquire_timeout`](Self::acquire_timeout); on
    /// [`AcquireError::OwnerDied`] the lock is held.
    #[doc(alias = "acquire")]
    pub fn acquire_unguarded(&self, timeout: Option<Duration>) -> std::result::Result<(), AcquireError<()>> {
        acquired(self.mem.lock(timeout.map(deadline)), "lock", || ())
    }

    /// Releases a lock acquired with
    /// [`acquire_unguarded`](Self::acquire_unguarded) (or a guard given up
    /// with `mem::forget`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) when the
    /// lock is not held ("released too many times") or held by another
    /// thread or process.
    pub fn release(&self) -> Result<()> {
        self.mem.unlock().map_err(|e| error(e, "lock"))
    }

    /// Whether some thread of some process holds the lock.
    pub fn is_locked(&self) -> bool {
        self.mem.is_locked()
    }

    /// Whether the calling thread holds the lock.
    pub fn is_held_by_me(&self) -> bool {
        self.mem.owned_by_me()
    }

    /// The holder's thread id, 0 when unlocked.
    pub(crate) fn owner_tid(&self) -> u32 {
        self.mem.owner_tid()
    }

    /// Whether `other` is a handle on the same lock (also one received
    /// from another process: the same memory file).
    pub(crate) fn is_same_lock(&self, other: &Lock) -> bool {
        Arc::ptr_eq(&self.mem, &other.mem)
            || matches!((self.mem.fd().identity(), other.mem.fd().identity()), (Some(a), Some(b)) if a == b)
    }
}

impl LockGuard<'_> {
    /// The lock held.
    pub(crate) fn lock(&self) -> &Lock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Cannot fail: this thread holds the lock (the guard is not Send).
        let _ = self.lock.mem.unlock();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .field("owner_tid", &self.mem.owner_tid())
            .finish()
    }
}

by_descriptor!(Lock, Lock, |mem| Lock { mem });

/// A recursive lock shared by processes (Python's
/// `multiprocessing.RLock`): the thread that holds it may acquire it again,
/// and must release it as many times.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let lock = multiproc::RLock::new()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?;
/// assert_eq!(lock.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!lock.is_locked());
/// # Ok(()) }
/// ```
///
/// A holder that dies is reported as for [`Lock`].
#[derive(Clone)]
pub struct RLock {
    pub(super) mem: Arc<SyncMem>,
}

/// Holds one level of an [`RLock`]; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl RLock {
    /// A new, unlocked recursive lock.
    ///
    /// # Errors
    ///
    /// As for [`Lock::new`].
    pub fn new() -> Result<RLock> {
        let mem = SyncMem::new(SyncKind::RLock, 0, 0).map_err(|e| create_error("rlock", e))?;
        Ok(RLock { mem: Arc::new(mem) })
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Acquires one level, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] (holding the guard, depth 1) when the
    /// previous holder died.
    pub fn acquire(&self) -> std::result::Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        acquired(self.mem.lock(None), "rlock", || self.guard())
    }

    /// Acquires one level if the lock is free or held by this thread.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] when another thread holds it; as for
    /// [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> std::result::Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        acquired(self.mem.lock(Some(std::time::Instant::now())), "rlock", || self.guard())
    }

    /// Acquires one level, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`]; as for [`acquire`](Self::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        acquired(self.mem.lock(Some(deadline(timeout))), "rlock", || self.guard())
    }

    /// Acquires one level without a guard, waiting at most `timeout`
    /// (`None`: as long as it takes); see [`release`](Self::release).
    ///
    /// # Errors
    ///
    /// As for [`acquire_timeout`](Self::acquire_timeout).
    #[doc(alias = "acquire")]
    pub fn acquire_unguarded(&self, timeout: Option<Duration>) -> std::result::Result<(), AcquireError<()>> {
        acquired(self.mem.lock(timeout.map(deadline)), "rlock", || ())
    }

    /// Releases one level.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) when
    /// the calling thread does not hold the lock (Python's
    /// `AssertionError('attempt to release recursive lock not owned by
    /// thread')`).
    pub fn release(&self) -> Result<()> {
        self.mem.unlock().map_err(|e| error(e, "rlock"))
    }

    /// Whether some thread of some process holds the lock.
    pub fn is_locked(&self) -> bool {
        self.mem.is_locked()
    }

    /// Whether the calling thread holds the lock.
    pub fn is_held_by_me(&self) -> bool {
        self.mem.owned_by_me()
    }

    /// How many levels the calling thread holds (0 when it does not hold
    /// the lock).
    pub fn depth(&self) -> u32 {
        if self.mem.owned_by_me() { self.mem.depth() } else { 0 }
    }

    /// The holder's thread id, 0 when unlocked.
    pub(crate) fn owner_tid(&self) -> u32 {
        self.mem.owner_tid()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // Cannot fail: this thread holds a level (the guard is not Send).
        let _ = self.lock.mem.unlock();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("locked", &self.is_locked())
            .field("owner_tid", &self.mem.owner_tid())
            .finish()
    }
}

by_descriptor!(RLock, RLock, |mem| RLock { mem });
