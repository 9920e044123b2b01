//! Waiting for a child: its exit, the start protocol's messages, and the
//! outcome that [`Process::join`](super::Process::join) turns into a
//! result.

use std::time::{Duration, Instant};

use serde::{Serialize, de::DeserializeOwned};

use super::{ExitStatus, Process, Running, SIGKILL, State};
use crate::{
    Error, ErrorKind, Result,
    codec::{self, CodecError},
    entry::protocol::{self, Message},
    outcome::{Failure, Outcome, OutcomeRef},
    sys,
};

impl<R> Process<R>
where
    R: Serialize + DeserializeOwned + 'static,
{
    pub(super) fn join_inner(&mut self, timeout: Option<Duration>) -> Result<R> {
        let span = crate::trace::join(&self.name, self.pid());
        let status = self.wait_for_exit(timeout)?;
        span.record_exitcode(status.exitcode());
        // Every line of a prefixed child is out when `join` returns.
        self.attached.settle();
        let State::Started(run) = &mut self.state else {
            unreachable!("wait_for_exit checked the state")
        };
        run.collect()
            .map_err(|e| e.with_process(&self.name, Some(run.core.pid())))?;
        let err = |kind, msg: String| {
            Error::new(kind, msg)
                .with_process(&self.name, Some(run.core.pid()))
                .with_status(status)
        };
        let Some(payload) = &run.outcome else {
            // A signal explains itself, whenever it came; an exit before the
            // entry point means the child could not start the target.
            if run.boot_timed_out {
                return Err(err(
                    ErrorKind::Bootstrap,
                    format!(
                        "did not reach the library's entry point within {:?} and was killed; \
                         if the automatic entry is disabled, call multiproc::init() first thing in main",
                        self.bootstrap_timeout
                    ),
                ));
            }
            return Err(match (status, run.ready) {
                (ExitStatus::Signaled(_), true) => err(ErrorKind::ChildKilled, format!("was killed by {status}")),
                (ExitStatus::Signaled(_), false) => err(
                    ErrorKind::ChildKilled,
                    format!("was killed by {status} before reaching the library's entry point"),
                ),
                (_, false) => err(
                    ErrorKind::Bootstrap,
                    format!("exited before reaching the library's entry point ({status})"),
                ),
                (_, true) => err(
                    ErrorKind::ChildExited,
                    format!("ended with {status} before returning a result"),
                ),
            });
        };
        match Outcome::from_bytes(payload) {
            Ok(OutcomeRef::Value(bytes)) => codec::decode::<R>(bytes)
                .map_err(|CodecError(e)| err(ErrorKind::Deserialize, format!("failed to deserialize the result: {e}"))),
            Ok(OutcomeRef::Panic(p)) => Err(err(ErrorKind::ChildPanicked, "the target panicked".into()).with_panic(p)),
            Ok(OutcomeRef::Failed(Failure::Bootstrap, m)) => {
                Err(err(ErrorKind::Bootstrap, format!("bootstrap failed: {m}")))
            }
            Ok(OutcomeRef::Failed(Failure::DecodeArgs, m)) => Err(err(
                ErrorKind::Deserialize,
                format!("the child failed to deserialize its arguments: {m}"),
            )),
            Ok(OutcomeRef::Failed(Failure::EncodeResult, m)) => Err(err(
                ErrorKind::Serialize,
                format!("the child failed to serialize its result: {m}"),
            )),
            Err(m) => Err(err(ErrorKind::Bootstrap, format!("sent a malformed outcome: {m}"))),
        }
    }

    /// When a wait for the child must look again even if it has not
    /// ended: the bootstrap deadline, while the child has not said it is
    /// ready (see [`join_timeout`](Self::join_timeout)); for `join_async`.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn boot_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Started(run) if !run.ready => run.started.checked_add(self.bootstrap_timeout),
            _ => None,
        }
    }

    /// Waits (up to `timeout`) for the child to end and reaps it.
    fn wait_for_exit(&mut self, timeout: Option<Duration>) -> Result<ExitStatus> {
        let name = self.name.clone();
        let boot_timeout = self.bootstrap_timeout;
        let creator = self.creator;
        let run = match &mut self.state {
            State::Started(_) if creator != sys::getpid() => {
                return Err(self.err(ErrorKind::InvalidState, "can only join a child process"));
            }
            State::Started(run) => run,
            State::Initial(_) => return Err(self.err(ErrorKind::InvalidState, "can only join a started process")),
            State::Closed { .. } => return Err(self.err(ErrorKind::InvalidState, "process object is closed")),
        };
        let pid = run.core.pid();
        let io_err = |e| Error::io("failed to wait for the child", e).with_process(&name, Some(pid));
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let boot_deadline = (!run.ready).then(|| run.started.checked_add(boot_timeout)).flatten();
            let wake = match (deadline, boot_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let left = wake.map(|w| w.saturating_duration_since(Instant::now()));
            if let Some(status) = run.core.wait(left).map_err(io_err)? {
                return Ok(status);
            }
            let now = Instant::now();
            if boot_deadline.is_some_and(|b| now >= b) {
                run.collect().map_err(|e| e.with_process(&name, Some(pid)))?;
                if !run.ready {
                    run.core.handle.signal(SIGKILL).map_err(io_err)?;
                    run.boot_timed_out = true;
                    // The kill cannot be ignored: the status arrives at once.
                    return run
                        .core
                        .wait(None)
                        .map_err(io_err)?
                        .ok_or_else(|| io_err(std::io::ErrorKind::TimedOut.into()));
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(
                    Error::new(ErrorKind::Timeout, "is still running after the join timeout")
                        .with_process(&name, Some(pid)),
                );
            }
        }
    }
}

impl Running {
    /// Reads what the child sent so far.
    pub(super) fn collect(&mut self) -> Result<()> {
        self.reader
            .drain(&self.core.sock)
            .map_err(|e| Error::io("failed to read from the child", e))?;
        while let Some(message) = protocol::next_buffered(&mut self.reader)
            .map_err(|e| Error::new(ErrorKind::Bootstrap, "the child broke the start protocol").with_source(e))?
        {
            match message {
                Message::Ready => self.ready = true,
                Message::Outcome(payload) => {
                    self.ready = true;
                    self.outcome = Some(payload);
                }
                other => {
                    return Err(Error::new(
                        ErrorKind::Bootstrap,
                        format!("the child sent an unexpected {} frame", other.name()),
                    ));
                }
            }
        }
        Ok(())
    }
}
