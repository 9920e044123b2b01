//! `concurrent.futures.ProcessPoolExecutor` over the [`Pool`].

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use super::{AsyncResult, Pool, PoolBuilder, deadline_after};
use crate::error::{ErrorKind, Result};

/// Python's `ProcessPoolExecutor`, on top of [`Pool`]: unlike Python's, a
/// worker's death fails only the task it ran (the executor is never
/// "broken" by it).
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// fn double(x: i32) -> i32 {
///     2 * x
/// }
/// let ex = multiproc::Executor::new(2)?;
/// let mut fut = ex.submit(double, 21)?;
/// assert_eq!(fut.result(None)?, 42);
/// assert_eq!(ex.map(double, [1, 2, 3], None)?, [2, 4, 6]);
/// ex.shutdown(true, false)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Executor {
    pool: Pool,
}

impl Executor {
    /// An executor of `max_workers` processes.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(max_workers: usize) -> Result<Executor> {
        Pool::new(max_workers).map(|pool| Executor { pool })
    }

    /// An executor over a pool configured with a [`PoolBuilder`]
    /// (initializer, start method, `maxtasksperchild`, task timeout).
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn from_builder(builder: PoolBuilder) -> Result<Executor> {
        builder.build().map(|pool| Executor { pool })
    }

    /// Schedules `f(args)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] after [`shutdown`](Executor::shutdown).
    pub fn submit<A, R>(&self, f: fn(A) -> R, args: A) -> Result<Future<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        Ok(Future {
            inner: self.pool.apply_async(f, args)?,
        })
    }

    /// `f` over every item, in order; the whole call gives up with
    /// [`ErrorKind::Timeout`] after `timeout`.
    ///
    /// # Errors
    ///
    /// The first failed task's error, or [`ErrorKind::Timeout`].
    pub fn map<A, R, I>(&self, f: fn(A) -> R, items: I, timeout: Option<Duration>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let mut r = self.pool.map_async(f, items, None)?;
        match timeout {
            None => r.get(),
            Some(t) => r.get_timeout(t),
        }
    }

    /// Stops accepting work; `cancel_futures` cancels the tasks not yet
    /// started ([`ErrorKind::Cancelled`]); `wait` runs the others to the
    /// end and reaps the workers.
    ///
    /// # Errors
    ///
    /// As [`Pool::join`].
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) -> Result<()> {
        self.pool.close();
        if cancel_futures {
            self.pool.cancel_pending();
        }
        if wait { self.pool.join() } else { Ok(()) }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for Executor {
    /// As leaving Python's `with ProcessPoolExecutor() as ex:` block:
    /// [`shutdown(true, false)`](Executor::shutdown): the submitted tasks
    /// run to the end (their futures stay usable), then the workers exit.
    /// Bound it with [`PoolBuilder::task_timeout`], or call
    /// `shutdown(false, true)` and [`Pool::terminate`] first. While a panic
    /// unwinds, the pool is terminated instead (never hangs).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        self.pool.close();
        let _ = self.pool.join();
    }
}

/// The handle [`Executor::submit`] returns (Python's `Future`).
#[derive(Debug)]
pub struct Future<R> {
    inner: AsyncResult<R>,
}

impl<R: DeserializeOwned + 'static> Future<R> {
    /// Waits (up to `timeout`, `None`: no limit) for the result.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] (the future stays usable); the task's error;
    /// [`ErrorKind::Cancelled`] for a cancelled task.
    pub fn result(&mut self, timeout: Option<Duration>) -> Result<R> {
        self.inner.handle.wait_done(timeout.map(deadline_after))?;
        self.inner.take()
    }

    /// Cancels the task if it has not been sent to a worker yet; `true` if
    /// it was cancelled.
    pub fn cancel(&self) -> bool {
        let shared = &self.inner.handle.shared;
        super::state::cancel_job(shared, self.inner.handle.job)
    }

    /// `true` once the task has finished, failed or been cancelled.
    pub fn done(&self) -> bool {
        self.inner.ready()
    }

    /// `true` if the task was cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(self.inner.handle.peek_error_kind(), Some(ErrorKind::Cancelled))
    }
}
