//! [`Lock`], and the algorithm of `Lock` and `RLock` over the shared page:
//! the contract's robust mutex is the lock (error-checking for `Lock`,
//! recursive for `RLock`, whose depth `rlock.rs` keeps).

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use super::{
    AcquireError, acquired, by_descriptor, create_error, error,
    shared::{Acquired, Kind, SyncError, SyncMem},
};
use crate::{
    error::Result,
    sys::{Locked, UnlockError, deadline_after as deadline},
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
        let mem = SyncMem::new(Kind::Lock, 0, 0).map_err(|e| create_error("lock", e))?;
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
// ----- the algorithm: the contract's mutex is the lock -----

impl SyncMem {
    /// Acquires the lock until `deadline` (`None`: forever; a past instant:
    /// try once).
    #[inline]
    pub(super) fn lock(&self, deadline: Option<Instant>) -> Result<Acquired, SyncError> {
        let got = match self.mutex().lock(deadline) {
            Ok(Locked::Clean) => Acquired::Clean,
            Ok(Locked::OwnerDied) => {
                if self.kind() == Kind::RLock as u32 {
                    self.hdr().rcount.store(0, Relaxed);
                }
                Acquired::OwnerDied
            }
            Err(e) => return Err(e.into()),
        };
        if self.kind() == Kind::RLock as u32 {
            let h = self.hdr();
            h.rcount.store(h.rcount.load(Relaxed) + 1, Relaxed);
        }
        Ok(got)
    }

    /// Releases the lock once.
    #[inline]
    pub(super) fn unlock(&self) -> Result<(), SyncError> {
        if self.kind() == Kind::RLock as u32 {
            if !self.mutex().held_by_current_thread() {
                return Err(SyncError::NotOwner);
            }
            let h = self.hdr();
            h.rcount.store(h.rcount.load(Relaxed).saturating_sub(1), Relaxed);
        }
        self.mutex().unlock().map_err(|e| match e {
            UnlockError::NotLocked => SyncError::NotLocked,
            UnlockError::NotOwner => SyncError::NotOwner,
            UnlockError::Io(e) => SyncError::Io(e),
        })
    }

    /// Whether the calling thread holds the lock.
    pub(super) fn owned_by_me(&self) -> bool {
        self.mutex().held_by_current_thread()
    }

    /// Whether some thread holds the lock.
    pub(super) fn is_locked(&self) -> bool {
        self.owner() != 0
    }

    /// The owner's thread id, 0 when unlocked.
    pub(super) fn owner_tid(&self) -> u32 {
        self.owner()
    }

    /// Releases the lock entirely (every recursion level); returns the
    /// depth to restore. The caller holds it.
    pub(super) fn release_all(&self) -> Result<u32, SyncError> {
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
    pub(super) fn reacquire(&self, depth: u32) -> Result<Acquired, SyncError> {
        let got = self.lock(None)?;
        for _ in 1..depth {
            self.lock(None)?;
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_word_is_the_thread_id() {
        let m = SyncMem::new(Kind::Lock, 0, 0).unwrap();
        assert_eq!(m.owner_tid(), 0);
        m.lock(None).unwrap();
        assert_eq!(m.owner_tid(), crate::sys::thread_id());
        assert!(m.owned_by_me());
        m.unlock().unwrap();
        assert!(matches!(m.unlock(), Err(SyncError::NotLocked)));
    }
}
