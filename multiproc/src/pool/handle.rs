//! A job's registration in the pool, shared by every result handle.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use serde::de::DeserializeOwned;

#[cfg(feature = "progress")]
use super::progress::Progress;
use super::{
    callbacks::{self, Kept},
    decode::decode_output,
    driver::{Check, Shared, drive, poll_job, run_due},
    job::JobState,
};
use crate::error::{Error, ErrorKind, Result};

/// A job's registration in the pool. Dropping the handle of an
/// `AsyncResult`, `MapResult` or `TaskHandle` leaves the job to run to its
/// end (as Python's pool cache keeps it: fire and forget, and `join` waits
/// for it), then forgets it. Dropping an iterator's (`cancel_on_drop`:
/// `imap`, the executor's `map`) forgets the job at once: its queued
/// chunks are skipped, late results dropped, unless it has callbacks to
/// run.
pub(super) struct JobHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) job: u64,
    pub(super) len: usize,
    pub(super) cancel_on_drop: bool,
}

impl JobHandle {
    /// Takes what has arrived (without blocking), runs due callbacks, and
    /// says whether the job has finished.
    pub(super) fn ready(&self) -> bool {
        let Ok(mut st) = self.shared.enter() else { return false };
        st.harvest();
        let st = run_due(&self.shared, st, true);
        st.sched.jobs.get(self.job).is_none_or(|j| j.finished())
    }

    pub(super) fn wait_done(&self, deadline: Option<Instant>) -> Result<()> {
        if callbacks::in_callback_of(&*self.shared, self.job) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "a callback cannot wait for the result it is called with",
            ));
        }
        let st = self.shared.enter()?;
        let job = self.job;
        drive(&self.shared, st, deadline, |st| match st.sched.jobs.get(job) {
            None => Check::Done,
            Some(j) if j.finished() => Check::Done,
            Some(j) if j.finishing() => Check::Wait,
            Some(_) => Check::Pump,
        })
        .1
    }

    /// Where the job's progress bar stands, if it has one.
    /// [`wait_done`](JobHandle::wait_done) for an async task: see
    /// [`poll_job`].
    pub(super) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        poll_job(&self.shared, self.job, cx)
    }

    #[cfg(feature = "progress")]
    pub(super) fn progress(&self) -> Option<Progress> {
        let st = self.shared.enter().ok()?;
        let bar = st.sched.jobs.get(self.job)?.bar.as_ref()?;
        Some(Progress {
            done: bar.position(),
            total: bar.length(),
            finished: bar.is_finished(),
        })
    }

    pub(super) fn successful(&self) -> Option<bool> {
        let st = self.shared.enter().ok()?;
        let j = st.sched.jobs.get(self.job)?;
        j.finished().then(|| !j.verdict().failed)
    }

    pub(super) fn peek_error_kind(&self) -> Option<ErrorKind> {
        let st = self.shared.enter().ok()?;
        st.sched.jobs.get(self.job)?.verdict().error
    }

    /// Takes a finished job's results: from `kept` when its callbacks
    /// decoded them, else decoded here.
    pub(super) fn take_all<R: DeserializeOwned + 'static>(&self, kept: Option<&Kept<R>>) -> Result<Vec<R>> {
        let out = {
            let mut st = self.shared.enter()?;
            let j = st
                .sched
                .jobs
                .get_mut(self.job)
                .ok_or_else(|| Error::new(ErrorKind::InvalidState, "the result was already taken"))?;
            if let JobState::Done(Some(_)) = j.state {
                if let Some(e) = j.decode_error.take() {
                    return Err(e);
                }
                return kept
                    .and_then(callbacks::take_kept)
                    .unwrap_or_else(|| Err(Error::new(ErrorKind::InvalidState, "the result was already taken")));
            }
            std::mem::take(&mut j.out)
        };
        decode_output(out, self.len)
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        // In a fork child, the state is a copy of the parent's: leave it.
        let Ok(mut st) = self.shared.enter() else { return };
        let jobs = &mut st.sched.jobs;
        if let Some(j) = jobs.get_mut(self.job) {
            #[cfg(feature = "progress")]
            if let Some(bar) = &j.bar {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            let keep = if self.cancel_on_drop {
                j.on_done.is_some() || matches!(j.state, JobState::Calling(_))
            } else {
                !j.finished()
            };
            if keep {
                j.orphan = true;
            } else {
                jobs.remove(self.job);
            }
        }
    }
}
