//! The handle of a `map`'s results: [`MapResult`](crate::MapResult).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use serde::de::DeserializeOwned;

#[cfg(feature = "progress")]
use super::progress::Progress;
use super::{callbacks::Kept, handle::JobHandle, scheduler::deadline_after};
use crate::error::Result;

/// The pending results of [`Pool::map_async`](crate::Pool::map_async).
pub struct MapResult<R> {
    pub(super) handle: JobHandle,
    /// Where its callbacks leave the results, if it has any.
    pub(super) kept: Option<Kept<R>>,
}

impl<R: DeserializeOwned + 'static> MapResult<R> {
    /// Waits for every result; the first error in input order, if any.
    ///
    /// # Errors
    ///
    /// The first failed task's error; [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) once the
    /// results were taken (by [`get_timeout`](MapResult::get_timeout)),
    /// from within this map's own callback, or in a fork child.
    pub fn get(self) -> Result<Vec<R>> {
        self.handle.wait_done(None)?;
        self.handle.take_all(self.kept.as_ref())
    }

    /// Like [`get`](MapResult::get) within `timeout`; on
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) the results can still be waited for.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), or as [`get`](MapResult::get).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<Vec<R>> {
        self.handle.wait_done(Some(deadline_after(timeout)))?;
        self.handle.take_all(self.kept.as_ref())
    }

    /// Waits up to `timeout` (`None`: no limit); `true` if every result is
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

    /// `true` once every task has finished (or failed).
    pub fn ready(&self) -> bool {
        self.handle.ready()
    }

    /// `None` before every task finished; then whether all returned values.
    pub fn successful(&self) -> Option<bool> {
        self.handle.successful()
    }

    /// How far this `map` has come, if it shows a progress bar
    /// ([`Tasks::progress`](crate::Tasks::progress), or the pool's
    /// [`PoolBuilder::progress`](crate::PoolBuilder::progress)).
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(&self) -> Option<Progress> {
        self.handle.progress()
    }
}

impl<R> std::fmt::Debug for MapResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapResult").field("job", &self.handle.job).finish()
    }
}

/// Awaiting a `MapResult` gives every result, as [`get`](MapResult::get)
/// does, without blocking the async runtime's thread; dropping the future
/// loses nothing (the tasks run on).
impl<R: DeserializeOwned + 'static> Future for MapResult<R> {
    type Output = Result<Vec<R>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Vec<R>>> {
        let this = self.get_mut();
        match this.handle.poll_done(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => Poll::Ready(this.handle.take_all(this.kept.as_ref())),
        }
    }
}
