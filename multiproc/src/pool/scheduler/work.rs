//! The scheduler at work: dispatch, rounds, replies, deaths and
//! replacements.

use std::time::{Duration, Instant};

use super::{Chunk, Death, Launcher, Life, Recv, Round, Scheduler, Sent, Slot, WorkerLink, name_sending, overdue_at};
use crate::{
    error::{Error, ErrorKind},
    pool::protocol::{ReplyBody, ReplyHead, ReplyKind},
    process::ExitStatus,
};

impl<P: Launcher> Scheduler<P> {
    /// Sends pending chunks, breadth first: each to the worker with the
    /// fewest chunks in flight that can take it. The chunks a worker is
    /// given in one round go out together (one system call for a burst of
    /// small ones). A worker found dead on sending (it died while idle) is
    /// replaced; the chunks it cannot have received go back to pending.
    pub(in crate::pool) fn dispatch(&mut self) {
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
            if !self.jobs.contains(next.job) {
                // Its handle was dropped.
                self.pending.pop_front();
                continue;
            }
            let maxtasks = self.rules.maxtasks;
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
            w.in_flight.range_mut(first..).for_each(name_sending);
            let chunks: Vec<&Chunk> = w.in_flight.range(first..).map(|s| &s.chunk).collect();
            match w.link.send(&chunks) {
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
            self.on_death(i, Death::Ended);
        }
    }

    /// For a pool with on-demand workers (an executor): starts a worker
    /// for each pending chunk that no idle worker will take, up to the
    /// pool's size (Python >= 3.9 starts one per submission that finds no
    /// idle worker); with [`Launcher::all_at_once`], every missing one.
    /// When no worker can be started and none is left, the pool is broken
    /// with that error.
    fn start_on_demand(&mut self) {
        if !self.rules.on_demand || self.broken.is_some() || self.workers.len() >= self.size {
            return;
        }
        let waiting = self.pending.iter().filter(|c| self.jobs.contains(c.job)).count();
        let idle = self.workers.iter().filter(|w| w.in_flight.is_empty()).count();
        let missing = self.size - self.workers.len();
        let mut need = waiting.saturating_sub(idle).min(missing);
        if need == 0 {
            return;
        }
        if self.launcher.all_at_once() {
            need = missing;
        }
        let (started, failed) = self.launch(need);
        self.workers.extend(started);
        self.nudge();
        if let Some(e) = failed {
            if self.workers.is_empty() {
                self.fail_pending(&e);
                self.broken = Some(e);
            }
        }
    }

    /// Dispatches, then says what to wait for: `None` when there is
    /// nothing to wait for (no work, or no worker).
    pub(in crate::pool) fn prepare(&mut self, deadline: Option<Instant>) -> Option<Round> {
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
            if let (Some(s), None) = (w.in_flight.front(), w.starting) {
                if let Some(at) = overdue_at(s, self.rules.task_timeout, now) {
                    soonest(at);
                }
            }
        }
        let mut round = Round {
            ids: Vec::with_capacity(self.workers.len()),
            fds: Vec::with_capacity(2 * self.workers.len() + 1),
            timeout: wake.map(|w| w.saturating_duration_since(now)),
        };
        for w in &self.workers {
            round.ids.push(w.id);
            round.fds.extend(w.link.wait_fds());
            // A message already buffered is not seen by a wait.
            if w.link.buffered() {
                round.timeout = Some(Duration::ZERO);
            }
        }
        Some(round)
    }

    /// Handles what a round's wait found (`polled`: per worker of the
    /// round, its stream's and its exit's readiness, in order): results,
    /// deaths, overdue tasks and initializers, as of `now`.
    pub(in crate::pool) fn finish(&mut self, round: &Round, polled: &[bool], now: Instant) {
        let mut dead: Vec<(usize, Death)> = Vec::new();
        for (k, &id) in round.ids.iter().enumerate() {
            // The worker may have gone (terminate) while the driver waited;
            // most rounds find every worker where the round saw it, so look
            // there first (a search per worker is quadratic in the pool's
            // size).
            let i = if self.workers.get(k).is_some_and(|w| w.id == id) {
                k
            } else {
                let Some(i) = self.workers.iter().position(|w| w.id == id) else {
                    continue;
                };
                i
            };
            if polled.get(2 * k) == Some(&true) || self.workers[i].link.buffered() {
                if let Some(death) = self.take_messages(i) {
                    dead.push((i, death));
                }
            }
            if polled.get(2 * k + 1) == Some(&true) {
                dead.push((i, Death::Ended));
            }
        }
        dead.extend(self.overdue(now));
        // One death per worker, the most telling; from the highest index,
        // since `on_death` may remove its worker.
        dead.sort_by_key(|(i, d)| (std::cmp::Reverse(*i), d.rank()));
        dead.dedup_by_key(|(i, _)| *i);
        for (i, death) in dead {
            self.on_death(i, death);
        }
    }

    /// Takes every message worker `i` has sent (without waiting: the rest
    /// of a message still arriving is read in a later round); the death it
    /// came to, if any.
    fn take_messages(&mut self, i: usize) -> Option<Death> {
        loop {
            match self.workers[i].link.try_recv() {
                Recv::Message(msg) => {
                    if let Err(death) = self.on_message(i, &msg) {
                        return Some(death);
                    }
                }
                Recv::Empty => return None,
                Recv::Ended => return Some(Death::Ended),
            }
            if self.workers[i].in_flight.is_empty() {
                return None;
            }
        }
    }

    /// The workers whose task is overdue, or whose initializer is, as of
    /// `now`: killed.
    fn overdue(&self, now: Instant) -> Vec<(usize, Death)> {
        let mut dead = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            let overdue = |s: &Sent| overdue_at(s, self.rules.task_timeout, now).is_some_and(|at| at <= now);
            if w.starting.is_none() && w.in_flight.front().is_some_and(overdue) {
                let _ = w.link.kill();
                dead.push((i, Death::Overdue));
            } else if w.starting.is_some_and(|at| at <= now) {
                let _ = w.link.kill();
                dead.push((i, Death::Init(w.init_timeout())));
            }
        }
        dead
    }

    /// A message from worker `i`: its initializer's report, or the reply
    /// to its oldest chunk. Anything else is a protocol violation, its
    /// worker's death: while it starts, an initializer failure; after,
    /// [`Death::Protocol`] (the tasks it held fail, it is replaced).
    pub(super) fn on_message(&mut self, i: usize, msg: &[u8]) -> std::result::Result<(), Death> {
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
        let violation = |w: &Slot<P::Link>, what: String| {
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
        let Some(front) = w.in_flight.front() else {
            return Err(violation(w, "a reply while it held no task".into()));
        };
        // A body that cannot answer that chunk: it fails with the others.
        let Some(reply) = ReplyBody::parse(head.kind, body, front.chunk.mode, front.chunk.idx.len()) else {
            return Err(violation(w, format!("a malformed reply to task message {}", head.id)));
        };
        let Some(sent) = w.in_flight.pop_front() else {
            return Err(violation(w, "a reply while it held no task".into()));
        };
        let now = Instant::now();
        w.last_chunk = sent.started.map(|s| now.saturating_duration_since(s));
        if let Some(next) = w.in_flight.front_mut() {
            next.started = Some(now);
        }
        self.jobs.record(sent.chunk.job, sent.chunk.idx, reply);
        Ok(())
    }

    /// Handles the death of worker `i`: what it sent before is kept, the
    /// chunk it ran fails, those queued behind it go back to pending, and
    /// a replacement starts (or the pool breaks, for an initializer's
    /// failure).
    pub(in crate::pool) fn on_death(&mut self, i: usize, death: Death) {
        if i >= self.workers.len() {
            return;
        }
        // Keep what the worker sent before it ended (bounded: a worker
        // stopped halfway through a message must not hold the lock). After
        // a protocol violation, nothing more it sent is trusted.
        if !matches!(death, Death::Init(_) | Death::Protocol(_)) {
            while let Recv::Message(msg) = self.workers[i].link.try_recv() {
                if let Err(d) = self.on_message(i, &msg) {
                    return self.on_death(i, d);
                }
            }
        }
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
                (self.rules.has_init || self.early_deaths > 3 * self.size).then_some(e)
            }
            _ => None,
        };
        if let Some(e) = init_failure {
            // No respawn loop: the pool is broken for good; tasks already
            // with the other workers still finish.
            let old = self.workers.remove(i);
            self.retire(old);
            self.fail_pending(&e);
            self.broken = Some(e);
            return;
        }
        let status = w.link.exit_status();
        let head = w.in_flight.pop_front();
        for s in w.in_flight.drain(..).rev() {
            self.pending.push_front(s.chunk);
        }
        if let Some(head) = head {
            let e = death_error(&self.workers[i], overdue, status);
            self.fail_chunk(head.chunk, &e);
        }
        if self.life == Life::Terminated || self.broken.is_some() {
            let w = self.workers.remove(i);
            self.retire(w);
            // The chunks it had queued cannot run either.
            let e = match &self.broken {
                Some(e) => e.duplicate(),
                None => Error::new(ErrorKind::Cancelled, "the pool was terminated before the task finished"),
            };
            self.fail_pending(&e);
            return;
        }
        if self.rules.on_demand {
            // Replaced when work needs it (`start_on_demand`).
            let old = self.workers.remove(i);
            self.retire(old);
            self.nudge();
            return;
        }
        // The replacement starts now; its initializer reports in a later
        // round (the lock is not held while it runs).
        match self.launch(1) {
            (mut started, None) if !started.is_empty() => {
                let w = started.remove(0);
                let old = std::mem::replace(&mut self.workers[i], w);
                self.retire(old);
                self.nudge();
            }
            (_, failed) => {
                let e = failed.unwrap_or_else(|| Error::new(ErrorKind::Bootstrap, "no pool worker was started"));
                let old = self.workers.remove(i);
                self.retire(old);
                self.fail_pending(&e);
                self.broken = Some(e);
            }
        }
    }
}

/// The error of the chunk a dead worker ran.
fn death_error<L: WorkerLink>(w: &Slot<L>, overdue: bool, status: Option<ExitStatus>) -> Error {
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
    match status {
        Some(s) => e.with_status(s),
        None => e,
    }
}
