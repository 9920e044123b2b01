//! The pool's state and how callers drive it: workers, jobs, chunks,
//! dispatch, the rounds of waiting, callbacks.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

use super::worker::{Mode, PassedFds, ReplyHead, ReplyKind, TaskHead};
use super::*;
use crate::RecvTimeoutError;
use crate::forkserver::{self, Requested};
use crate::sys::MAX_FDS;
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Signalled after each of the driving thread's rounds, when it stops
    /// driving, and when a callback has run.
    pub(super) callback_done: Condvar,
    /// The process that created the pool: the only one that may use it.
    pub(super) owner: u32,
    /// The number of workers the pool keeps.
    pub(super) size: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared { .. }")
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, in the process that created the pool; an error in
    /// another (a fork child: the workers and their connections are the
    /// parent's).
    pub(super) fn enter(&self) -> Result<MutexGuard<'_, State>> {
        if !self.is_owner() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "a pool can only be used by the process that created it",
            ));
        }
        Ok(self.lock())
    }

    pub(super) fn is_owner(&self) -> bool {
        sys::getpid() == self.owner
    }
}

pub(super) struct Config {
    /// Where the workers' standard output and error go.
    pub(super) output: crate::ChildOutput,
    pub(super) init: Option<Init>,
    pub(super) maxtasks: Option<usize>,
    pub(super) method: Option<StartMethod>,
    pub(super) task_timeout: Option<Duration>,
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(super) progress: bool,
    /// Workers start when work finds no idle one, up to the pool's size
    /// (the executor's, as Python's >= 3.9), not all at `build`; a dead
    /// one is replaced when work needs it.
    pub(super) on_demand: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Life {
    Running,
    Closed,
    Terminated,
}

pub(super) struct State {
    pub(super) cfg: Config,
    pub(super) size: usize,
    pub(super) workers: Vec<Worker>,
    pub(super) pending: VecDeque<Chunk>,
    pub(super) jobs: HashMap<u64, Job>,
    pub(super) next_job: u64,
    pub(super) life: Life,
    pub(super) broken: Option<Error>,
    pub(super) started: usize,
    /// Finished jobs whose callbacks have not run yet.
    pub(super) due: Vec<u64>,
    /// A thread waits on the workers without holding the lock.
    pub(super) driving: bool,
    /// Workers removed while a thread was driving: their descriptors stay
    /// open until that thread's wait has returned.
    pub(super) graveyard: Vec<Worker>,
    /// An eventfd in every round's wait: signalled when the driving
    /// thread must look again (new workers, terminate).
    pub(super) wake: sys::Fd,
    /// Threads asleep on the condition variable.
    pub(super) sleepers: usize,
    /// Workers that died before reporting ready since one last did.
    pub(super) early_deaths: usize,
    /// Workers a stop left running (they could not be signalled, or did
    /// not exit in time), with the signal's error: their links are shut
    /// down, so each leaves when its task returns; `join` waits for them
    /// again.
    pub(super) stuck: Vec<(Worker, Option<Error>)>,
}

/// A job's finished tasks, as the workers sent them.
#[derive(Default)]
pub(super) struct Output {
    pub(super) results: BTreeMap<usize, TaskResult>,
    /// Batch replies: the tasks' indexes and their encoded `Vec<R>`.
    pub(super) batches: Vec<(Vec<usize>, Vec<u8>)>,
}

/// Decodes a finished job's output and runs the user's callback on it.
pub(super) type OnDone = Box<dyn FnOnce(Output) -> Decoded + Send>;

/// A callback added while a job's callbacks run: called with the decoded
/// `Result<Vec<R>>` (or, if decoding itself failed, an [`Error`]).
pub(super) type LateCallback = Box<dyn FnOnce(&(dyn Any + Send)) + Send>;

/// What [`OnDone`] gives back.
pub(super) struct Decoded {
    /// The `Result<Vec<R>>`, for a later `get`.
    pub(super) value: Box<dyn Any + Send>,
    /// Its error's kind, if it is an error.
    pub(super) error: Option<ErrorKind>,
    /// The callback's panic.
    pub(super) panic: Option<Box<dyn Any + Send>>,
}

#[derive(Default)]
pub(super) struct Job {
    pub(super) out: Output,
    pub(super) outstanding: usize,
    /// Every task has been submitted (an `imap` submits as it goes).
    pub(super) sealed: bool,
    /// The callbacks, until they run.
    pub(super) on_done: Option<OnDone>,
    /// A thread is running the callbacks (without the pool's lock).
    pub(super) running: bool,
    /// What the callbacks decoded (its error's kind and the
    /// `Result<Vec<R>>`), for `get`.
    pub(super) decoded: Option<(Option<ErrorKind>, Box<dyn Any + Send>)>,
    /// The handle was dropped: forget the job once it has finished, its
    /// callbacks included.
    pub(super) orphan: bool,
    /// While the callbacks run: whether the job failed and its error's
    /// kind, as it read before (its output is with the callbacks).
    pub(super) running_as: Option<(bool, Option<ErrorKind>)>,
    /// Callbacks added while the others ran, run after them with the
    /// decoded result.
    pub(super) late: Vec<LateCallback>,
    #[cfg(feature = "progress")]
    pub(super) bar: Option<ProgressBar>,
}

impl Job {
    /// Finished, callbacks included.
    pub(super) fn finished(&self) -> bool {
        self.sealed && self.outstanding == 0 && self.on_done.is_none() && !self.running
    }

    /// The kind of the first error the pool itself recorded for a task
    /// (not a task's own outcome), or of the decoded result's error.
    pub(super) fn error_kind(&self) -> Option<ErrorKind> {
        if let Some((error, _)) = &self.decoded {
            return *error;
        }
        if let Some((_, kind)) = self.running_as {
            return kind;
        }
        self.out
            .results
            .values()
            .find_map(|r| r.as_ref().err().map(Error::kind))
    }

    /// A task failed (of those that have arrived): an error, or an
    /// outcome other than a value. A batch reply holds only values.
    pub(super) fn failed(&self) -> bool {
        if let Some((error, _)) = &self.decoded {
            return error.is_some();
        }
        if let Some((failed, _)) = self.running_as {
            return failed;
        }
        !self
            .out
            .results
            .values()
            .all(|r| r.as_ref().is_ok_and(|b| b.first() == Some(&0)))
    }
}

pub(super) struct Chunk {
    pub(super) job: u64,
    pub(super) idx: Vec<usize>,
    pub(super) payload: Vec<u8>,
    /// A large argument, sent as a message of its own after `payload` (the
    /// worker receives it as its own buffer: no copy, no shift).
    pub(super) data: Option<Vec<u8>>,
    /// The descriptors of the library objects among the arguments
    /// (duplicates: the arguments are gone), sent with `payload`.
    pub(super) fds: PassedFds,
}

impl Chunk {
    /// The bytes it puts on the wire.
    pub(super) fn size(&self) -> usize {
        self.payload.len() + self.data.as_ref().map_or(0, Vec::len)
    }
}

pub(super) struct Sent {
    pub(super) chunk: Chunk,
    pub(super) started: Option<Instant>,
    /// The id its task message carried: its reply must name it.
    pub(super) id: u64,
}

/// A new id for a task message: unique in this process, from a random
/// start (a reply replayed from an earlier pool or worker names nothing
/// outstanding), never 0 (the initializer's report).
fn next_task_id() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let mut seed = [0u8; 8];
        // Without a random source the ids still differ; only a replay
        // across pools could then match.
        let _ = sys::random_bytes(&mut seed);
        AtomicU64::new(u64::from_le_bytes(seed))
    });
    loop {
        let id = next.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}

pub(super) struct Worker {
    /// Unique in the pool (a replacement has a new one).
    pub(super) id: usize,
    pub(super) proc: Process<()>,
    pub(super) conn: Connection,
    pub(super) in_flight: VecDeque<Sent>,
    pub(super) sent: usize,
    /// The initializer has reported success; until then (`Some`), the
    /// moment by which it must.
    pub(super) starting: Option<Instant>,
    /// May be given chunks before it reports: it has no initializer, so
    /// its first message (an empty report) comes at once, and the chunks
    /// wait in its connection meanwhile. Should it die before reporting,
    /// they never ran: they go back to the pending queue.
    pub(super) eager: bool,
    /// How long its last chunk took: chunks queue deeply only behind fast
    /// ones (a slow chunk would hold back the chunks queued behind it
    /// while other workers idle).
    pub(super) last_chunk: Option<Duration>,
}

/// A chunk shorter than this is "fast": a worker running fast chunks gets
/// up to [`MAX_DEPTH`] of them at once, to hide the round trip.
const FAST_CHUNK: Duration = Duration::from_millis(1);

/// How long a worker whose connection ended may take to exit before it is
/// killed (its exit status tells more than a kill).
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How long stopping the workers waits for them, in all (one deadline
/// shared by every worker, not one each): for the workers killed by
/// `terminate` or `Drop` (or whose link was shut down, when the signal
/// failed) to exit, and, in `join`, for those killed after they did not
/// leave by themselves.
pub(super) const STOP_WAIT: Duration = Duration::from_secs(10);

/// What stopping one worker came to, when it did not go as asked.
pub(super) struct Unstopped {
    pub(super) pid: Option<u32>,
    /// The signal's error, if it could not be signalled.
    pub(super) refused: Option<String>,
    /// It was still running at the deadline.
    pub(super) running: bool,
}

/// The error of a stop that did not go as asked: [`ErrorKind::Timeout`]
/// when workers are still running, [`ErrorKind::Io`] when they all left
/// but some could not be signalled; each worker named by its pid.
pub(super) fn stop_error(what: &[Unstopped]) -> Error {
    let which: Vec<String> = what
        .iter()
        .map(|u| {
            let pid = u.pid.map_or_else(|| "?".to_owned(), |p| p.to_string());
            match (&u.refused, u.running) {
                (Some(e), true) => {
                    format!("pid {pid} could not be signalled ({e}) and is still running: its link is closed, so it leaves when its task returns")
                }
                (Some(e), false) => format!("pid {pid} could not be signalled ({e}) and left when its link closed"),
                (None, _) => format!("pid {pid} did not exit within {STOP_WAIT:?}"),
            }
        })
        .collect();
    let kind = if what.iter().any(|u| u.running) {
        ErrorKind::Timeout
    } else {
        ErrorKind::Io
    };
    Error::new(kind, format!("failed to stop the pool's workers: {}", which.join("; ")))
}

impl Worker {
    /// Waits for the initializer's outcome (bounded), for a worker of a
    /// pool being built.
    pub(super) fn await_ready(&mut self) -> Result<()> {
        let ready = wait(&[(&self.conn).into(), (&self.proc).into()], Some(WORKER_DEADLINE))?;
        if ready.is_empty() {
            self.kill_and_reap();
            return Err(self.init_timeout());
        }
        if ready.contains(&0) || self.conn.poll(Some(Duration::ZERO))? {
            if let Ok(bytes) = self.conn.recv_bytes() {
                return self.init_outcome(&bytes);
            }
        }
        Err(self.ended_early())
    }

    /// The initializer's report (the worker's first message), as a result.
    pub(super) fn init_outcome(&mut self, msg: &[u8]) -> Result<()> {
        let err = |kind, m: String| Err(self.err(kind, m));
        let bytes = match ReplyHead::decode(msg) {
            Some((h, body)) if h.kind == ReplyKind::Init && h.id == 0 => body,
            _ => {
                return err(
                    ErrorKind::Protocol,
                    "a pool worker's first message is not its initializer's report".into(),
                );
            }
        };
        let r = match Outcome::from_bytes(bytes) {
            Ok(OutcomeRef::Value(_)) => Ok(()),
            Ok(OutcomeRef::Panic(p)) => Err(self
                .err(ErrorKind::ChildPanicked, "the pool's initializer panicked".into())
                .with_panic(p)),
            Ok(OutcomeRef::Failed(Failure::DecodeArgs, m)) => err(
                ErrorKind::Deserialize,
                format!("the pool's initializer could not deserialize its arguments: {m}"),
            ),
            Ok(OutcomeRef::Failed(_, m)) => err(ErrorKind::Bootstrap, format!("the pool's initializer failed: {m}")),
            Err(m) => err(ErrorKind::Protocol, format!("malformed initializer outcome: {m}")),
        };
        if r.is_ok() {
            self.starting = None;
        }
        r
    }

    fn init_timeout(&self) -> Error {
        let what = if self.eager { "start" } else { "finish its initializer" };
        self.err(
            ErrorKind::Timeout,
            format!("a pool worker did not {what} within {WORKER_DEADLINE:?}"),
        )
    }

    /// The error for a worker that ended before its initializer reported.
    fn ended_early(&mut self) -> Error {
        self.reap();
        let what = if self.eager {
            "a pool worker ended before it was ready"
        } else {
            "a pool worker ended before its initializer finished"
        };
        let e = self.err(ErrorKind::Bootstrap, what.into());
        match self.proc.exit_status() {
            Some(s) => e.with_status(s),
            None => e,
        }
    }

    pub(super) fn err(&self, kind: ErrorKind, message: String) -> Error {
        Error::new(kind, message).with_process(self.proc.name(), self.proc.pid())
    }

    pub(super) fn can_take(&self, next: &Chunk, maxtasks: Option<usize>) -> bool {
        if maxtasks.is_some_and(|m| self.sent >= m) {
            return false;
        }
        let queued = self.in_flight.iter().map(|s| s.chunk.size()).sum::<usize>();
        // A worker still starting reads nothing yet: it takes work only
        // without an initializer, and only what its socket holds without
        // blocking the sender (who holds the pool's lock).
        if self.starting.is_some() && (!self.eager || queued + next.size() > SMALL_CHUNK) {
            return false;
        }
        let Some(back) = self.in_flight.back() else { return true };
        // Only chunks of one job (a `map`) queue up behind each other:
        // separate submissions stay pending (and cancellable) until a
        // worker is free, as they would in Python's shared task queue.
        let depth = match self.last_chunk {
            Some(d) if d < FAST_CHUNK => MAX_DEPTH,
            _ => 2,
        };
        back.chunk.job == next.job && self.in_flight.len() < depth && queued + next.size() <= SMALL_CHUNK
    }

    /// Reaps the worker: waits a short grace for it to exit by itself,
    /// then kills it. Bounded.
    pub(super) fn reap(&mut self) {
        if self.proc.join_timeout(EXIT_GRACE).is_err() && self.proc.exit_status().is_none() {
            self.kill_and_reap();
        }
    }

    /// Kills the worker (if alive) and reaps it, bounded. A worker that
    /// cannot be signalled (`EPERM` once the pool's process dropped its
    /// privileges) is not waited for: its link is shut down, so it leaves
    /// when its task returns (dropping the worker closes the link).
    pub(super) fn kill_and_reap(&mut self) {
        if self.proc.kill().is_ok() {
            let _ = self.proc.join_timeout(STOP_WAIT);
        } else {
            let _ = self.conn.shut_down(true);
        }
    }
}

/// A chunk's encoded payload and task indexes, or the tasks whose
/// arguments failed to encode. Built without the pool's lock.
pub(super) struct Encoded {
    idx: Vec<usize>,
    payload: Vec<u8>,
    data: Option<Vec<u8>>,
    fds: PassedFds,
    failed: Vec<(usize, Error)>,
}

/// An argument whose encoding is at least this large travels as a message
/// of its own (the worker receives it as its buffer: no shift past a
/// header, no copy for a byte buffer).
pub(super) const LARGE_ARG: usize = 64 * 1024;

/// Encodes the single argument of a chunk. A byte buffer or a string of
/// [`LARGE_ARG`] or more is taken over as it is (no copy) and sent as a
/// message of its own, which the worker receives as the argument's own
/// buffer; any other value is encoded into a buffer of its own and, if
/// that comes to [`LARGE_ARG`] or more, sent the same way (the worker
/// decodes it in place); a smaller one is copied into the task message.
pub(super) fn encode_one<A: Serialize + 'static>(offs: (i64, i64), i: usize, a: A) -> Encoded {
    let mut slot = Some(a);
    let any: &mut dyn Any = &mut slot;
    let taken = if let Some(v) = any.downcast_mut::<Option<Vec<u8>>>() {
        v.take_if(|v| v.len() >= LARGE_ARG)
    } else if let Some(text) = any.downcast_mut::<Option<String>>() {
        text.take_if(|t| t.len() >= LARGE_ARG).map(String::into_bytes)
    } else {
        None
    };
    let (data, fds) = match (taken, slot) {
        (Some(data), _) => (data, PassedFds::default()),
        (None, Some(a)) => {
            let mut data = Vec::new();
            let fds = match encode_with_fds(&a, &mut data) {
                Ok(fds) => fds,
                Err(CodecError(e)) => {
                    return Encoded {
                        idx: Vec::new(),
                        payload: Vec::new(),
                        data: None,
                        fds: PassedFds::default(),
                        failed: vec![(i, arg_error(&e))],
                    };
                }
            };
            if data.len() < LARGE_ARG {
                let mut payload = TaskHead::message(offs.0, offs.1, Mode::Each);
                let at = worker::start_task_item(&mut payload);
                payload.extend_from_slice(&data);
                worker::end_task_item(&mut payload, at, fds.len());
                return Encoded {
                    idx: vec![i],
                    payload,
                    data: None,
                    fds,
                    failed: Vec::new(),
                };
            }
            (data, fds)
        }
        (None, None) => return encode_items::<A>(offs, Vec::new()),
    };
    Encoded {
        idx: vec![i],
        payload: TaskHead::message(offs.0, offs.1, Mode::Large),
        data: Some(data),
        fds,
        failed: Vec::new(),
    }
}

/// [`codec::encode_into`] for the caller's values: a panic of their
/// `Serialize` is an encoding error (what was written is taken back), so
/// it fails the tasks concerned alone.
pub(super) fn encode_caught<T: Serialize + 'static>(
    value: &T,
    out: &mut Vec<u8>,
) -> std::result::Result<(), CodecError> {
    let start = out.len();
    panic::catch_unwind(AssertUnwindSafe(|| codec::encode_into(value, out))).unwrap_or_else(|p| {
        out.truncate(start);
        Err(CodecError(format!(
            "its Serialize panicked: {}",
            crate::target::payload_text(&*p)
        )))
    })
}

/// [`encode_caught`] for a value that may hold library objects (locks,
/// queues, connections, shared memory...): returns duplicates of their
/// descriptors, which outlive the value and travel with its message. On an
/// error, `out` is left as it was.
pub(super) fn encode_with_fds<T: Serialize + 'static>(
    value: &T,
    out: &mut Vec<u8>,
) -> std::result::Result<PassedFds, CodecError> {
    let start = out.len();
    let (r, exported) = codec::fds::collect(|| encode_caught(value, out));
    r?;
    if exported.fds.is_empty() {
        return Ok(PassedFds::default());
    }
    match PassedFds::dup_all(&exported.fds) {
        Ok(fds) => {
            // The encoding carries what the objects had to hand over (a
            // connection's undelivered bytes).
            exported.sent();
            Ok(fds)
        }
        Err(e) => {
            out.truncate(start);
            Err(CodecError(e.to_string()))
        }
    }
}

/// [`codec::decode`] for the caller's types: a panic of their
/// `Deserialize` is a decoding error, which fails the tasks concerned
/// alone.
pub(super) fn decode_caught_panic<R: DeserializeOwned + 'static>(bytes: &[u8]) -> std::result::Result<R, CodecError> {
    panic::catch_unwind(AssertUnwindSafe(|| codec::decode::<R>(bytes))).unwrap_or_else(|p| {
        Err(CodecError(format!(
            "its Deserialize panicked: {}",
            crate::target::payload_text(&*p)
        )))
    })
}

/// The error of a task whose argument does not serialize.
fn arg_error(e: &str) -> Error {
    Error::new(
        ErrorKind::Serialize,
        format!("failed to serialize the task's argument: {e}"),
    )
}

/// Encodes `items` as one per-task chunk; an argument that fails to
/// serialize fails its task alone, and so does one whose descriptors would
/// take the chunk's past what one message carries.
pub(super) fn encode_items<A: Serialize + 'static>(offs: (i64, i64), items: Vec<(usize, A)>) -> Encoded {
    let mut enc = Encoded {
        idx: Vec::with_capacity(items.len()),
        payload: TaskHead::message(offs.0, offs.1, Mode::Each),
        data: None,
        fds: PassedFds::default(),
        failed: Vec::new(),
    };
    for (i, a) in items {
        // Encoded straight into the message, behind its length.
        let at = worker::start_task_item(&mut enc.payload);
        match encode_with_fds(&a, &mut enc.payload) {
            Ok(fds) if enc.fds.len() + fds.len() <= MAX_FDS => {
                worker::end_task_item(&mut enc.payload, at, fds.len());
                enc.fds.append(fds);
                enc.idx.push(i);
            }
            Ok(_) => {
                worker::drop_task_item(&mut enc.payload, at);
                let e = format!(
                    "the chunk's arguments hold more than {MAX_FDS} descriptors, what one message carries: use a \
                     smaller chunk size"
                );
                enc.failed.push((i, arg_error(&e)));
            }
            Err(CodecError(e)) => {
                worker::drop_task_item(&mut enc.payload, at);
                enc.failed.push((i, arg_error(&e)));
            }
        }
    }
    enc
}

/// Encodes a `map` chunk as one `Vec<A>` for the batch trampoline; falls
/// back to [`encode_items`] when there is none or the batch does not
/// encode.
pub(super) fn encode_batch<A: Serialize + 'static>(
    offs: (i64, i64),
    batch_offs: Option<(i64, i64)>,
    start: usize,
    items: Vec<A>,
) -> Encoded {
    if let Some(bo) = batch_offs {
        let mut payload = TaskHead::message(bo.0, bo.1, Mode::Batch);
        let (r, exported) = codec::fds::collect(|| worker::encode_seq(&items, &mut payload));
        let fds = match r {
            Ok(()) => PassedFds::dup_all(&exported.fds).ok().inspect(|_| exported.sent()),
            Err(_) => None,
        };
        if let Some(fds) = fds {
            return Encoded {
                idx: (start..start + items.len()).collect(),
                payload,
                data: None,
                fds,
                failed: Vec::new(),
            };
        }
    }
    encode_items(
        offs,
        items.into_iter().enumerate().map(|(k, a)| (start + k, a)).collect(),
    )
}

/// Sends a worker its chunks, in order: the messages of chunks without
/// descriptors together (one system call for a burst), each chunk with
/// descriptors on its own (they ride on its task message). On a failure:
/// how many chunks went out whole.
fn send_chunks<'a>(conn: &Connection, chunks: impl Iterator<Item = &'a Sent>) -> std::result::Result<(), usize> {
    let mut msgs: Vec<&[u8]> = Vec::new();
    // Per chunk in `msgs`: where its messages end.
    let mut ends: Vec<usize> = Vec::new();
    // Chunks sent whole by earlier calls.
    let mut done = 0;
    let flush = |msgs: &mut Vec<&[u8]>, ends: &mut Vec<usize>, done: &mut usize| {
        if !msgs.is_empty() {
            conn.send_bytes_batch(msgs)
                .map_err(|(whole, _)| *done + ends.iter().take_while(|&&e| e <= whole).count())?;
        }
        *done += ends.len();
        msgs.clear();
        ends.clear();
        Ok(())
    };
    for s in chunks {
        let c = &s.chunk;
        if c.fds.is_empty() {
            // Its message, and its large argument's.
            msgs.push(&c.payload);
            if let Some(d) = &c.data {
                msgs.push(d);
            }
            ends.push(msgs.len());
            continue;
        }
        flush(&mut msgs, &mut ends, &mut done)?;
        conn.send_bytes_with_fds(&c.payload, &c.fds.raw()).map_err(|_| done)?;
        if let Some(d) = &c.data {
            conn.send_bytes(d).map_err(|_| done)?;
        }
        done += 1;
    }
    flush(&mut msgs, &mut ends, &mut done)
}

impl State {
    /// Starts a worker; under `fork`, in a process that has other threads
    /// by now (fork is refused there), the fork server starts it instead.
    pub(super) fn start_worker(&mut self) -> Result<Worker> {
        self.start_worker_requested(None)
    }

    /// Starts `n` workers; under the fork server, every request is sent
    /// before any answer is read (one round trip to the server for all).
    /// Stops at the first failure, returning the workers started so far.
    pub(super) fn start_workers(&mut self, n: usize) -> (Vec<Worker>, Option<Error>) {
        let method = self.cfg.method.unwrap_or_else(crate::context::get_start_method);
        let mut requests: Vec<Option<Requested>> = (0..n)
            .map(|_| {
                (method == StartMethod::ForkServer && n > 1)
                    .then(|| forkserver::send_request().ok())
                    .flatten()
            })
            .collect();
        let mut started = Vec::with_capacity(n);
        for r in requests.drain(..) {
            match self.start_worker_requested(r) {
                Ok(w) => started.push(w),
                Err(e) => return (started, Some(e)),
            }
        }
        (started, None)
    }

    fn start_worker_requested(&mut self, requested: Option<Requested>) -> Result<Worker> {
        match self.start_worker_with(self.cfg.method, requested) {
            Err(e) if e.kind() == ErrorKind::ForkWithThreads => {
                self.start_worker_with(Some(StartMethod::ForkServer), None)
            }
            r => r,
        }
    }

    fn start_worker_with(&mut self, method: Option<StartMethod>, requested: Option<Requested>) -> Result<Worker> {
        let (ours, theirs) = pipe(true)?;
        self.started += 1;
        let mut b = ProcessBuilder::new()
            .name(format!("PoolWorker-{}", self.started))
            .daemon(true)
            .output(self.cfg.output);
        if let Some(m) = method {
            b = b.start_method(m);
        }
        let mut proc = b.target_with(
            worker::worker_main,
            WorkerArgs {
                conn: theirs,
                init: self.cfg.init.as_ref().map(Init::duplicate).transpose()?,
                maxtasks: self.cfg.maxtasks,
            },
        );
        match requested {
            Some(r) => proc.start_requested(r)?,
            None => proc.start()?,
        }
        Ok(Worker {
            id: self.started,
            proc,
            conn: ours,
            in_flight: VecDeque::new(),
            sent: 0,
            starting: Some(deadline_after(WORKER_DEADLINE)),
            eager: self.cfg.init.is_none(),
            last_chunk: None,
        })
    }

    /// Kills the workers and reaps them, waiting at most [`STOP_WAIT`] in
    /// all. A worker that cannot be signalled (`EPERM`: the pool's process
    /// dropped its privileges) has its link closed instead: idle, it
    /// leaves at once; running a task, when that task returns. What each
    /// worker sent before it ended is kept. The workers still running at
    /// the deadline go to [`State::stuck`], and the error names them.
    pub(super) fn kill_all(&mut self) -> Result<()> {
        let until = deadline_after(STOP_WAIT);
        let mut refused = Vec::with_capacity(self.workers.len());
        for w in &self.workers {
            let r = w.proc.kill().err();
            if r.is_some() {
                // The end of its link ends its loop; what it sends before
                // it leaves is still read.
                let _ = w.conn.shut_down(false);
            }
            refused.push(r);
        }
        for i in 0..self.workers.len() {
            let left = until.saturating_duration_since(Instant::now());
            let _ = self.workers[i].proc.join_timeout(left);
            // What a worker sent before it was killed is a finished task's
            // result: keep it (bounded: a message cut short by the kill
            // ends the reading).
            while let Ok(msg) = self.workers[i].conn.recv_bytes_timeout(Duration::ZERO) {
                if let Err(death) = self.on_message(i, &msg) {
                    if let Death::Protocol(e) = death {
                        let held: Vec<Chunk> = self.workers[i].in_flight.drain(..).map(|s| s.chunk).collect();
                        for chunk in held {
                            self.fail_chunk(chunk, &e);
                        }
                    }
                    break;
                }
            }
        }
        let mut unstopped = Vec::new();
        for (mut w, refused) in std::mem::take(&mut self.workers).into_iter().zip(refused) {
            for s in w.in_flight.drain(..) {
                self.pending.push_back(s.chunk);
            }
            let running = w.proc.exit_status().is_none();
            if running || refused.is_some() {
                unstopped.push(Unstopped {
                    pid: w.proc.pid(),
                    refused: refused.as_ref().map(ToString::to_string),
                    running,
                });
            }
            if running {
                // Its sends fail from now on: it never blocks on a full
                // link nobody reads.
                let _ = w.conn.shut_down(true);
                self.stuck.push((w, refused));
            } else {
                self.bury(w);
            }
        }
        if unstopped.is_empty() {
            Ok(())
        } else {
            Err(stop_error(&unstopped))
        }
    }
}

/// Waits (until `until`) for the workers a stop left running; the error
/// names those still running.
pub(super) fn wait_stuck(stuck: &mut Vec<(Worker, Option<Error>)>, until: Instant) -> Result<()> {
    for (w, _) in stuck.iter_mut() {
        let _ = w.proc.join_timeout(until.saturating_duration_since(Instant::now()));
    }
    stuck.retain(|(w, _)| w.proc.exit_status().is_none());
    if stuck.is_empty() {
        return Ok(());
    }
    let what: Vec<Unstopped> = stuck
        .iter()
        .map(|(w, refused)| Unstopped {
            pid: w.proc.pid(),
            refused: refused.as_ref().map(ToString::to_string),
            running: true,
        })
        .collect();
    Err(stop_error(&what))
}

impl State {
    /// A chunk of `job` has been sent to a worker and not answered yet.
    pub(super) fn job_sent(&self, job: u64) -> bool {
        self.workers
            .iter()
            .any(|w| w.in_flight.iter().any(|s| s.chunk.job == job))
    }

    pub(super) fn check_open(&self) -> Result<()> {
        if let Some(e) = &self.broken {
            return Err(e.duplicate());
        }
        match self.life {
            Life::Running => Ok(()),
            _ => Err(Error::new(ErrorKind::InvalidState, "the pool is closed")),
        }
    }

    pub(super) fn new_job(&mut self) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, Job::default());
        id
    }

    /// Counts `n` tasks of `job` as finished; when the job is sealed and
    /// nothing is outstanding, finishes its bar and queues its callbacks.
    pub(super) fn tasks_done(&mut self, job: u64, n: usize) {
        let Some(j) = self.jobs.get_mut(&job) else { return };
        j.outstanding -= n;
        #[cfg(feature = "progress")]
        if let Some(bar) = &j.bar {
            bar.inc(n as u64);
        }
        self.settle(job);
    }

    /// Marks every task of `job` as submitted.
    pub(super) fn seal(&mut self, job: u64) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.sealed = true;
        }
        self.settle(job);
    }

    /// Queues the callbacks of `job` if it is done.
    pub(super) fn settle(&mut self, job: u64) {
        let Some(j) = self.jobs.get_mut(&job) else { return };
        if !j.sealed || j.outstanding > 0 {
            return;
        }
        #[cfg(feature = "progress")]
        if let Some(bar) = &j.bar {
            if !bar.is_finished() {
                bar.finish();
            }
        }
        if j.on_done.is_some() {
            if !self.due.contains(&job) {
                self.due.push(job);
            }
        } else if j.orphan && !j.running {
            // Its handle is gone and nothing is left to run: forget it.
            self.jobs.remove(&job);
        }
    }

    /// A progress bar for a new job of `len` tasks (`None`: unknown), if
    /// the pool shows them.
    #[cfg(feature = "progress")]
    pub(super) fn attach_bar(&mut self, job: u64, len: Option<usize>) {
        if !self.cfg.progress {
            return;
        }
        let (bar, template) = match len {
            Some(n) => (
                ProgressBar::new(n as u64),
                "{elapsed_precise} {wide_bar} {human_pos}/{human_len} tasks ({per_sec}, {eta} left)",
            ),
            None => (
                ProgressBar::no_length(),
                "{spinner} {elapsed_precise} {human_pos} tasks ({per_sec})",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        if let Some(j) = self.jobs.get_mut(&job) {
            j.bar = Some(bar);
        }
    }

    /// Adds an encoded chunk of `job`: its tasks count as outstanding, the
    /// ones that failed to encode finish at once, the rest is queued (or
    /// fails at once on a broken pool).
    pub(super) fn add(&mut self, job: u64, enc: Encoded) {
        let Some(j) = self.jobs.get_mut(&job) else { return };
        let failed = enc.failed.len();
        j.outstanding += enc.idx.len() + failed;
        for (i, e) in enc.failed {
            j.out.results.insert(i, Err(e));
        }
        if failed > 0 {
            self.tasks_done(job, failed);
        }
        if enc.idx.is_empty() {
            return;
        }
        let chunk = Chunk {
            job,
            idx: enc.idx,
            payload: enc.payload,
            data: enc.data,
            fds: enc.fds,
        };
        match (&self.broken, self.life) {
            (Some(e), _) => {
                let e = e.duplicate();
                self.fail_chunk(chunk, &e);
            }
            (None, Life::Terminated) => {
                let e = Error::new(ErrorKind::Cancelled, "the pool was terminated");
                self.fail_chunk(chunk, &e);
            }
            (None, _) => self.pending.push_back(chunk),
        }
    }

    pub(super) fn fail_chunk(&mut self, chunk: Chunk, e: &Error) {
        let n = chunk.idx.len();
        let Some(j) = self.jobs.get_mut(&chunk.job) else { return };
        for i in chunk.idx {
            j.out.results.insert(i, Err(e.duplicate()));
        }
        self.tasks_done(chunk.job, n);
    }

    /// Records the reply of `kind` with `body` to `chunk`; a malformed
    /// one gives the chunk back (a protocol violation).
    pub(super) fn complete(&mut self, chunk: Chunk, kind: ReplyKind, body: &[u8]) -> std::result::Result<(), Chunk> {
        let (job, n) = (chunk.job, chunk.idx.len());
        // Only a batch (a `map` chunk sent as one `Vec`) is answered with
        // values, or with one outcome for all.
        let batch = || TaskHead::decode(&chunk.payload).is_some_and(|h| h.mode == Mode::Batch);
        let per_task = match kind {
            ReplyKind::Outcomes => match worker::items(body) {
                Some(items) if items.len() == n => Some(items),
                _ => return Err(chunk),
            },
            ReplyKind::Values | ReplyKind::ArgsFailed if batch() => None,
            ReplyKind::Values | ReplyKind::ArgsFailed | ReplyKind::Init => return Err(chunk),
        };
        // A forgotten job (its iterator dropped) takes nothing.
        let Some(j) = self.jobs.get_mut(&job) else {
            return Ok(());
        };
        match (kind, per_task) {
            (_, Some(items)) => {
                for (i, bytes) in chunk.idx.into_iter().zip(items) {
                    j.out.results.insert(i, Ok(bytes.to_vec()));
                }
            }
            (ReplyKind::Values, None) => j.out.batches.push((chunk.idx, body.to_vec())),
            (_, None) => {
                for i in chunk.idx {
                    j.out.results.insert(i, Ok(body.to_vec()));
                }
            }
        }
        self.tasks_done(job, n);
        Ok(())
    }

    pub(super) fn fail_pending(&mut self, e: &Error) {
        while let Some(c) = self.pending.pop_front() {
            self.fail_chunk(c, e);
        }
    }

    /// Sends pending chunks, breadth first: each to the worker with the
    /// fewest chunks in flight that can take it. The chunks a worker is
    /// given in one round go out together (one system call for a burst of
    /// small ones). A worker found dead on sending (it died while idle) is
    /// replaced; the chunks it cannot have received go back to the pending
    /// queue.
    pub(super) fn dispatch(&mut self) {
        if self.life == Life::Terminated {
            return;
        }
        self.start_on_demand();
        let now = Instant::now();
        // Chunks given to each worker in this round: the last ones of its
        // `in_flight`.
        let mut given = vec![0usize; self.workers.len()];
        let mut dead = Vec::new();
        while let Some(next) = self.pending.front() {
            if !self.jobs.contains_key(&next.job) {
                // Its handle was dropped.
                self.pending.pop_front();
                continue;
            }
            let maxtasks = self.cfg.maxtasks;
            let Some(i) = (0..self.workers.len())
                .filter(|i| self.workers[*i].can_take(next, maxtasks))
                .min_by_key(|&i| self.workers[i].in_flight.len())
            else {
                break;
            };
            let Some(chunk) = self.pending.pop_front() else { break };
            let w = &mut self.workers[i];
            w.sent += 1;
            let started = w.in_flight.is_empty().then_some(now);
            w.in_flight.push_back(Sent { chunk, started, id: 0 });
            given[i] += 1;
        }
        let mut sent_any = false;
        let mut returned: Vec<Chunk> = Vec::new();
        for (i, &n) in given.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let w = &mut self.workers[i];
            let first = w.in_flight.len() - n;
            // Each sending of a chunk is named afresh: a reply names the
            // task message it answers.
            for s in w.in_flight.range_mut(first..) {
                s.id = next_task_id();
                TaskHead::set_id(&mut s.chunk.payload, s.id);
            }
            match send_chunks(&w.conn, w.in_flight.range(first..)) {
                Ok(()) => sent_any = true,
                Err(kept) => {
                    // The chunks whose messages all went out may have been
                    // received (and run): they stay in flight, to fail
                    // with the worker's death; the others never started.
                    sent_any |= kept > 0;
                    returned.extend(w.in_flight.drain(first + kept..).map(|s| s.chunk));
                    w.sent -= n - kept;
                    dead.push(i);
                }
            }
        }
        // Back at the front, each worker's in their order.
        for chunk in returned.into_iter().rev() {
            self.pending.push_front(chunk);
        }
        if sent_any {
            self.nudge();
        }
        for &i in dead.iter().rev() {
            self.on_death(i, false);
        }
    }

    /// For a pool with on-demand workers (an executor): starts a worker
    /// for each pending chunk that no idle worker will take, up to the
    /// pool's size (Python >= 3.9 starts one per submission that finds no
    /// idle worker). Under fork, every missing worker starts at once, as
    /// Python's fork context starts them all at the first submission
    /// (gh-90622: a fork once other threads run is unsafe; here it goes
    /// to the fork server then). When no worker can be started and none
    /// is left, the pool is broken with that error.
    fn start_on_demand(&mut self) {
        if !self.cfg.on_demand || self.broken.is_some() || self.workers.len() >= self.size {
            return;
        }
        let waiting = self.pending.iter().filter(|c| self.jobs.contains_key(&c.job)).count();
        let idle = self.workers.iter().filter(|w| w.in_flight.is_empty()).count();
        let missing = self.size - self.workers.len();
        let mut need = waiting.saturating_sub(idle).min(missing);
        if need == 0 {
            return;
        }
        if self.cfg.method.unwrap_or_else(crate::context::get_start_method) == StartMethod::Fork {
            need = missing;
        }
        let (started, failed) = self.start_workers(need);
        self.workers.extend(started);
        self.nudge();
        if let Some(e) = failed {
            if self.workers.is_empty() {
                self.fail_pending(&e);
                self.broken = Some(e);
            }
        }
    }

    pub(super) fn in_flight(&self) -> bool {
        self.workers.iter().any(|w| !w.in_flight.is_empty())
    }

    /// Wakes the threads asleep on the condition variable (a system call
    /// saved when there are none).
    pub(super) fn wake_sleepers(&self, shared: &Shared) {
        if self.sleepers > 0 {
            shared.callback_done.notify_all();
        }
    }

    /// Wakes the driving thread (if any) to look again at the workers.
    pub(super) fn nudge(&self) {
        if self.driving {
            sys::eventfd_signal(&self.wake);
        }
    }

    /// Drops a removed worker, or keeps it until the driving thread's wait
    /// (which may be watching its descriptors) has returned.
    pub(super) fn bury(&mut self, w: Worker) {
        if self.driving {
            self.graveyard.push(w);
            self.nudge();
        }
    }

    /// Dispatches, then says what to wait for: `None` when there is nothing
    /// to wait for (no work, or no worker).
    pub(super) fn prepare(&mut self, deadline: Option<Instant>) -> Option<Round> {
        self.dispatch();
        let starting = self.workers.iter().any(|w| w.starting.is_some());
        if self.workers.is_empty() || (!self.in_flight() && self.pending.is_empty() && !starting) {
            return None;
        }
        let now = Instant::now();
        let mut wake = deadline;
        let mut soonest = |at: Instant| wake = Some(wake.map_or(at, |w: Instant| w.min(at)));
        for w in &self.workers {
            if let Some(at) = w.starting {
                soonest(at);
            }
            // A starting worker's chunks have not started: its own
            // deadline (above) bounds it.
            if let (Some(t), Some(s), None) = (self.cfg.task_timeout, w.in_flight.front(), w.starting) {
                soonest(overdue_at(s, t, now));
            }
        }
        let mut round = Round {
            ids: Vec::with_capacity(self.workers.len()),
            fds: Vec::with_capacity(2 * self.workers.len() + 1),
            timeout: wake.map(|w| w.saturating_duration_since(now)),
        };
        for w in &self.workers {
            round.ids.push(w.id);
            round.fds.push(w.conn.as_raw_fd());
            round.fds.push(w.proc.sentinel().map_or(-1, |fd| fd.as_raw_fd()));
            // A message already buffered is not seen by `poll`.
            if w.conn.ready_now() == Some(true) {
                round.timeout = Some(Duration::ZERO);
            }
        }
        round.fds.push(self.wake.raw());
        Some(round)
    }

    /// Handles what a round's wait found: results, deaths, overdue tasks
    /// and initializers.
    pub(super) fn finish(&mut self, round: &Round, polled: &[bool]) {
        if polled.last() == Some(&true) {
            sys::eventfd_drain(&self.wake);
        }
        let mut dead: Vec<(usize, Death)> = Vec::new();
        for (k, &id) in round.ids.iter().enumerate() {
            // The worker may have gone (terminate) while we waited.
            let Some(i) = self.workers.iter().position(|w| w.id == id) else {
                continue;
            };
            let conn_ready = polled.get(2 * k) == Some(&true) || self.workers[i].conn.ready_now() == Some(true);
            if conn_ready {
                // Take every message already there, not just one.
                loop {
                    // Without waiting: the rest of a message that is still
                    // arriving is read in a later round (a worker stopped
                    // halfway through one must not hold the lock).
                    match self.workers[i].conn.recv_bytes_timeout(Duration::ZERO) {
                        Ok(msg) => {
                            if let Err(death) = self.on_message(i, &msg) {
                                dead.push((i, death));
                                break;
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(_) => {
                            dead.push((i, Death::Ended));
                            break;
                        }
                    }
                    if self.workers[i].in_flight.is_empty() {
                        break;
                    }
                }
            }
            if polled.get(2 * k + 1) == Some(&true) {
                dead.push((i, Death::Ended));
            }
        }
        let now = Instant::now();
        for (i, w) in self.workers.iter().enumerate() {
            let overdue = |s: &Sent| self.cfg.task_timeout.is_some_and(|t| overdue_at(s, t, now) <= now);
            if w.starting.is_none() && w.in_flight.front().is_some_and(overdue) {
                let _ = w.proc.kill();
                dead.push((i, Death::Overdue));
            } else if w.starting.is_some_and(|at| at <= now) {
                let _ = w.proc.kill();
                dead.push((i, Death::Init(w.init_timeout())));
            }
        }
        // One death per worker, the most telling; from the highest index,
        // since `on_death` may remove its worker.
        dead.sort_by_key(|(i, d)| (std::cmp::Reverse(*i), d.rank()));
        dead.dedup_by_key(|(i, _)| *i);
        for (i, death) in dead {
            self.on_death_as(i, death);
        }
    }

    /// One round under the lock, without waiting: dispatch and take what
    /// has arrived. For callers that must not block (submissions,
    /// `ready`).
    pub(super) fn harvest(&mut self) {
        if self.driving {
            self.dispatch();
            return;
        }
        if let Some(round) = self.prepare(None) {
            if let Ok(polled) = sys::poll_readable_set(&round.fds, Some(Duration::ZERO)) {
                self.finish(&round, &polled);
            }
        }
    }

    /// A message from worker `i`: its initializer's report, or the reply
    /// to its oldest chunk. Anything else is a protocol violation, its
    /// worker's death: while it starts, an initializer failure; after,
    /// [`Death::Protocol`] (the tasks it held fail, it is replaced).
    fn on_message(&mut self, i: usize, msg: &[u8]) -> std::result::Result<(), Death> {
        let w = &mut self.workers[i];
        if w.starting.is_some() {
            let r = w.init_outcome(msg);
            if r.is_ok() {
                self.early_deaths = 0;
                // An eager worker's first chunk starts now, not when it
                // was sent (its start-up is not the task's time).
                if let Some(s) = w.in_flight.front_mut() {
                    s.started = Some(Instant::now());
                }
            }
            return r.map_err(Death::Init);
        }
        let violation = |w: &Worker, what: String| {
            Death::Protocol(w.err(
                ErrorKind::Protocol,
                format!(
                    "a pool worker sent {what}; task code may have written to the worker's socket: the tasks it \
                     held fail and it is replaced"
                ),
            ))
        };
        let Some((head, body)) = ReplyHead::decode(msg) else {
            return Err(violation(w, "a message that is not a reply".into()));
        };
        let expected = w.in_flight.front().map(|s| s.id);
        if head.kind == ReplyKind::Init || expected != Some(head.id) {
            let what = match expected {
                None => format!("a reply ({:?}, to {}) while it held no task", head.kind, head.id),
                Some(e) => format!(
                    "a reply ({:?}) to task message {} when its oldest was {e}",
                    head.kind, head.id
                ),
            };
            return Err(violation(w, what));
        }
        let Some(sent) = w.in_flight.pop_front() else {
            return Err(violation(w, "a reply while it held no task".into()));
        };
        let now = Instant::now();
        let last_chunk = w.last_chunk;
        w.last_chunk = sent.started.map(|s| now.saturating_duration_since(s));
        let next_started = w.in_flight.front().and_then(|s| s.started);
        if let Some(next) = w.in_flight.front_mut() {
            next.started = Some(now);
        }
        let (id, started) = (sent.id, sent.started);
        if let Err(chunk) = self.complete(sent.chunk, head.kind, body) {
            // Put back as it was: it fails with the others.
            let w = &mut self.workers[i];
            w.last_chunk = last_chunk;
            if let Some(next) = w.in_flight.front_mut() {
                next.started = next_started;
            }
            w.in_flight.push_front(Sent { chunk, started, id });
            return Err(violation(
                &self.workers[i],
                format!("a malformed reply to task message {id}"),
            ));
        }
        Ok(())
    }

    /// Replaces the workers whose process has ended, without waiting. A
    /// round looks at the workers' sentinels only while there is work: an
    /// idle pool notices an idle worker's death here, or at the next send.
    pub(super) fn notice_deaths(&mut self) {
        let fds: Vec<RawFd> = self
            .workers
            .iter()
            .map(|w| w.proc.sentinel().map_or(-1, |fd| fd.as_raw_fd()))
            .collect();
        let Ok(polled) = sys::poll_readable_set(&fds, Some(Duration::ZERO)) else {
            return;
        };
        // From the highest index: `on_death` may remove its worker.
        for i in (0..fds.len()).rev() {
            if polled.get(i) == Some(&true) {
                self.on_death(i, false);
            }
        }
    }

    pub(super) fn on_death(&mut self, i: usize, timed_out: bool) {
        self.on_death_as(i, if timed_out { Death::Overdue } else { Death::Ended });
    }

    fn on_death_as(&mut self, i: usize, death: Death) {
        if i >= self.workers.len() {
            return;
        }
        // Keep what the worker sent before it ended (bounded: a worker
        // stopped halfway through a message must not hold the lock). After
        // a protocol violation, nothing more it sent is trusted.
        if !matches!(death, Death::Init(_) | Death::Protocol(_)) {
            while let Ok(msg) = self.workers[i].conn.recv_bytes_timeout(Duration::ZERO) {
                if let Err(d) = self.on_message(i, &msg) {
                    return self.on_death_as(i, d);
                }
            }
        }
        let has_init = self.cfg.init.is_some();
        let w = &mut self.workers[i];
        if let Death::Protocol(e) = &death {
            // It is alive and serving: it would not exit by itself. None of
            // the chunks it held can be told to have run or not, nor their
            // results trusted: they fail.
            w.kill_and_reap();
            let held: Vec<Chunk> = w.in_flight.drain(..).map(|s| s.chunk).collect();
            for chunk in held {
                self.fail_chunk(chunk, e);
            }
        }
        let w = &mut self.workers[i];
        w.reap();
        if w.starting.is_some() {
            // It never reached its loop: the chunks it was given (an eager
            // worker's) never ran.
            for s in w.in_flight.drain(..).rev() {
                self.pending.push_front(s.chunk);
            }
        }
        let w = &mut self.workers[i];
        let overdue = matches!(death, Death::Overdue);
        let init_failure = match death {
            Death::Init(e) => Some(e),
            // A worker that died before reporting ready: with an
            // initializer, that is the initializer's failure (no respawn
            // loop); without one, it was killed from outside, and is
            // replaced, up to a bound on consecutive such deaths.
            _ if w.starting.is_some() => {
                self.early_deaths += 1;
                let e = w.ended_early();
                (has_init || self.early_deaths > 3 * self.size).then_some(e)
            }
            _ => None,
        };
        if let Some(e) = init_failure {
            // A replacement's initializer failed. No respawn loop: the pool
            // is broken for good; tasks already with the other workers
            // still finish.
            let old = self.workers.remove(i);
            self.bury(old);
            self.fail_pending(&e);
            self.broken = Some(e);
            return;
        }
        let status = w.proc.exit_status();
        let head = w.in_flight.pop_front();
        for s in w.in_flight.drain(..).rev() {
            self.pending.push_front(s.chunk);
        }
        if let Some(head) = head {
            let w = &self.workers[i];
            let e = if overdue {
                w.err(
                    ErrorKind::TaskTimeout,
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
            let w = self.workers.remove(i);
            self.bury(w);
            // The chunks it had queued cannot run either.
            let e = match &self.broken {
                Some(e) => e.duplicate(),
                None => Error::new(ErrorKind::Cancelled, "the pool was terminated before the task finished"),
            };
            self.fail_pending(&e);
            return;
        }
        if self.cfg.on_demand {
            // Replaced when work needs it (`start_on_demand`).
            let old = self.workers.remove(i);
            self.bury(old);
            self.nudge();
            return;
        }
        // The replacement starts now; its initializer reports in a later
        // round (the lock is not held while it runs).
        match self.start_worker() {
            Ok(w) => {
                let old = std::mem::replace(&mut self.workers[i], w);
                self.bury(old);
                self.nudge();
            }
            Err(e) => {
                let old = self.workers.remove(i);
                self.bury(old);
                self.fail_pending(&e);
                self.broken = Some(e);
            }
        }
    }

    /// Kills the workers and fails every unfinished task; the error of
    /// [`kill_all`](State::kill_all) names the workers left running.
    pub(super) fn terminate(&mut self) -> Result<()> {
        self.life = Life::Terminated;
        let r = self.kill_all();
        let e = Error::new(ErrorKind::Cancelled, "the pool was terminated before the task finished");
        self.fail_pending(&e);
        self.nudge();
        r
    }
}

/// Why a worker is being replaced.
enum Death {
    /// It ended (or its connection did).
    Ended,
    /// It ran past the task timeout (killed).
    Overdue,
    /// Its initializer failed or took too long.
    Init(Error),
    /// It sent a message that answers nothing outstanding (killed).
    Protocol(Error),
}

impl Death {
    /// Which of several reasons found in one round wins (lowest first).
    fn rank(&self) -> u8 {
        match self {
            Death::Init(_) => 0,
            Death::Protocol(_) => 1,
            Death::Overdue => 2,
            Death::Ended => 3,
        }
    }
}

/// What one round waits for: each worker's connection and sentinel.
pub(super) struct Round {
    pub(super) ids: Vec<usize>,
    pub(super) fds: Vec<RawFd>,
    pub(super) timeout: Option<Duration>,
}

/// When the chunk `s` is overdue under a task timeout `t` (saturating:
/// a huge timeout means "never").
pub(super) fn overdue_at(s: &Sent, t: Duration, now: Instant) -> Instant {
    let n = u32::try_from(s.chunk.idx.len().max(1)).unwrap_or(u32::MAX);
    let limit = t.checked_mul(n).unwrap_or(Duration::MAX);
    s.started
        .unwrap_or(now)
        .checked_add(limit)
        .unwrap_or_else(|| deadline_after(limit))
}

/// What a driving caller waits for.
pub(super) enum Check {
    /// It has happened.
    Done,
    /// Another thread is about to make it happen (it runs the callbacks
    /// of the job): wait for its signal.
    Wait,
    /// Results are needed.
    Pump,
}

thread_local! {
    /// The job whose callbacks this thread is running (pool address, job).
    /// The jobs whose callbacks this thread is running, innermost last
    /// (pool address, job): a callback that drives the pool can run
    /// another's.
    static IN_CALLBACK: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
    /// A panic of a callback run inside another callback, for the
    /// outermost call to resume.
    static STASHED_PANIC: Cell<Option<Box<dyn Any + Send>>> = const { Cell::new(None) };
}

/// Whether this thread is running the callbacks of `job` of the pool at
/// `shared`, however deeply nested: waiting for that job would never end.
pub(super) fn in_callback_of(shared: &Shared, job: u64) -> bool {
    let key = (std::ptr::from_ref(shared) as usize, job);
    IN_CALLBACK.with_borrow(|v| v.contains(&key))
}

/// Drives the pool until `check` says done, or `deadline` passes.
///
/// One thread at a time waits on the workers (the driver), and it does so
/// *without* holding the lock: other threads submit, look at results and
/// take them meanwhile, and the threads waiting for their own results
/// sleep on the condition variable, woken after each of the driver's
/// rounds. A thread that needs results while nobody drives becomes the
/// driver.
pub(super) fn drive<'a>(
    shared: &'a Shared,
    mut st: MutexGuard<'a, State>,
    deadline: Option<Instant>,
    mut check: impl FnMut(&mut State) -> Check,
) -> (MutexGuard<'a, State>, Result<()>) {
    loop {
        st = run_due(shared, st, true);
        let step = check(&mut st);
        if matches!(step, Check::Done) {
            return (st, Ok(()));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            // One look at what has arrived before giving up (Python's
            // `timeout=0` polls): nobody else may have read it.
            if matches!(step, Check::Pump) && !st.driving {
                st.harvest();
                st.wake_sleepers(shared);
                st = run_due(shared, st, true);
                if matches!(check(&mut st), Check::Done) {
                    return (st, Ok(()));
                }
            }
            return (
                st,
                Err(Error::new(ErrorKind::Timeout, "the pool's result is not ready yet")),
            );
        }
        if matches!(step, Check::Wait) || st.driving {
            st.sleepers += 1;
            st = match deadline {
                None => shared.callback_done.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    shared
                        .callback_done
                        .wait_timeout(st, d.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            st.sleepers -= 1;
            continue;
        }
        let Some(round) = st.prepare(deadline) else {
            st = run_due(shared, st, true);
            if matches!(check(&mut st), Check::Done) {
                return (st, Ok(()));
            }
            let e = Error::new(
                ErrorKind::InvalidState,
                "the pool has no work in progress that could produce this result",
            );
            return (st, Err(e));
        };
        st.driving = true;
        drop(st);
        let polled = sys::poll_readable_set(&round.fds, round.timeout);
        st = shared.lock();
        st.driving = false;
        let polled = match polled {
            Ok(p) => p,
            Err(e) => {
                st.graveyard.clear();
                st.wake_sleepers(shared);
                return (st, Err(Error::io("failed to wait for the pool's workers", e)));
            }
        };
        st.finish(&round, &polled);
        st.graveyard.clear();
        st.wake_sleepers(shared);
    }
}

/// Runs the callbacks of finished jobs, without the lock, then the
/// callbacks added to them meanwhile ([`Job::late`]). A callback's panic
/// is resumed once the pool's state is consistent (with `resume`;
/// otherwise dropped: the panic hook has reported it already); a panic
/// that escapes the decoding fails the job instead of leaving it running.
pub(super) fn run_due<'a>(shared: &'a Shared, mut st: MutexGuard<'a, State>, resume: bool) -> MutexGuard<'a, State> {
    let mut first_panic = None;
    while let Some(id) = st.due.pop() {
        let Some(j) = st.jobs.get_mut(&id) else { continue };
        let Some(on_done) = j.on_done.take() else { continue };
        j.running_as = Some((j.failed(), j.error_kind()));
        let out = std::mem::take(&mut j.out);
        j.running = true;
        drop(st);
        let key = (std::ptr::from_ref(shared) as usize, id);
        IN_CALLBACK.with_borrow_mut(|v| v.push(key));
        let done = panic::catch_unwind(AssertUnwindSafe(|| on_done(out))).unwrap_or_else(|p| {
            let e = Error::new(
                ErrorKind::Protocol,
                format!(
                    "decoding the task's result panicked: {}",
                    crate::target::payload_text(&*p)
                ),
            );
            Decoded {
                error: Some(e.kind()),
                value: Box::new(e),
                panic: Some(p),
            }
        });
        let mut panic = done.panic;
        st = shared.lock();
        loop {
            let late = st
                .jobs
                .get_mut(&id)
                .map(|j| std::mem::take(&mut j.late))
                .unwrap_or_default();
            if late.is_empty() {
                break;
            }
            drop(st);
            for cb in late {
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| cb(&*done.value))) {
                    panic.get_or_insert(p);
                }
            }
            st = shared.lock();
        }
        IN_CALLBACK.with_borrow_mut(|v| v.pop());
        if let Some(j) = st.jobs.get_mut(&id) {
            j.running = false;
            j.running_as = None;
            if j.orphan {
                st.jobs.remove(&id);
            } else {
                j.decoded = Some((done.error, done.value));
            }
        }
        st.wake_sleepers(shared);
        // A driver waiting on the workers may be waiting for this job.
        st.nudge();
        if first_panic.is_none() {
            first_panic = panic;
        }
    }
    // A panic stashed by a nested call is taken in any case: resumed if
    // it is the first, dropped (already reported) otherwise.
    let stashed = STASHED_PANIC.take();
    if let Some(p) = first_panic.or(stashed) {
        if IN_CALLBACK.with_borrow(|v| !v.is_empty()) {
            // Inside another callback (that uses the pool): it must not be
            // cut short; the outermost call resumes the panic.
            STASHED_PANIC.set(Some(p));
        } else if resume {
            drop(st);
            panic::resume_unwind(p);
        }
    }
    st
}

/// Decodes a task's outcome into its value or error.
pub(super) fn decode<R: DeserializeOwned + 'static>(r: TaskResult) -> Result<R> {
    let bytes = r?;
    match Outcome::from_bytes(&bytes) {
        Ok(OutcomeRef::Value(v)) => decode_caught_panic::<R>(v).map_err(|CodecError(e)| {
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

pub(super) fn offsets<A: DeserializeOwned + 'static, R: Serialize + 'static>(f: fn(A) -> R) -> Result<(i64, i64)> {
    target::offsets_of(f).ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "a pool task must be a function of the main executable",
        )
    })
}

/// Python's automatic chunk size: `len / (4 × workers)`, rounded up.
pub(super) fn auto_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers).max(1)
}

/// Removes `job`'s chunks that no worker has yet; `true` if there were any.
pub(super) fn cancel_job(shared: &Shared, job: u64, resume: bool) -> bool {
    let Ok(mut st) = shared.enter() else { return false };
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
                data: None,
                fds: PassedFds::default(),
            },
            &e,
        );
    }
    // Threads waiting on the job: the driver, or those asleep.
    st.nudge();
    st.wake_sleepers(shared);
    drop(run_due(shared, st, resume));
    true
}
