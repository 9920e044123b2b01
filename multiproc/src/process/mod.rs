//! [`Process`]: run a function in a child process.

mod builder;
pub(crate) mod executable;
mod join;
mod launch;
pub(crate) mod status;

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};

pub(crate) use self::status::{SIGKILL, SIGTERM};
pub use self::{builder::ProcessBuilder, status::ExitStatus};
use crate::{
    Error, ErrorKind, Result, StartMethod, frame,
    output::{self, ChildOutput},
    registry::{self, ChildCore},
    sys,
    target::Call,
};

/// A function running (or to run) in a child process: Python's
/// `multiprocessing.Process`, with a typed result.
///
/// `R` is the target's return type; [`join`](Process::join) hands it back.
///
/// # Examples
///
/// The seed program: start a child, ask whether it lives, wait for it.
///
/// ```
/// use multiproc as mp;
///
/// fn task() -> u32 {
///     // Runs in the child.
///     std::process::id()
/// }
///
/// # fn main() -> mp::Result<()> {
/// let mut child = mp::Process::new(task);
/// child.start()?;
/// let pid = child.pid().expect("started");
/// let seen_by_child = child.join()?;
/// assert_eq!(seen_by_child, pid);
/// assert!(!child.is_alive());
/// assert_eq!(child.exitcode(), Some(0));
/// # Ok(()) }
/// ```
///
/// # Dropping
///
/// Dropping a handle does not stop the child, as in Python and as with
/// `std::thread::JoinHandle`: the child runs on, is reaped by the next
/// [`start`](Process::start) or [`active_children`](crate::active_children)
/// of this process or at its exit, and, unless daemonic, is waited for when
/// this process exits normally.
pub struct Process<R> {
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    method: Option<StartMethod>,
    allow_threads: bool,
    bootstrap_timeout: Duration,
    backtrace: Option<bool>,
    output: ChildOutput,
    /// What this process keeps of the child's output once started.
    attached: output::Attached,
    creator: u32,
    state: State,
    /// A fork-server request sent ahead (see [`Process::start_requested`]).
    requested: Option<crate::forkserver::Requested>,
    _result: PhantomData<fn() -> R>,
}

enum State {
    Initial(Box<dyn Call>),
    Started(Box<Running>),
    Closed {
        pid: Option<u32>,
        status: Option<ExitStatus>,
    },
}

struct Running {
    core: Arc<ChildCore>,
    method: StartMethod,
    reader: frame::Reader,
    /// A spawned child confirmed it reached the entry point (always true
    /// for fork).
    ready: bool,
    started: Instant,
    outcome: Option<Vec<u8>>,
    /// The child was killed for missing the bootstrap timeout: every later
    /// join reports that again, not the SIGKILL it died of.
    boot_timed_out: bool,
}

impl<R> Process<R>
where
    R: Serialize + DeserializeOwned + 'static,
{
    /// A process that will run `target()` with default options. See
    /// [`ProcessBuilder`] for the others.
    pub fn new(target: fn() -> R) -> Process<R> {
        ProcessBuilder::new().target(target)
    }

    /// A process that will run `target(args)` with default options.
    pub fn with_args<A>(target: fn(A) -> R, args: A) -> Process<R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        ProcessBuilder::new().target_with(target, args)
    }

    /// A process that will run a capturing closure, under the `fork` start
    /// method (see [`ProcessBuilder::closure`]).
    pub fn from_closure<F>(f: F) -> Process<R>
    where
        F: FnOnce() -> R + Send + 'static,
    {
        ProcessBuilder::new().closure(f)
    }

    /// [`start`](Self::start), using a fork-server request the caller sent
    /// ahead (it reads the answer now); under another start method the
    /// request is dropped (the server's child exits unused).
    pub(crate) fn start_requested(&mut self, requested: crate::forkserver::Requested) -> Result<()> {
        self.requested = Some(requested);
        let r = self.start();
        self.requested = None;
        r
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if the process was started or closed
    /// already, was created by another process, or this process is
    /// daemonic; [`ErrorKind::Serialize`] if the arguments cannot be
    /// serialised (nothing is started then, and `start` may be called
    /// again); [`ErrorKind::ForkWithThreads`] for `fork` in a
    /// multithreaded parent; [`ErrorKind::Unsupported`] for a closure under
    /// `spawn`; [`ErrorKind::Io`] if the system refuses a new process.
    pub fn start(&mut self) -> Result<()> {
        let call = match std::mem::replace(
            &mut self.state,
            State::Closed {
                pid: None,
                status: None,
            },
        ) {
            State::Initial(call) => call,
            other => {
                let closed = matches!(other, State::Closed { .. });
                self.state = other;
                return Err(self.err(
                    ErrorKind::InvalidState,
                    if closed {
                        "process object is closed"
                    } else {
                        "cannot start a process twice"
                    },
                ));
            }
        };
        let span = crate::trace::start(&self.name, self.start_method());
        match self.launch(call) {
            Ok(running) => {
                span.record_pid(running.core.pid());
                self.state = State::Started(Box::new(running));
                Ok(())
            }
            Err((e, call)) => {
                if let Some(call) = call {
                    self.state = State::Initial(call);
                }
                Err(e)
            }
        }
    }

    /// Waits for the child to end and returns the target's result.
    ///
    /// It may be called again: it returns the same outcome each time (the
    /// value is decoded anew from the bytes the child sent, which the handle
    /// keeps until it is closed or dropped).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ChildPanicked`] with the child's [`RemotePanic`](crate::RemotePanic);
    /// [`ErrorKind::ChildExited`] if the child exited (say through
    /// `std::process::exit`) without returning; [`ErrorKind::ChildKilled`]
    /// if a signal ended it; [`ErrorKind::Bootstrap`] if it died or stalled
    /// before reaching the library's entry point; [`ErrorKind::Serialize`]
    /// or [`ErrorKind::Deserialize`] if a value could not cross;
    /// [`ErrorKind::InvalidState`] before [`start`](Process::start) or
    /// after [`close`](Process::close).
    pub fn join(&mut self) -> Result<R> {
        self.join_inner(None)
    }

    /// Like [`join`](Process::join), but gives up after `timeout`, leaving
    /// the child running, with an [`ErrorKind::Timeout`] error. Calling it
    /// again later is safe: nothing is lost.
    ///
    /// A zero timeout only polls.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R> {
        self.join_inner(Some(timeout))
    }
}

impl<R> Process<R> {
    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the process in this handle (Python lets `name` be set at any
    /// time; the child keeps the name it started with).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Whether the process is daemonic.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The start method: the one used once started, else the one that will
    /// be used.
    pub fn start_method(&self) -> StartMethod {
        match &self.state {
            State::Started(run) => run.method,
            _ => self.method.unwrap_or_else(crate::context::get_start_method),
        }
    }

    /// The child's process id; `None` before [`start`](Process::start).
    #[doc(alias = "ident")]
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Initial(_) => None,
            State::Started(run) => Some(run.core.pid()),
            State::Closed { pid, .. } => *pid,
        }
    }

    /// `true` from [`start`](Process::start) until the child has ended.
    /// Reaps the child if it has.
    ///
    /// A copy of the handle in another process (a fork child) is not the
    /// child's parent and answers `false`.
    pub fn is_alive(&self) -> bool {
        // An unusable pidfd cannot tell; the child is then treated as gone.
        self.own_child()
            .is_some_and(|run| matches!(run.core.try_status(), Ok(None)))
    }

    /// The started child, if this process is its parent. A handle copied
    /// into a fork child refers to descriptors that process closed: using
    /// them could wait for, or signal, an unrelated process.
    fn own_child(&self) -> Option<&Running> {
        match &self.state {
            State::Started(run) if self.creator == sys::getpid() => Some(run),
            _ => None,
        }
    }

    /// A descriptor that becomes readable when the child ends (Python's
    /// `sentinel`; a pidfd, so a grandchild holding inherited descriptors
    /// cannot keep it from firing). `None` before start, and in a process
    /// other than the one that started the child. Give it, or the process
    /// itself, to [`wait`](crate::wait).
    #[cfg(unix)]
    pub fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.own_child().map(|run| run.core.handle.pidfd())
    }

    /// A handle that is signalled when the child ends (Python's
    /// `sentinel`: the process handle). `None` before start, and in a
    /// process other than the one that started the child. Give it, or the
    /// process itself, to [`wait`](crate::wait).
    #[cfg(windows)]
    pub fn sentinel(&self) -> Option<std::os::windows::io::BorrowedHandle<'_>> {
        self.own_child().map(|run| run.core.handle.process_handle())
    }

    /// The sentinel's number, as [`wait`](crate::wait) and the pool poll it.
    pub(crate) fn sentinel_fd(&self) -> Option<sys::RawFd> {
        self.own_child().map(|run| run.core.handle.raw_fd())
    }

    /// How the child ended; `None` before start and while it runs.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match &self.state {
            State::Started(_) => self.own_child().and_then(|run| run.core.try_status().ok().flatten()),
            State::Initial(_) => None,
            State::Closed { status, .. } => *status,
        }
    }

    /// Python's `exitcode`: `None` before start and while running, `0`
    /// after a normal return, `1` after a panic, `n` after
    /// `std::process::exit(n)` (truncated to 0..=255 by the system), `-N`
    /// when killed by signal `N`.
    pub fn exitcode(&self) -> Option<i32> {
        self.exit_status().map(ExitStatus::exitcode)
    }

    /// What the child has written to its standard output and error so far,
    /// all of it once the child has ended (even when it crashed or was
    /// killed). Only for a process started with [`ChildOutput::Capture`];
    /// it stays readable after [`close`](Process::close), until the handle
    /// is dropped.
    ///
    /// ```
    /// use multiproc::{ChildOutput, ProcessBuilder};
    ///
    /// fn crash() {
    ///     println!("before the crash");
    ///     std::process::abort();
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = ProcessBuilder::new().output(ChildOutput::Capture).target(crash);
    /// p.start()?;
    /// assert!(p.join().is_err());
    /// assert_eq!(p.stdout()?, b"before the crash\n");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] before [`start`](Process::start), or if
    /// the output is not captured; [`ErrorKind::Io`] if it cannot be read.
    pub fn output(&self) -> Result<crate::CapturedOutput> {
        self.read_captured(output::Attached::captured)
    }

    /// What the child has written to its standard output so far (see
    /// [`output`](Process::output)).
    pub fn stdout(&self) -> Result<Vec<u8>> {
        self.read_captured(|a| a.captured_stream(1))
    }

    /// What the child has written to its standard error so far (see
    /// [`output`](Process::output)).
    pub fn stderr(&self) -> Result<Vec<u8>> {
        self.read_captured(|a| a.captured_stream(2))
    }

    fn read_captured<T>(&self, read: impl FnOnce(&output::Attached) -> Option<std::io::Result<T>>) -> Result<T> {
        if matches!(self.state, State::Initial(_)) {
            return Err(self.err(ErrorKind::InvalidState, "process not started"));
        }
        match read(&self.attached) {
            Some(r) => {
                r.map_err(|e| Error::io("failed to read the child's output", e).with_process(&self.name, self.pid()))
            }
            None => Err(self.err(
                ErrorKind::InvalidState,
                "the child's output is not captured (see ProcessBuilder::output)",
            )),
        }
    }

    /// Asks the child to stop with `SIGTERM`. The child may still be alive
    /// right after; [`join`](Process::join) to wait. Stopping a child that
    /// already ended does nothing.
    pub fn terminate(&self) -> Result<()> {
        self.signal(SIGTERM)
    }

    /// Stops the child with `SIGKILL`, which it cannot ignore.
    pub fn kill(&self) -> Result<()> {
        self.signal(SIGKILL)
    }

    fn signal(&self, sig: i32) -> Result<()> {
        match &self.state {
            State::Started(_) if self.creator != sys::getpid() => {
                Err(self.err(ErrorKind::InvalidState, "can only signal a child process"))
            }
            State::Started(run) => {
                if matches!(run.core.try_status(), Ok(Some(_))) {
                    return Ok(());
                }
                run.core.handle.signal(sig).map_err(|e| {
                    Error::io("failed to signal the child", e).with_process(&self.name, Some(run.core.pid()))
                })
            }
            State::Initial(_) => Err(self.err(ErrorKind::InvalidState, "process not started")),
            State::Closed { .. } => Err(self.err(ErrorKind::InvalidState, "process object is closed")),
        }
    }

    /// Releases the handle's system resources. The child must have ended;
    /// afterwards [`pid`](Process::pid) and [`exit_status`](Process::exit_status)
    /// still answer, while [`start`](Process::start), [`join`](Process::join)
    /// and signals fail with [`ErrorKind::InvalidState`]. Closing twice is
    /// allowed.
    pub fn close(&mut self) -> Result<()> {
        let status = match &self.state {
            State::Started(_) if self.creator != sys::getpid() => {
                return Err(self.err(ErrorKind::InvalidState, "can only close a child process"));
            }
            State::Initial(_) => None,
            State::Closed { .. } => return Ok(()),
            State::Started(run) => match run.core.try_status() {
                Ok(Some(s)) => Some(s),
                _ => {
                    return Err(self.err(
                        ErrorKind::InvalidState,
                        "cannot close a process while it is still running; call join() or terminate() first",
                    ));
                }
            },
        };
        if let State::Started(run) = &self.state {
            registry::unregister(&run.core);
        }
        let pid = self.pid();
        self.state = State::Closed { pid, status };
        Ok(())
    }

    fn err(&self, kind: ErrorKind, msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
        Error::new(kind, msg).with_process(&self.name, self.pid())
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        if let State::Started(run) = &self.state {
            if self.creator == sys::getpid() && matches!(run.core.try_status(), Ok(Some(_))) {
                registry::unregister(&run.core);
            }
        }
    }
}

impl<R> fmt::Debug for Process<R> {
    /// Shows what Python's `repr` shows: name, pid, state, exit code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Process");
        d.field("name", &self.name);
        match &self.state {
            State::Initial(_) => {
                d.field("state", &"initial");
            }
            State::Started(run) => {
                d.field("pid", &run.core.pid());
                match self.exit_status() {
                    Some(s) => d.field("state", &format_args!("stopped exitcode={}", s.exitcode_name())),
                    None => d.field("state", &"started"),
                };
            }
            State::Closed { pid, .. } => {
                d.field("pid", pid).field("state", &"closed");
            }
        }
        d.field("daemon", &self.daemon).finish()
    }
}

/// Creates and starts a process running `target(args)` (Python's
/// `Process(target=f, args=a).start()` in one call).
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let mut p = multiproc::spawn(|(a, b): (i32, i32)| a + b, (2, 3))?;
/// assert_eq!(p.join()?, 5);
/// # Ok(()) }
/// ```
pub fn spawn<A, R>(target: fn(A) -> R, args: A) -> Result<Process<R>>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    let mut p = Process::with_args(target, args);
    p.start()?;
    Ok(p)
}

#[cfg(test)]
mod tests;
