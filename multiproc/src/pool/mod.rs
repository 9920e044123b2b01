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
//! There is no background thread (a thread would forbid the `fork` start
//! method for the replacement workers). The pool's state sits behind one
//! mutex and is driven by the callers that wait on it: whoever waits for
//! a result sends pending chunks (two in flight per worker, up to 16 of one
//! `map`, while their messages total at most 64 KiB, else one, so that the parent never blocks
//! writing to a worker that is itself blocked writing results), then waits with [`wait`] over every
//! worker's connection *and* its process sentinel (a pidfd), so a worker's
//! death is seen at once. Waiting from several threads is safe; the waits
//! are served one at a time.
//!
//! When a worker dies, the results it sent before dying are kept, the
//! chunk it was running fails with [`ErrorKind::ChildKilled`] or
//! [`ErrorKind::ChildExited`] carrying its [`ExitStatus`](crate::ExitStatus),
//! the chunk queued behind it goes back to the pending queue (it never
//! started), and a new worker takes its place. With a task timeout, the
//! worker running an overdue chunk is killed and replaced, and that chunk
//! fails with [`ErrorKind::Timeout`]. An initializer that fails makes
//! [`PoolBuilder::build`] fail with its error (its panic for a panic); if a
//! *replacement* worker's initializer fails, the pool is broken: every
//! pending task and every later submission fails with that error. There is
//! no respawn loop.
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
//! - Arguments cannot carry connections or other descriptors.
//! - Dropping a [`Pool`] terminates it (as leaving Python's `with Pool()`
//!   block does): workers are killed and reaped, unfinished tasks fail with
//!   [`ErrorKind::Cancelled`]. It never hangs.

mod executor;
pub(crate) mod worker;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    marker::PhantomData,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};

pub use self::executor::{Executor, Future};
use self::worker::{Init, WorkerArgs};
use crate::{
    bootstrap::{Failure, Outcome, OutcomeRef},
    codec::{self, CodecError},
    connection::{Connection, Waitable, pipe, wait},
    error::{Error, ErrorKind, Result},
    process::{ExitStatus, Process, ProcessBuilder},
    start::StartMethod,
    target,
};

/// How long a worker may take to start and run its initializer, and how
/// long a closing worker may take to exit before it is killed.
const WORKER_DEADLINE: Duration = Duration::from_secs(60);

/// A worker has more than one chunk only while their messages total at
/// most this much, well under a socket buffer: the parent never blocks
/// writing to a worker that is itself blocked writing results.
const SMALL_CHUNK: usize = 64 * 1024;

/// At most this many chunks in flight per worker.
const MAX_DEPTH: usize = 16;

/// A task's outcome bytes, or the error that replaced them.
type TaskResult = std::result::Result<Vec<u8>, Error>;

/// Builds a [`Pool`]; see [`Pool::builder`].
#[derive(Debug, Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<std::result::Result<Init, String>>,
    maxtasks: Option<usize>,
    method: Option<StartMethod>,
    task_timeout: Option<Duration>,
}

impl PoolBuilder {
    /// The number of workers (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// A function each worker runs once, before any task.
    pub fn initializer<A: Serialize + DeserializeOwned + 'static>(mut self, f: fn(A), args: A) -> PoolBuilder {
        self.init = Some(match target::offsets_of(f) {
            None => Err("the initializer lies outside the main executable".into()),
            Some((tramp, target)) => codec::encode(&args)
                .map(|a| Init {
                    tramp,
                    target,
                    args: a.into_owned(),
                })
                .map_err(|CodecError(e)| format!("failed to serialize the initializer's arguments: {e}")),
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

    /// Kill and replace a worker whose task runs longer than `timeout`; the
    /// task fails with [`ErrorKind::Timeout`]. For a chunk of `n` tasks the
    /// limit is `n × timeout`.
    pub fn task_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.task_timeout = Some(timeout);
        self
    }

    /// Starts the workers and waits until each has run its initializer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for zero processes or a zero
    /// `maxtasksperchild`; [`ErrorKind::Serialize`] or
    /// [`ErrorKind::Unsupported`] for an initializer that cannot be sent;
    /// the initializer's error ([`ErrorKind::ChildPanicked`] with its panic)
    /// if it fails in a worker; the start errors of [`Process::start`].
    pub fn build(self) -> Result<Pool> {
        let size = match self.processes {
            Some(n) => n,
            None => crate::cpu_count()?,
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
            Some(Err(m)) => return Err(Error::new(ErrorKind::Serialize, m)),
        };
        let mut state = State {
            cfg: Config {
                init,
                maxtasks: self.maxtasks,
                method: self.method,
                task_timeout: self.task_timeout,
            },
            size,
            workers: Vec::with_capacity(size),
            pending: VecDeque::new(),
            jobs: HashMap::new(),
            next_job: 0,
            life: Life::Running,
            broken: None,
            started: 0,
        };
        let mut starting = Vec::with_capacity(size);
        for _ in 0..size {
            match state.start_worker() {
                Ok(w) => starting.push(w),
                Err(e) => {
                    state.workers = starting;
                    state.kill_all();
                    return Err(e);
                }
            }
        }
        let mut first_err = None;
        for mut w in starting {
            match (first_err.is_none()).then(|| w.await_ready()) {
                Some(Ok(())) => state.workers.push(w),
                Some(Err(e)) => {
                    first_err = Some(e);
                    state.workers.push(w);
                }
                None => state.workers.push(w),
            }
        }
        if let Some(e) = first_err {
            state.kill_all();
            return Err(e);
        }
        Ok(Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
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
/// is no background thread: the threads that wait on results drive the
/// pool, one at a time. `map` returns the first error in input order;
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

struct Shared {
    state: Mutex<State>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared { .. }")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Config {
    init: Option<Init>,
    maxtasks: Option<usize>,
    method: Option<StartMethod>,
    task_timeout: Option<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Life {
    Running,
    Closed,
    Terminated,
}

struct State {
    cfg: Config,
    size: usize,
    workers: Vec<Worker>,
    pending: VecDeque<Chunk>,
    jobs: HashMap<u64, Job>,
    next_job: u64,
    life: Life,
    broken: Option<Error>,
    started: usize,
}

#[derive(Default)]
struct Job {
    results: BTreeMap<usize, TaskResult>,
    /// Batch replies: the tasks' indexes and their encoded `Vec<R>`.
    batches: Vec<(Vec<usize>, Vec<u8>)>,
    outstanding: usize,
}

struct Chunk {
    job: u64,
    idx: Vec<usize>,
    payload: Vec<u8>,
}

struct Sent {
    chunk: Chunk,
    started: Option<Instant>,
}

struct Worker {
    proc: Process<()>,
    conn: Connection,
    in_flight: VecDeque<Sent>,
    sent: usize,
}

impl Worker {
    /// Waits for the initializer's outcome (bounded).
    fn await_ready(&mut self) -> Result<()> {
        let ready = wait(&[(&self.conn).into(), (&self.proc).into()], Some(WORKER_DEADLINE))?;
        if ready.is_empty() {
            let _ = self.proc.kill();
            let _ = self.proc.join_timeout(WORKER_DEADLINE);
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("a pool worker did not finish its initializer within {WORKER_DEADLINE:?}"),
            ));
        }
        if ready.contains(&0) || self.conn.poll(Some(Duration::ZERO))? {
            if let Ok(bytes) = self.conn.recv_bytes() {
                let err = |kind, m: String| Err(self.err(kind, m));
                return match Outcome::from_bytes(&bytes) {
                    Ok(OutcomeRef::Value(_)) => Ok(()),
                    Ok(OutcomeRef::Panic(p)) => Err(self
                        .err(ErrorKind::ChildPanicked, "the pool's initializer panicked".into())
                        .with_panic(p)),
                    Ok(OutcomeRef::Failed(Failure::DecodeArgs, m)) => err(
                        ErrorKind::Deserialize,
                        format!("the pool's initializer could not deserialize its arguments: {m}"),
                    ),
                    Ok(OutcomeRef::Failed(_, m)) => {
                        err(ErrorKind::Bootstrap, format!("the pool's initializer failed: {m}"))
                    }
                    Err(m) => err(ErrorKind::Protocol, format!("malformed initializer outcome: {m}")),
                };
            }
        }
        // The worker ended (or closed its end) before its initializer
        // reported.
        let e = match self.proc.join_timeout(WORKER_DEADLINE) {
            Err(e) => e,
            Ok(()) => self.err(
                ErrorKind::Bootstrap,
                "a pool worker ended before its initializer finished".into(),
            ),
        };
        Err(e)
    }

    fn err(&self, kind: ErrorKind, message: String) -> Error {
        Error::new(kind, message).with_process(self.proc.name(), self.proc.pid())
    }

    fn can_take(&self, next: &Chunk, maxtasks: Option<usize>) -> bool {
        // Beyond two, only chunks of one job (a `map`) queue up behind each
        // other: separate submissions stay pending, and cancellable.
        let deep_ok = self.in_flight.len() < 2 || self.in_flight.back().is_some_and(|b| b.chunk.job == next.job);
        let room = self.in_flight.is_empty()
            || (deep_ok
                && self.in_flight.len() < MAX_DEPTH
                && self.in_flight.iter().map(|s| s.chunk.payload.len()).sum::<usize>() + next.payload.len()
                    <= SMALL_CHUNK);
        room && maxtasks.is_none_or(|m| self.sent < m)
    }

    /// Kills the worker (if alive) and reaps it, bounded.
    fn kill_and_reap(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.join_timeout(WORKER_DEADLINE);
    }
}

impl State {
    fn start_worker(&mut self) -> Result<Worker> {
        let (ours, theirs) = pipe(true)?;
        self.started += 1;
        let mut b = ProcessBuilder::new()
            .name(format!("PoolWorker-{}", self.started))
            .daemon(true);
        if let Some(m) = self.cfg.method {
            b = b.start_method(m);
        }
        let mut proc = b.target_with(
            worker::worker_main,
            WorkerArgs {
                conn: theirs,
                init: self.cfg.init.clone(),
                maxtasks: self.cfg.maxtasks,
            },
        );
        proc.start()?;
        Ok(Worker {
            proc,
            conn: ours,
            in_flight: VecDeque::new(),
            sent: 0,
        })
    }

    fn kill_all(&mut self) {
        for w in &self.workers {
            let _ = w.proc.kill();
        }
        for mut w in std::mem::take(&mut self.workers) {
            let _ = w.proc.join_timeout(WORKER_DEADLINE);
            for s in w.in_flight.drain(..) {
                self.pending.push_back(s.chunk);
            }
        }
    }

    fn check_open(&self) -> Result<()> {
        if let Some(e) = &self.broken {
            return Err(e.duplicate());
        }
        match self.life {
            Life::Running => Ok(()),
            _ => Err(Error::new(ErrorKind::InvalidState, "the pool is closed")),
        }
    }

    fn new_job(&mut self) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, Job::default());
        id
    }

    /// Encodes `items` as one chunk of `job` and queues it; an argument
    /// that fails to serialize fails its task at once.
    fn push_chunk<A: Serialize + 'static>(&mut self, job: u64, offs: (i64, i64), items: Vec<(usize, A)>) {
        let Some(j) = self.jobs.get_mut(&job) else { return };
        let mut payload = worker::task_header(offs.0, offs.1, 0);
        let mut idx = Vec::with_capacity(items.len());
        for (i, a) in items {
            match codec::encode(&a) {
                Ok(bytes) => {
                    worker::put(&mut payload, &bytes);
                    idx.push(i);
                }
                Err(CodecError(e)) => {
                    j.results.insert(
                        i,
                        Err(Error::new(
                            ErrorKind::Serialize,
                            format!("failed to serialize the task's argument: {e}"),
                        )),
                    );
                }
            }
        }
        if idx.is_empty() {
            return;
        }
        j.outstanding += idx.len();
        let chunk = Chunk { job, idx, payload };
        match &self.broken {
            Some(e) => {
                let e = e.duplicate();
                self.fail_chunk(chunk, &e);
            }
            None => self.pending.push_back(chunk),
        }
    }

    fn fail_chunk(&mut self, chunk: Chunk, e: &Error) {
        if let Some(j) = self.jobs.get_mut(&chunk.job) {
            for i in chunk.idx {
                j.results.insert(i, Err(e.duplicate()));
                j.outstanding -= 1;
            }
        }
    }

    fn complete(&mut self, chunk: Chunk, msg: &[u8]) {
        let Some(j) = self.jobs.get_mut(&chunk.job) else { return };
        let n = chunk.idx.len();
        match msg.split_first() {
            Some((1, values)) => {
                j.outstanding -= n;
                j.batches.push((chunk.idx, values.to_vec()));
                return;
            }
            Some((2, outcome)) => {
                for i in chunk.idx {
                    j.results.insert(i, Ok(outcome.to_vec()));
                    j.outstanding -= 1;
                }
                return;
            }
            _ => {}
        }
        match msg
            .split_first()
            .filter(|(tag, _)| **tag == 0)
            .and_then(|(_, rest)| worker::items(rest))
            .filter(|it| it.len() == n)
        {
            Some(items) => {
                for (i, bytes) in chunk.idx.into_iter().zip(items) {
                    j.results.insert(i, Ok(bytes.to_vec()));
                    j.outstanding -= 1;
                }
            }
            None => {
                let e = Error::new(ErrorKind::Protocol, "a pool worker sent a malformed result message");
                self.fail_chunk(chunk, &e);
            }
        }
    }

    /// Queues a `map` chunk as one encoded `Vec<A>`; falls back to
    /// [`push_chunk`](State::push_chunk) when the batch does not encode.
    fn push_batch<A: Serialize + 'static>(
        &mut self,
        job: u64,
        offs: (i64, i64),
        batch_offs: Option<(i64, i64)>,
        start: usize,
        items: Vec<A>,
    ) {
        if let Some(bo) = batch_offs {
            if let Ok(bytes) = codec::encode(&items) {
                let mut payload = worker::task_header(bo.0, bo.1, 1);
                payload.extend_from_slice(&bytes);
                drop(bytes);
                let idx: Vec<usize> = (start..start + items.len()).collect();
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.outstanding += idx.len();
                    let chunk = Chunk { job, idx, payload };
                    match &self.broken {
                        Some(e) => {
                            let e = e.duplicate();
                            self.fail_chunk(chunk, &e);
                        }
                        None => self.pending.push_back(chunk),
                    }
                }
                return;
            }
        }
        self.push_chunk(
            job,
            offs,
            items.into_iter().enumerate().map(|(k, a)| (start + k, a)).collect(),
        );
    }

    fn fail_pending(&mut self, e: &Error) {
        while let Some(c) = self.pending.pop_front() {
            self.fail_chunk(c, e);
        }
    }

    /// Sends pending chunks to workers with room.
    fn dispatch(&mut self) {
        if self.life == Life::Terminated {
            return;
        }
        let now = Instant::now();
        for w in &mut self.workers {
            while let Some(next) = self.pending.front() {
                if !self.jobs.contains_key(&next.job) {
                    self.pending.pop_front();
                    continue;
                }
                if !w.can_take(next, self.cfg.maxtasks) {
                    break;
                }
                let Some(chunk) = self.pending.pop_front() else { break };
                if w.conn.send_bytes(&chunk.payload).is_err() {
                    // The worker is dying: its sentinel will say so.
                    self.pending.push_front(chunk);
                    break;
                }
                w.sent += 1;
                let started = w.in_flight.is_empty().then_some(now);
                w.in_flight.push_back(Sent { chunk, started });
            }
        }
    }

    fn in_flight(&self) -> bool {
        self.workers.iter().any(|w| !w.in_flight.is_empty())
    }

    /// One round: dispatch, wait (until `deadline` at most) for results or
    /// deaths, handle them. Returns `false` when nothing was in flight (no
    /// progress is possible without new work).
    fn pump(&mut self, deadline: Option<Instant>) -> Result<bool> {
        self.dispatch();
        // A worker at its `maxtasksperchild` is about to exit: its
        // replacement will take the pending chunks.
        let retiring = |w: &Worker| self.cfg.maxtasks.is_some_and(|m| w.sent >= m);
        if !self.in_flight() && (self.pending.is_empty() || !self.workers.iter().any(retiring)) {
            return Ok(false);
        }
        let now = Instant::now();
        let mut wake = deadline;
        let overdue_at = |s: &Sent, t: Duration| s.started.unwrap_or(now) + t * s.chunk.idx.len().max(1) as u32;
        if let Some(t) = self.cfg.task_timeout {
            for s in self.workers.iter().filter_map(|w| w.in_flight.front()) {
                let at = overdue_at(s, t);
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        let ready = {
            let objs: Vec<Waitable<'_>> = self
                .workers
                .iter()
                .flat_map(|w| [(&w.conn).into(), (&w.proc).into()])
                .collect();
            wait(&objs, wake.map(|w| w.saturating_duration_since(now)))?
        };
        let mut dead: Vec<(usize, bool)> = Vec::new();
        for r in ready {
            let i = r / 2;
            if r % 2 == 0 {
                // Take every result already there, not just one.
                loop {
                    match self.workers[i].conn.recv_bytes() {
                        Ok(msg) => self.on_result(i, &msg),
                        Err(_) => {
                            dead.push((i, false));
                            break;
                        }
                    }
                    if self.workers[i].in_flight.is_empty()
                        || !self.workers[i].conn.poll(Some(Duration::ZERO)).unwrap_or(false)
                    {
                        break;
                    }
                }
            } else {
                dead.push((i, false));
            }
        }
        if let Some(t) = self.cfg.task_timeout {
            let now = Instant::now();
            for (i, w) in self.workers.iter().enumerate() {
                if w.in_flight.front().is_some_and(|s| overdue_at(s, t) <= now) {
                    let _ = w.proc.kill();
                    dead.push((i, true));
                }
            }
        }
        dead.sort_unstable();
        dead.dedup_by(|a, b| {
            let same = a.0 == b.0;
            if same {
                b.1 |= a.1;
            }
            same
        });
        for (i, timed_out) in dead {
            self.on_death(i, timed_out);
        }
        Ok(true)
    }

    fn on_result(&mut self, i: usize, msg: &[u8]) {
        let w = &mut self.workers[i];
        let Some(sent) = w.in_flight.pop_front() else { return };
        if let Some(next) = w.in_flight.front_mut() {
            next.started = Some(Instant::now());
        }
        self.complete(sent.chunk, msg);
    }

    fn on_death(&mut self, i: usize, timed_out: bool) {
        // Keep what the worker sent before it ended.
        while !timed_out && self.workers[i].conn.poll(Some(Duration::ZERO)).unwrap_or(false) {
            match self.workers[i].conn.recv_bytes() {
                Ok(msg) => self.on_result(i, &msg),
                Err(_) => break,
            }
        }
        let w = &mut self.workers[i];
        if w.proc.join_timeout(WORKER_DEADLINE).is_err() && w.proc.exit_status().is_none() {
            w.kill_and_reap();
        }
        let status = w.proc.exit_status();
        let head = w.in_flight.pop_front();
        for s in w.in_flight.drain(..).rev() {
            self.pending.push_front(s.chunk);
        }
        if let Some(head) = head {
            let w = &self.workers[i];
            let e = if timed_out {
                w.err(
                    ErrorKind::Timeout,
                    "the task ran past the pool's task timeout; its worker was killed and replaced".into(),
                )
            } else {
                let kind = match status {
                    Some(ExitStatus::Signaled(_)) => ErrorKind::ChildKilled,
                    _ => ErrorKind::ChildExited,
                };
                let shown = status.map_or_else(|| "an unknown status".to_owned(), |s| s.to_string());
                w.err(kind, format!("the pool worker running this task died ({shown})"))
            };
            let e = match status {
                Some(s) => e.with_status(s),
                None => e,
            };
            self.fail_chunk(head.chunk, &e);
        }
        if self.life == Life::Terminated || self.broken.is_some() {
            self.workers.remove(i);
            return;
        }
        let replacement = self.start_worker().and_then(|mut w| match w.await_ready() {
            Ok(()) => Ok(w),
            Err(e) => {
                w.kill_and_reap();
                Err(e)
            }
        });
        match replacement {
            Ok(w) => self.workers[i] = w,
            Err(e) => {
                // No respawn loop: the pool is broken for good.
                self.workers[i].kill_and_reap();
                self.fail_pending(&e);
                self.broken = Some(e);
                self.kill_all();
            }
        }
    }

    /// Kills the workers and fails every unfinished task.
    fn terminate(&mut self) {
        self.life = Life::Terminated;
        self.kill_all();
        let e = Error::new(ErrorKind::Cancelled, "the pool was terminated before the task finished");
        self.fail_pending(&e);
    }
}

/// Drives the pool until `done` gives a value, or `deadline` passes.
fn drive<T>(shared: &Shared, deadline: Option<Instant>, mut done: impl FnMut(&mut State) -> Option<T>) -> Result<T> {
    let mut st = shared.lock();
    loop {
        if let Some(v) = done(&mut st) {
            return Ok(v);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::new(ErrorKind::Timeout, "the pool's result is not ready yet"));
        }
        if !st.pump(deadline)? {
            if let Some(v) = done(&mut st) {
                return Ok(v);
            }
            return Err(Error::new(
                ErrorKind::InvalidState,
                "the pool has no work in progress that could produce this result",
            ));
        }
    }
}

/// Decodes a task's outcome into its value or error.
fn decode<R: DeserializeOwned + 'static>(r: TaskResult) -> Result<R> {
    let bytes = r?;
    match Outcome::from_bytes(&bytes) {
        Ok(OutcomeRef::Value(v)) => codec::decode::<R>(v).map_err(|CodecError(e)| {
            Error::new(
                ErrorKind::Deserialize,
                format!("failed to deserialize the task's result: {e}"),
            )
        }),
        Ok(OutcomeRef::Panic(p)) => Err(Error::new(ErrorKind::ChildPanicked, "the task panicked").with_panic(p)),
        Ok(OutcomeRef::Failed(Failure::DecodeArgs, m)) => Err(Error::new(
            ErrorKind::Deserialize,
            format!("the worker failed to deserialize the task's argument: {m}"),
        )),
        Ok(OutcomeRef::Failed(Failure::EncodeResult, m)) => Err(Error::new(
            ErrorKind::Serialize,
            format!("the worker failed to serialize the task's result: {m}"),
        )),
        Ok(OutcomeRef::Failed(Failure::Bootstrap, m)) => Err(Error::new(ErrorKind::Bootstrap, m)),
        Err(m) => Err(Error::new(ErrorKind::Protocol, format!("malformed task outcome: {m}"))),
    }
}

fn offsets<A: DeserializeOwned + 'static, R: Serialize + 'static>(f: fn(A) -> R) -> Result<(i64, i64)> {
    target::offsets_of(f).ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "a pool task must be a function of the main executable",
        )
    })
}

/// Python's automatic chunk size: `len / (4 × workers)`, rounded up.
fn auto_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers).max(1)
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

    /// The pids of the current workers.
    pub fn pids(&self) -> Vec<u32> {
        self.shared.lock().workers.iter().filter_map(|w| w.proc.pid()).collect()
    }

    /// Runs `f(args)` in a worker and waits for its result.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] on a closed pool; the task's own error
    /// ([`ErrorKind::ChildPanicked`], a codec error, a worker's death, a
    /// timeout) otherwise.
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
        let offs = offsets(f)?;
        let mut st = self.shared.lock();
        st.check_open()?;
        let job = st.new_job();
        st.push_chunk(job, offs, vec![(0, args)]);
        st.dispatch();
        drop(st);
        Ok(AsyncResult {
            handle: JobHandle {
                shared: self.shared.clone(),
                job,
                len: 1,
            },
            _r: PhantomData,
        })
    }

    /// `f` over every item, in order, with Python's automatic chunk size.
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

    /// [`map`](Pool::map) with an explicit chunk size (0 counts as 1).
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
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
    /// `chunksize` `None` picks Python's automatic size.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async).
    pub fn map_async<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: Option<usize>) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let offs = offsets(f)?;
        let items: Vec<A> = items.into_iter().collect();
        let len = items.len();
        let mut st = self.shared.lock();
        st.check_open()?;
        let chunk = chunksize.unwrap_or_else(|| auto_chunksize(len, st.size)).max(1);
        let job = st.new_job();
        let batch_offs = target::batch_offsets_of(f);
        let mut it = items.into_iter();
        let mut start = 0;
        loop {
            let part: Vec<A> = it.by_ref().take(chunk).collect();
            if part.is_empty() {
                break;
            }
            let n = part.len();
            st.push_batch(job, offs, batch_offs, start, part);
            start += n;
        }
        st.dispatch();
        drop(st);
        Ok(MapResult {
            handle: JobHandle {
                shared: self.shared.clone(),
                job,
                len,
            },
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

    /// [`imap`](Pool::imap) with a chunk size (0 counts as 1).
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_chunked<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: usize) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, chunksize, true)
    }

    /// Like [`imap`](Pool::imap), but yields results as they arrive, with
    /// the input index: `(index, result)`.
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

    fn imap_with<A, R, I>(
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
        let mut st = self.shared.lock();
        st.check_open()?;
        let job = st.new_job();
        let chunksize = chunksize.max(1);
        let ahead = 4 * st.size * chunksize;
        drop(st);
        Ok(Imap {
            handle: JobHandle {
                shared: self.shared.clone(),
                job,
                len: 0,
            },
            input: Some(items.into_iter()),
            offs,
            chunksize,
            ahead,
            yielded: 0,
            ordered,
            _r: PhantomData,
        })
    }

    /// No new tasks; the queued ones still run. Call [`join`](Pool::join)
    /// to wait for them and for the workers' exit.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        if st.life == Life::Running {
            st.life = Life::Closed;
        }
    }

    /// Kills the workers at once; every unfinished task fails with
    /// [`ErrorKind::Cancelled`].
    pub fn terminate(&self) {
        self.shared.lock().terminate();
    }

    /// After [`close`](Pool::close): runs the queued tasks to the end, then
    /// lets the workers exit and reaps them. After
    /// [`terminate`](Pool::terminate): reaps.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if the pool is still open.
    pub fn join(&self) -> Result<()> {
        let mut st = self.shared.lock();
        if st.life == Life::Running {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "join a pool only after close or terminate",
            ));
        }
        while st.pump(None)? {}
        let workers = std::mem::take(&mut st.workers);
        let mut procs = Vec::with_capacity(workers.len());
        for w in workers {
            // Closing our end makes the worker loop return.
            drop(w.conn);
            procs.push(w.proc);
        }
        for mut p in procs {
            if p.join_timeout(WORKER_DEADLINE).is_err() && p.exit_status().is_none() {
                let _ = p.kill();
                let _ = p.join_timeout(WORKER_DEADLINE);
            }
        }
        Ok(())
    }

    pub(crate) fn cancel_pending(&self) {
        let mut st = self.shared.lock();
        let e = Error::new(ErrorKind::Cancelled, "the task was cancelled at shutdown");
        st.fail_pending(&e);
    }
}

/// Removes `job`'s chunks that no worker has yet; `true` if there were any.
fn cancel_job(shared: &Shared, job: u64) -> bool {
    let mut st = shared.lock();
    let mut removed = Vec::new();
    st.pending.retain(|c| {
        let hit = c.job == job;
        if hit {
            removed.push(c.idx.clone());
        }
        !hit
    });
    if removed.is_empty() {
        return false;
    }
    let e = Error::new(ErrorKind::Cancelled, "the task was cancelled");
    for idx in removed {
        st.fail_chunk(
            Chunk {
                job,
                idx,
                payload: Vec::new(),
            },
            &e,
        );
    }
    true
}

impl Drop for Pool {
    /// Terminates the pool: kills and reaps the workers (bounded), fails
    /// the unfinished tasks with [`ErrorKind::Cancelled`]. Never hangs.
    fn drop(&mut self) {
        self.shared.lock().terminate();
    }
}

/// A job's registration in the pool; dropping it forgets the job (its
/// queued chunks are skipped, late results dropped).
struct JobHandle {
    shared: Arc<Shared>,
    job: u64,
    len: usize,
}

impl JobHandle {
    fn ready(&self) -> bool {
        self.shared
            .lock()
            .jobs
            .get(&self.job)
            .is_none_or(|j| j.outstanding == 0)
    }

    fn wait_done(&self, deadline: Option<Instant>) -> Result<()> {
        drive(&self.shared, deadline, |st| {
            st.jobs.get(&self.job).is_none_or(|j| j.outstanding == 0).then_some(())
        })
    }

    fn successful(&self) -> Option<bool> {
        let st = self.shared.lock();
        let j = st.jobs.get(&self.job)?;
        (j.outstanding == 0).then(|| {
            j.results
                .values()
                .all(|r| r.as_ref().is_ok_and(|b| b.first() == Some(&0)))
        })
    }

    fn peek_error_kind(&self) -> Option<ErrorKind> {
        let st = self.shared.lock();
        let j = st.jobs.get(&self.job)?;
        j.results.values().find_map(|r| r.as_ref().err().map(Error::kind))
    }

    fn take_all<R: DeserializeOwned + 'static>(&self) -> Result<Vec<R>> {
        let (results, batches) = {
            let mut st = self.shared.lock();
            let j = st
                .jobs
                .get_mut(&self.job)
                .ok_or_else(|| Error::new(ErrorKind::InvalidState, "the result was already taken"))?;
            (std::mem::take(&mut j.results), std::mem::take(&mut j.batches))
        };
        let got = results.len() + batches.iter().map(|b| b.0.len()).sum::<usize>();
        if got != self.len || (got == 0 && self.len == 1) {
            return Err(Error::new(ErrorKind::InvalidState, "the result was already taken"));
        }
        if results.is_empty() && batches.len() <= 1 {
            // The common case: one batch, or none for an empty input.
            return match batches.into_iter().next() {
                None => Ok(Vec::new()),
                Some((_, bytes)) => decode_batch::<R>(&bytes, self.len),
            };
        }
        let mut slots: Vec<Option<Result<R>>> = (0..self.len).map(|_| None).collect();
        for (i, r) in results {
            slots[i] = Some(decode::<R>(r));
        }
        for (idx, bytes) in batches {
            match decode_batch::<R>(&bytes, idx.len()) {
                Ok(values) => {
                    for (i, v) in idx.into_iter().zip(values) {
                        slots[i] = Some(Ok(v));
                    }
                }
                Err(e) => {
                    for i in idx {
                        slots[i] = Some(Err(e.duplicate()));
                    }
                }
            }
        }
        slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Err(Error::new(ErrorKind::Protocol, "a task's result is missing"))))
            .collect()
    }
}

/// Decodes a batch reply of `n` results.
fn decode_batch<R: DeserializeOwned + 'static>(bytes: &[u8], n: usize) -> Result<Vec<R>> {
    let values: Vec<R> = codec::decode(bytes).map_err(|CodecError(e)| {
        Error::new(
            ErrorKind::Deserialize,
            format!("failed to deserialize the tasks' results: {e}"),
        )
    })?;
    if values.len() != n {
        return Err(Error::new(
            ErrorKind::Protocol,
            "a pool worker sent the wrong number of results",
        ));
    }
    Ok(values)
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        self.shared.lock().jobs.remove(&self.job);
    }
}

fn deadline_after(timeout: Duration) -> Instant {
    Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365))
}

/// The pending result of [`Pool::apply_async`] (Python's `AsyncResult`).
pub struct AsyncResult<R> {
    handle: JobHandle,
    _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned + 'static> AsyncResult<R> {
    /// Waits for the result.
    ///
    /// # Errors
    ///
    /// The task's error.
    pub fn get(self) -> Result<R> {
        self.handle.wait_done(None)?;
        self.take()
    }

    /// Waits up to `timeout` for the result; on [`ErrorKind::Timeout`] the
    /// result can still be waited for.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`]; the task's error; [`ErrorKind::InvalidState`]
    /// once the result was taken.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R> {
        self.handle.wait_done(Some(deadline_after(timeout)))?;
        self.take()
    }

    fn take(&self) -> Result<R> {
        self.handle
            .take_all::<R>()?
            .pop()
            .ok_or_else(|| Error::new(ErrorKind::InvalidState, "no result"))
    }

    /// Waits up to `timeout` (`None`: no limit); `true` if the result is
    /// ready.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if waiting fails.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        match self.handle.wait_done(timeout.map(deadline_after)) {
            Ok(()) => Ok(true),
            Err(e) if e.is_timeout() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `true` once the task has finished (or failed).
    pub fn ready(&self) -> bool {
        self.handle.ready()
    }

    /// `None` before the task finished; then whether it returned a value.
    pub fn successful(&self) -> Option<bool> {
        self.handle.successful()
    }
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("job", &self.handle.job).finish()
    }
}

/// The pending results of [`Pool::map_async`].
pub struct MapResult<R> {
    handle: JobHandle,
    _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned + 'static> MapResult<R> {
    /// Waits for every result; the first error in input order, if any.
    ///
    /// # Errors
    ///
    /// The first failed task's error.
    pub fn get(self) -> Result<Vec<R>> {
        self.handle.wait_done(None)?;
        self.handle.take_all()
    }

    /// Like [`get`](MapResult::get) within `timeout`; on
    /// [`ErrorKind::Timeout`] the results can still be waited for.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`], or as [`get`](MapResult::get).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<Vec<R>> {
        self.handle.wait_done(Some(deadline_after(timeout)))?;
        self.handle.take_all()
    }

    /// `true` once every task has finished (or failed).
    pub fn ready(&self) -> bool {
        self.handle.ready()
    }

    /// `None` before every task finished; then whether all returned values.
    pub fn successful(&self) -> Option<bool> {
        self.handle.successful()
    }
}

impl<R> std::fmt::Debug for MapResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapResult").field("job", &self.handle.job).finish()
    }
}

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]. Ordered, it
/// yields each task's result; unordered, `(index, result)` pairs as
/// [`Imap::next_indexed`] (its `Iterator` items drop the index).
pub struct Imap<I, A, R> {
    handle: JobHandle,
    input: Option<I>,
    offs: (i64, i64),
    chunksize: usize,
    ahead: usize,
    yielded: usize,
    ordered: bool,
    _r: PhantomData<fn(A) -> R>,
}

impl<I, A, R> Imap<I, A, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + 'static,
{
    /// The next result with its input index (in input order for
    /// [`Pool::imap`], in completion order for [`Pool::imap_unordered`]).
    pub fn next_indexed(&mut self) -> Option<(usize, Result<R>)> {
        let shared = self.handle.shared.clone();
        let job = self.handle.job;
        let mut st = shared.lock();
        loop {
            // Keep the input read a bounded amount ahead.
            while self.handle.len - self.yielded < self.ahead {
                let Some(input) = self.input.as_mut() else { break };
                let start = self.handle.len;
                let part: Vec<(usize, A)> = input
                    .by_ref()
                    .take(self.chunksize)
                    .enumerate()
                    .map(|(k, a)| (start + k, a))
                    .collect();
                if part.len() < self.chunksize {
                    self.input = None;
                }
                if part.is_empty() {
                    break;
                }
                self.handle.len += part.len();
                if st.check_open().is_err() && st.life == Life::Terminated {
                    let e = Error::new(ErrorKind::Cancelled, "the pool was terminated");
                    let j = st.jobs.entry(job).or_default();
                    for (i, _) in part {
                        j.results.insert(i, Err(e.duplicate()));
                    }
                    continue;
                }
                st.push_chunk(job, self.offs, part);
            }
            let j = st.jobs.get_mut(&job)?;
            let found = if self.ordered {
                j.results.remove(&self.yielded).map(|r| (self.yielded, r))
            } else {
                j.results.pop_first()
            };
            if let Some((i, r)) = found {
                self.yielded += 1;
                return Some((i, decode::<R>(r)));
            }
            if self.yielded == self.handle.len && self.input.is_none() {
                return None;
            }
            match st.pump(None) {
                Ok(true) => {}
                Ok(false) => {
                    return Some((
                        self.yielded,
                        Err(Error::new(ErrorKind::InvalidState, "the pool has no work in progress")),
                    ));
                }
                Err(e) => return Some((self.yielded, Err(e))),
            }
        }
    }
}

impl<I, A, R> Iterator for Imap<I, A, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_indexed().map(|(_, r)| r)
    }
}

impl<I, A, R> std::fmt::Debug for Imap<I, A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("job", &self.handle.job)
            .field("yielded", &self.yielded)
            .finish()
    }
}
