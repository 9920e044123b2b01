//! The handle of one task's result: [`AsyncResult`](crate::AsyncResult).

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{callbacks::Kept, handle::JobHandle, scheduler::deadline_after};
use crate::error::{Error, ErrorKind, Result};

/// The pending result of [`Pool::apply_async`](crate::Pool::apply_async) (Python's `AsyncResult`).
pub struct AsyncResult<R> {
    pub(super) handle: JobHandle,
    /// Where its callbacks leave the result, if it has any.
    pub(super) kept: Option<Kept<R>>,
}

impl<R: DeserializeOwned + 'static> AsyncResult<R> {
    /// Waits for the result.
    ///
    /// # Errors
    ///
    /// The task's error; [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) once the result was
    /// taken (by [`get_timeout`](AsyncResult::get_timeout)), from within
    /// this task's own callback, or in a fork child.
    pub fn get(self) -> Result<R> {
        self.handle.wait_done(None)?;
        self.take()
    }

    /// Waits up to `timeout` for the result; on [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) the
    /// result can still be waited for.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout); as [`get`](AsyncResult::get).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R> {
        self.handle.wait_done(Some(deadline_after(timeout)))?;
        self.take()
    }

    pub(super) fn take(&self) -> Result<R> {
        self.handle
            .take_all::<R>(self.kept.as_ref())?
            .pop()
            .ok_or_else(|| Error::new(ErrorKind::InvalidState, "no result"))
    }

    /// Waits up to `timeout` (`None`: no limit); `true` if the result is
    /// ready.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if waiting fails; [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) from within this job's own callback, or in a fork child.
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
