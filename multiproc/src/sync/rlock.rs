//! [`RLock`]: a [`Lock`](super::Lock) that its holder may take again;
//! the recursion depth lives in the shared header, written by the owner
//! only (the locking algorithm is in `lock.rs`).

use std::{fmt, marker::PhantomData, sync::Arc, sync::atomic::Ordering::Relaxed, time::Duration};

use super::{
    AcquireError, acquired, by_descriptor, create_error, error,
    shared::{Kind, SyncMem},
};
use crate::{error::Result, sys::deadline_after as deadline};

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
/// A holder that dies is reported as for [`Lock`](super::Lock).
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
    /// As for [`Lock::new`](super::Lock::new).
    pub fn new() -> Result<RLock> {
        let mem = SyncMem::new(Kind::RLock, 0, 0).map_err(|e| create_error("rlock", e))?;
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

impl SyncMem {
    /// RLock: the recursion depth (meaningful to the owner).
    pub(super) fn depth(&self) -> u32 {
        self.hdr().rcount.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::shared::Acquired;

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
}
