//! [`Semaphore`] and [`BoundedSemaphore`].

use std::{fmt, sync::Arc, time::Duration};

use super::{AcquireError, acquired, by_descriptor, create_error, error};
use crate::{
    connection::deadline,
    error::Result,
    sys::{SyncKind, SyncMem},
};

/// A counting semaphore shared by processes (Python's
/// `multiprocessing.Semaphore`): [`release`](Self::release) adds a permit,
/// without bound; acquiring takes one, waiting while there is none.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Process, Semaphore};
///
/// fn child(ready: Semaphore) {
///     ready.release().unwrap(); // a signal: released by another process
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let ready = Semaphore::new(0)?;
/// let mut p = Process::with_args(child, ready.clone());
/// p.start()?;
/// ready.acquire_unguarded(Some(Duration::from_secs(30)))?;
/// p.join()?;
/// assert_eq!(ready.get_value(), 0);
/// # Ok(()) }
/// ```
///
/// Permits taken through a guard ([`acquire`](Self::acquire) and
/// friends) are counted as held by this process: if it dies holding them,
/// a waiter reclaims them (within 200 ms of finding none free) and is told
/// with [`AcquireError::OwnerDied`]. Permits taken with
/// [`acquire_unguarded`](Self::acquire_unguarded) are anonymous and never
/// reclaimed (use them for signalling).
#[derive(Clone)]
pub struct Semaphore {
    pub(super) mem: Arc<SyncMem>,
}

/// A permit of a [`Semaphore`]; returned when dropped.
#[must_use = "the permit is returned as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore with `value` permits.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the system refuses the
    /// shared memory.
    pub fn new(value: usize) -> Result<Semaphore> {
        Semaphore::with_bound(value, u64::MAX)
    }

    fn with_bound(value: usize, max: u64) -> Result<Semaphore> {
        let mem = SyncMem::new(SyncKind::Semaphore, value as u64, max).map_err(|e| create_error("semaphore", e))?;
        Ok(Semaphore { mem: Arc::new(mem) })
    }

    fn guard(&self) -> SemaphoreGuard<'_> {
        SemaphoreGuard { sem: self }
    }

    /// Takes a permit, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] (holding the guard) when this call
    /// reclaimed the permits of a process that died holding them.
    pub fn acquire(&self) -> std::result::Result<SemaphoreGuard<'_>, AcquireError<SemaphoreGuard<'_>>> {
        acquired(self.mem.sem_acquire(None, true), "semaphore", || self.guard())
    }

    /// Takes a permit if one is free now.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] when none is; as for
    /// [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> std::result::Result<SemaphoreGuard<'_>, AcquireError<SemaphoreGuard<'_>>> {
        acquired(
            self.mem.sem_acquire(Some(std::time::Instant::now()), true),
            "semaphore",
            || self.guard(),
        )
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`]; as for [`acquire`](Self::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<SemaphoreGuard<'_>, AcquireError<SemaphoreGuard<'_>>> {
        acquired(self.mem.sem_acquire(Some(deadline(timeout)), true), "semaphore", || {
            self.guard()
        })
    }

    /// Takes an anonymous permit (Python's `acquire(timeout=...)`), waiting
    /// at most `timeout` (`None`: as long as it takes); anyone may give it
    /// back with [`release`](Self::release).
    ///
    /// # Errors
    ///
    /// As for [`acquire_timeout`](Self::acquire_timeout).
    #[doc(alias = "acquire")]
    pub fn acquire_unguarded(&self, timeout: Option<Duration>) -> std::result::Result<(), AcquireError<()>> {
        acquired(self.mem.sem_acquire(timeout.map(deadline), false), "semaphore", || ())
    }

    /// Adds a permit, waking one waiter. Any thread of any process may call
    /// it.
    ///
    /// # Errors
    ///
    /// For a [`BoundedSemaphore`],
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) when the
    /// value would exceed the initial one.
    pub fn release(&self) -> Result<()> {
        self.mem.sem_release(false).map_err(|e| error(e, "semaphore"))
    }

    /// The number of free permits.
    pub fn get_value(&self) -> usize {
        self.mem.sem_value() as usize
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Fails only for a bounded semaphore that anonymous releases filled
        // up meanwhile: the permit is then already there, as it were, and
        // this process's holding of it has ended all the same.
        let _ = self.sem.mem.sem_release(true);
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.get_value()).finish()
    }
}

by_descriptor!(Semaphore, Semaphore, |mem| Semaphore { mem });

/// A [`Semaphore`] that may not be released above its initial value
/// (Python's `multiprocessing.BoundedSemaphore`). It dereferences to the
/// semaphore for every operation.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let sem = multiproc::BoundedSemaphore::new(1)?;
/// sem.acquire_unguarded(None)?;
/// sem.release()?;
/// assert!(sem.release().is_err()); // released too many times
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BoundedSemaphore(Semaphore);

impl BoundedSemaphore {
    /// A semaphore with `value` permits, never more.
    ///
    /// # Errors
    ///
    /// As for [`Semaphore::new`].
    pub fn new(value: usize) -> Result<BoundedSemaphore> {
        Semaphore::with_bound(value, value as u64).map(BoundedSemaphore)
    }

    /// The bound: the initial value.
    pub fn bound(&self) -> usize {
        self.0.mem.sem_max() as usize
    }
}

impl std::ops::Deref for BoundedSemaphore {
    type Target = Semaphore;

    fn deref(&self) -> &Semaphore {
        &self.0
    }
}
