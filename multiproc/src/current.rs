//! This process, its parent and its children: `current_process()`,
//! `parent_process()`, `active_children()`, `cpu_count()`.

use std::{fmt, sync::Arc, time::Duration};

use crate::{Error, ErrorKind, Result, StartMethod, registry, sys};

/// A snapshot of the running process's identity (Python's
/// `multiprocessing.current_process()`).
#[derive(Clone)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    daemon: bool,
    start_method: Option<StartMethod>,
    authkey: [u8; 32],
}

impl CurrentProcess {
    /// `"MainProcess"` in the main process; the name given by the parent in
    /// a child.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This process's id.
    #[doc(alias = "ident")]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether this process is a daemonic child.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The start method that created this process; `None` in the main
    /// process.
    pub fn start_method(&self) -> Option<StartMethod> {
        self.start_method
    }

    /// The process's authentication key: 32 random bytes made in the main
    /// process and inherited by every child it starts.
    pub fn authkey(&self) -> &[u8; 32] {
        &self.authkey
    }

    /// Always `true`: this process is running.
    pub fn is_alive(&self) -> bool {
        true
    }
}

impl fmt::Debug for CurrentProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The authentication key is secret: never print it.
        f.debug_struct("CurrentProcess")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("daemon", &self.daemon)
            .field("start_method", &self.start_method)
            .finish_non_exhaustive()
    }
}

/// The running process (Python's `current_process()`).
///
/// ```
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// assert!(!me.is_daemon());
/// assert_eq!(me.start_method(), None);
/// ```
pub fn current_process() -> CurrentProcess {
    registry::with_me(|me| CurrentProcess {
        name: me.name.clone(),
        pid: sys::getpid(),
        daemon: me.daemon,
        start_method: me.start_method,
        authkey: me.authkey,
    })
}

/// The process that started this one, seen from a child (Python's
/// `parent_process()`).
#[derive(Clone, Debug)]
pub struct ParentProcess {
    record: Arc<registry::ParentRecord>,
}

impl ParentProcess {
    /// The parent's process id.
    pub fn pid(&self) -> u32 {
        self.record.pid
    }

    /// The parent's name (its `current_process().name()`).
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// `true` while the parent runs.
    pub fn is_alive(&self) -> bool {
        match self.record.watch() {
            // An error from poll means the watch is unusable: report the
            // parent as gone rather than alive forever.
            Some(w) => matches!(w.wait(Some(Duration::ZERO)), Ok(false)),
            None => false,
        }
    }

    /// Waits for the parent to end (Python's `parent_process().join()`).
    pub fn join(&self) -> Result<()> {
        self.wait(None).map(drop)
    }

    /// Waits up to `timeout` for the parent to end; `true` if it has.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait(Some(timeout))
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        match self.record.watch() {
            Some(w) => w
                .wait(timeout)
                .map_err(|e| Error::io("failed to wait for the parent process", e)),
            None => Ok(true),
        }
    }
}

/// The parent of this process if it was started by this library; `None` in
/// the main process.
///
/// ```
/// assert!(multiproc::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    registry::with_me(|me| me.parent.clone()).map(|record| ParentProcess { record })
}

/// A child of this process that is still running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveChild {
    pid: u32,
    name: String,
    daemon: bool,
}

impl ActiveChild {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the child is daemonic.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

/// The children of this process that are still running, after reaping those
/// that ended (Python's `active_children()`).
pub fn active_children() -> Vec<ActiveChild> {
    registry::reap_finished()
        .into_iter()
        .map(|c| ActiveChild {
            pid: c.pid(),
            name: c.name.clone(),
            daemon: c.daemon,
        })
        .collect()
}

/// The number of CPUs in the system (Python's `cpu_count()`).
///
/// # Errors
///
/// [`ErrorKind::Unsupported`] when the system does not say.
pub fn cpu_count() -> Result<usize> {
    sys::cpu_count().ok_or_else(|| Error::new(ErrorKind::Unsupported, "cannot determine the number of CPUs"))
}

/// The number of CPUs this process may use (Python 3.13's
/// `process_cpu_count()`): the CPUs of its affinity mask, further capped by
/// its cgroup's CPU quota (a container limited to 1.5 CPUs counts 2),
/// which Python does not look at. This is the default size of a
/// [`Pool`](crate::Pool) and an [`Executor`](crate::Executor).
///
/// ```
/// let n = multiproc::process_cpu_count()?;
/// assert!(n >= 1 && n <= multiproc::cpu_count()?);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Unsupported`] when the system does not say.
pub fn process_cpu_count() -> Result<usize> {
    let all = cpu_count()?;
    let mut n = sys::affinity_cpu_count().unwrap_or(all).min(all);
    if let Some(limit) = sys::cgroup_cpu_limit() {
        n = n.min((limit.ceil() as usize).max(1));
    }
    Ok(n)
}
