//! Stopping the workers: `terminate`, and the workers a stop left
//! running.

use std::time::Instant;

use super::{Chunk, Death, Launcher, Life, Recv, STOP_WAIT, Scheduler, Slot, WorkerLink, deadline_after};
use crate::error::{Error, ErrorKind, Result};

/// What stopping one worker came to, when it did not go as asked.
struct Unstopped {
    pid: Option<u32>,
    /// The signal's error, if it could not be signalled.
    refused: Option<String>,
    /// It was still running at the deadline.
    running: bool,
}

/// The error of a stop that did not go as asked: [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)
/// when workers are still running, [`ErrorKind::Io`](crate::ErrorKind::Io) when they all left
/// but some could not be signalled; each worker named by its pid.
fn stop_error(what: &[Unstopped]) -> Error {
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

/// Waits (until `until`) for the workers a stop left running; the error
/// names those still running.
pub(in crate::pool) fn wait_stuck<L: WorkerLink>(
    stuck: &mut Vec<(Slot<L>, Option<Error>)>,
    until: Instant,
) -> Result<()> {
    for (w, _) in stuck.iter_mut() {
        w.link.join_until(until);
    }
    stuck.retain(|(w, _)| w.link.exit_status().is_none());
    if stuck.is_empty() {
        return Ok(());
    }
    let what: Vec<Unstopped> = stuck
        .iter()
        .map(|(w, refused)| Unstopped {
            pid: w.link.pid(),
            refused: refused.as_ref().map(ToString::to_string),
            running: true,
        })
        .collect();
    Err(stop_error(&what))
}

impl<P: Launcher> Scheduler<P> {
    /// Kills the workers and reaps them, waiting at most [`STOP_WAIT`] in
    /// all. A worker that cannot be signalled (`EPERM`: the pool's process
    /// dropped its privileges) has its stream closed instead: idle, it
    /// leaves at once; running a task, when that task returns. What each
    /// worker sent before it ended is kept. The workers still running at
    /// the deadline go to [`Scheduler::stuck`], and the error names them.
    pub(in crate::pool) fn kill_all(&mut self) -> Result<()> {
        let until = deadline_after(STOP_WAIT);
        let mut refused = Vec::with_capacity(self.workers.len());
        for w in &self.workers {
            let r = w.link.kill().err();
            if r.is_some() {
                // The end of its stream ends its loop; what it sends
                // before it leaves is still read.
                w.link.close(false);
            }
            refused.push(r);
        }
        for i in 0..self.workers.len() {
            self.workers[i].link.join_until(until);
            // What a worker sent before it was killed is a finished task's
            // result: keep it (bounded: a message cut short by the kill
            // ends the reading).
            while let Recv::Message(msg) = self.workers[i].link.try_recv() {
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
            let running = w.link.exit_status().is_none();
            if running || refused.is_some() {
                unstopped.push(Unstopped {
                    pid: w.link.pid(),
                    refused: refused.as_ref().map(ToString::to_string),
                    running,
                });
            }
            if running {
                // Its sends fail from now on: it never blocks on a full
                // stream nobody reads.
                w.link.close(true);
                self.stuck.push((w, refused));
            } else {
                self.retire(w);
            }
        }
        if unstopped.is_empty() {
            Ok(())
        } else {
            Err(stop_error(&unstopped))
        }
    }

    /// Kills the workers and fails every unfinished task; the error of
    /// [`kill_all`](Scheduler::kill_all) names the workers left running.
    pub(in crate::pool) fn terminate(&mut self) -> Result<()> {
        self.life = Life::Terminated;
        let r = self.kill_all();
        self.launcher.stop();
        let e = Error::new(ErrorKind::Cancelled, "the pool was terminated before the task finished");
        self.fail_pending(&e);
        self.nudge();
        r
    }

    /// Asks every worker to exit ([`WorkerLink::terminate`]) and waits
    /// until `until` for those it reached.
    pub(in crate::pool) fn signal_all(&mut self, until: Instant) {
        self.life = Life::Terminated;
        let signalled: Vec<bool> = self.workers.iter().map(|w| w.link.terminate().is_ok()).collect();
        for (w, signalled) in self.workers.iter_mut().zip(signalled) {
            if signalled {
                w.link.join_until(until);
            }
        }
    }
}
