//! [`Condition`].

use std::{
    fmt,
    marker::PhantomData,
    sync::{Arc, atomic::Ordering::SeqCst},
    time::{Duration, Instant},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    AcquireError, Lock, RLock, acquired, create_error, error,
    shared::{Acquired, FREE, Kind, NOTIFIED, SLICE, SyncError, SyncMem, WAITING},
};
use crate::{
    codec,
    error::Result,
    sys::{deadline_after as deadline, futex_wait, futex_wake, is_alive, passed, process_identity, thread_id},
};

/// A condition variable shared by processes (Python's
/// `multiprocessing.Condition`), over a [`Lock`] or (by default) an
/// [`RLock`].
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Condition, Event, Process};
///
/// fn child((cond, waiting): (Condition, Event)) {
///     let g = cond.acquire().unwrap();
///     waiting.set();
///     assert!(g.wait_timeout(Duration::from_secs(30)).unwrap());
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let cond = Condition::new()?;
/// let waiting = Event::new()?;
/// let mut p = Process::with_args(child, (cond.clone(), waiting.clone()));
/// p.start()?;
/// assert!(waiting.wait_timeout(Duration::from_secs(30)));
/// // The child released the lock in its wait: acquiring it means it sleeps.
/// cond.acquire()?.notify(1)?;
/// p.join()?;
/// # Ok(()) }
/// ```
///
/// `wait`, `notify` and `notify_all` need the lock held by the calling
/// thread (through a [`ConditionGuard`], or
/// [`acquire_unguarded`](Self::acquire_unguarded)); otherwise they fail
/// with [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState).
/// [`notify(n)`](Self::notify) wakes exactly the `n` longest-waiting live
/// waiters. A waiter that takes the lock back from a holder that died gets
/// [`AcquireError::OwnerDied`] carrying the wait's result.
#[derive(Clone)]
pub struct Condition {
    mem: Arc<SyncMem>,
    lock: CondLock,
}

#[derive(Clone)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

impl CondLock {
    fn mem(&self) -> &SyncMem {
        match self {
            CondLock::Lock(l) => &l.mem,
            CondLock::RLock(l) => &l.mem,
        }
    }
}

/// Holds a [`Condition`]'s lock (one level); releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_send: PhantomData<*const ()>,
}

type Wait = std::result::Result<bool, AcquireError<bool>>;

impl Condition {
    /// A condition over a new [`RLock`] (Python's default).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the system refuses the
    /// shared memory.
    pub fn new() -> Result<Condition> {
        Condition::build(CondLock::RLock(RLock::new()?))
    }

    /// A condition over `lock` (which other code may also use).
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Condition::build(CondLock::Lock(lock))
    }

    /// A condition over the recursive `lock`.
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn with_rlock(lock: RLock) -> Result<Condition> {
        Condition::build(CondLock::RLock(lock))
    }

    fn build(lock: CondLock) -> Result<Condition> {
        let mem = SyncMem::new(Kind::Condition, 0, 0).map_err(|e| create_error("condition", e))?;
        Ok(Condition {
            mem: Arc::new(mem),
            lock,
        })
    }

    fn guard(&self) -> ConditionGuard<'_> {
        ConditionGuard {
            cond: self,
            _not_send: PhantomData,
        }
    }

    fn what(&self) -> &'static str {
        match self.lock {
            CondLock::Lock(_) => "lock",
            CondLock::RLock(_) => "rlock",
        }
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As for [`Lock::acquire`].
    pub fn acquire(&self) -> std::result::Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        acquired(self.lock.mem().lock(None), self.what(), || self.guard())
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`Lock::acquire_timeout`].
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        acquired(self.lock.mem().lock(Some(deadline(timeout))), self.what(), || {
            self.guard()
        })
    }

    /// Acquires the lock without a guard (`None`: as long as it takes).
    ///
    /// # Errors
    ///
    /// As for [`Lock::acquire_unguarded`].
    #[doc(alias = "acquire")]
    pub fn acquire_unguarded(&self, timeout: Option<Duration>) -> std::result::Result<(), AcquireError<()>> {
        acquired(self.lock.mem().lock(timeout.map(deadline)), self.what(), || ())
    }

    /// Releases the lock (one level).
    ///
    /// # Errors
    ///
    /// As for [`Lock::release`].
    pub fn release(&self) -> Result<()> {
        self.lock.mem().unlock().map_err(|e| error(e, self.what()))
    }

    /// Releases the lock, waits for a notification, and takes the lock
    /// back. Spurious returns do not happen: the call returns when this
    /// waiter was notified.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Failed`] with
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) when the
    /// calling thread does not hold the lock; [`AcquireError::OwnerDied`]
    /// when the lock was taken back from a holder that died.
    pub fn wait(&self) -> std::result::Result<(), AcquireError<()>> {
        self.wait_until(None).map(|_| ()).map_err(|e| e.map(|_| ()))
    }

    /// Like [`wait`](Self::wait), for at most `timeout`: `true` when
    /// notified, `false` on timeout (the lock is held again either way).
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Wait {
        self.wait_until(Some(deadline(timeout)))
    }

    fn wait_until(&self, deadline: Option<std::time::Instant>) -> Wait {
        match self.mem.cond_wait(self.lock.mem(), deadline) {
            Ok((notified, Acquired::Clean)) => Ok(notified),
            Ok((notified, Acquired::OwnerDied)) => Err(AcquireError::OwnerDied(notified)),
            Err(e) => Err(AcquireError::Failed(error(e, "condition"))),
        }
    }

    /// Waits until `pred()` holds, for at most `timeout` (`None`: as long
    /// as it takes); returns the predicate's last value (Python's
    /// `wait_for`). `pred` runs with the lock held.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    pub fn wait_for(&self, mut pred: impl FnMut() -> bool, timeout: Option<Duration>) -> Wait {
        let deadline = timeout.map(deadline);
        let mut died = false;
        loop {
            if pred() {
                return if died {
                    Err(AcquireError::OwnerDied(true))
                } else {
                    Ok(true)
                };
            }
            if passed(deadline) {
                return if died {
                    Err(AcquireError::OwnerDied(false))
                } else {
                    Ok(false)
                };
            }
            match self.wait_until(deadline) {
                Ok(_) => {}
                Err(AcquireError::OwnerDied(_)) => died = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Wakes up to `n` waiters (the longest-waiting first).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) when the
    /// calling thread does not hold the lock.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.mem
            .cond_notify(self.lock.mem(), n)
            .map(|_| ())
            .map_err(|e| error(e, "condition"))
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As for [`notify`](Self::notify).
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }
}

impl ConditionGuard<'_> {
    /// [`Condition::wait`].
    ///
    /// # Errors
    ///
    /// As for [`Condition::wait`].
    pub fn wait(&self) -> std::result::Result<(), AcquireError<()>> {
        self.cond.wait()
    }

    /// [`Condition::wait_timeout`].
    ///
    /// # Errors
    ///
    /// As for [`Condition::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Wait {
        self.cond.wait_timeout(timeout)
    }

    /// [`Condition::wait_for`].
    ///
    /// # Errors
    ///
    /// As for [`Condition::wait`].
    pub fn wait_for(&self, pred: impl FnMut() -> bool, timeout: Option<Duration>) -> Wait {
        self.cond.wait_for(pred, timeout)
    }

    /// [`Condition::notify`].
    ///
    /// # Errors
    ///
    /// As for [`Condition::notify`].
    pub fn notify(&self, n: usize) -> Result<()> {
        self.cond.notify(n)
    }

    /// [`Condition::notify_all`].
    ///
    /// # Errors
    ///
    /// As for [`Condition::notify`].
    pub fn notify_all(&self) -> Result<()> {
        self.cond.notify_all()
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        // Cannot fail: this thread holds the lock (the guard is not Send).
        let _ = self.cond.lock.mem().unlock();
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Condition");
        match &self.lock {
            CondLock::Lock(l) => d.field("lock", l),
            CondLock::RLock(l) => d.field("lock", l),
        };
        d.finish()
    }
}

/// On the wire: whether the lock is recursive, then the two descriptors.
#[derive(Serialize, Deserialize)]
struct Passed {
    recursive: bool,
    lock: u32,
    cond: u32,
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let export = |m: &SyncMem| codec::fds::export(m.fd().raw()).map_err(S::Error::custom);
        Passed {
            recursive: matches!(self.lock, CondLock::RLock(_)),
            lock: export(self.lock.mem())?,
            cond: export(&self.mem)?,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Condition, D::Error> {
        use serde::de::Error as _;
        let p = Passed::deserialize(d)?;
        let open = |i, kind| {
            let fd = codec::fds::import(i).map_err(D::Error::custom)?;
            SyncMem::from_fd(fd, kind)
                .map(Arc::new)
                .map_err(|e| D::Error::custom(format!("not a condition: {e}")))
        };
        let lock = if p.recursive {
            CondLock::RLock(RLock {
                mem: open(p.lock, Kind::RLock)?,
            })
        } else {
            CondLock::Lock(Lock {
                mem: open(p.lock, Kind::Lock)?,
            })
        };
        Ok(Condition {
            mem: open(p.cond, Kind::Condition)?,
            lock,
        })
    }
}

// ----- the algorithm -----

impl SyncMem {
    /// Waits for a notification: releases `lock` (every level), sleeps,
    /// takes it again. `(notified, how the lock was taken again)`.
    pub(super) fn cond_wait(&self, lock: &SyncMem, deadline: Option<Instant>) -> Result<(bool, Acquired), SyncError> {
        if !lock.owned_by_me() {
            return Err(SyncError::NotOwner);
        }
        let h = self.hdr();
        let i = self.cond_slot()?;
        let s = &self.page().slots[i];
        let (pid, start) = process_identity();
        let ticket = h.next_ticket.load(SeqCst);
        h.next_ticket.store(ticket + 1, SeqCst);
        s.n.store(ticket, SeqCst);
        s.start.store(start, SeqCst);
        s.pid.store(pid, SeqCst);
        s.tid.store(thread_id(), SeqCst);
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
            if !is_alive(s.pid.load(SeqCst), s.tid.load(SeqCst), s.start.load(SeqCst))
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
    pub(super) fn cond_notify(&self, lock: &SyncMem, n: usize) -> Result<usize, SyncError> {
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
            if !s.holder_alive() {
                s.state.store(FREE, SeqCst);
                continue;
            }
            s.state.store(NOTIFIED, SeqCst);
            futex_wake(&s.state, 1);
            woken += 1;
        }
        Ok(woken)
    }
}
