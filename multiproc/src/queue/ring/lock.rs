//! Taking the ring's lock: the shared robust mutex, then this handle's
//! data mapping, then the active state.
//!
//! # Deadlines
//!
//! `None` waits forever; `Some(t)` waits for the condition (not full, not
//! empty, all done) until `t`, so a past `t` does not wait for it at all.
//! The lock itself is awaited until `max(t, now + LOCK_GRACE)`: a lock held
//! for a few hundred nanoseconds by another process must not turn a
//! non-blocking call into a spurious `Timeout`, and one held by a stopped
//! process must not hang a call that has a deadline (the backend's lock
//! spins briefly, then sleeps in slices checked against the monotonic
//! deadline).
//!
//! # Threads and fork
//!
//! The local mapping is behind a std `Mutex`, taken (with `try_lock`) only
//! while holding the shared lock and released before it, so it is never
//! contended. A child forked while another thread of its parent held it
//! (possible only through the `unsafe` multithreaded-fork opt-in) gets an
//! error instead of a deadlock. The mutex is error-checking: a ring call
//! made from inside one of its own callbacks is an error, not a deadlock.

use std::{
    io,
    sync::{MutexGuard, TryLockError, atomic::Ordering::SeqCst},
    time::{Duration, Instant},
};

use super::{
    RingError, ShmRing,
    layout::{BROKEN_LOCK, DataMap, State, broken_message},
};
use crate::sys;

/// Longest single sleep (on the lock or a futex) before rechecking.
pub(super) const SLICE: Duration = Duration::from_secs(1);
/// How long a call whose deadline has passed still waits for the lock.
const LOCK_GRACE: Duration = Duration::from_millis(50);

#[cfg(test)]
thread_local! {
    /// The fail point at which this thread dies (tests only).
    pub(super) static DIE_AT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// How to take the lock.
#[derive(Clone, Copy)]
pub(super) enum LockWait {
    /// Block until it is free.
    Forever,
    /// Block until this instant.
    Until(Instant),
    /// Do not block.
    Try,
}

impl ShmRing {
    /// Takes the lock for an operation with `deadline` (see the module docs
    /// for the grace given to past deadlines).
    pub(super) fn lock(&self, deadline: Option<Instant>) -> Result<Locked<'_>, RingError> {
        let how = match deadline {
            None => LockWait::Forever,
            Some(d) => LockWait::Until(d.max(Instant::now() + LOCK_GRACE)),
        };
        self.lock_with(how)
    }

    /// Takes the lock, recovers from a dead owner, checks the state and
    /// remaps the data if it grew; `Timeout` when the lock stayed busy.
    #[inline]
    pub(super) fn lock_with(&self, how: LockWait) -> Result<Locked<'_>, RingError> {
        // The backend's lock spins briefly before sleeping in the kernel,
        // and sleeps one slice at a time against the monotonic deadline.
        let got = self.mutex.lock(match how {
            LockWait::Forever => None,
            LockWait::Try => Some(Instant::now()),
            LockWait::Until(deadline) => Some(deadline),
        });
        let hdr = self.hdr();
        match got {
            Ok(sys::Locked::Clean) => {}
            // The backend made the mutex consistent; the state is validated
            // below, before anyone uses it (see the recovery module).
            Ok(sys::Locked::OwnerDied) => hdr.needs_check.store(1, SeqCst),
            Err(sys::LockError::Timeout) => return Err(RingError::Timeout),
            Err(sys::LockError::NotRecoverable) => {
                let _ = hdr.broken.compare_exchange(0, BROKEN_LOCK, SeqCst, SeqCst);
                self.wake_all();
                return Err(RingError::Broken(broken_message(hdr.broken.load(SeqCst))));
            }
            Err(sys::LockError::Deadlock) => {
                return Err(RingError::Io(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "a queue operation was called from inside one of its own callbacks",
                )));
            }
            Err(sys::LockError::Io(e)) => return Err(RingError::Io(e)),
        }
        // From here the guard unlocks on every path.
        let mut g = Locked {
            ring: self,
            map: None,
            st: State::default(),
            active: 0,
            #[cfg(test)]
            leak: false,
        };
        g.map = Some(match self.data.try_lock() {
            Ok(map) => map,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(RingError::Io(io::Error::other(
                    "the queue's local mapping was in use when this process was forked",
                )));
            }
        });
        let broken = hdr.broken.load(std::sync::atomic::Ordering::Acquire);
        if broken != 0 {
            return Err(RingError::Broken(broken_message(broken)));
        }
        if hdr.needs_check.load(SeqCst) != 0 {
            g.recover()?;
        } else {
            g.load()?;
        }
        Ok(g)
    }
}

/// The lock held, with this handle's data mapping and a local copy of the
/// active state. Dropping it releases both (the local mapping first, so
/// another thread of this process that takes the shared lock finds the
/// local one free).
pub(super) struct Locked<'a> {
    /// The ring.
    pub(super) ring: &'a ShmRing,
    /// The local mapping; `Some` except while being built or dropped.
    pub(super) map: Option<MutexGuard<'a, DataMap>>,
    /// The state being edited.
    pub(super) st: State,
    /// The slot `st` was read from.
    pub(super) active: u32,
    /// Set by a test's fail point: keep the lock, as a killed process would.
    #[cfg(test)]
    pub(super) leak: bool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        drop(self.map.take());
        #[cfg(test)]
        if self.leak {
            return;
        }
        // Only the holder drops a guard; a refusal would mean a bug here.
        let _ = self.ring.mutex.unlock();
    }
}

impl Locked<'_> {
    /// In tests, dies at `point` if this thread asked to (see `DIE_AT`):
    /// unwinds keeping the lock, so the next locker sees `EOWNERDEAD` with
    /// the shared memory exactly as a process killed there leaves it.
    #[cfg(test)]
    pub(super) fn fail_point(&mut self, point: &'static str) {
        if DIE_AT.with(|d| d.get()) == Some(point) {
            self.leak = true;
            panic!("died at {point}");
        }
    }

    /// Outside tests, nothing.
    #[cfg(not(test))]
    #[inline(always)]
    pub(super) fn fail_point(&mut self, _point: &'static str) {}

    /// The data mapping.
    pub(super) fn map(&self) -> &DataMap {
        self.map.as_ref().expect("the mapping is held while locked")
    }
}
