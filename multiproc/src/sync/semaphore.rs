//! [`Semaphore`] and [`BoundedSemaphore`].

use std::{
    fmt,
    sync::{
        Arc,
        atomic::Ordering::{Relaxed, SeqCst},
    },
    time::{Duration, Instant},
};

use super::{
    AcquireError, acquired, by_descriptor, create_error, error,
    shared::{Acquired, Inner, Kind, SLICE, SyncError, SyncMem, spin_until},
};
use crate::{
    error::Result,
    sys::{deadline_after as deadline, futex_wait, futex_wake, is_alive, passed, process_identity},
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
        let mem = SyncMem::new(Kind::Semaphore, value as u64, max).map_err(|e| create_error("semaphore", e))?;
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

// ----- the algorithm -----

impl SyncMem {
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
        let (pid, start) = process_identity();
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
            .filter(|&(_, pid, start)| !is_alive(pid, 0, start))
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
    pub(super) fn sem_acquire(&self, deadline: Option<Instant>, tracked: bool) -> Result<Acquired, SyncError> {
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
    pub(super) fn sem_release(&self, tracked: bool) -> Result<(), SyncError> {
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
    pub(super) fn sem_value(&self) -> u64 {
        self.hdr().value.load(SeqCst)
    }

    /// The bound (`u64::MAX`: none).
    pub(super) fn sem_max(&self) -> u64 {
        self.hdr().max.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::SeqCst;

    use super::*;

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
