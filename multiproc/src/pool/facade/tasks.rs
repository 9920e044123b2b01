//! Per-call options: [`Tasks`] (a task timeout, a chunk size, a progress
//! bar for one `map` or `imap`).

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use super::Pool;
use crate::error::Result;
use crate::pool::{Imap, MapResult, job::Options};

/// One call's options for `f` over many inputs, from [`Pool::tasks`]: a
/// task timeout, a chunk size and (with the `progress` feature) a
/// progress bar, for this call alone. End it with
/// [`map`](Tasks::map), [`map_results`](Tasks::map_results),
/// [`map_async`](Tasks::map_async), [`imap`](Tasks::imap) or
/// [`imap_unordered`](Tasks::imap_unordered).
///
/// With a task timeout, the chunk size is 1 unless set: an overdue task
/// (its worker is killed and replaced) then fails alone, and the other
/// inputs keep their results.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{ErrorKind, Pool};
///
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = Pool::new(2)?;
/// let results = pool
///     .tasks(nap)
///     .task_timeout(Duration::from_secs(1))
///     .map_results([1, 60_000, 2])?;
/// assert_eq!(*results[0].as_ref().unwrap(), 1);
/// assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::TaskTimeout);
/// assert_eq!(*results[2].as_ref().unwrap(), 2);
/// # Ok(()) }
/// ```
#[must_use = "a Tasks does nothing until one of its map or imap methods is called"]
pub struct Tasks<'p, A, R> {
    pool: &'p Pool,
    f: fn(A) -> R,
    opts: Options,
}

impl Pool {
    /// Options for one call of `f` over many inputs (see [`Tasks`]).
    pub fn tasks<A, R>(&self, f: fn(A) -> R) -> Tasks<'_, A, R> {
        Tasks {
            pool: self,
            f,
            opts: Options::default(),
        }
    }
}

impl<A, R> Tasks<'_, A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    /// Kill and replace a worker whose task of this call runs longer than
    /// `timeout` (over the pool's [`task_timeout`](crate::PoolBuilder::task_timeout));
    /// the task fails with [`ErrorKind::TaskTimeout`](crate::ErrorKind::TaskTimeout).
    /// For a chunk of `n` tasks the limit is `n × timeout`.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.opts.task_timeout = Some(timeout);
        self
    }

    /// Tasks per message to a worker (default: automatic for `map`, 1 for
    /// `imap` and with a task timeout).
    pub fn chunksize(mut self, n: usize) -> Self {
        self.opts.chunksize = Some(n);
        self
    }

    /// Show a progress bar on standard error for this call: tasks done out
    /// of the total (when the input's length is known), rate and time
    /// left. Nothing is drawn when standard error is not a terminal;
    /// [`MapResult::progress`] and [`Imap::progress`] read it.
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(mut self, on: bool) -> Self {
        self.opts.progress = Some(on);
        self
    }

    /// [`Pool::map`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`]; [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
    /// for a chunk size of 0.
    pub fn map<I: IntoIterator<Item = A>>(self, items: I) -> Result<Vec<R>> {
        self.map_async(items)?.get()
    }

    /// [`Pool::map_results`] with these options: one `Result` per input.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_results`]; [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
    /// for a chunk size of 0.
    pub fn map_results<I: IntoIterator<Item = A>>(self, items: I) -> Result<Vec<Result<R>>> {
        self.pool.results_job(self.f, items, self.opts)
    }

    /// [`Pool::map_async`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_async`].
    pub fn map_async<I: IntoIterator<Item = A>>(self, items: I) -> Result<MapResult<R>> {
        self.pool.map_job(self.f, items, self.opts, None)
    }

    /// [`Pool::imap`] with these options: one result per input, in order.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`]; [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
    /// for a chunk size of 0.
    pub fn imap<I: IntoIterator<Item = A>>(self, items: I) -> Result<Imap<I::IntoIter, A, R>> {
        let chunksize = self.opts.chunksize.unwrap_or(1);
        self.pool.imap_with(self.f, items, chunksize, true, self.opts)
    }

    /// [`Pool::imap_unordered`] with these options: one result per input,
    /// as they arrive.
    ///
    /// # Errors
    ///
    /// As [`imap`](Tasks::imap).
    pub fn imap_unordered<I: IntoIterator<Item = A>>(self, items: I) -> Result<Imap<I::IntoIter, A, R>> {
        let chunksize = self.opts.chunksize.unwrap_or(1);
        self.pool.imap_with(self.f, items, chunksize, false, self.opts)
    }
}

impl<A, R> std::fmt::Debug for Tasks<'_, A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks").field("options", &self.opts).finish()
    }
}
