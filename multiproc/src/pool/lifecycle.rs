//! Ending a pool: `close`, `terminate`, `join`, and `Drop`.

use std::time::{Duration, Instant};

use super::{
    Pool,
    driver::{Check, drive, run_due},
    scheduler::{Launcher, Life, STOP_WAIT, WORKER_DEADLINE, WorkerLink, deadline_after, wait_stuck},
};
use crate::error::{Error, ErrorKind, Result};

impl Pool {
    /// No new submissions (an unfinished `imap` still reads its input and
    /// submits until [`join`](Pool::join)); the queued ones still run. Call [`join`](Pool::join)
    /// to wait for them and for the workers' exit.
    pub fn close(&self) {
        let Ok(mut st) = self.shared.enter() else { return };
        if st.sched.life == Life::Running {
            st.sched.life = Life::Closed;
        }
    }

    /// Kills the workers at once and reaps them; every unfinished task
    /// fails with [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled). Waits at most ten seconds in
    /// all (one deadline for every worker) for them to exit.
    ///
    /// A worker that cannot be signalled (the process dropped its
    /// privileges since the pool started it, and the kill fails with
    /// `EPERM`) has its link closed instead: idle, it leaves at once;
    /// running a task, when that task returns.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) naming the workers still running at the
    /// deadline, and why (the signal's error, or that they did not exit
    /// in time); [`join`](Pool::join) waits for them again.
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when every worker is gone but some could not be
    /// signalled (they left when their links closed): the error names
    /// them, with the signal's error. [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) in a
    /// fork child (which does nothing).
    pub fn terminate(&self) -> Result<()> {
        let mut st = self.shared.enter()?;
        let r = st.sched.terminate();
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
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) if the pool is still open, or in a fork
    /// child; [`ErrorKind::Io`](crate::ErrorKind::Io) if waiting on the workers fails;
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) naming the workers still running at the
    /// deadline, and why (a kill that failed, for example with `EPERM`
    /// once the process dropped its privileges); a later `join` waits
    /// for them again.
    pub fn join(&self) -> Result<()> {
        let st = self.shared.enter()?;
        if st.sched.life == Life::Running {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "join a pool only after close or terminate",
            ));
        }
        let (mut st, r) = drive(&self.shared, st, None, |st| {
            if st.sched.driving || st.sched.in_flight() || !st.sched.pending.is_empty() {
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
        let mut workers = std::mem::take(&mut st.sched.workers);
        let mut stuck = std::mem::take(&mut st.sched.stuck);
        drop(st);
        for w in &workers {
            // The end of its link makes the worker loop return (and its
            // sends fail).
            w.link.close(true);
        }
        let until = deadline_after(WORKER_DEADLINE);
        for w in &mut workers {
            w.link.join_until(until);
        }
        // Those that did not leave are killed, and get one more deadline
        // in all; one that cannot be signalled stays stuck.
        let mut killed = Vec::new();
        for w in workers {
            if w.link.exit_status().is_none() {
                let refused = w.link.kill().err();
                killed.push((w, refused));
            }
        }
        let until = deadline_after(STOP_WAIT);
        stuck.append(&mut killed);
        let r = wait_stuck(&mut stuck, until);
        // What the launcher still runs (its processes, queued batch jobs).
        self.shared.lock().sched.launcher.stop();
        if !stuck.is_empty() {
            self.shared.lock().sched.stuck.append(&mut stuck);
        }
        r
    }

    /// [`terminate`](Pool::terminate), but each worker first gets `SIGTERM`
    /// and up to `grace` (shared) to exit by itself: its handlers run.
    /// Under one lock: nothing is submitted or sent meanwhile.
    pub(crate) fn terminate_gently(&self, grace: Duration) -> Result<()> {
        let mut st = self.shared.enter()?;
        // Only the workers the signal reached are waited for.
        st.sched.signal_all(Instant::now() + grace);
        let r = st.sched.terminate();
        drop(run_due(&self.shared, st, true));
        r
    }

    pub(crate) fn cancel_pending(&self) {
        let Ok(mut st) = self.shared.enter() else { return };
        let e = Error::new(ErrorKind::Cancelled, "the task was cancelled at shutdown");
        st.sched.fail_pending(&e);
        st.sched.nudge();
        st.wake_sleepers(&self.shared);
        drop(run_due(&self.shared, st, true));
    }
}

impl Drop for Pool {
    /// Terminates the pool: kills and reaps the workers (waiting at most
    /// ten seconds in all), fails the unfinished tasks with
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled). Never hangs. Workers that could not be
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
        match st.sched.terminate() {
            Err(e) if e.is_timeout() => eprintln!("multiproc: dropping a pool: {e}"),
            _ => {}
        }
        drop(run_due(&self.shared, st, false));
    }
}
