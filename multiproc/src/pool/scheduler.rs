//! The scheduler: pending work, dispatch, replies, deaths and
//! replacements, as pure logic over [`WorkerLink`]s.
//!
//! It owns the workers (each behind a link), the pending chunks and the
//! jobs, and decides everything the pool does with them: which worker
//! gets which chunk, which reply answers which task, what a death, an
//! overdue task or a protocol violation fails, and when a worker is
//! replaced. It performs no system call of its own: it sends, receives,
//! signals and waits only through its links, and starts workers through
//! its [`Launcher`]. So the unit tests (`scheduler_tests.rs`) drive it
//! with mock links, and a worker on another host (over TCP) needs only a
//! link of its own. The driver (`driver.rs`) decides *when*: it waits on
//! the descriptors the links name and hands the scheduler what it found.

use std::{
    collections::VecDeque,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    encode::{Encoded, PassedFds},
    job::Jobs,
    protocol::{self, Mode, ReplyHead, ReplyKind, TaskHead},
};
use crate::{
    error::{Error, ErrorKind, Result},
    process::ExitStatus,
    sys::{self, RawFd},
};

/// The parent's end of one worker: the seam between the scheduler and a
/// worker process, wherever it runs.
///
/// Today's link (`ProcessLink`, in `link.rs`) is a local
/// [`Process`](crate::Process) and its private [`Connection`](crate::Connection);
/// a remote worker (a worker process on another host, over TCP; a Slurm or
/// MPI backend later) implements the same trait. What a link promises:
///
/// - **Ordering.** Messages arrive whole and in the order they were sent,
///   both ways. The worker answers its task messages in the order it
///   received them, one reply each, after one first message (its
///   initializer's report); the scheduler takes a reply only when it
///   names the oldest task message the worker holds.
/// - **Sending.** [`send`](WorkerLink::send) writes the chunks' task
///   messages in order without blocking on a worker that is itself
///   blocked writing replies (the scheduler keeps what it queues per
///   worker under 64 KiB); on a failure it says how many chunks went out
///   whole (those may have run; the others never started).
/// - **Death.** A link reports its worker's end through
///   [`try_recv`](WorkerLink::try_recv) (`Ended`: the stream is over) or
///   its exit descriptor, and then gives its
///   [`exit_status`](WorkerLink::exit_status) when it knows one (a remote
///   link may not: `None` reads as "an unknown status"). Once a worker is
///   seen dead, every message it sent before is still delivered by
///   `try_recv` (a finished task keeps its result).
/// - **Kill.** The scheduler alone decides to kill ([`kill`](WorkerLink::kill)):
///   for an overdue task, a protocol violation, `terminate`, an
///   initializer that does not report in time. A link never kills on its
///   own; [`close`](WorkerLink::close) only ends the stream, which makes
///   an idle worker leave. Dropping a link releases its descriptors and
///   does not wait.
/// - **Waiting.** The link names the descriptors whose readiness means it
///   has news ([`wait_fds`](WorkerLink::wait_fds): its stream, its exit);
///   a message already buffered in the link is reported by
///   [`buffered`](WorkerLink::buffered), since no descriptor shows it.
pub(crate) trait WorkerLink: Send {
    /// Sends the task messages of `chunks`, in order; on a failure, the
    /// number of chunks whose messages all went out.
    fn send(&mut self, chunks: &[&Chunk]) -> std::result::Result<(), usize>;
    /// The next message, without waiting.
    fn try_recv(&mut self) -> Recv;
    /// A message (or the end) is already buffered in the link.
    fn buffered(&self) -> bool;
    /// What to wait on: the stream's descriptor and the exit's (-1 for
    /// none).
    fn wait_fds(&self) -> [RawFd; 2];
    /// The worker's exit status, once it is known to have ended.
    fn exit_status(&self) -> Option<ExitStatus>;
    /// Kills the worker (`SIGKILL` for a local one).
    ///
    /// # Errors
    ///
    /// When it cannot be signalled (`EPERM`).
    fn kill(&self) -> Result<()>;
    /// Asks the worker to exit (`SIGTERM` for a local one).
    ///
    /// # Errors
    ///
    /// When it cannot be signalled.
    fn terminate(&self) -> Result<()>;
    /// Waits until `until` for the worker to end; `true` once it has.
    fn join_until(&mut self, until: Instant) -> bool;
    /// Ends the stream: the worker's reads end, and with `receiving`, its
    /// sends fail too.
    fn close(&self, receiving: bool);
    /// The worker's process id, if it has one.
    fn pid(&self) -> Option<u32>;
    /// `e`, naming the worker (its process name and pid).
    fn named(&self, e: Error) -> Error;
    /// The moment by which the worker must be heard from (a remote
    /// worker's heartbeat), or `None`. Past it, the scheduler counts the
    /// worker as lost: it kills it and handles its death.
    fn heartbeat_due(&self) -> Option<Instant> {
        None
    }
    /// Why the worker ended, when the link knows more than an exit
    /// status (a connection reset, a missed heartbeat).
    fn cause(&self) -> Option<String> {
        None
    }
}

/// What [`WorkerLink::try_recv`] found.
#[derive(Debug)]
pub(crate) enum Recv {
    Message(Vec<u8>),
    /// Nothing yet (or only part of a message).
    Empty,
    /// The stream is over.
    Ended,
}

/// Starts workers for the scheduler.
pub(crate) trait Launcher: Send {
    /// The links of the workers it starts.
    type Link: WorkerLink;
    /// Starts `n` workers; stops at the first failure, returning those
    /// started so far and the error.
    fn launch(&mut self, n: usize) -> (Vec<Self::Link>, Option<Error>);
    /// A worker started on demand starts every missing one (under fork,
    /// as Python's fork context does).
    fn all_at_once(&self) -> bool;
    /// Its workers run on other hosts (over TCP): a task argument holding
    /// a local-only object (a descriptor) cannot reach them.
    fn remote(&self) -> bool {
        false
    }
    /// Workers that joined since the last call (a batch backend's, which
    /// join as their jobs start).
    fn joined(&mut self) -> Vec<Self::Link> {
        Vec::new()
    }
    /// A descriptor readable when workers have joined.
    fn join_fd(&self) -> Option<RawFd> {
        None
    }
    /// Workers were asked for that have not joined yet.
    fn expecting(&self) -> bool {
        false
    }
    /// Ends whatever the launcher still runs (launcher processes, queued
    /// jobs): the pool is done with its workers.
    fn stop(&mut self) {}
}

/// What the pool was built with, as the scheduler needs it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rules {
    pub(super) maxtasks: Option<usize>,
    pub(super) task_timeout: Option<Duration>,
    /// Workers start when work finds no idle one (an executor's pool).
    pub(super) on_demand: bool,
    /// The workers run an initializer (they report before taking work).
    pub(super) has_init: bool,
    /// How many times a chunk runs in all when its worker dies under it
    /// (a remote pool's retries); 0 and 1 mean once.
    pub(super) attempts: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Life {
    Running,
    Closed,
    Terminated,
}

/// A chunk: tasks of one job that travel in one task message.
pub(crate) struct Chunk {
    pub(super) job: u64,
    pub(super) idx: Vec<usize>,
    pub(super) mode: Mode,
    pub(crate) payload: Vec<u8>,
    /// A large argument, sent as a message of its own after `payload`.
    pub(crate) data: Option<Vec<u8>>,
    /// The descriptors of the library objects among the arguments,
    /// sent with `payload`.
    pub(crate) fds: PassedFds,
    /// Its job's task timeout, over the pool's.
    pub(super) timeout: Option<Duration>,
    /// Times it was given to a worker that died under it.
    pub(super) tries: u32,
}

impl Chunk {
    /// The bytes it puts on the wire.
    fn size(&self) -> usize {
        self.payload.len() + self.data.as_ref().map_or(0, Vec::len)
    }
}

/// A chunk given to a worker.
pub(super) struct Sent {
    pub(super) chunk: Chunk,
    /// When it reached the head of its worker's queue.
    pub(super) started: Option<Instant>,
    /// The id its task message carried: its reply must name it.
    pub(super) id: u64,
}

/// One worker, as the scheduler sees it.
pub(super) struct Slot<L> {
    /// Unique in the pool (a replacement has a new one).
    pub(super) id: usize,
    pub(super) link: L,
    pub(super) in_flight: VecDeque<Sent>,
    /// Chunks given to it (for `maxtasksperchild`).
    pub(super) sent: usize,
    /// Until its first message (the initializer's report), the moment by
    /// which it must come.
    pub(super) starting: Option<Instant>,
    /// May be given chunks before it reports: it has no initializer, so
    /// its report comes at once and the chunks wait in its link. Should it
    /// die before reporting, they never ran: they go back to pending.
    pub(super) eager: bool,
    /// How long its last chunk took: chunks queue deeply only behind fast
    /// ones.
    pub(super) last_chunk: Option<Duration>,
}

/// How long a worker may take to start and run its initializer, and how
/// long a closing worker may take to exit before it is killed.
pub(super) const WORKER_DEADLINE: Duration = Duration::from_secs(60);

/// A worker has more than one chunk only while their messages total at
/// most this much, well under a socket buffer: the parent never blocks
/// writing to a worker that is itself blocked writing results.
pub(super) const SMALL_CHUNK: usize = 64 * 1024;

/// At most this many chunks in flight per worker.
const MAX_DEPTH: usize = 16;

/// A chunk shorter than this is "fast": a worker running fast chunks gets
/// up to [`MAX_DEPTH`] of them at once, to hide the round trip.
const FAST_CHUNK: Duration = Duration::from_millis(1);

/// How long a worker whose stream ended may take to exit before it is
/// killed (its exit status tells more than a kill).
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How long stopping the workers waits for them, in all.
pub(super) const STOP_WAIT: Duration = Duration::from_secs(10);

/// `timeout` from now (the crate's one rule for a timeout too large to
/// represent).
pub(super) fn deadline_after(timeout: Duration) -> Instant {
    crate::sys::deadline_after(timeout)
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

impl<L: WorkerLink> Slot<L> {
    pub(super) fn new(id: usize, link: L, eager: bool) -> Slot<L> {
        Slot {
            id,
            link,
            in_flight: VecDeque::new(),
            sent: 0,
            starting: Some(deadline_after(WORKER_DEADLINE)),
            eager,
            last_chunk: None,
        }
    }

    pub(super) fn err(&self, kind: ErrorKind, message: String) -> Error {
        self.link.named(Error::new(kind, message))
    }

    /// The initializer's report (the worker's first message), as a result.
    pub(super) fn init_outcome(&mut self, msg: &[u8]) -> Result<()> {
        let r = match ReplyHead::decode(msg) {
            Some((h, body)) if h.kind == ReplyKind::Init && h.id == 0 => {
                protocol::init_result(body).map_err(|e| self.link.named(e))
            }
            _ => Err(self.err(
                ErrorKind::Protocol,
                "a pool worker's first message is not its initializer's report".into(),
            )),
        };
        if r.is_ok() {
            self.starting = None;
        }
        r
    }

    pub(super) fn init_timeout(&self) -> Error {
        let what = if self.eager { "start" } else { "finish its initializer" };
        self.err(
            ErrorKind::Timeout,
            format!("a pool worker did not {what} within {WORKER_DEADLINE:?}"),
        )
    }

    /// The error for a worker that ended before its initializer reported.
    pub(super) fn ended_early(&mut self) -> Error {
        self.reap();
        let what = if self.eager {
            "a pool worker ended before it was ready"
        } else {
            "a pool worker ended before its initializer finished"
        };
        let e = self.err(ErrorKind::Bootstrap, what.into());
        match self.link.exit_status() {
            Some(s) => e.with_status(s),
            None => e,
        }
    }

    fn can_take(&self, next: &Chunk, maxtasks: Option<usize>) -> bool {
        if maxtasks.is_some_and(|m| self.sent >= m) {
            return false;
        }
        let queued = self.in_flight.iter().map(|s| s.chunk.size()).sum::<usize>();
        // A worker still starting reads nothing yet: it takes work only
        // without an initializer, and only what its link holds without
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
        if !self.link.join_until(deadline_after(EXIT_GRACE)) && self.link.exit_status().is_none() {
            self.kill_and_reap();
        }
    }

    /// Kills the worker (if alive) and reaps it, bounded. One that cannot
    /// be signalled has its stream closed: it leaves when its task returns.
    pub(super) fn kill_and_reap(&mut self) {
        if self.link.kill().is_ok() {
            self.link.join_until(deadline_after(STOP_WAIT));
        } else {
            self.link.close(true);
        }
    }
}

/// When the chunk `s` is overdue under its task timeout, or else the
/// pool's `pool` (saturating: a huge timeout means "never"): `t × tasks`,
/// from when it started; `None` without a timeout.
pub(super) fn overdue_at(s: &Sent, pool: Option<Duration>, now: Instant) -> Option<Instant> {
    let t = s.chunk.timeout.or(pool)?;
    let n = u32::try_from(s.chunk.idx.len().max(1)).unwrap_or(u32::MAX);
    let limit = t.checked_mul(n).unwrap_or(Duration::MAX);
    Some(
        s.started
            .unwrap_or(now)
            .checked_add(limit)
            .unwrap_or_else(|| deadline_after(limit)),
    )
}

/// Why a worker is being replaced.
pub(super) enum Death {
    /// It ended (or its stream did).
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

/// What one round waits for: each worker's descriptors (see
/// [`WorkerLink::wait_fds`]), two per worker in `ids` order.
pub(super) struct Round {
    pub(super) ids: Vec<usize>,
    pub(super) fds: Vec<RawFd>,
    pub(super) timeout: Option<Duration>,
}

/// The pool's workers, pending chunks and jobs (see the module docs).
pub(super) struct Scheduler<P: Launcher> {
    /// The number of workers the pool keeps.
    pub(super) size: usize,
    pub(super) rules: Rules,
    pub(super) workers: Vec<Slot<P::Link>>,
    pub(super) pending: VecDeque<Chunk>,
    pub(super) jobs: Jobs,
    pub(super) life: Life,
    pub(super) broken: Option<Error>,
    /// Workers started so far (each slot's id).
    started: usize,
    /// Workers that died before reporting ready since one last did.
    early_deaths: usize,
    /// Workers a stop left running, with the signal's error: their
    /// streams are closed, so each leaves when its task returns.
    pub(super) stuck: Vec<(Slot<P::Link>, Option<Error>)>,
    /// A thread waits on the links without holding the pool's lock (set
    /// by the driver): removed workers keep their descriptors open in
    /// `retired` until its wait has returned, and [`notify`] wakes it.
    pub(super) driving: bool,
    pub(super) retired: Vec<Slot<P::Link>>,
    notify: Box<dyn Fn() + Send>,
    /// Last, so dropped after the links: a remote launcher waits for its
    /// processes, which end once their workers' connections are closed.
    pub(super) launcher: P,
}

mod stop;
pub(super) use stop::wait_stuck;
mod work;

impl<P: Launcher> Scheduler<P> {
    /// A scheduler of `size` workers (none started yet); `notify` wakes
    /// the driver's wait.
    pub(super) fn new(launcher: P, size: usize, rules: Rules, notify: Box<dyn Fn() + Send>) -> Scheduler<P> {
        Scheduler {
            launcher,
            size,
            rules,
            workers: Vec::with_capacity(size),
            pending: VecDeque::new(),
            jobs: Jobs::default(),
            life: Life::Running,
            broken: None,
            started: 0,
            early_deaths: 0,
            stuck: Vec::new(),
            driving: false,
            retired: Vec::new(),
            notify,
        }
    }

    /// Starts `n` workers as slots (not added to the pool yet).
    pub(super) fn launch(&mut self, n: usize) -> (Vec<Slot<P::Link>>, Option<Error>) {
        let (links, failed) = self.launcher.launch(n);
        let eager = !self.rules.has_init;
        let slots = links
            .into_iter()
            .map(|link| {
                self.started += 1;
                Slot::new(self.started, link, eager)
            })
            .collect();
        (slots, failed)
    }

    /// Submissions are taken: an error for a broken or closed pool.
    pub(super) fn check_open(&self) -> Result<()> {
        if let Some(e) = &self.broken {
            return Err(e.duplicate());
        }
        match self.life {
            Life::Running => Ok(()),
            _ => Err(Error::new(ErrorKind::InvalidState, "the pool is closed")),
        }
    }

    /// Wakes the driver (if any) to look again at the workers.
    pub(super) fn nudge(&self) {
        if self.driving {
            (self.notify)();
        }
    }

    /// Drops a removed worker, or keeps it until the driver's wait (which
    /// may be watching its descriptors) has returned.
    fn retire(&mut self, w: Slot<P::Link>) {
        if self.driving {
            self.retired.push(w);
            self.nudge();
        }
    }

    /// Adds an encoded chunk of `job`: its tasks count as outstanding, the
    /// ones that failed to encode finish at once, the rest is queued (or
    /// fails at once on a broken or terminated pool).
    pub(super) fn add(&mut self, job: u64, enc: Encoded) {
        if !self.jobs.contains(job) {
            return;
        }
        let Encoded {
            idx,
            mode,
            payload,
            data,
            fds,
            failed,
        } = enc;
        self.jobs.submitted(job, idx.len() + failed.len());
        for (i, e) in failed {
            self.jobs.fail(job, vec![i], &e);
        }
        if idx.is_empty() {
            return;
        }
        let chunk = Chunk {
            job,
            idx,
            mode,
            payload,
            data,
            fds,
            timeout: self.jobs.get(job).and_then(|j| j.task_timeout),
            tries: 0,
        };
        if !chunk.fds.is_empty() && self.launcher.remote() {
            let e = Error::new(
                ErrorKind::Unsupported,
                "a task argument holds a local-only object (a Queue, a lock, a Value, SharedMemory, a \
                 descriptor or a Connection made by pipe), which cannot reach a worker on another host; \
                 connect with Listener/Client over TCP instead",
            );
            self.fail_chunk(chunk, &e);
            return;
        }
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
        self.jobs.fail(chunk.job, chunk.idx, e);
    }

    pub(super) fn fail_pending(&mut self, e: &Error) {
        while let Some(c) = self.pending.pop_front() {
            self.fail_chunk(c, e);
        }
    }

    /// Removes `job`'s chunks that no worker has yet, failing them with
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled); `true` if there were any.
    pub(super) fn cancel_job(&mut self, job: u64) -> bool {
        let mut removed = Vec::new();
        self.pending.retain(|c| {
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
            self.jobs.fail(job, idx, &e);
        }
        // Threads waiting on the job: the driver.
        self.nudge();
        true
    }

    /// A chunk of `job` has been sent to a worker and not answered yet.
    pub(super) fn job_sent(&self, job: u64) -> bool {
        self.workers
            .iter()
            .any(|w| w.in_flight.iter().any(|s| s.chunk.job == job))
    }

    pub(super) fn in_flight(&self) -> bool {
        self.workers.iter().any(|w| !w.in_flight.is_empty())
    }
}

/// The task message header is the protocol's: a chunk is named afresh
/// each time it is sent.
fn name_sending(s: &mut Sent) {
    s.id = next_task_id();
    TaskHead::set_id(&mut s.chunk.payload, s.id);
}
