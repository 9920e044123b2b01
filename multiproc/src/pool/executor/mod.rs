//! `concurrent.futures.ProcessPoolExecutor` over the [`Pool`](crate::Pool), and the
//! module functions `wait` and `as_completed` (in `waiting.rs`).

mod waiting;

#[cfg(feature = "async")]
pub use self::waiting::wait_async;
pub use self::waiting::{AsCompleted, ReturnWhen, Waited, as_completed, wait};

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use serde::{Serialize, de::DeserializeOwned};

use super::{
    AsyncResult, Callbacks, Imap, MapIter, Pool, PoolBuilder, callbacks,
    driver::{State, cancel_job, run_due},
    job::{JobState, Options},
    scheduler::deadline_after,
};
use crate::error::{Error, ErrorKind, Result};

/// Python's `ProcessPoolExecutor`, on top of [`Pool`](crate::Pool): unlike Python's, a
/// worker's death fails only the chunk it ran (one task for `submit`), and
/// the executor is never "broken" by it.
///
/// Workers start on demand, as in Python 3.9 and later: none at first, and
/// one whenever a task is submitted while no worker is idle, up to
/// `max_workers`; idle workers are reused (three tasks submitted one after
/// the other, each waited for, run in one process). Under fork every
/// worker starts with the first task, as Python's fork context does (it
/// forks before any thread of its own runs). A worker that dies is
/// replaced when a task needs it.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// fn double(x: i32) -> i32 {
///     2 * x
/// }
/// let ex = multiproc::Executor::new(2)?;
/// let mut fut = ex.submit(double, 21)?;
/// assert_eq!(fut.result(None)?, 42);
/// let doubled: Vec<i32> = ex.map(double, [1, 2, 3], None)?.collect::<Result<_, _>>()?;
/// assert_eq!(doubled, [2, 4, 6]);
/// ex.shutdown(true, false)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Executor {
    pool: Pool,
}

impl Executor {
    /// An executor of up to `max_workers` processes, started on demand.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for zero workers.
    pub fn new(max_workers: usize) -> Result<Executor> {
        Executor::from_builder(Pool::builder().processes(max_workers))
    }

    /// An executor over a pool configured with a [`PoolBuilder`](crate::PoolBuilder)
    /// (initializer, start method, `maxtasksperchild`, task timeout); its
    /// workers start on demand. An initializer runs in each worker as it
    /// starts: one that fails breaks the executor (Python's
    /// `BrokenProcessPool`), its tasks and later submissions fail with the
    /// initializer's error.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`](crate::PoolBuilder::build), except the errors of starting workers
    /// and of their initializers, which come with the tasks.
    pub fn from_builder(mut builder: PoolBuilder) -> Result<Executor> {
        builder.on_demand = true;
        builder.build().map(|pool| Executor { pool })
    }

    /// Schedules `f(args)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) after [`shutdown`](Executor::shutdown)
    /// or [`kill_workers`](Executor::kill_workers); otherwise as
    /// [`Pool::apply_async`](crate::Pool::apply_async) (a function outside the main executable, a
    /// broken pool).
    pub fn submit<A, R>(&self, f: fn(A) -> R, args: A) -> Result<TaskHandle<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        Ok(TaskHandle::new(self.pool.apply_async(f, args)?))
    }

    /// [`submit`](Executor::submit) with callbacks run when the task
    /// ends (see [`Pool::apply_async_with`](crate::Pool::apply_async_with) for where they run; more can
    /// be added with [`TaskHandle::add_done_callback`](crate::TaskHandle::add_done_callback)).
    ///
    /// # Errors
    ///
    /// As [`submit`](Executor::submit).
    pub fn submit_with<A, R>(&self, f: fn(A) -> R, args: A, callbacks: Callbacks<R>) -> Result<TaskHandle<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(TaskHandle::new(self.pool.apply_async_with(f, args, callbacks)?))
    }

    /// `f` over every item: the tasks are queued at once (with the pool's
    /// automatic chunk size) and the iterator yields their results in
    /// input order. `timeout` counts from this call, as Python's; see
    /// [`MapIter`](crate::MapIter).
    ///
    /// # Errors
    ///
    /// As [`submit`](Executor::submit); each item is its task's result.
    pub fn map<A, R, I>(&self, f: fn(A) -> R, items: I, timeout: Option<Duration>) -> Result<MapIter<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let deadline = timeout.map(deadline_after);
        let r = self.pool.map_job(f, items, Options::default(), None)?;
        Ok(MapIter::new(r.handle, deadline))
    }

    /// [`map`](Executor::map) with Python's `chunksize` (its default
    /// there is 1).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a chunk size of 0; as
    /// [`map`](Executor::map).
    pub fn map_chunked<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        timeout: Option<Duration>,
        chunksize: usize,
    ) -> Result<MapIter<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let deadline = timeout.map(deadline_after);
        let r = self.pool.map_job(
            f,
            items,
            Options {
                chunksize: Some(chunksize),
                ..Options::default()
            },
            None,
        )?;
        Ok(MapIter::new(r.handle, deadline))
    }

    /// A lazy [`map`](Executor::map) (Python 3.14's `buffersize`): this
    /// call submits the first `buffersize` tasks, and each `next` submits
    /// one more before it waits (so `buffersize` tasks are ahead of the
    /// consumer while it waits); an endless input is fine. `timeout`
    /// counts from this call and, when it passes, ends the iteration (an
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) item) and cancels the tasks not sent yet.
    /// After [`shutdown`](Executor::shutdown), the next task it would
    /// submit ends the iteration with an [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) item
    /// instead (Python's `RuntimeError`). A panic of the input (also while
    /// this call fills the buffer) comes out of `next` after the results
    /// of every item read before it, then the iteration ends (Python's
    /// raises as soon as it reads the failing item, and the buffered
    /// results are lost).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let ex = multiproc::Executor::new(2)?;
    /// let mut it = ex.map_buffered(square, 0.., None, 8)?;
    /// assert_eq!(it.nth(100).transpose()?, Some(10_000));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a `buffersize` of 0; as
    /// [`map`](Executor::map).
    pub fn map_buffered<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        timeout: Option<Duration>,
        buffersize: usize,
    ) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        if buffersize == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the buffer size must be at least 1",
            ));
        }
        let deadline = timeout.map(deadline_after);
        let mut it = self.pool.imap_with(f, items, 1, true, Options::default())?;
        it.ahead = buffersize;
        it.deadline = deadline;
        it.stop_at_close = true;
        let shared = it.handle.shared.clone();
        let mut st = it.feed(&shared)?;
        st.harvest();
        drop(run_due(&shared, st, true));
        // As Python's: each `next` submits the next task before it waits
        // for its result, so `buffersize` tasks stay ahead while it waits.
        it.ahead = buffersize.saturating_add(1);
        Ok(it)
    }

    /// Stops accepting work; `cancel_futures` cancels the tasks not yet
    /// sent to a worker ([`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled)), as
    /// [`TaskHandle::cancel`](crate::TaskHandle::cancel) would; `wait` runs the others to the
    /// end and reaps the workers.
    ///
    /// # Errors
    ///
    /// As [`Pool::join`](crate::Pool::join).
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) -> Result<()> {
        self.pool.close();
        if cancel_futures {
            self.pool.cancel_pending();
        }
        if wait { self.pool.join() } else { Ok(()) }
    }

    /// Python 3.14's `terminate_workers`: sends `SIGTERM` to every worker
    /// and gives them up to [`TERMINATE_GRACE`](Executor::TERMINATE_GRACE)
    /// in all to exit (their signal handlers run), then ends the executor
    /// as [`kill_workers`](Executor::kill_workers) does: what is left is
    /// killed, unfinished tasks fail with [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled).
    /// Submitting afterwards is an [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) error.
    ///
    /// # Errors
    ///
    /// As [`Pool::terminate`](crate::Pool::terminate): the workers still running at its deadline
    /// (one that cannot be signalled has its link closed instead).
    pub fn terminate_workers(&self) -> Result<()> {
        self.pool.terminate_gently(Executor::TERMINATE_GRACE)
    }

    /// How long [`terminate_workers`](Executor::terminate_workers) waits
    /// for the workers to exit after `SIGTERM` before it kills them.
    pub const TERMINATE_GRACE: Duration = Duration::from_secs(1);

    /// Python 3.14's `kill_workers`: kills every worker (`SIGKILL`) and
    /// reaps it; the unfinished tasks fail with [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled).
    /// Submitting afterwards is an [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) error.
    ///
    /// # Errors
    ///
    /// As [`Pool::terminate`](crate::Pool::terminate).
    pub fn kill_workers(&self) -> Result<()> {
        self.pool.terminate()
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
    /// Bound it with [`PoolBuilder::task_timeout`](crate::PoolBuilder::task_timeout), or call
    /// `shutdown(false, true)` and [`Pool::terminate`](crate::Pool::terminate) first. While a panic
    /// unwinds, the pool is terminated instead (never hangs).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        self.pool.close();
        // A drop cannot return the error of workers left running (they
        // could not be signalled, see `Pool::join`): it is said on
        // standard error, as the pool's own drop does.
        if let Err(e) = self.pool.join() {
            if e.is_timeout() {
                eprintln!("multiproc: dropping an executor: {e}");
            }
        }
    }
}

/// The handle [`Executor::submit`](crate::Executor::submit) returns: Python's `Future`,
/// named apart from [`std::future::Future`], which it also is (awaiting it
/// gives the task's result; see the `Future` impl below).
#[doc(alias = "Future")]
#[derive(Debug)]
pub struct TaskHandle<R> {
    inner: AsyncResult<R>,
    /// The result, once [`exception`](TaskHandle::exception) decoded it.
    kept: Option<Result<R>>,
    /// Once the outcome was taken: its error, if it failed.
    taken: Option<Option<Error>>,
}

/// Where a future stands, as `wait` and `as_completed` see it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stand {
    Pending,
    /// Its tasks are done, its callbacks are running in another thread.
    Finishing,
    /// `raised`: it failed, other than by being cancelled.
    Done {
        raised: bool,
    },
}

impl<R: DeserializeOwned + 'static> TaskHandle<R> {
    fn new(inner: AsyncResult<R>) -> TaskHandle<R> {
        TaskHandle {
            inner,
            kept: None,
            taken: None,
        }
    }

    /// Waits (up to `timeout`, `None`: no limit) for the result.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (the future stays usable); the task's error;
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) for a cancelled task;
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) once the result was taken.
    pub fn result(&mut self, timeout: Option<Duration>) -> Result<R> {
        if let Some(r) = self.kept.take() {
            self.taken = Some(r.as_ref().err().map(Error::duplicate));
            return r;
        }
        if self.taken.is_some() {
            return Err(Error::new(ErrorKind::InvalidState, "the result was already taken"));
        }
        self.inner.handle.wait_done(timeout.map(deadline_after))?;
        let r = self.inner.take();
        self.taken = Some(r.as_ref().err().map(Error::duplicate));
        r
    }

    /// Waits (up to `timeout`) for the task to end and returns its error,
    /// `None` if it returned a value (Python's `exception()`); the value
    /// stays for [`result`](TaskHandle::result).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (the future stays usable);
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) for a cancelled task (Python's
    /// `CancelledError`: the cancellation is not the task's error);
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) from within this future's own callback,
    /// or in a fork child.
    pub fn exception(&mut self, timeout: Option<Duration>) -> Result<Option<Error>> {
        let e = match &self.taken {
            Some(e) => e.as_ref().map(Error::duplicate),
            None => {
                if self.kept.is_none() {
                    self.inner.handle.wait_done(timeout.map(deadline_after))?;
                    self.kept = Some(self.inner.take());
                }
                self.kept.as_ref().and_then(|r| r.as_ref().err()).map(Error::duplicate)
            }
        };
        match e {
            Some(e) if e.kind() == ErrorKind::Cancelled => Err(e),
            e => Ok(e),
        }
    }

    /// Cancels the task if it has not been sent to a worker yet; `true` if
    /// it was cancelled (now or before).
    pub fn cancel(&self) -> bool {
        if self.cancelled() {
            return true;
        }
        let shared = &self.inner.handle.shared;
        cancel_job(shared, self.inner.handle.job, true)
    }

    /// Python's `add_done_callback`: `f` gets the result (a reference to
    /// the value, or the error) once the task has ended, in whichever
    /// caller drives the pool then, as [`Pool::apply_async_with`](crate::Pool::apply_async_with)'s
    /// callbacks do, after the callbacks added before it; at once, in this
    /// thread, if the task has ended already; right after them, in their
    /// thread, if its callbacks are running (in another thread, or this
    /// call is made from one of them). The result stays for
    /// [`result`](TaskHandle::result).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use std::sync::mpsc;
    /// fn double(x: i32) -> i32 {
    ///     2 * x
    /// }
    /// let ex = multiproc::Executor::new(1)?;
    /// let mut fut = ex.submit(double, 21)?;
    /// let (tx, rx) = mpsc::channel();
    /// fut.add_done_callback(move |r| tx.send(r.copied().map_err(|e| e.kind())).unwrap())?;
    /// assert_eq!(fut.result(None)?, 42);
    /// assert_eq!(rx.recv().unwrap(), Ok(42));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) once [`result`](TaskHandle::result) has
    /// taken the value.
    pub fn add_done_callback(&mut self, f: impl FnOnce(std::result::Result<&R, &Error>) + Send + 'static) -> Result<()>
    where
        R: Send,
    {
        if self.kept.is_none() && self.taken.is_none() {
            let shared = self.inner.handle.shared.clone();
            let job = self.inner.handle.job;
            let mut st = shared.enter()?;
            let kept = self.inner.kept.get_or_insert_with(callbacks::kept).clone();
            if let Some(j) = st.sched.jobs.get_mut(job) {
                // Not ended, or its callbacks not run yet: one more.
                if !j.tasks_over() || j.on_done.is_some() {
                    let old = j.on_done.take();
                    j.on_done = Some(callbacks::chain::<R>(old, Box::new(f), kept));
                    st.sched.jobs.settle(job);
                    drop(run_due(&shared, st, true));
                    return Ok(());
                }
                // Its callbacks run (in another thread, or this one is in
                // one of them): this one runs right after them, there.
                if matches!(j.state, JobState::Calling(_)) {
                    j.late.push(callbacks::late::<R>(Box::new(f), kept));
                    return Ok(());
                }
            }
            drop(st);
            // Ended: once callbacks running in another thread are done,
            // the result is here.
            self.inner.handle.wait_done(None)?;
            self.kept = Some(self.inner.take());
        }
        match (&self.kept, &self.taken) {
            (Some(r), _) => f(r.as_ref()),
            (None, Some(Some(e))) => f(Err(e)),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    "the value was already taken by result()",
                ));
            }
        }
        Ok(())
    }

    /// `true` once the task has finished, failed or been cancelled.
    pub fn done(&self) -> bool {
        self.kept.is_some() || self.inner.ready()
    }

    /// `true` while a worker runs the task (it can no longer be
    /// cancelled).
    pub fn running(&self) -> bool {
        if self.done() {
            return false;
        }
        let Ok(st) = self.inner.handle.shared.enter() else {
            return false;
        };
        st.sched.job_sent(self.inner.handle.job)
    }

    /// `true` if the task was cancelled.
    pub fn cancelled(&self) -> bool {
        if let Some(e) = &self.taken {
            return e.as_ref().is_some_and(|e| e.kind() == ErrorKind::Cancelled);
        }
        match &self.kept {
            Some(r) => r.as_ref().is_err_and(|e| e.kind() == ErrorKind::Cancelled),
            None => matches!(self.inner.handle.peek_error_kind(), Some(ErrorKind::Cancelled)),
        }
    }

    fn stand(&self, st: &State) -> Stand {
        let raised = |kind: Option<ErrorKind>| kind != Some(ErrorKind::Cancelled);
        if let Some(e) = &self.taken {
            return Stand::Done {
                raised: e.as_ref().is_some_and(|e| raised(Some(e.kind()))),
            };
        }
        if let Some(r) = &self.kept {
            return Stand::Done {
                raised: r.as_ref().is_err_and(|e| raised(Some(e.kind()))),
            };
        }
        match st.sched.jobs.get(self.inner.handle.job) {
            // Taken by `result`.
            None => Stand::Done { raised: false },
            Some(j) if j.finished() => {
                let v = j.verdict();
                Stand::Done {
                    raised: v.failed && raised(v.error),
                }
            }
            Some(j) if j.finishing() => Stand::Finishing,
            Some(_) => Stand::Pending,
        }
    }
}

/// Awaiting a `TaskHandle` gives the task's result, as
/// [`result(None)`](TaskHandle::result) does, without blocking the async
/// runtime's thread (see [`Pool`]'s "Async" section); awaiting
/// `&mut handle` keeps the handle (a dropped await loses nothing).
// No pinned field: the handle moves freely.
impl<R> Unpin for TaskHandle<R> {}

impl<R: DeserializeOwned + 'static> Future for TaskHandle<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let this = self.get_mut();
        if this.kept.is_none() && this.taken.is_none() {
            match this.inner.handle.poll_done(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
        }
        Poll::Ready(this.result(Some(Duration::ZERO)))
    }
}
