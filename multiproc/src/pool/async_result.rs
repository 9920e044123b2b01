//! The handle of one task's result: [`AsyncResult`](crate::AsyncResult).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

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

/// Awaiting an `AsyncResult` gives the task's result, as
/// [`get`](AsyncResult::get) does, without blocking the async runtime's
/// thread (see [`Pool`](crate::Pool)'s "Async" section). Dropping the
/// future before it is ready loses nothing: the task runs on, as it does
/// when the handle is dropped; awaiting `&mut result` keeps the handle for
/// a later `get`.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let pool = multiproc::Pool::new(2)?;
/// let r = pool.apply_async(square, 7)?;
/// # let block_on = |f| multiproc_doc_block_on(f);
/// assert_eq!(block_on(r)?, 49);
/// # Ok(()) }
/// # fn multiproc_doc_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     use std::task::{Context, Poll, Wake, Waker};
/// #     struct Unpark(std::thread::Thread);
/// #     impl Wake for Unpark {
/// #         fn wake(self: std::sync::Arc<Self>) {
/// #             self.0.unpark();
/// #         }
/// #     }
/// #     let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         match f.as_mut().poll(&mut Context::from_waker(&waker)) {
/// #             Poll::Ready(v) => return v,
/// #             Poll::Pending => std::thread::park(),
/// #         }
/// #     }
/// # }
/// ```
impl<R: DeserializeOwned + 'static> Future for AsyncResult<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let this = self.get_mut();
        match this.handle.poll_done(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => Poll::Ready(this.take()),
        }
    }
}
