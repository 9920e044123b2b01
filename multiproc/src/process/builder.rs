//! [`ProcessBuilder`]: a new process's options, in the manner of
//! `std::thread::Builder`.

use std::{marker::PhantomData, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use super::{Process, State};
use crate::{
    StartMethod,
    entry::role,
    output::{self, ChildOutput},
    registry, sys,
    target::{Call, ClosureCall, FnCall0, FnCall1},
};

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
    /// before it is killed and [`ErrorKind::Bootstrap`](crate::ErrorKind::Bootstrap) is reported (default
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
    /// which case [`Process::start`] fails with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
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
