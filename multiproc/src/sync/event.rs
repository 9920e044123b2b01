//! [`Event`].

use std::{
    fmt,
    sync::{Arc, atomic::Ordering::SeqCst},
    time::{Duration, Instant},
};

use super::{
    by_descriptor, create_error,
    shared::{Kind, SLICE, SyncMem, spin_until},
};
use crate::{
    error::Result,
    sys::{deadline_after as deadline, futex_wait, futex_wake_all, passed},
};

/// A flag shared by processes that can be waited for (Python's
/// `multiprocessing.Event`).
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Event, Process};
///
/// fn child(go: Event) {
///     go.set();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let go = Event::new()?;
/// let mut p = Process::with_args(child, go.clone());
/// p.start()?;
/// assert!(go.wait_timeout(Duration::from_secs(30)));
/// p.join()?;
/// # Ok(()) }
/// ```
///
/// There is no lock inside: a process killed at any point leaves it
/// usable.
#[derive(Clone)]
pub struct Event {
    mem: Arc<SyncMem>,
}

impl Event {
    /// A new, unset event.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the system refuses the
    /// shared memory.
    pub fn new() -> Result<Event> {
        let mem = SyncMem::new(Kind::Event, 0, 0).map_err(|e| create_error("event", e))?;
        Ok(Event { mem: Arc::new(mem) })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.mem.event_set()
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.mem.event_clear()
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.mem.event_is_set()
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.mem.event_wait(None);
    }

    /// Waits at most `timeout` for the flag; `true` if it is set, or was
    /// set while waiting (even if cleared since), `false` on timeout.
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.mem.event_wait(Some(deadline(timeout)))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

by_descriptor!(Event, Event, |mem| Event { mem });

// ----- the algorithm: a flag and a sequence word, no lock -----

impl SyncMem {
    /// Sets the flag and wakes every waiter.
    pub(super) fn event_set(&self) {
        let h = self.hdr();
        if h.flag.swap(1, SeqCst) == 0 {
            h.seq.fetch_add(1, SeqCst);
            if h.waiters.load(SeqCst) != 0 {
                futex_wake_all(&h.seq);
            }
        }
    }

    /// Clears the flag.
    pub(super) fn event_clear(&self) {
        self.hdr().flag.store(0, SeqCst);
    }

    /// Whether the flag is set.
    pub(super) fn event_is_set(&self) -> bool {
        self.hdr().flag.load(SeqCst) != 0
    }

    /// Waits until the flag is set (or was set since the call began);
    /// `false` when the deadline passed first.
    pub(super) fn event_wait(&self, deadline: Option<Instant>) -> bool {
        let h = self.hdr();
        let seen = h.seq.load(SeqCst);
        let done = || h.flag.load(SeqCst) != 0 || h.seq.load(SeqCst) != seen;
        if spin_until(done, deadline) {
            return true;
        }
        loop {
            h.waiters.fetch_add(1, SeqCst);
            if !done() {
                futex_wait(&h.seq, seen, deadline, SLICE);
            }
            h.waiters.fetch_sub(1, SeqCst);
            if done() {
                return true;
            }
            if passed(deadline) {
                return false;
            }
        }
    }
}
