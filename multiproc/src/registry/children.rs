//! The children this process started, shared between their
//! [`Process`](crate::Process) handles and this list (`Arc<ChildCore>`),
//! and Python's exit routine over them.
//!
//! Whoever reaps a child first (its handle, `active_children`, the next
//! `start`, or the exit routine) records the status in the core, so the
//! others see it. A core leaves the list once it is reaped and its handle
//! is gone, or when its handle is closed; until then its descriptors stay
//! listed, which is what lets a fork child close its siblings' descriptors
//! by number.

use std::{
    sync::{Arc, Mutex, MutexGuard, Once},
    time::{Duration, Instant},
};

use crate::{
    process::status::ExitStatus,
    sys::{self, ChildHandle, Fd},
};

/// A started child, shared by its handle and the registry.
#[derive(Debug)]
pub(crate) struct ChildCore {
    pub(crate) handle: ChildHandle,
    /// Parent end of the child's bootstrap socket.
    pub(crate) sock: Fd,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    status: Mutex<Option<ExitStatus>>,
}

impl ChildCore {
    pub(crate) fn new(handle: ChildHandle, sock: Fd, name: String, daemon: bool) -> ChildCore {
        ChildCore {
            handle,
            sock,
            name,
            daemon,
            status: Mutex::new(None),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.handle.pid()
    }

    /// The exit status, reaping the child if it has ended.
    pub(crate) fn try_status(&self) -> std::io::Result<Option<ExitStatus>> {
        let mut status = lock(&self.status);
        if status.is_none() {
            *status = self.handle.try_reap()?.map(ExitStatus::from_raw);
        }
        Ok(*status)
    }

    /// Waits up to `timeout` (forever if `None`) for the child to end.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> std::io::Result<Option<ExitStatus>> {
        if let Some(s) = self.try_status()? {
            return Ok(Some(s));
        }
        if self.handle.poll_exit(timeout)? {
            // pidfd readiness means the child is a zombie: reaping succeeds.
            return self.try_status();
        }
        Ok(None)
    }
}

static CHILDREN: Mutex<Vec<Arc<ChildCore>>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent even if a holder panicked: every update is
    // a single assignment or push.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_children<T>(f: impl FnOnce(&mut Vec<Arc<ChildCore>>) -> T) -> T {
    f(&mut lock(&CHILDREN))
}

/// The list, locked: for the duration of a fork.
pub(super) fn locked() -> MutexGuard<'static, Vec<Arc<ChildCore>>> {
    lock(&CHILDREN)
}

/// Adds a started child.
pub(crate) fn register(core: Arc<ChildCore>) {
    ATEXIT.call_once(|| {
        // If registration fails, children are still reaped by their handles
        // and daemons still die with this process; only the Python-style
        // join at exit is lost, which is not worth failing a start for.
        let _ = sys::atexit(exit_hook);
    });
    with_children(|c| c.push(core));
}

/// Drops the registry's reference to `core` (its handle was closed, or it
/// was reaped and its handle dropped).
pub(crate) fn unregister(core: &Arc<ChildCore>) {
    with_children(|c| c.retain(|c| !Arc::ptr_eq(c, core)));
}

/// Reaps every finished child; forgets those whose handle is gone. Returns
/// the children still running.
pub(crate) fn reap_finished() -> Vec<Arc<ChildCore>> {
    let children: Vec<_> = with_children(|c| c.clone());
    let mut alive = Vec::new();
    let mut done = Vec::new();
    for c in children {
        // An error here means the pidfd is unusable; treat the child as
        // gone rather than keep polling a broken handle.
        match c.try_status() {
            Ok(None) => alive.push(c),
            _ => done.push(c),
        }
    }
    // Strong counts: `done` + the registry = 2 means no handle holds it.
    with_children(|children| children.retain(|c| !done.iter().any(|d| Arc::ptr_eq(c, d) && Arc::strong_count(c) <= 2)));
    alive
}

/// Python's exit routine: terminate daemonic children, then wait for all
/// children. Runs at normal exit of any process (through `atexit`) and at
/// the end of every child the library started.
pub(crate) fn exit_routine() {
    let alive = reap_finished();
    let daemons: Vec<_> = alive.iter().filter(|c| c.daemon).collect();
    for c in &daemons {
        // A failure means the child is gone already, or cannot be
        // signalled (EPERM): the waits below are bounded either way.
        let _ = c.handle.signal(sys::SIGTERM);
    }
    // One grace period for all daemons together, not one each: a daemon
    // that ignores SIGTERM (or cannot be signalled) is killed after it
    // rather than holding up the exit of its parent, and N such daemons
    // cost one period, not N.
    let grace = Instant::now() + DAEMON_GRACE;
    let mut stubborn = Vec::new();
    for c in &daemons {
        let left = grace.saturating_duration_since(Instant::now());
        if !matches!(c.wait(Some(left)), Ok(Some(_))) {
            let _ = c.handle.signal(sys::SIGKILL);
            stubborn.push(c);
        }
    }
    let reaped = Instant::now() + DAEMON_GRACE;
    for c in stubborn {
        let _ = c.wait(Some(reaped.saturating_duration_since(Instant::now())));
    }
    for c in alive.iter().filter(|c| !c.daemon) {
        // Python semantics: the parent waits for non-daemonic children.
        let _ = c.wait(None);
    }
}

/// How long the exit routine lets its daemons react to `SIGTERM`, all
/// together, and then to `SIGKILL`.
const DAEMON_GRACE: Duration = Duration::from_secs(5);

extern "C" fn exit_hook() {
    // Never unwind across the C boundary of atexit.
    let _ = std::panic::catch_unwind(exit_routine);
}
