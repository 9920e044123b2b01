//! A pool of worker processes (Python's `multiprocessing.Pool`).
//!
//! # Design
//!
//! Each worker is a [`Process`] (daemonic, started with the pool's start
//! method) running an internal worker loop, a plain `fn`, so it works under
//! spawn, fork and forkserver alike. Each worker has its own duplex
//! [`Connection`] to the parent: there is no shared queue, so there is no
//! lock a dying worker could hold. A task names its function the way a
//! spawned child names its target (code offsets of the function and of a
//! trampoline monomorphised for its argument and result types, see
//! `target.rs`); a *chunk* is one message carrying several encoded
//! arguments, answered by one message carrying each task's outcome
//! (value, panic with location and backtrace, or a codec failure). A
//! `map` chunk travels as one encoded `Vec<A>` to a batch trampoline and
//! comes back as one encoded `Vec<R>` when every task returned; after a
//! panic, or when the results do not encode together, the worker answers
//! with one outcome per task instead, so a failure stays with its task.
//!
//! Every task message carries an id, fresh for each sending, and every
//! reply names the id it answers (the worker's first message, its
//! initializer's report, names 0); both headers are defined in
//! `worker.rs`. A worker answers its chunks in order, so the parent takes
//! a reply only when it names the oldest chunk that worker holds and its
//! body is well formed. Anything else (a reply to an unknown, replayed or
//! later id, of the wrong kind, or no reply at all: a frame that task code
//! wrote onto the worker's socket, through a stale descriptor number say)
//! is a protocol violation: the worker is killed, every chunk it held
//! fails with [`ErrorKind::Protocol`], and a new worker takes its place. A
//! result is only ever delivered to the task it names, never shifted to
//! another. (A task's raw `fork` child that returns into the worker loop
//! exits there without answering.)
//!
//! Library objects (connections, queues, locks and the other primitives,
//! shared memory, `Value`/`Array`) travel in task arguments and in the
//! initializer's arguments under every start method, by the descriptor
//! passing of [`Process`] arguments: encoding them collects their
//! descriptors, the pool keeps duplicates of them with the chunk (the
//! arguments themselves are dropped once encoded), and they ride on the
//! chunk's task message (`SCM_RIGHTS`), or, for the initializer, in each
//! worker's start arguments (the pool keeps the initializer's copies for
//! replacement workers). The pool's copies are closed in fork children not
//! given them, so a passed connection's peer sees the end of the stream
//! once the task is done with it. One message carries at most 253
//! descriptors: a chunk whose arguments hold more fails the tasks past
//! that with [`ErrorKind::Serialize`] (use a smaller chunk size). Results
//! cannot carry library objects: such a result fails its task with
//! [`ErrorKind::Serialize`].
//! A panic of the caller's `Serialize` or `Deserialize` is neither the
//! caller's panic nor the worker's death: an argument's `Serialize` (in the
//! parent) and a result's `Deserialize` (in the parent) fail their task
//! with [`ErrorKind::Serialize`] / [`ErrorKind::Deserialize`]; in the
//! worker, a panic of a result's `Serialize` or of an argument's
//! `Deserialize` is that task's panic ([`ErrorKind::ChildPanicked`], as for
//! a [`Process`] target), except an argument's `Deserialize` panic in a
//! `map` chunk sent as one batch (small arguments, all of the chunk's
//! serialized), which is a `Deserialize` error of its task. A value that fails to encode or decode fails its
//! task alone, in a `map` chunk too: a chunk of serde values travels as an
//! *indexed* sequence (the `Vec`'s encoding behind a table of each
//! value's end, 4 bytes per value), and each value is decoded from
//! exactly its own bytes, so that a type whose `Deserialize` reads other
//! than what its `Serialize` wrote (`skip_serializing_if`, which postcard
//! cannot carry) fails its task rather than turning a neighbour into a
//! wrong value, as decoding the chunk as one `Vec` could. That costs
//! 10–15 % on a `map` of 100 k small structs (measured against decoding
//! the whole `Vec`); numbers and bytes travel raw, and cannot fail one by
//! one.
//!
//! There is no background thread (it would make the program
//! multithreaded, and `fork` is refused there: to this pool's workers and
//! to the program's own processes). The pool's state sits behind one
//! mutex and is driven by the callers:
//!
//! - **Dispatch** happens wherever work is added or results are taken:
//!   each pending chunk goes to the worker with the fewest chunks in
//!   flight that can take it (breadth first, so small work spreads over
//!   the workers). A worker holds more than one chunk only of the same
//!   `map` (separate submissions never wait behind a busy worker): two
//!   while its chunks are slow, up to 16 while they take under 1 ms (to
//!   hide the round trip), and only while their messages total at most
//!   64 KiB, so the parent never blocks writing to a worker that is
//!   itself blocked writing results. The chunks one worker is given in a
//!   round go out together, in one `sendmsg` (a burst of small tasks costs
//!   the parent one system call, not one per task).
//! - **Driving**: a caller that needs results (`get`, `wait`, `imap`,
//!   `join`) becomes the *driver* if nobody is: it collects every worker's
//!   connection, its process sentinel (a pidfd) and the pool's eventfd,
//!   releases the lock, and `poll`s; then it relocks, takes every result
//!   there, handles deaths, overdue tasks and replacement workers'
//!   initializers, and wakes the other waiting callers (a condition
//!   variable). Meanwhile other threads submit, take results and cancel;
//!   those waiting for their own result sleep on the condition variable
//!   with their own deadline. The eventfd wakes the driver when the set of
//!   workers changes under it (terminate, replacements); workers removed
//!   meanwhile keep their descriptors until its `poll` has returned.
//!   Submissions and `ready()` also take what has arrived, without
//!   blocking, so a pool nobody waits on still makes progress.
//! - **Callbacks** ([`Pool::apply_async_with`], [`Pool::map_async_with`])
//!   run when their job finishes, in whichever caller drives or submits at
//!   that moment, without the lock; the decoded value is kept for `get`.
//!   A finished callback nudges the driver, whose check may be waiting
//!   for that job (`futures::wait` over several futures).
//! - **Deadlines**: a wait whose deadline has passed still takes one look
//!   (dispatch and a zero-timeout poll) before it gives up, so Python's
//!   polling idiom (`wait(fs, timeout=0)`, `next(timeout=0)`) sees what is
//!   done.
//! - **Handles** are a job id and the pool: `AsyncResult` and `MapResult`
//!   take a finished job's output whole; `Imap` and the executor's
//!   `MapIter` take results as they arrive (a batch reply is decoded at
//!   once and kept as a run of consecutive results until their turn; what
//!   was taken is kept in the iterator, so a callback's panic unwinding
//!   through it loses nothing); `futures::wait` and `as_completed` drive
//!   with a check over several jobs of one pool. A dropped `AsyncResult`,
//!   `MapResult` or `Future` leaves its job to run (an orphan, forgotten
//!   once it has finished: Python's cache keeps it too); a dropped
//!   iterator's job is forgotten at once, its queued chunks skipped.
//! - **Terminating** kills the workers, then reads what each had sent
//!   before its death: a task that finished keeps its result.
//!
//! Arguments are encoded, and an `imap`'s input read, without the lock. A
//! large argument (64 KiB or more encoded; the first item decides for a
//! `map`) alone in its chunk (`apply`, `imap`, or a `map` whose automatic
//! chunk comes to one task: arguments over 128 KiB) travels as a message
//! of its own that the worker receives as its own buffer: a `Vec<u8>` or `String` is taken over without a copy,
//! another type is encoded into a buffer of its own, which the worker
//! decodes in place. The automatic chunk size of large arguments keeps a
//! chunk near 256 KiB. Workers tell their allocator to keep freed memory
//! (glibc's `mallopt`: blocks up to 32 MiB from the heap, trimmed past
//! 64 MiB free), so that each large argument does not arrive in fresh pages:
//! a page fault per 4 KiB costs more than copying it. A worker's memory
//! therefore stays near its peak, as a CPython worker's does.
//!
//! A `Pool` starts all its workers at `build`, as Python's does; an
//! [`Executor`]'s pool starts them on demand (Python >= 3.9): a pending
//! chunk that no idle worker will take starts one, up to the pool's size,
//! and a dead worker is replaced only when work needs it; under fork,
//! every worker starts at the first need, as Python's fork context does.
//!
//! Workers are daemons: they die with the pool's process however it ends,
//! through the kernel's parent-death signal (see
//! [`ProcessBuilder::daemon`](crate::ProcessBuilder::daemon)). A worker's
//! parent is the thread that started it (the one that built the pool, or,
//! for a replacement, the caller that handled the death; under the fork
//! server, the server); when that
//! thread exits, the signal reaches the worker too and its handler returns,
//! so a task's blocking call that the kernel does not restart (`poll`, a
//! socket read with a timeout) may fail once with `EINTR`. The library's
//! own calls, and std's `sleep`, `read_exact` and `write_all`, retry.
//!
//! When a worker dies, the results it sent before dying are kept, the
//! chunk it was running fails with [`ErrorKind::ChildKilled`] or
//! [`ErrorKind::ChildExited`] carrying its [`ExitStatus`](crate::ExitStatus),
//! the chunks queued behind it go back to the pending queue (they never
//! started), and a new worker takes its place; its initializer runs while
//! the pool serves on (no lock is held meanwhile). A worker that dies
//! while idle is noticed by its sentinel, or at the next send. With a task
//! timeout, the worker running an overdue chunk is killed and replaced,
//! and that chunk fails with [`ErrorKind::TaskTimeout`]. With an
//! initializer, [`PoolBuilder::build`] waits for every worker's report, and
//! one that fails makes `build` fail with its error (its panic for a
//! panic). Without one, `build` returns as soon as the workers are started
//! and they are given work at once (a round trip saved on a short-lived
//! pool); a worker that dies before its first message (killed from outside,
//! or unable to start) never ran the chunks it was given: they go back to
//! the pending queue and the worker is replaced, up to `3 × processes` such
//! deaths in a row, after which the pool is broken with the last one's
//! error. If a *replacement* worker's initializer fails (or takes more
//! than a minute), the pool is broken: every pending task and every later
//! submission fails with that error, tasks already with other workers
//! still finish. There is no respawn loop. Under `fork`, once the program
//! has other threads (where fork is refused), replacements are started by
//! the fork server.
//!
//! # Differences from Python
//!
//! - Functions are `fn(A) -> R` with serde arguments; several arguments are
//!   a tuple, so [`Pool::starmap`] is [`Pool::map`] under Python's name.
//! - [`Pool::map`] returns the first error in input order (Python raises the
//!   first exception too); the results of the other tasks are dropped.
//! - `maxtasksperchild` counts chunks, as Python's does (a chunk is one
//!   task for the worker loop).
//! - The task timeout applies to a chunk: `timeout × tasks in the chunk`
//!   from the moment the chunk reached the head of its worker's queue.
//! - Task arguments may carry every library object, queues included
//!   (CPython refuses queues as task arguments); results cannot.
//! - `imap` reads its input as results are taken, not all at once in a
//!   task thread: after `join`, the part not read fails with
//!   [`ErrorKind::InvalidState`]. An empty `map_async` calls its callback
//!   (with no results).
//! - Callbacks get a reference (`&R`, `&[R]`, `&Error`) and run in one of
//!   the caller's threads, not in a result-handler thread; a callback's
//!   panic comes out of the call that ran it, and a callback cannot wait
//!   for its own result, nor for that of a callback it runs within (an
//!   error, not a deadlock). A job is done once its callbacks have run, so
//!   two threads whose callbacks wait for each other's futures without a
//!   timeout wait for ever: give such waits a deadline.
//! - A pool belongs to the process that created it: in a fork child every
//!   operation that returns a `Result` fails with
//!   [`ErrorKind::InvalidState`] (`terminate` too); `close` does nothing,
//!   `ready()` is `false`, and dropping it does nothing.
//! - The executor's `map` yields each task's `Result` and goes on past a
//!   failure (Python's stops at the first exception); with no pool
//!   thread, tasks are sent only while some thread waits on the pool, so
//!   a consumer slower than the `map`'s timeout between two items can
//!   time out where Python's would not (see [`MapIter`]).
//!   `futures::wait`/`as_completed` take the futures of one executor; a
//!   done callback ([`Future::add_done_callback`]) gets the result, not
//!   the future; added while the future's callbacks run in another
//!   thread, it runs right after them, in that thread (Python's would run
//!   at once, in the adding thread). `terminate_workers` waits up to a
//!   second for the workers to exit on `SIGTERM`, then kills the rest.
//! - Dropping a [`Pool`] terminates it (as leaving Python's `with Pool()`
//!   block does): workers are killed and reaped, unfinished tasks fail with
//!   [`ErrorKind::Cancelled`] (their error callbacks run). It never hangs.
//!   Dropping an [`Executor`] waits for its tasks, as leaving Python's
//!   `with ProcessPoolExecutor()` block does.

mod executor;
mod results;
mod state;
pub(crate) mod worker;

use std::{
    any::Any,
    cell::{Cell, RefCell},
    collections::{BTreeMap, HashMap, VecDeque},
    marker::PhantomData,
    os::fd::{AsRawFd, RawFd},
    panic::{self, AssertUnwindSafe},
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

#[cfg(feature = "progress")]
use indicatif::{ProgressBar, ProgressStyle};

use serde::{Serialize, de::DeserializeOwned};

pub use self::executor::{AsCompleted, Executor, Future, ReturnWhen, Waited, as_completed, wait as wait_futures};
pub use self::results::{AsyncResult, Callbacks, Imap, MapIter, MapResult};
use self::worker::{Init, WorkerArgs};
use self::{results::*, state::*};
use crate::{
    bootstrap::{Failure, Outcome, OutcomeRef},
    codec::{self, CodecError},
    connection::{Connection, pipe, wait},
    error::{Error, ErrorKind, Result},
    process::{ExitStatus, Process, ProcessBuilder},
    start::StartMethod,
    sys, target,
};

/// A chunk size of 0 is refused (Python: "Chunksize must be 1+").
fn check_chunksize(chunksize: Option<usize>) -> Result<()> {
    if chunksize == Some(0) {
        return Err(Error::new(ErrorKind::InvalidInput, "the chunk size must be at least 1"));
    }
    Ok(())
}

/// How long a worker may take to start and run its initializer, and how
/// long a closing worker may take to exit before it is killed.
const WORKER_DEADLINE: Duration = Duration::from_secs(60);

/// A worker has more than one chunk only while their messages total at
/// most this much, well under a socket buffer: the parent never blocks
/// writing to a worker that is itself blocked writing results.
const SMALL_CHUNK: usize = 64 * 1024;

/// The automatic chunk size of large arguments keeps a chunk near this
/// size.
const BATCH_BYTES: usize = 256 * 1024;

/// At most this many chunks in flight per worker.
const MAX_DEPTH: usize = 16;

/// A task's outcome bytes, or the error that replaced them.
type TaskResult = std::result::Result<Vec<u8>, Error>;

/// Builds a [`Pool`]; see [`Pool::builder`].
#[derive(Debug, Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Result<Init>>,
    maxtasks: Option<usize>,
    method: Option<StartMethod>,
    task_timeout: Option<Duration>,
    progress: bool,
    /// Start the workers on demand (an executor's pool).
    on_demand: bool,
    output: crate::ChildOutput,
}

impl PoolBuilder {
    /// The number of workers (default: [`process_cpu_count`](crate::process_cpu_count)).
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// A function each worker runs once, before any task, on `args`
    /// (Python's `initializer` and `initargs`). The arguments may carry
    /// library objects (a [`Lock`](crate::Lock), a [`Value`](crate::Value),
    /// a [`Queue`](crate::Queue), a [`Connection`]...), under every start
    /// method; the pool keeps them, encoded with duplicates of their
    /// descriptors, for the workers that replace others.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use std::sync::OnceLock;
    /// use multiproc::{Lock, Pool, Value};
    ///
    /// static SHARED: OnceLock<(Lock, Value<u64>)> = OnceLock::new();
    ///
    /// fn init(shared: (Lock, Value<u64>)) {
    ///     let _ = SHARED.set(shared);
    /// }
    ///
    /// fn bump(_: u32) {
    ///     let (lock, total) = SHARED.get().expect("initialized");
    ///     let _held = lock.acquire().unwrap();
    ///     total.store(total.load().unwrap() + 1).unwrap();
    /// }
    ///
    /// let (lock, total) = (Lock::new()?, Value::new(0u64)?);
    /// let pool = Pool::builder()
    ///     .processes(2)
    ///     .initializer(init, (lock, total.clone()))
    ///     .build()?;
    /// pool.map(bump, 0..100)?;
    /// assert_eq!(total.load()?, 100);
    /// # Ok(()) }
    /// ```
    pub fn initializer<A: Serialize + DeserializeOwned + 'static>(mut self, f: fn(A), args: A) -> PoolBuilder {
        self.init = Some(match target::offsets_of(f) {
            None => Err(Error::new(
                ErrorKind::Unsupported,
                "the initializer lies outside the main executable",
            )),
            Some((tramp, target)) => {
                let mut a = Vec::new();
                encode_with_fds(&args, &mut a)
                    .map(|fds| Init {
                        tramp,
                        target,
                        args: a,
                        fds,
                    })
                    .map_err(|CodecError(e)| {
                        Error::new(
                            ErrorKind::Serialize,
                            format!("failed to serialize the initializer's arguments: {e}"),
                        )
                    })
            }
        });
        self
    }

    /// Replace a worker after it has run `n` chunks (Python's
    /// `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: usize) -> PoolBuilder {
        self.maxtasks = Some(n);
        self
    }

    /// The start method of the workers (default: the process-wide default).
    pub fn start_method(mut self, method: StartMethod) -> PoolBuilder {
        self.method = Some(method);
        self
    }

    /// Where the workers' standard output and error go (default: inherited);
    /// see [`ProcessBuilder::output`](crate::ProcessBuilder::output).
    /// With [`ChildOutput::Prefix`](crate::ChildOutput::Prefix) each line
    /// is prefixed with its worker's name (`[PoolWorker-2] `).
    pub fn output(mut self, output: crate::ChildOutput) -> PoolBuilder {
        self.output = output;
        self
    }

    /// Kill and replace a worker whose task runs longer than `timeout`; the
    /// task fails with [`ErrorKind::TaskTimeout`]. For a chunk of `n` tasks the
    /// limit is `n × timeout`.
    pub fn task_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.task_timeout = Some(timeout);
        self
    }

    /// Show a progress bar on standard error for every `map`, `imap`,
    /// `imap_unordered`, `starmap` (and [`Executor::map`]) of this pool:
    /// tasks done out of the total (when the input's length is known), rate
    /// and estimated time left. Nothing is drawn when standard error is not
    /// a terminal; [`MapResult::progress_bar`] and [`Imap::progress_bar`]
    /// give the bar, to restyle or read it. Needs the `progress` feature.
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(mut self, on: bool) -> PoolBuilder {
        self.progress = on;
        self
    }

    /// Starts the workers and waits until each has run its initializer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for zero processes or a zero
    /// `maxtasksperchild`; [`ErrorKind::Serialize`] or
    /// [`ErrorKind::Unsupported`] for an initializer that cannot be sent;
    /// the initializer's error if it fails in a worker
    /// ([`ErrorKind::ChildPanicked`] with its panic,
    /// [`ErrorKind::Deserialize`] for its arguments), or
    /// [`ErrorKind::Bootstrap`] for a worker that ended before it reported,
    /// [`ErrorKind::Timeout`] for one that took over a minute; the start
    /// errors of [`Process::start`]; without a process count, the error of
    /// [`process_cpu_count`](crate::process_cpu_count).
    pub fn build(self) -> Result<Pool> {
        let size = match self.processes {
            Some(n) => n,
            None => crate::process_cpu_count()?,
        };
        if size == 0 || self.maxtasks == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a pool needs at least one process, and maxtasksperchild at least one task",
            ));
        }
        let init = match self.init {
            None => None,
            Some(Ok(i)) => Some(i),
            Some(Err(e)) => return Err(e),
        };
        let mut state = State {
            cfg: Config {
                output: self.output,
                init,
                maxtasks: self.maxtasks,
                method: self.method,
                task_timeout: self.task_timeout,
                progress: self.progress,
                on_demand: self.on_demand,
            },
            size,
            workers: Vec::with_capacity(size),
            pending: VecDeque::new(),
            jobs: HashMap::new(),
            next_job: 0,
            life: Life::Running,
            broken: None,
            started: 0,
            due: Vec::new(),
            driving: false,
            graveyard: Vec::new(),
            wake: sys::eventfd().map_err(|e| Error::io("failed to create the pool's wake-up eventfd", e))?,
            sleepers: 0,
            early_deaths: 0,
            stuck: Vec::new(),
        };
        // An executor's workers start on demand, with its first tasks.
        let (starting, failed) = state.start_workers(if self.on_demand { 0 } else { size });
        if let Some(e) = failed {
            state.workers = starting;
            let _ = state.kill_all();
            return Err(e);
        }
        // Workers with an initializer report it before the pool is
        // returned (its failure is `build`'s error); the others are given
        // work at once and report in the first round.
        let mut first_err = None;
        for mut w in starting {
            match (first_err.is_none() && !w.eager).then(|| w.await_ready()) {
                Some(Ok(())) => state.workers.push(w),
                Some(Err(e)) => {
                    first_err = Some(e);
                    state.workers.push(w);
                }
                None => state.workers.push(w),
            }
        }
        if let Some(e) = first_err {
            let _ = state.kill_all();
            return Err(e);
        }
        Ok(Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                callback_done: Condvar::new(),
                owner: sys::getpid(),
                size,
            }),
        })
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Each worker has its own connection to the parent, and the parent waits
/// on the workers' connections and their pidfds together, so a worker's
/// death is seen at once: the chunk it ran fails with
/// [`ErrorKind::ChildKilled`] or [`ErrorKind::ChildExited`] carrying the
/// exit status, the worker is replaced and the pool keeps serving. A task's
/// panic, or a result that fails to serialize, fails only that task. There
/// is no background thread: the callers drive the pool (one of them
/// waits on the workers, without the pool's lock, for all). `map` returns
/// the first error in input order;
/// `imap` yields each task's result. Dropping the pool terminates it
/// (kills and reaps the workers; unfinished tasks fail with
/// [`ErrorKind::Cancelled`]) and never hangs.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let pool = multiproc::Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// assert_eq!(pool.apply(square, 7)?, 49);
/// pool.close();
/// pool.join()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// A pool of `processes` workers with the default start method.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for a pool with an initializer, `maxtasksperchild`, a start
    /// method or a task timeout.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of workers the pool keeps.
    pub fn processes(&self) -> usize {
        self.shared.lock().size
    }

    /// The pids of the current workers. A worker whose process has ended
    /// is replaced first (its task fails, as in any round), so that a
    /// pid the caller has seen end is never named.
    pub fn pids(&self) -> Vec<u32> {
        let mut st = self.shared.lock();
        if !self.shared.is_owner() {
            // A fork child's copy: the parent's workers, as they were.
            return st.workers.iter().filter_map(|w| w.proc.pid()).collect();
        }
        st.notice_deaths();
        let pids = st.workers.iter().filter_map(|w| w.proc.pid()).collect();
        drop(run_due(&self.shared, st, true));
        pids
    }

    /// Runs `f(args)` in a worker and waits for its result.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); then the task's own error
    /// ([`ErrorKind::ChildPanicked`], a codec error, a worker's death, a
    /// timeout).
    pub fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Queues `f(args)` and returns a handle on its result.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] on a closed pool; the pool's error if it
    /// is broken; [`ErrorKind::Unsupported`] for a function outside the
    /// main executable.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, args: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_job(f, args, None)
    }

    /// [`apply_async`](Pool::apply_async) with Python's `callback` and
    /// `error_callback`: when the task finishes, one of them is called
    /// with a reference to its value or error, which
    /// [`AsyncResult::get`] still returns afterwards.
    ///
    /// Callbacks run in one of your threads that drives the pool: one
    /// waiting for a result ([`get`](AsyncResult::get),
    /// [`wait`](AsyncResult::wait), [`ready`](AsyncResult::ready), an
    /// `imap`), submitting work, or in [`join`](Pool::join),
    /// [`terminate`](Pool::terminate) and `Drop` (a cancelled task's
    /// error callback). They run without the pool's lock, so they may use
    /// the pool, but not wait for their own result. They run even if the
    /// [`AsyncResult`] was dropped. A callback's panic propagates out of
    /// the call that ran it (except during `Drop`).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use std::sync::{Arc, Mutex};
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let pool = multiproc::Pool::new(2)?;
    /// for x in 0..4 {
    ///     let seen = seen.clone();
    ///     let cb = multiproc::Callbacks::new().callback(move |v: &u64| seen.lock().unwrap().push(*v));
    ///     pool.apply_async_with(square, x, cb)?;
    /// }
    /// pool.close();
    /// pool.join()?;
    /// let mut seen = seen.lock().unwrap().clone();
    /// seen.sort();
    /// assert_eq!(seen, [0, 1, 4, 9]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); the callbacks are not called
    /// when the submission itself fails.
    pub fn apply_async_with<A, R>(&self, f: fn(A) -> R, args: A, callbacks: Callbacks<R>) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let Callbacks { value, error } = callbacks;
        let on_done = erase::<R>(
            1,
            value.map(|cb| {
                Box::new(move |v: &[R]| {
                    if let Some(one) = v.first() {
                        cb(one);
                    }
                }) as ValueCallback<[R]>
            }),
            error,
        );
        self.apply_job(f, args, Some(on_done))
    }

    fn apply_job<A, R>(&self, f: fn(A) -> R, args: A, on_done: Option<OnDone>) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let offs = offsets(f)?;
        let enc = encode_one(offs, 0, args);
        let mut st = self.shared.enter()?;
        st.check_open()?;
        let job = st.new_job();
        if let Some(j) = st.jobs.get_mut(&job) {
            j.on_done = on_done;
        }
        let handle = JobHandle {
            shared: self.shared.clone(),
            job,
            len: 1,
            cancel_on_drop: false,
        };
        st.add(job, enc);
        st.seal(job);
        st.harvest();
        drop(run_due(&self.shared, st, true));
        Ok(AsyncResult {
            handle,
            _r: PhantomData,
        })
    }

    /// `f` over every item, in order, with Python's automatic chunk size
    /// (for arguments of 64 KiB or more: chunks near 256 KiB).
    /// The input is collected first (as Python's `map` does); use
    /// [`imap`](Pool::imap) for a long or endless input.
    ///
    /// # Errors
    ///
    /// The first failed task's error, in input order; as
    /// [`apply_async`](Pool::apply_async) for a closed pool.
    pub fn map<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, None)?.get()
    }

    /// `f` over every item, in order, with one `Result` per input instead
    /// of the first error: a task that panics, times out or whose worker
    /// dies fails its own slot, and the others keep their values. Chunks
    /// are of one item when the pool has a
    /// [`task_timeout`](PoolBuilder::task_timeout) (so an overdue task
    /// costs only its own input), else of Python's automatic size (a
    /// worker's death then fails every item of its chunk). The input is
    /// collected first; [`imap_chunked`](Pool::imap_chunked) gives the same
    /// per-item results lazily.
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    ///
    /// fn checked_sqrt(x: f64) -> f64 {
    ///     assert!(x >= 0.0, "negative input {x}");
    ///     x.sqrt()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let pool = Pool::new(2)?;
    /// let results = pool.map_results(checked_sqrt, [4.0, -1.0, 9.0])?;
    /// assert_eq!(*results[0].as_ref().unwrap(), 2.0);
    /// assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::ChildPanicked);
    /// assert_eq!(*results[2].as_ref().unwrap(), 3.0);
    /// pool.close();
    /// pool.join()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only what fails the whole call: as [`apply_async`](Pool::apply_async)
    /// for a closed pool; each task's own failure is in its slot.
    #[doc(alias = "map")]
    pub fn map_results<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<Result<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize = if self.shared.lock().cfg.task_timeout.is_some() {
            1
        } else {
            state::auto_chunksize(items.len(), self.shared.size)
        };
        Ok(self.imap_chunked(f, items, chunksize)?.collect())
    }

    /// [`map`](Pool::map) with an explicit chunk size.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a chunk size of 0; as
    /// [`map`](Pool::map).
    pub fn map_chunked<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, Some(chunksize))?.get()
    }

    /// Python's `starmap`: the same as [`map`](Pool::map), since several
    /// arguments are already one tuple (`fn((A, B)) -> R`).
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map(f, items)
    }

    /// Queues `f` over every item and returns a handle on the results;
    /// `chunksize` `None` picks Python's automatic size (for arguments of
    /// 64 KiB or more: chunks near 256 KiB).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a chunk size of 0; as
    /// [`apply_async`](Pool::apply_async).
    pub fn map_async<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: Option<usize>) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_job(f, items, chunksize, None)
    }

    /// [`map_async`](Pool::map_async) with Python's `callback` (called
    /// with every result, in order) and `error_callback` (called with the
    /// first error in input order); see
    /// [`apply_async_with`](Pool::apply_async_with) for where they run.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async).
    pub fn map_async_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<[R]>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let Callbacks { value, error } = callbacks;
        let items: Vec<A> = items.into_iter().collect();
        let on_done = erase::<R>(items.len(), value, error);
        self.map_job(f, items, chunksize, Some(on_done))
    }

    fn map_job<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
        on_done: Option<OnDone>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let offs = offsets(f)?;
        self.shared.enter()?.check_open()?;
        check_chunksize(chunksize)?;
        let items: Vec<A> = items.into_iter().collect();
        let len = items.len();
        // Large arguments (judged by the first) travel each encoded on its
        // own (a byte buffer is then sent as it is, not element by element
        // inside a `Vec`), and the automatic chunk size keeps a chunk's
        // message near `BATCH_BYTES`.
        let first = items.first().map_or(0, |a| {
            let mut probe = Vec::new();
            // The descriptors of library objects are not wanted here.
            let (r, _) = codec::fds::collect(|| encode_caught(a, &mut probe));
            r.map_or(0, |()| probe.len())
        });
        let large = first >= LARGE_ARG;
        let chunk = match chunksize {
            Some(c) => c,
            None if large => (BATCH_BYTES / first).max(1),
            None => auto_chunksize(len, self.shared.size),
        }
        .max(1);
        // Encode without the lock.
        let batch_offs = if large { None } else { worker::batch_offsets_of(f) };
        let mut encoded = Vec::with_capacity(len.div_ceil(chunk));
        let mut it = items.into_iter();
        let mut start = 0;
        loop {
            let part: Vec<A> = it.by_ref().take(chunk).collect();
            if part.is_empty() {
                break;
            }
            let n = part.len();
            let mut part = part;
            if large && n == 1 {
                if let Some(a) = part.pop() {
                    encoded.push(encode_one(offs, start, a));
                }
            } else {
                encoded.push(encode_batch(offs, batch_offs, start, part));
            }
            start += n;
        }
        let mut st = self.shared.enter()?;
        st.check_open()?;
        let job = st.new_job();
        if let Some(j) = st.jobs.get_mut(&job) {
            j.on_done = on_done;
        }
        #[cfg(feature = "progress")]
        st.attach_bar(job, Some(len));
        let handle = JobHandle {
            shared: self.shared.clone(),
            job,
            len,
            cancel_on_drop: false,
        };
        for enc in encoded {
            st.add(job, enc);
        }
        st.seal(job);
        st.harvest();
        drop(run_due(&self.shared, st, true));
        Ok(MapResult {
            handle,
            _r: PhantomData,
        })
    }

    /// Python's `starmap_async`: [`map_async`](Pool::map_async).
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async).
    pub fn starmap_async<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: Option<usize>) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, chunksize)
    }

    /// A lazy, ordered `map`: the input is read as results are consumed,
    /// at most `4 × processes` chunks ahead; chunk size 1.
    ///
    /// A panic of the input comes out of `next` after the results of every
    /// item read before it, in order (Python's `imap` yields them, then
    /// raises the input's exception); the iteration then ends.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); each item is the task's
    /// result.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, 1, true)
    }

    /// [`imap`](Pool::imap) with a chunk size.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a chunk size of 0; as
    /// [`imap`](Pool::imap).
    pub fn imap_chunked<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: usize) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, chunksize, true)
    }

    /// Like [`imap`](Pool::imap), but yields results in the order they
    /// arrive (of those that arrived together, lowest index first)
    /// ([`Imap::next_indexed`] gives each one's input index too). A panic
    /// of the input comes out of the `next` that read it; the items read
    /// before it are still queued, and their results come later.
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_unordered<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, 1, false)
    }

    /// [`imap_unordered`](Pool::imap_unordered) with a chunk size.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a chunk size of 0; as
    /// [`imap`](Pool::imap).
    pub fn imap_unordered_chunked<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, chunksize, false)
    }

    pub(super) fn imap_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let offs = offsets(f)?;
        check_chunksize(Some(chunksize))?;
        let items = items.into_iter();
        let mut st = self.shared.enter()?;
        st.check_open()?;
        let job = st.new_job();
        let ahead = st.size.saturating_mul(4).saturating_mul(chunksize);
        #[cfg(feature = "progress")]
        {
            let len = match items.size_hint() {
                (lo, Some(hi)) if lo == hi => Some(lo),
                _ => None,
            };
            st.attach_bar(job, len);
        }
        drop(st);
        Ok(Imap {
            handle: JobHandle {
                shared: self.shared.clone(),
                job,
                len: 0,
                cancel_on_drop: true,
            },
            input: Some(items),
            offs,
            chunksize,
            ahead,
            deadline: None,
            stop_at_close: false,
            yielded: 0,
            ordered,
            input_panic: Mutex::new(None),
            _r: PhantomData,
        })
    }

    /// No new submissions (an unfinished `imap` still reads its input and
    /// submits until [`join`](Pool::join)); the queued ones still run. Call [`join`](Pool::join)
    /// to wait for them and for the workers' exit.
    pub fn close(&self) {
        let Ok(mut st) = self.shared.enter() else { return };
        if st.life == Life::Running {
            st.life = Life::Closed;
        }
    }

    /// Kills the workers at once and reaps them; every unfinished task
    /// fails with [`ErrorKind::Cancelled`]. Waits at most ten seconds in
    /// all (one deadline for every worker) for them to exit.
    ///
    /// A worker that cannot be signalled (the process dropped its
    /// privileges since the pool started it, and the kill fails with
    /// `EPERM`) has its link closed instead: idle, it leaves at once;
    /// running a task, when that task returns.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] naming the workers still running at the
    /// deadline, and why (the signal's error, or that they did not exit
    /// in time); [`join`](Pool::join) waits for them again.
    /// [`ErrorKind::Io`] when every worker is gone but some could not be
    /// signalled (they left when their links closed): the error names
    /// them, with the signal's error. [`ErrorKind::InvalidState`] in a
    /// fork child (which does nothing).
    pub fn terminate(&self) -> Result<()> {
        let mut st = self.shared.enter()?;
        let r = st.terminate();
        drop(run_due(&self.shared, st, true));
        r
    }

    /// After [`close`](Pool::close): runs the queued tasks to the end, then
    /// closes the workers' links, which makes them exit, and reaps them.
    /// The exit is bounded in all (one deadline for every worker): the
    /// workers get a minute to leave, then those left are killed and get
    /// ten seconds more. After [`terminate`](Pool::terminate): waits
    /// (ten seconds) for the workers it left running.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if the pool is still open, or in a fork
    /// child; [`ErrorKind::Io`] if waiting on the workers fails;
    /// [`ErrorKind::Timeout`] naming the workers still running at the
    /// deadline, and why (a kill that failed, for example with `EPERM`
    /// once the process dropped its privileges); a later `join` waits
    /// for them again.
    pub fn join(&self) -> Result<()> {
        let st = self.shared.enter()?;
        if st.life == Life::Running {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "join a pool only after close or terminate",
            ));
        }
        let (mut st, r) = drive(&self.shared, st, None, |st| {
            if st.driving || st.in_flight() || !st.pending.is_empty() {
                Check::Pump
            } else {
                Check::Done
            }
        });
        // Without work, `drive` reports the pending chunks that no worker
        // can take as "no work in progress": they cannot run.
        if let Err(e) = r {
            if e.kind() != ErrorKind::InvalidState {
                return Err(e);
            }
        }
        let mut workers = std::mem::take(&mut st.workers);
        let mut stuck = std::mem::take(&mut st.stuck);
        drop(st);
        for w in &workers {
            // The end of its link makes the worker loop return (and its
            // sends fail).
            let _ = w.conn.shut_down(true);
        }
        let until = deadline_after(WORKER_DEADLINE);
        for w in &mut workers {
            let _ = w.proc.join_timeout(until.saturating_duration_since(Instant::now()));
        }
        // Those that did not leave are killed, and get one more deadline
        // in all; one that cannot be signalled stays stuck.
        let mut killed = Vec::new();
        for w in workers {
            if w.proc.exit_status().is_none() {
                let refused = w.proc.kill().err();
                killed.push((w, refused));
            }
        }
        let until = deadline_after(STOP_WAIT);
        stuck.append(&mut killed);
        let r = wait_stuck(&mut stuck, until);
        if !stuck.is_empty() {
            self.shared.lock().stuck.append(&mut stuck);
        }
        r
    }

    /// [`terminate`](Pool::terminate), but each worker first gets `SIGTERM`
    /// and up to `grace` (shared) to exit by itself: its handlers run.
    /// Under one lock: nothing is submitted or sent meanwhile.
    pub(crate) fn terminate_gently(&self, grace: Duration) -> Result<()> {
        let mut st = self.shared.enter()?;
        st.life = Life::Terminated;
        // Only the workers the signal reached are waited for.
        let signalled: Vec<bool> = st.workers.iter().map(|w| w.proc.terminate().is_ok()).collect();
        let until = Instant::now() + grace;
        for (w, signalled) in st.workers.iter_mut().zip(signalled) {
            if signalled {
                let _ = w.proc.join_timeout(until.saturating_duration_since(Instant::now()));
            }
        }
        let r = st.terminate();
        drop(run_due(&self.shared, st, true));
        r
    }

    pub(crate) fn cancel_pending(&self) {
        let Ok(mut st) = self.shared.enter() else { return };
        let e = Error::new(ErrorKind::Cancelled, "the task was cancelled at shutdown");
        st.fail_pending(&e);
        st.nudge();
        st.wake_sleepers(&self.shared);
        drop(run_due(&self.shared, st, true));
    }
}

impl Drop for Pool {
    /// Terminates the pool: kills and reaps the workers (waiting at most
    /// ten seconds in all), fails the unfinished tasks with
    /// [`ErrorKind::Cancelled`]. Never hangs. Workers that could not be
    /// signalled (`EPERM`, once the process dropped its privileges) have
    /// their links closed instead, and leave at once when idle; those
    /// still running at the deadline (a task that has not returned) are
    /// named in one line on standard error, since a drop cannot return
    /// the error [`terminate`](Pool::terminate) would: each leaves when
    /// its task returns.
    fn drop(&mut self) {
        if !self.shared.is_owner() {
            // A fork child's copy: the workers are the parent's.
            return;
        }
        let mut st = self.shared.lock();
        match st.terminate() {
            Err(e) if e.is_timeout() => eprintln!("multiproc: dropping a pool: {e}"),
            _ => {}
        }
        drop(run_due(&self.shared, st, false));
    }
}
