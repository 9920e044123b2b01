//! [`Process`]: run a function in a child process.

pub(crate) mod executable;
pub(crate) mod status;

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};

pub use self::status::ExitStatus;
pub(crate) use self::status::{SIGKILL, SIGTERM};
use crate::{
    Error, ErrorKind, Result, StartMethod, child,
    codec::{self, CodecError},
    entry::{
        protocol::{self, Boot, Message, PROTOCOL},
        role::{self, Role},
    },
    frame,
    outcome::{Failure, Outcome, OutcomeRef},
    output::{self, ChildOutput},
    registry::{self, ChildCore, Me},
    sys::{self, ForkSide},
    target::{self, Call, ClosureCall, FnCall0, FnCall1},
};

use crate::frame::SOCKET_BUFFER;

/// Options for a new [`Process`], in the manner of
/// `std::thread::Builder`.
///
/// ```
/// use multiproc as mp;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// # fn main() -> mp::Result<()> {
/// let mut p = mp::ProcessBuilder::new().name("squarer").target_with(square, 12);
/// p.start()?;
/// assert_eq!(p.join()?, 144);
/// assert_eq!(p.name(), "squarer");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until a target is given"]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    allow_threads: bool,
    bootstrap_timeout: Option<Duration>,
    backtrace: Option<bool>,
    output: ChildOutput,
}

impl ProcessBuilder {
    /// Default options: a `Process-N` name, not daemonic, the default start
    /// method.
    pub fn new() -> ProcessBuilder {
        ProcessBuilder::default()
    }

    /// Names the process (Python's `name=`); the default is `Process-N`,
    /// `Process-N:M` for a child's child.
    pub fn name(mut self, name: impl Into<String>) -> ProcessBuilder {
        self.name = Some(name.into());
        self
    }

    /// Makes the child daemonic: it is terminated when this process exits
    /// normally, killed when this process dies any other way (even by
    /// `SIGKILL`), and may not start children of its own.
    ///
    /// # Platform-specific behavior
    ///
    /// On Linux a daemonic child ends with its parent through the kernel's
    /// parent-death signal, `SIGRTMIN() + 2` (36 with glibc), and a handler
    /// that exits the child (with status 1) once its parent is gone; no
    /// thread is started for it. In the child, do not install a handler for
    /// that signal, ignore it or block it in every thread: the child would
    /// then outlive its parent. The kernel also sends the signal when only
    /// the thread of this process that started the child exits (the
    /// handler then returns), so a blocking call in the child that the
    /// kernel does not restart (a socket read with a timeout, `poll`) may
    /// fail once with [`std::io::ErrorKind::Interrupted`]. A child started
    /// by the fork server ends with its parent, not with the server: if
    /// the server is killed, the child runs on (the same signal may then
    /// interrupt such a call once more, when the server dies). The kernel
    /// clears the parent-death signal when the child changes its effective
    /// user or group ID (or its capabilities): such a child is still
    /// terminated when its parent exits normally (the exit routine), but
    /// no longer when the parent is killed.
    pub fn daemon(mut self, daemon: bool) -> ProcessBuilder {
        self.daemon = daemon;
        self
    }

    /// Chooses how the child is created. The default is this process's
    /// default start method ([`get_start_method`](crate::get_start_method),
    /// [`StartMethod::Spawn`] unless set otherwise).
    pub fn start_method(mut self, method: StartMethod) -> ProcessBuilder {
        self.method = Some(method);
        self
    }

    /// How long a spawned child may take to reach the library's entry point
    /// before it is killed and [`ErrorKind::Bootstrap`] is reported (default
    /// 30 s). A child only misses it when its entry point is not installed
    /// (see the crate docs on `auto-entry`) or the machine is overloaded.
    pub fn bootstrap_timeout(mut self, timeout: Duration) -> ProcessBuilder {
        self.bootstrap_timeout = Some(timeout);
        self
    }

    /// Whether the child captures a backtrace when its target panics
    /// ([`RemotePanic::backtrace`](crate::RemotePanic::backtrace)).
    /// By default it follows the environment, as std's
    /// [`Backtrace::capture`](std::backtrace::Backtrace::capture) does
    /// (`RUST_LIB_BACKTRACE`, then `RUST_BACKTRACE`, which a child
    /// inherits); `true` or `false` decides for this child alone.
    ///
    /// ```
    /// use multiproc::ProcessBuilder;
    ///
    /// fn fails() {
    ///     panic!("no input");
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = ProcessBuilder::new().capture_backtrace(true).target(fails);
    /// p.start()?;
    /// let e = p.join().unwrap_err();
    /// assert!(e.panic().and_then(|p| p.backtrace()).is_some());
    /// # Ok(()) }
    /// ```
    pub fn capture_backtrace(mut self, capture: bool) -> ProcessBuilder {
        self.backtrace = Some(capture);
        self
    }

    /// Where the child's standard output and error go: inherited (the
    /// default), each line prefixed with the child's name, or captured for
    /// [`Process::output`]. See [`ChildOutput`].
    ///
    /// ```
    /// use multiproc::{ChildOutput, ProcessBuilder};
    ///
    /// fn greet() {
    ///     println!("hello");
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// // Prints "[greeter] hello" on this process's standard output.
    /// let mut p = ProcessBuilder::new().name("greeter").output(ChildOutput::Prefix).target(greet);
    /// p.start()?;
    /// p.join()?;
    /// # Ok(()) }
    /// ```
    pub fn output(mut self, output: ChildOutput) -> ProcessBuilder {
        self.output = output;
        self
    }

    /// Allows the `fork` start method while this process runs more than one
    /// thread.
    ///
    /// # Safety
    ///
    /// The child of a fork holds a copy of only the calling thread. Locks
    /// held by other threads at the instant of the fork stay locked forever
    /// in the child: their memory was copied, their owners were not. In the
    /// child, the target (and the destructors it runs) may therefore use
    /// only what no other thread of the parent could have been holding:
    /// no `Mutex` or `RwLock` shared with other threads, no `stdout`/`stderr`
    /// lock that another thread may hold (`println!` included), no runtime
    /// (tokio, rayon) started by the parent, and no C library that keeps
    /// internal locks. Memory allocation is safe with glibc, whose allocator
    /// re-initialises its locks in the child. The library's own state is
    /// locked across the fork, so the library itself stays usable.
    /// The same rules apply to std's `CommandExt::pre_exec`.
    #[allow(unsafe_code)] // an unsafe contract, no unsafe operation
    pub unsafe fn allow_fork_with_threads(mut self) -> ProcessBuilder {
        self.allow_threads = true;
        self
    }

    /// A process that runs `target()`: a plain function or a closure that
    /// captures nothing.
    ///
    /// A capturing closure does not coerce to `fn() -> R` and is refused at
    /// compile time:
    ///
    /// ```compile_fail,E0308
    /// let n = 5;
    /// let _p = multiproc::ProcessBuilder::new().target(move || n + 1);
    /// ```
    pub fn target<R>(self, target: fn() -> R) -> Process<R>
    where
        R: Serialize + DeserializeOwned + 'static,
    {
        self.build(Box::new(FnCall0 { f: target }))
    }

    /// A process that runs `target(args)`. Several arguments travel as a
    /// tuple: `target_with(add, (1, 2))` with `fn add((a, b): (i32, i32))`.
    ///
    /// Arguments must be serialisable for `spawn`; a value that fails to
    /// serialise is reported by [`Process::start`]:
    ///
    /// ```compile_fail,E0277
    /// struct NotSerde;
    /// fn f(_: NotSerde) {}
    /// let _p = multiproc::ProcessBuilder::new().target_with(f, NotSerde);
    /// ```
    pub fn target_with<A, R>(self, target: fn(A) -> R, args: A) -> Process<R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.build(Box::new(FnCall1 { f: target, args }))
    }

    /// A process that runs a closure, which may capture anything. Only the
    /// [`Fork`](StartMethod::Fork) start method can carry captured state,
    /// so it becomes this process's start method unless another is set, in
    /// which case [`Process::start`] fails with [`ErrorKind::Unsupported`].
    pub fn closure<F, R>(mut self, f: F) -> Process<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.method.get_or_insert(StartMethod::Fork);
        self.build(Box::new(ClosureCall { f }))
    }

    fn build<R>(self, call: Box<dyn Call>) -> Process<R> {
        let (identity, default_name) = registry::next_identity();
        Process {
            name: self.name.unwrap_or(default_name),
            identity,
            daemon: self.daemon,
            method: self.method,
            allow_threads: self.allow_threads,
            bootstrap_timeout: self.bootstrap_timeout.unwrap_or(role::DEFAULT_BOOTSTRAP_TIMEOUT),
            backtrace: self.backtrace,
            output: self.output,
            attached: output::Attached::default(),
            creator: sys::getpid(),
            state: State::Initial(call),
            requested: None,
            _result: PhantomData,
        }
    }
}

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

    fn launch(&mut self, call: Box<dyn Call>) -> std::result::Result<Running, (Error, Option<Box<dyn Call>>)> {
        if self.creator != sys::getpid() {
            let e = self.err(
                ErrorKind::InvalidState,
                "can only start a process object created by the current process",
            );
            return Err((e, Some(call)));
        }
        if registry::with_me(|me| me.daemon) {
            let e = self.err(
                ErrorKind::InvalidState,
                "daemonic processes are not allowed to have children",
            );
            return Err((e, Some(call)));
        }
        // Python reaps finished children at every start.
        registry::reap_finished();
        let method = self.method.unwrap_or_else(crate::context::get_start_method);
        if let Err(e) = method.check_available() {
            return Err((e.with_process(&self.name, None), Some(call)));
        }
        let prepared = match output::prepare(self.output, &self.name) {
            Ok(p) => p,
            Err(e) => {
                let e = Error::io("failed to prepare the child's output", e).with_process(&self.name, None);
                return Err((e, Some(call)));
            }
        };
        let core = match method {
            StartMethod::Spawn | StartMethod::ForkServer => {
                let requested = self.requested.take();
                self.launch_spawn(&*call, method, requested, prepared.as_ref())
                    .map_err(|e| (e, Some(call)))?
            }
            StartMethod::Fork => self.launch_fork(call, prepared.as_ref())?,
        };
        self.attached = prepared.map(output::Prepared::attach).unwrap_or_default();
        let core = Arc::new(core);
        registry::register(core.clone());
        Ok(Running {
            core,
            method,
            reader: frame::Reader::default(),
            ready: method == StartMethod::Fork,
            started: Instant::now(),
            outcome: None,
            boot_timed_out: false,
        })
    }

    /// Spawn, or a fork server's fork: either way the child gets its
    /// target through the bootstrap socket.
    fn launch_spawn(
        &self,
        call: &dyn Call,
        method: StartMethod,
        requested: Option<crate::forkserver::Requested>,
        prepared: Option<&output::Prepared>,
    ) -> Result<ChildCore> {
        let Some((trampoline, target_offset, target_addr)) = call.entry() else {
            return Err(self.err(
                ErrorKind::Unsupported,
                "a closure can only run under the fork start method; pass a fn item or a non-capturing closure to run it under spawn",
            ));
        };
        if role::entry_was_skipped() {
            // This process was spawned by the library but is running `main`:
            // its entry point never ran. Starting a child here would run
            // `main` again, and so on without end.
            return Err(self.err(
                ErrorKind::Bootstrap,
                "this process was started by multiproc but its entry point never ran (it is running main); \
                 call multiproc::init() first thing in main, or enable the auto-entry feature",
            ));
        }
        if !target::in_same_image(target_addr) {
            return Err(self.err(
                ErrorKind::Unsupported,
                "the target (or this library) lives in a shared library; spawn can only run functions of the main executable",
            ));
        }
        let (args, fds) = call.encode_args().map_err(|CodecError(e)| {
            self.err(ErrorKind::Serialize, format!("failed to serialize the arguments: {e}"))
        })?;
        let exe = sys::exe_identity().map_err(|e| Error::io("cannot identify the running executable", e))?;
        // `set_executable`: another path of this build, checked before
        // anything starts; the child checks the build id again.
        let program = executable::checked().map_err(|e| e.with_process(&self.name, None))?;
        // Read once per process; a fork server may run a copy.
        let build_id = executable::own_build_id()
            .ok()
            .flatten()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let boot = registry::with_me(|me: &Me| Boot {
            protocol: PROTOCOL,
            exe,
            build_id,
            trampoline,
            target: target_offset,
            name: self.name.clone(),
            identity: self.identity.clone(),
            daemon: self.daemon,
            authkey: me.authkey,
            parent_pid: sys::getpid(),
            parent_name: me.name.clone(),
            default_method: crate::context::get_start_method(),
            backtrace: self.backtrace,
            output: prepared.is_some(),
        });
        let (handle, ours) = match method {
            StartMethod::ForkServer => match requested {
                Some(r) => crate::forkserver::finish_request(r, self.bootstrap_timeout),
                None => crate::forkserver::request_child(self.bootstrap_timeout),
            }
            .map_err(|e| e.with_process(&self.name, None))?,
            _ => role::spawn(Role::Child, program.as_deref()).map_err(|e| {
                let what = match &program {
                    Some(p) => format!("failed to spawn the child process from {}", p.display()),
                    None => "failed to spawn the child process".to_owned(),
                };
                Error::io(what, e).with_process(&self.name, None)
            })?,
        };
        let _ = ours.set_send_buffer(SOCKET_BUFFER);
        // A child that died at once makes these fail (EPIPE); `join`
        // reports that as a bootstrap failure with the child's status.
        // The child's output descriptors ride on the Boot frame.
        let sent = protocol::send_boot(&ours, &boot, prepared.map(output::Prepared::child_fds));
        if sent.is_ok() && !protocol::args_fit_inline(args.len()) {
            // Large arguments stream into the child as it reads them.
            let streamed = protocol::stream_args(&ours, (&args, &fds.fds), &handle, self.bootstrap_timeout);
            if streamed.is_ok() {
                fds.sent();
            } else if let Err(frame::StreamError::Timeout) = streamed {
                // The child is alive but not reading: it never reached the
                // entry point. Stop it here rather than hand out a process
                // that can only fail.
                let _ = handle.signal(SIGKILL);
                let core = ChildCore::new(handle, ours, self.name.clone(), self.daemon);
                let status = core.wait(None).ok().flatten();
                let mut e = self.err(
                    ErrorKind::Bootstrap,
                    format!(
                        "the child did not take its arguments within {:?} and was killed; \
                         if the automatic entry is disabled, call multiproc::init() first thing in main",
                        self.bootstrap_timeout
                    ),
                );
                if let Some(s) = status {
                    e = e.with_status(s);
                }
                return Err(e);
            }
        } else if sent.is_ok() && protocol::send_args(&ours, &args, &fds.fds).is_ok() {
            fds.sent();
        }
        Ok(ChildCore::new(handle, ours, self.name.clone(), self.daemon))
    }

    fn launch_fork(
        &self,
        call: Box<dyn Call>,
        out: Option<&output::Prepared>,
    ) -> std::result::Result<ChildCore, (Error, Option<Box<dyn Call>>)> {
        // The relay of prefixed output is locked from here to the fork: its
        // thread (not counted) then holds no lock the child could inherit.
        let relay = output::lock_for_fork();
        // With the opt-in, a count that cannot be read is taken as "several".
        let counted = sys::thread_count().map(|n| n.saturating_sub(relay.threads()).max(1));
        let threads = match (counted, self.allow_threads) {
            (Ok(1), _) => 1,
            (Ok(n), true) => n,
            (Err(_), true) => usize::MAX,
            (Ok(n), false) => {
                let e = self.err(
                    ErrorKind::ForkWithThreads,
                    format!(
                        "refusing to fork: this process runs {n} threads, and locks they hold would stay locked in \
                         the child; use the spawn start method, or see ProcessBuilder::allow_fork_with_threads"
                    ),
                );
                return Err((e, Some(call)));
            }
            (Err(e), false) => return Err((Error::io("cannot count this process's threads", e), Some(call))),
        };
        let prepared = (|| {
            let (ours, theirs) = sys::socketpair()?;
            theirs.set_send_buffer(SOCKET_BUFFER)?;
            let devnull = sys::null_device()?;
            Ok::<_, std::io::Error>((ours, theirs, devnull))
        })();
        let (ours, theirs, devnull) = match prepared {
            Ok(x) => x,
            Err(e) => return Err((Error::io("failed to prepare the fork", e), Some(call))),
        };
        // The connections among the arguments (user code may run here, so
        // before the registry is locked).
        let keep = call.endpoint_fds();
        // Output buffered before the fork must not be written twice.
        child::flush_std_streams();
        let lock = registry::fork_locked();
        let me = lock.me();
        let child_me = Me {
            name: self.name.clone(),
            identity: self.identity.clone(),
            daemon: self.daemon,
            start_method: Some(StartMethod::Fork),
            authkey: me.authkey,
            parent: None,
        };
        let parent = (sys::getpid(), me.name.clone());
        // SAFETY: the child below only runs the target under the rules
        // documented on `allow_fork_with_threads` (single-threaded parent
        // unless the caller opted in) and leaves through `finish`/`exit_now`.
        #[allow(unsafe_code)]
        let side = unsafe { sys::fork_child() };
        match side {
            Err(e) => {
                drop(lock);
                Err((Error::io("fork failed", e), Some(call)))
            }
            Ok(ForkSide::Child) => {
                if let Err(e) = relay.in_child(out) {
                    // The child cannot be what was asked; it has not run the
                    // target, and says why on the descriptor it still has.
                    let _ = sys::write_all_raw(
                        2,
                        format!("multiproc: cannot redirect the child's output: {e}\n").as_bytes(),
                    );
                    sys::exit_now(70);
                }
                child::fork_child_main(
                    lock,
                    child_me,
                    parent,
                    (ours, theirs, devnull),
                    call,
                    (threads > 1, keep, self.backtrace),
                )
            }
            Ok(ForkSide::Parent(handle)) => {
                drop(lock);
                drop(relay);
                drop(theirs);
                Ok(ChildCore::new(handle, ours, self.name.clone(), self.daemon))
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

    fn join_inner(&mut self, timeout: Option<Duration>) -> Result<R> {
        let span = crate::trace::join(&self.name, self.pid());
        let status = self.wait_for_exit(timeout)?;
        span.record_exitcode(status.exitcode());
        // Every line of a prefixed child is out when `join` returns.
        self.attached.settle();
        let State::Started(run) = &mut self.state else {
            unreachable!("wait_for_exit checked the state")
        };
        run.collect()
            .map_err(|e| e.with_process(&self.name, Some(run.core.pid())))?;
        let err = |kind, msg: String| {
            Error::new(kind, msg)
                .with_process(&self.name, Some(run.core.pid()))
                .with_status(status)
        };
        let Some(payload) = &run.outcome else {
            // A signal explains itself, whenever it came; an exit before the
            // entry point means the child could not start the target.
            if run.boot_timed_out {
                return Err(err(
                    ErrorKind::Bootstrap,
                    format!(
                        "did not reach the library's entry point within {:?} and was killed; \
                         if the automatic entry is disabled, call multiproc::init() first thing in main",
                        self.bootstrap_timeout
                    ),
                ));
            }
            return Err(match (status, run.ready) {
                (ExitStatus::Signaled(_), true) => err(ErrorKind::ChildKilled, format!("was killed by {status}")),
                (ExitStatus::Signaled(_), false) => err(
                    ErrorKind::ChildKilled,
                    format!("was killed by {status} before reaching the library's entry point"),
                ),
                (_, false) => err(
                    ErrorKind::Bootstrap,
                    format!("exited before reaching the library's entry point ({status})"),
                ),
                (_, true) => err(
                    ErrorKind::ChildExited,
                    format!("ended with {status} before returning a result"),
                ),
            });
        };
        match Outcome::from_bytes(payload) {
            Ok(OutcomeRef::Value(bytes)) => codec::decode::<R>(bytes)
                .map_err(|CodecError(e)| err(ErrorKind::Deserialize, format!("failed to deserialize the result: {e}"))),
            Ok(OutcomeRef::Panic(p)) => Err(err(ErrorKind::ChildPanicked, "the target panicked".into()).with_panic(p)),
            Ok(OutcomeRef::Failed(Failure::Bootstrap, m)) => {
                Err(err(ErrorKind::Bootstrap, format!("bootstrap failed: {m}")))
            }
            Ok(OutcomeRef::Failed(Failure::DecodeArgs, m)) => Err(err(
                ErrorKind::Deserialize,
                format!("the child failed to deserialize its arguments: {m}"),
            )),
            Ok(OutcomeRef::Failed(Failure::EncodeResult, m)) => Err(err(
                ErrorKind::Serialize,
                format!("the child failed to serialize its result: {m}"),
            )),
            Err(m) => Err(err(ErrorKind::Bootstrap, format!("sent a malformed outcome: {m}"))),
        }
    }

    /// When a wait for the child must look again even if it has not
    /// ended: the bootstrap deadline, while the child has not said it is
    /// ready (see [`join_timeout`](Self::join_timeout)); for `join_async`.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn boot_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Started(run) if !run.ready => run.started.checked_add(self.bootstrap_timeout),
            _ => None,
        }
    }

    /// Waits (up to `timeout`) for the child to end and reaps it.
    fn wait_for_exit(&mut self, timeout: Option<Duration>) -> Result<ExitStatus> {
        let name = self.name.clone();
        let boot_timeout = self.bootstrap_timeout;
        let creator = self.creator;
        let run = match &mut self.state {
            State::Started(_) if creator != sys::getpid() => {
                return Err(self.err(ErrorKind::InvalidState, "can only join a child process"));
            }
            State::Started(run) => run,
            State::Initial(_) => return Err(self.err(ErrorKind::InvalidState, "can only join a started process")),
            State::Closed { .. } => return Err(self.err(ErrorKind::InvalidState, "process object is closed")),
        };
        let pid = run.core.pid();
        let io_err = |e| Error::io("failed to wait for the child", e).with_process(&name, Some(pid));
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let boot_deadline = (!run.ready).then(|| run.started.checked_add(boot_timeout)).flatten();
            let wake = match (deadline, boot_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let left = wake.map(|w| w.saturating_duration_since(Instant::now()));
            if let Some(status) = run.core.wait(left).map_err(io_err)? {
                return Ok(status);
            }
            let now = Instant::now();
            if boot_deadline.is_some_and(|b| now >= b) {
                run.collect().map_err(|e| e.with_process(&name, Some(pid)))?;
                if !run.ready {
                    run.core.handle.signal(SIGKILL).map_err(io_err)?;
                    run.boot_timed_out = true;
                    // The kill cannot be ignored: the status arrives at once.
                    return run
                        .core
                        .wait(None)
                        .map_err(io_err)?
                        .ok_or_else(|| io_err(std::io::ErrorKind::TimedOut.into()));
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(
                    Error::new(ErrorKind::Timeout, "is still running after the join timeout")
                        .with_process(&name, Some(pid)),
                );
            }
        }
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

impl Running {
    /// Reads what the child sent so far.
    fn collect(&mut self) -> Result<()> {
        self.reader
            .drain(&self.core.sock)
            .map_err(|e| Error::io("failed to read from the child", e))?;
        while let Some(message) = protocol::next_buffered(&mut self.reader)
            .map_err(|e| Error::new(ErrorKind::Bootstrap, "the child broke the start protocol").with_source(e))?
        {
            match message {
                Message::Ready => self.ready = true,
                Message::Outcome(payload) => {
                    self.ready = true;
                    self.outcome = Some(payload);
                }
                other => {
                    return Err(Error::new(
                        ErrorKind::Bootstrap,
                        format!("the child sent an unexpected {} frame", other.name()),
                    ));
                }
            }
        }
        Ok(())
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
