//! Unit tests of the scheduler with mock links: no process, no socket.
//! Each mock worker records the task messages it was sent and answers
//! only when a test tells it to, with replies built by the protocol's own
//! encoders, so the tests decide every interleaving.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::{
    decode::{decode, decode_output},
    encode::encode_items,
    protocol::{self, TaskHead},
    scheduler::{Chunk, Death, Launcher, Recv, Rules, Scheduler, WorkerLink},
};
use crate::{
    codec,
    error::{Error, ErrorKind, Result},
    outcome::Outcome,
    process::ExitStatus,
    sys::RawFd,
};

/// What a mock worker has seen and will say.
#[derive(Default)]
struct Mock {
    /// Task messages received and not answered: (id, tasks).
    held: VecDeque<(u64, usize)>,
    /// Messages to deliver, then (with `ended`) the end of the stream.
    inbox: VecDeque<Vec<u8>>,
    ended: bool,
    status: Option<ExitStatus>,
    killed: bool,
    closed: bool,
    /// Fail every send (a worker that died while idle).
    refuse_sends: bool,
}

type Shared = Arc<Mutex<Mock>>;

struct MockLink(Shared);

fn lock(m: &Shared) -> MutexGuard<'_, Mock> {
    m.lock().unwrap()
}

impl WorkerLink for MockLink {
    fn send(&mut self, chunks: &[&Chunk]) -> std::result::Result<(), usize> {
        let mut m = lock(&self.0);
        if m.refuse_sends || m.status.is_some() {
            return Err(0);
        }
        for c in chunks {
            let head = TaskHead::decode(&c.payload).expect("a task message");
            let n = protocol::task_items(&c.payload).map_or(1, |items| items.len());
            m.held.push_back((head.id, n));
        }
        Ok(())
    }

    fn try_recv(&mut self) -> Recv {
        let mut m = lock(&self.0);
        match m.inbox.pop_front() {
            Some(msg) => Recv::Message(msg),
            None if m.ended => Recv::Ended,
            None => Recv::Empty,
        }
    }

    fn buffered(&self) -> bool {
        let m = lock(&self.0);
        !m.inbox.is_empty() || m.ended
    }

    fn wait_fds(&self) -> [RawFd; 2] {
        [-1, -1]
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        lock(&self.0).status
    }

    fn kill(&self) -> Result<()> {
        let mut m = lock(&self.0);
        m.killed = true;
        m.ended = true;
        m.status.get_or_insert(ExitStatus::Signaled(9));
        Ok(())
    }

    fn terminate(&self) -> Result<()> {
        self.kill()
    }

    fn join_until(&mut self, _until: Instant) -> bool {
        lock(&self.0).status.is_some()
    }

    fn close(&self, _receiving: bool) {
        lock(&self.0).closed = true;
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn named(&self, e: Error) -> Error {
        e.with_process("MockWorker", None)
    }
}

/// Starts mock workers; every one it started stays reachable.
#[derive(Default)]
struct MockLauncher {
    started: Arc<Mutex<Vec<Shared>>>,
}

impl Launcher for MockLauncher {
    type Link = MockLink;

    fn launch(&mut self, n: usize) -> (Vec<MockLink>, Option<Error>) {
        let mut started = self.started.lock().unwrap();
        let links = (0..n)
            .map(|_| {
                let m = Shared::default();
                started.push(m.clone());
                MockLink(m)
            })
            .collect();
        (links, None)
    }

    fn all_at_once(&self) -> bool {
        false
    }
}

struct Pool {
    s: Scheduler<MockLauncher>,
    started: Arc<Mutex<Vec<Shared>>>,
}

impl Pool {
    /// A pool of `size` mock workers, each ready (its report delivered).
    fn new(size: usize, rules: Rules) -> Pool {
        let launcher = MockLauncher::default();
        let started = launcher.started.clone();
        let mut s = Scheduler::new(launcher, size, rules, Box::new(|| {}));
        let (workers, failed) = s.launch(size);
        assert!(failed.is_none());
        s.workers = workers;
        let p = Pool { s, started };
        for k in 0..size {
            p.report_ready(k);
        }
        p
    }

    /// The `k`-th worker ever started.
    fn worker(&self, k: usize) -> Shared {
        self.started.lock().unwrap()[k].clone()
    }

    fn started(&self) -> usize {
        self.started.lock().unwrap().len()
    }

    fn report_ready(&self, k: usize) {
        let report = protocol::init_report(&Outcome::Value(Vec::new()));
        lock(&self.worker(k)).inbox.push_back(report);
    }

    /// A job of `items`, one chunk of `per_chunk` tasks each.
    fn submit(&mut self, items: &[u64], per_chunk: usize) -> u64 {
        let job = self.s.jobs.create();
        for (c, part) in items.chunks(per_chunk).enumerate() {
            let indexed = part.iter().enumerate().map(|(k, &x)| (c * per_chunk + k, x)).collect();
            self.s.add(job, encode_items((0, 0), indexed));
        }
        self.s.jobs.seal(job);
        job
    }

    /// One round as of `now`: dispatch, then take whatever the mocks
    /// have to say (their exits count as seen).
    fn round_at(&mut self, now: Instant) {
        let Some(round) = self.s.prepare(None) else {
            // Without work, the driver looks at the exits alone.
            for i in (0..self.s.workers.len()).rev() {
                if self.s.workers[i].link.exit_status().is_some() {
                    self.s.on_death(i, Death::Ended);
                }
            }
            return;
        };
        let exited: Vec<bool> = self.s.workers.iter().map(|w| w.link.exit_status().is_some()).collect();
        let polled: Vec<bool> = exited.into_iter().flat_map(|e| [false, e]).collect();
        self.s.finish(&round, &polled, now);
    }

    fn round(&mut self) {
        self.round_at(Instant::now());
    }

    /// Worker `k` answers its oldest task message: each task returns
    /// `answer(i)` for its position `i` in the chunk.
    fn answer(&self, k: usize, answer: impl Fn(usize) -> u64) {
        let w = self.worker(k);
        let mut m = lock(&w);
        let (id, n) = m.held.pop_front().expect("a task to answer");
        let outcomes =
            (0..n).map(|i| Outcome::Value(codec::encode(&answer(i)).ok().expect("a u64 encodes").into_owned()));
        m.inbox.push_back(protocol::outcomes_reply(id, outcomes));
    }

    fn die(&self, k: usize, status: ExitStatus) {
        let w = self.worker(k);
        let mut m = lock(&w);
        m.status = Some(status);
        m.ended = true;
    }

    fn held(&self, k: usize) -> usize {
        lock(&self.worker(k)).held.len()
    }

    /// Task `i` of `job`: its value, or its error's kind.
    fn result(&mut self, job: u64, i: usize) -> Option<std::result::Result<u64, ErrorKind>> {
        let j = self.s.jobs.get_mut(job)?;
        let r = j.out.results.remove(&i)?;
        Some(decode::<u64>(r).map_err(|e| e.kind()))
    }
}

#[test]
fn a_death_mid_chunk_fails_that_chunk_and_requeues_those_behind_it() {
    let mut p = Pool::new(1, Rules::default());
    let job = p.submit(&[10, 11, 12], 1);
    p.round();
    // Chunks of one job queue behind each other (two behind a slow one).
    assert_eq!(p.held(0), 2);
    p.answer(0, |_| 100);
    p.round();
    assert_eq!(p.result(job, 0), Some(Ok(100)));
    p.round();
    assert_eq!(p.held(0), 2, "the third chunk follows");
    p.die(0, ExitStatus::Signaled(9));
    p.round();
    assert_eq!(p.result(job, 1), Some(Err(ErrorKind::ChildKilled)));
    assert_eq!(
        p.result(job, 2),
        None,
        "the chunk behind it never started: it is not failed"
    );
    assert_eq!(p.started(), 2, "a replacement started");
    p.report_ready(1);
    p.round();
    assert_eq!(p.held(1), 1, "the replacement takes the requeued chunk");
    p.answer(1, |_| 120);
    p.round();
    assert_eq!(p.result(job, 2), Some(Ok(120)));
    assert!(p.s.jobs.get(job).unwrap().finished());
}

#[test]
fn a_worker_that_dies_before_reporting_is_replaced_and_its_chunks_requeued() {
    let mut p = Pool::new(1, Rules::default());
    // A replacement that has not reported yet takes eager work, then dies.
    p.die(0, ExitStatus::Signaled(9));
    p.round();
    assert_eq!(p.started(), 2);
    let job = p.submit(&[1], 1);
    p.round();
    assert_eq!(p.held(1), 1, "an eager worker takes work before its report");
    p.die(1, ExitStatus::Signaled(9));
    p.round();
    assert_eq!(p.result(job, 0), None, "its chunk never ran: requeued, not failed");
    assert_eq!(p.started(), 3);
    p.report_ready(2);
    p.round();
    p.answer(2, |_| 7);
    p.round();
    assert_eq!(p.result(job, 0), Some(Ok(7)));
}

#[test]
fn workers_dying_before_their_report_break_the_pool_after_a_bound() {
    let mut p = Pool::new(1, Rules::default());
    let job = p.submit(&[1], 1);
    p.round();
    p.answer(0, |_| 1);
    p.round();
    // Each replacement dies before reporting: 3 × size in a row are
    // replaced, the next breaks the pool.
    for k in 0..4 {
        p.die(k, ExitStatus::Exited(1));
        p.round();
        assert!(p.s.broken.is_none(), "death {k} is replaced");
    }
    p.die(4, ExitStatus::Exited(1));
    p.round();
    assert_eq!(p.s.broken.as_ref().map(Error::kind), Some(ErrorKind::Bootstrap));
    assert_eq!(p.started(), 5);
    assert_eq!(p.result(job, 0), Some(Ok(1)), "a finished task keeps its result");
}

#[test]
fn a_task_past_its_timeout_kills_its_worker_and_fails_alone() {
    let rules = Rules {
        task_timeout: Some(Duration::from_secs(5)),
        ..Rules::default()
    };
    let mut p = Pool::new(2, rules);
    let slow = p.submit(&[1], 1);
    let fast = p.submit(&[2], 1);
    p.round();
    assert_eq!((p.held(0), p.held(1)), (1, 1), "breadth first");
    p.answer(1, |_| 2);
    p.round_at(Instant::now() + Duration::from_secs(3));
    assert!(!lock(&p.worker(0)).killed, "not overdue yet");
    p.round_at(Instant::now() + Duration::from_secs(6));
    assert!(lock(&p.worker(0)).killed);
    assert_eq!(p.result(slow, 0), Some(Err(ErrorKind::TaskTimeout)));
    assert_eq!(p.result(fast, 0), Some(Ok(2)));
    assert_eq!(p.started(), 3, "the killed worker is replaced");
}

#[test]
fn maxtasksperchild_gives_each_worker_that_many_chunks() {
    let rules = Rules {
        maxtasks: Some(1),
        ..Rules::default()
    };
    let mut p = Pool::new(1, rules);
    let job = p.submit(&[1, 2], 1);
    p.round();
    assert_eq!(p.held(0), 1, "one chunk, not two");
    p.answer(0, |_| 10);
    // The worker leaves after its chunk, as its loop does.
    p.die(0, ExitStatus::Exited(0));
    p.round();
    assert_eq!(p.result(job, 0), Some(Ok(10)), "its reply came before its end");
    assert_eq!(p.started(), 2);
    p.report_ready(1);
    p.round();
    p.answer(1, |_| 20);
    p.round();
    assert_eq!(p.result(job, 1), Some(Ok(20)));
}

#[test]
fn cancelling_removes_only_the_chunks_no_worker_has() {
    let mut p = Pool::new(1, Rules::default());
    let running = p.submit(&[1], 1);
    let waiting = p.submit(&[2, 3], 1);
    p.round();
    // Separate submissions do not queue behind a busy worker.
    assert_eq!(p.held(0), 1);
    assert!(!p.s.cancel_job(running), "sent: no longer cancellable");
    assert!(p.s.cancel_job(waiting));
    assert_eq!(p.result(waiting, 0), Some(Err(ErrorKind::Cancelled)));
    assert_eq!(p.result(waiting, 1), Some(Err(ErrorKind::Cancelled)));
    assert!(p.s.jobs.get(waiting).unwrap().finished());
    p.answer(0, |_| 1);
    p.round();
    assert_eq!(p.result(running, 0), Some(Ok(1)));
}

#[test]
fn map_results_come_in_input_order_whatever_order_the_replies_arrive_in() {
    let mut p = Pool::new(2, Rules::default());
    let job = p.submit(&[0, 1, 2, 3], 2);
    p.round();
    // Worker 1 got the second chunk and answers first.
    p.answer(1, |i| 20 + i as u64);
    p.round();
    p.answer(0, |i| 10 + i as u64);
    p.round();
    let j = p.s.jobs.get_mut(job).unwrap();
    assert!(j.finished());
    let out = std::mem::take(&mut j.out);
    assert_eq!(decode_output::<u64>(out, 4).unwrap(), [10, 11, 20, 21]);
}

#[test]
fn imap_results_wait_at_their_index_until_their_turn() {
    let mut p = Pool::new(2, Rules::default());
    let job = p.submit(&[0, 1], 1);
    p.round();
    p.answer(1, |_| 1);
    p.round();
    // An ordered imap takes index 0 first: not there yet, 1 waits.
    let j = p.s.jobs.get(job).unwrap();
    assert!(!j.out.results.contains_key(&0));
    assert!(j.out.results.contains_key(&1));
    p.answer(0, |_| 0);
    p.round();
    assert_eq!(p.result(job, 0), Some(Ok(0)));
    assert_eq!(p.result(job, 1), Some(Ok(1)));
}

#[test]
fn a_reply_to_another_task_message_fails_what_the_worker_held() {
    let mut p = Pool::new(1, Rules::default());
    let job = p.submit(&[1, 2], 1);
    p.round();
    assert_eq!(p.held(0), 2);
    {
        let w = p.worker(0);
        let mut m = lock(&w);
        let (id, _) = m.held[1];
        // A reply that names the second task message, not the oldest.
        let reply = protocol::outcomes_reply(id, [Outcome::Value(Vec::new())]);
        m.inbox.push_back(reply);
    }
    p.round();
    assert!(lock(&p.worker(0)).killed, "a worker that breaks the protocol is killed");
    assert_eq!(p.result(job, 0), Some(Err(ErrorKind::Protocol)));
    assert_eq!(p.result(job, 1), Some(Err(ErrorKind::Protocol)));
    assert_eq!(p.started(), 2);
}

#[test]
fn terminate_fails_pending_work_and_keeps_finished_results() {
    let mut p = Pool::new(1, Rules::default());
    let job = p.submit(&[1, 2, 3], 1);
    p.round();
    p.answer(0, |_| 1);
    // The reply is there when the kill comes: it is kept.
    p.s.terminate().unwrap();
    assert_eq!(p.result(job, 0), Some(Ok(1)));
    assert_eq!(p.result(job, 1), Some(Err(ErrorKind::Cancelled)));
    assert_eq!(p.result(job, 2), Some(Err(ErrorKind::Cancelled)));
    assert!(p.s.workers.is_empty());
    assert!(p.s.check_open().is_err());
}
