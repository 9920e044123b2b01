//! Python's `multiprocessing` for Rust: run a function in a child process as
//! easily as in a thread, get its typed result back, and learn exactly how it
//! failed when it did.
//!
//! ```
//! use multiproc as mp;
//!
//! fn ma_tache(x: u64) -> (u32, u32, u64) {
//!     // Runs in the child process.
//!     (std::process::id(), std::os::unix::process::parent_id(), x * 2)
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let mut p = mp::Process::with_args(ma_tache, 21); // 1. create
//! p.start()?; //                                      2. start
//! let (child_pid, its_parent, doubled) = p.join()?; // 3. wait, get the result
//! assert_eq!(Some(child_pid), p.pid());
//! assert_eq!(its_parent, std::process::id());
//! assert_eq!(doubled, 42);
//! assert_eq!(p.exitcode(), Some(0));
//! # Ok(()) }
//! ```
//!
//! # Why processes
//!
//! A crash, abort or stack overflow in a child cannot take the parent down;
//! a C library that is not thread-safe can run in several processes at once;
//! a stuck task can be killed for real ([`Process::kill`]); memory limits and
//! global state are per process.
//!
//! # Targets
//!
//! A target is a plain function, or a closure that captures nothing, taking
//! one serde-serialisable argument (a tuple for several) and returning a
//! serde-serialisable value: `fn() -> R` ([`Process::new`]) or `fn(A) -> R`
//! ([`Process::with_args`]). A capturing closure does not compile there; the
//! `fork` start method can run one ([`Process::from_closure`]).
//!
//! [`Process::join`] returns the value, or an [`Error`] whose
//! [`kind`](Error::kind) says what happened: the target panicked (with the
//! child's message, location and backtrace, [`RemotePanic`]), the child
//! exited with a code or was killed by a signal ([`ExitStatus`]), it never
//! reached the library's entry point, or a value could not be
//! (de)serialised.
//!
//! # Start methods
//!
//! [`StartMethod::Spawn`] (the default) re-executes the running binary; the
//! child never runs `main`. It costs about one millisecond whatever the
//! parent's size, and is safe in a multithreaded parent.
//! [`StartMethod::Fork`] forks the parent: cheaper in a small parent, costlier
//! in a large one, able to run capturing closures, and refused in a
//! multithreaded parent unless you opt in through the `unsafe`
//! [`ProcessBuilder::allow_fork_with_threads`].
//! [`StartMethod::ForkServer`] asks a small single-threaded server (started
//! on first use, one per process, gone when the process exits) to fork the
//! child: fork-speed starts whatever the parent's size or threads.
//! [`set_start_method`] changes the default for the whole process.
//!
//! # Channels
//!
//! Processes talk through [`pipe`] ([`Connection`]: values or raw bytes,
//! whole messages, [`Connection::poll`]), [`Queue`] (many producers and
//! consumers in any processes, optionally bounded; also [`SimpleQueue`] and
//! [`JoinableQueue`]), and, by address, `Listener` and `Client` with an
//! authentication key. [`wait`] watches connections, queues and processes
//! together. Endpoints are passed to a child as (part of) its argument, or
//! sent through another connection or queue, under every start method:
//!
//! ```
//! use multiproc::{self as mp, Connection};
//!
//! fn doubler(conn: Connection) {
//!     while let Ok(x) = conn.recv::<i64>() {
//!         conn.send(2 * x).unwrap();
//!     }
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let (ours, theirs) = mp::pipe(true)?;
//! let mut p = mp::Process::with_args(doubler, theirs);
//! p.start()?;
//! ours.send(21i64)?;
//! assert_eq!(ours.recv::<i64>()?, 42);
//! drop(ours); // the child's recv sees the end of the stream and returns
//! p.join()?;
//! # Ok(()) }
//! ```
//!
//! A peer that closes or dies is an error ([`ErrorKind::Disconnected`],
//! or [`ErrorKind::Protocol`] for a message cut short), never a hang; a
//! queue's `put` has delivered its item when it returns; channel errors
//! hand an unsent value back, in the manner of crossbeam-channel.
//!
//! # Synchronisation
//!
//! [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`],
//! [`Condition`] and [`Barrier`] work across processes, passed like
//! channels. Each lives in an anonymous sealed memory file (no named
//! semaphore to leak). Acquiring returns a guard, or, Python-style,
//! `acquire_unguarded` and `release`. A process (or thread) that dies holding
//! a lock or a guarded semaphore permit never blocks the others: the next
//! acquirer gets [`AcquireError::OwnerDied`], which holds the guard
//! ([`AcquireError::recover`] takes it); a barrier whose party dies breaks
//! ([`ErrorKind::BrokenBarrier`]).
//!
//! ```
//! use std::time::Duration;
//! use multiproc::{self as mp, Lock, Event};
//!
//! fn child((lock, done): (Lock, Event)) {
//!     let _guard = lock.acquire().unwrap();
//!     done.set();
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let (lock, done) = (Lock::new()?, Event::new()?);
//! let mut p = mp::Process::with_args(child, (lock.clone(), done.clone()));
//! p.start()?;
//! assert!(done.wait_timeout(Duration::from_secs(30)));
//! p.join()?;
//! # Ok(()) }
//! ```
//!
//! Differences from Python: a `Lock` is released by the thread that holds
//! it (Python lets anyone release it; a [`Semaphore`] of 1 does that here),
//! and acquiring it again from that thread is an error instead of a
//! deadlock; only guarded semaphore permits are reclaimed from dead
//! processes; a `Barrier` has no `action` (the party whose wait returns 0
//! can run it). The design is in `src/sync/mod.rs`.
//!
//! # Pools
//!
//! [`Pool`] is Python's `multiprocessing.Pool` (`apply`, `map`, `imap`,
//! `imap_unordered`, `starmap`, `apply_async` and `map_async` (with
//! callbacks: `apply_async_with`, `map_async_with`), `starmap_async`,
//! `close`, `terminate`, `join`), and [`Executor`] its
//! `ProcessPoolExecutor` ([`TaskHandle`]s, an ordered `map` iterator, and the
//! module functions [`futures::wait`] and [`futures::as_completed`]). A
//! worker that dies fails only the chunk of tasks it held, with its exit
//! status, and is replaced; a failing initializer fails
//! [`PoolBuilder::build`]; no wait hangs on a dead worker, and every wait
//! for a result has a form with a deadline (`join` and an executor's
//! `shutdown(true, _)` have none: bound them with
//! [`PoolBuilder::task_timeout`]).
//!
//! ```
//! use std::time::Duration;
//! use multiproc::{self as mp, futures::ReturnWhen};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let pool = mp::Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
//! let lazy: Vec<u64> = pool.imap(square, 0..3)?.collect::<mp::Result<_>>()?;
//! assert_eq!(lazy, [0, 1, 4]);
//! pool.close();
//! pool.join()?;
//!
//! let ex = mp::Executor::new(2)?;
//! let fs = vec![ex.submit(square, 3)?, ex.submit(square, 4)?];
//! let w = mp::futures::wait(&fs, Some(Duration::from_secs(30)), ReturnWhen::AllCompleted)?;
//! assert!(w.not_done.is_empty());
//! # Ok(()) }
//! ```
//!
//! # The child's entry point
//!
//! Nothing needs to be called in `main`. With the default `auto-entry`
//! feature, a constructor that runs before `main` recognises a spawned child
//! (by an environment variable the library sets and removes) and runs the
//! target instead of `main`; in every other process it returns at once. This
//! works in binaries, examples, unit and integration tests and doctests: a
//! spawned child of a test binary never runs the test harness.
//!
//! The constructor is registered with the lowest priority, so the
//! constructors of other crates have run when a child's target starts; what
//! `main` would have set up (a logger, a runtime) has not, and a target that
//! needs it sets it up itself. Without the feature, call [`init`] first thing
//! in `main`.
//!
//! # Lifecycle
//!
//! Every child is reaped: by [`Process::join`], [`Process::is_alive`], the
//! next [`Process::start`], [`active_children`], or at exit. Dropping a
//! handle leaves the child running, as in Python. When a process exits
//! normally (returning from `main`, `std::process::exit`) it waits for its
//! non-daemonic children and terminates its daemonic ones; a daemonic child
//! also dies when its parent is killed. Spawned children inherit no
//! descriptors but their standard streams and the library's own socket;
//! forked children keep what the parent had open, as `fork` does, less the
//! library's own descriptors. Every child's stdin is `/dev/null`.
//!
//! # Async
//!
//! With the `async` feature, joins, sends, receives, puts, gets and
//! [`wait`] have `_async` forms that are `std::future::Future`s, for any
//! executor: they wait on descriptors (a child's pidfd, a socket, a queue's
//! eventfd) through async-io's reactor, one thread for the whole process,
//! never a thread per operation. Dropping one of these futures consumes
//! nothing: a message half received stays in the connection for the next
//! receive, a message half sent is finished by the next send on the
//! connection, and an item is taken only by the poll that returns it.
//! Once the reactor's thread runs, the process is multi-threaded and the
//! `fork` start method refuses to start children from it: start them
//! before the first await, or use `spawn` or `forkserver`.
//!
//! ```
//! # #[cfg(feature = "async")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! fn triple(x: u32) -> u32 {
//!     3 * x
//! }
//!
//! let mut child = multiproc::spawn(triple, 14)?;
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! assert_eq!(rt.block_on(child.join_async())?, 42);
//! # Ok(()) }
//! # #[cfg(not(feature = "async"))]
//! # fn main() {}
//! ```
//!
//! # Python names
//!
//! | Python | here |
//! |---|---|
//! | `Process(target=f, args=a, name=n, daemon=d)` | [`ProcessBuilder`]`::new().name(n).daemon(d).target_with(f, a)` |
//! | `p.start()`, `p.join()`, `p.join(t)` | [`Process::start`], [`Process::join`] (returns the result), [`Process::join_timeout`] |
//! | `p.is_alive()`, `p.pid`, `p.exitcode` | [`Process::is_alive`], [`Process::pid`], [`Process::exitcode`] / [`Process::exit_status`] |
//! | `p.terminate()`, `p.kill()`, `p.close()` | [`Process::terminate`], [`Process::kill`], [`Process::close`] |
//! | `current_process()`, `parent_process()` | [`current_process`], [`parent_process`] |
//! | `active_children()`, `cpu_count()` | [`active_children`], [`cpu_count`] |
//! | `get_all_start_methods()` | [`get_all_start_methods`] |
//! | `set_start_method(m)`, `set_start_method(m, force=True)` | [`set_start_method`], [`force_start_method`] |
//! | `get_start_method()`, `get_start_method(allow_none=True)` | [`get_start_method`], [`start_method_if_set`] |
//! | `get_context(m)` | [`get_context`], then [`Context::builder`] / [`Context::process`] |
//!
//! # Feature flags
//!
//! - `auto-entry` (default): install the child entry point as a constructor.
//! - `async`: `std::future::Future`s for waiting without a thread, on any
//!   executor (tokio, smol, ...): [`Process::join_async`],
//!   [`Connection::send_async`] / [`recv_async`](Connection::recv_async),
//!   [`Queue::put_async`] / [`get_async`](Queue::get_async) (also on
//!   [`SimpleQueue`] and [`JoinableQueue`]) and [`wait_async`]; design in
//!   the `asynchronous` module's source. The pool's result handles are
//!   futures too; [`Imap`], the executor's [`MapIter`] and
//!   [`futures::as_completed`]'s iterator are `futures_core::Stream`s, and
//!   `futures::wait_async` awaits several task handles. Adds async-io
//!   (smol's reactor) and futures-core.
//!
//! # Platform support
//!
//! - Linux (kernel 5.3 or later, for pidfds): everything, run and tested.
//! - macOS: a full backend (spawn, fork, forkserver), type-checked in CI,
//!   never run there.
//! - Windows: spawn only; processes, connections and `wait` work, the
//!   rest returns [`ErrorKind::Unsupported`] for now.
//! - Other targets build; every call returns [`ErrorKind::Unsupported`].
//!
//! The repository's `docs/platforms.md` lists every difference.
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod asynchronous;
mod at_fork;
mod child;
mod codec;
mod connection;
mod context;
mod current;
mod entry;
mod error;
mod forkserver;
mod frame;
pub mod logging;
mod outcome;
mod output;
mod pool;
mod process;
mod queue;
mod registry;
mod shared_memory;
mod sharedctypes;
mod start;
mod sync;
mod sys;
mod target;
mod trace;

pub use crate::{
    connection::{
        Address, Client, ClientBuilder, Connection, Listener, ListenerBuilder, QUEUE_SLICE, Waitable, pipe, wait,
    },
    context::{
        Context, force_start_method, get_all_start_methods, get_context, get_start_method, set_start_method,
        start_method_if_set,
    },
    current::{
        ActiveChild, CurrentProcess, ParentProcess, active_children, cpu_count, current_process, parent_process,
        process_cpu_count,
    },
    error::channel::{RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError},
    error::{Error, ErrorKind, Location, RemotePanic, Result},
    output::{CapturedOutput, ChildOutput},
    pool::{
        AsyncResult, Backend, Callbacks, Executor, Imap, MapIter, MapResult, MpiFlavour, Pool, PoolBuilder, TaskHandle,
        Tasks,
    },
    process::{
        ExitStatus, Process, ProcessBuilder,
        executable::{get_executable, reset_executable, set_executable},
        spawn,
    },
    queue::{JoinableQueue, Producer, Queue, QueueIntoIter, QueueIter, SimpleQueue},
    shared_memory::{ListItem, ShareableList, SharedMemory},
    sharedctypes::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard, ValueLock},
    start::StartMethod,
    sync::{
        AcquireError, Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockGuard, RLock, RLockGuard,
        Semaphore, SemaphoreGuard,
    },
};

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use crate::asynchronous::wait_async;
#[cfg(feature = "progress")]
pub use crate::pool::Progress;

/// Python's `concurrent.futures` module functions over the [`TaskHandle`]s of
/// an [`Executor`]: [`wait`](futures::wait) with [`ReturnWhen`](futures::ReturnWhen),
/// and [`as_completed`](futures::as_completed); with the `async` feature,
/// `wait_async` and `as_completed`'s iterator as a stream.
pub mod futures {
    #[cfg(feature = "async")]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub use crate::pool::wait_futures_async as wait_async;
    pub use crate::pool::{AsCompleted, ReturnWhen, Waited, as_completed, wait_futures as wait};
}

/// The explicit child entry point, for programs built without the
/// `auto-entry` feature: call it first thing in `main`.
///
/// In a process started by this library with the spawn method it runs the
/// target and exits, never returning; everywhere else it returns at once.
/// With `auto-entry` on, the constructor has already done this and the call
/// is a cheap no-op.
///
/// ```
/// # #[allow(clippy::needless_doctest_main)]
/// fn main() {
///     multiproc::init();
///     // ... the program
/// }
/// ```
pub fn init() {
    entry::spawned_entry(false);
}

/// Starts this process's fork server now rather than at the first
/// [`StartMethod::ForkServer`] start (which then costs a fork, not a spawn).
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// multiproc::ensure_forkserver_running()?;
/// let mut p = multiproc::ProcessBuilder::new()
///     .start_method(multiproc::StartMethod::ForkServer)
///     .target(|| 6 * 7);
/// p.start()?;
/// assert_eq!(p.join()?, 42);
/// # Ok(()) }
/// ```
#[doc(alias = "ensure_running")]
pub fn ensure_forkserver_running() -> Result<()> {
    forkserver::ensure_running()
}

/// Sets a function that fork servers started from now on run once, before
/// forking any child, so that every child starts with its work done
/// (Python's `set_forkserver_preload`, with a function instead of module
/// names). `None` removes it. A preload that panics ends the server, and
/// the starts that needed it fail with [`ErrorKind::Bootstrap`].
///
/// # Errors
///
/// [`ErrorKind::Unsupported`] for a function outside the main executable.
pub fn set_forkserver_preload(preload: Option<fn()>) -> Result<()> {
    forkserver::set_preload(preload)
}

/// The pid of this process's fork server, if one is running. Not part of
/// the API: for tests and diagnostics.
#[doc(hidden)]
pub fn __forkserver_pid() -> Option<u32> {
    forkserver::server_pid()
}

#[cfg(feature = "auto-entry")]
mod auto_entry {
    // The constructor runs before main in every process that links this
    // crate; in all but spawned children it only reads one environment
    // variable. `late` puts it after the constructors of other crates, so
    // a child's target finds them run.
    #[allow(unsafe_code)]
    #[ctor::ctor(unsafe, priority = late)]
    fn multiproc_child_entry() {
        crate::entry::spawned_entry(true);
    }
}
