//! [`Event`].

use std::{fmt, sync::Arc, time::Duration};

use super::{by_descriptor, create_error};
use crate::{
    connection::deadline,
    error::Result,
    sys::{SyncKind, SyncMem},
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
        let mem = SyncMem::new(SyncKind::Event, 0, 0).map_err(|e| create_error("event", e))?;
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
