//! `concurrent.futures.ProcessPoolExecutor` over the [`Pool`](crate::Pool), and the
//! module functions `wait` and `as_completed`.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};

#[cfg(feature = "async")]
use super::driver::{Look, poll_jobs};
use super::{
    AsyncResult, Callbacks, Imap, MapIter, Pool, PoolBuilder, callbacks,
    driver::{Check, Shared, State, cancel_job, drive, run_due},
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

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnWhen {
    /// When any future is done (or cancelled).
    FirstCompleted,
    /// When any future fails (a cancelled one does not count); when
    /// none does, when all are done.
    FirstException,
    /// When every future is done.
    AllCompleted,
}

/// What [`wait`] found: indexes into the futures it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Waited {
    /// The futures done (finished, failed or cancelled).
    pub done: Vec<usize>,
    /// The others.
    pub not_done: Vec<usize>,
}

/// The pool the futures share, or the error for futures of several.
fn one_pool<'a, R: 'a>(mut fs: impl Iterator<Item = &'a TaskHandle<R>>) -> Result<Option<Arc<Shared>>> {
    let Some(first) = fs.next() else { return Ok(None) };
    let shared = first.inner.handle.shared.clone();
    if fs.any(|f| !Arc::ptr_eq(&f.inner.handle.shared, &shared)) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "wait and as_completed take the futures of one executor",
        ));
    }
    Ok(Some(shared))
}

/// A callback cannot wait for its own future (it would never finish).
fn own_future_check<'a, R: 'a>(shared: &Arc<Shared>, mut fs: impl Iterator<Item = &'a TaskHandle<R>>) -> Result<()> {
    if fs.any(|f| callbacks::in_callback_of(&**shared, f.inner.handle.job)) {
        return Err(Error::new(
            ErrorKind::InvalidState,
            "a callback cannot wait for the future it is called for",
        ));
    }
    Ok(())
}

/// Python's `concurrent.futures.wait`: waits until `return_when` holds
/// for `futures`, or `timeout` (`None`: no limit) passes, and says which
/// are done. A timeout is not an error: the futures not done are in
/// [`Waited::not_done`].
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// use multiproc::futures::{ReturnWhen, wait};
/// fn double(x: i32) -> i32 {
///     2 * x
/// }
/// let ex = multiproc::Executor::new(2)?;
/// let fs = vec![ex.submit(double, 1)?, ex.submit(double, 2)?];
/// let w = wait(&fs, None, ReturnWhen::AllCompleted)?;
/// assert_eq!((w.done.len(), w.not_done.len()), (2, 0));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for futures of different executors;
/// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) from within a callback of one of them, or in
/// a fork child; [`ErrorKind::Io`](crate::ErrorKind::Io) if waiting fails.
pub fn wait<R: DeserializeOwned + 'static>(
    futures: &[TaskHandle<R>],
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> Result<Waited> {
    let Some(shared) = one_pool(futures.iter())? else {
        return Ok(Waited::default());
    };
    own_future_check(&shared, futures.iter())?;
    let deadline = timeout.map(deadline_after);
    let st = shared.enter()?;
    let mut stands = Vec::new();
    let (st, r) = drive(&shared, st, deadline, |st| {
        stands = futures.iter().map(|f| f.stand(st)).collect();
        if holds(&stands, return_when) {
            Check::Done
        } else if stands.contains(&Stand::Pending) {
            Check::Pump
        } else {
            Check::Wait
        }
    });
    drop(st);
    match r {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {}
        Err(e) => return Err(e),
    }
    Ok(waited(&stands))
}

/// Whether `return_when` holds for futures standing so.
fn holds(stands: &[Stand], return_when: ReturnWhen) -> bool {
    let done = |s: &Stand| matches!(s, Stand::Done { .. });
    match return_when {
        ReturnWhen::FirstCompleted => stands.iter().any(done),
        ReturnWhen::FirstException => stands.contains(&Stand::Done { raised: true }) || stands.iter().all(done),
        ReturnWhen::AllCompleted => stands.iter().all(done),
    }
}

/// Which futures standing so are done.
fn waited(stands: &[Stand]) -> Waited {
    let mut w = Waited::default();
    for (i, s) in stands.iter().enumerate() {
        if matches!(s, Stand::Done { .. }) {
            w.done.push(i);
        } else {
            w.not_done.push(i);
        }
    }
    w
}

/// [`wait`] as a future: the same answer, awaited without blocking the
/// async runtime's thread (the `async` feature).
///
/// While it waits, the task's waker is left with every job not done
/// (whoever finishes one wakes it; the pool's driver thread waits on the
/// workers meanwhile, one thread per pool, none per future), and the
/// timeout is a timer in async-io's reactor. Each wake looks at every
/// future again. Dropping it takes nothing: it only looks.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use multiproc::futures::{ReturnWhen, wait_async};
/// fn double(x: i32) -> i32 {
///     2 * x
/// }
/// let ex = multiproc::Executor::new(2)?;
/// let fs = vec![ex.submit(double, 1)?, ex.submit(double, 2)?];
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let w = rt.block_on(wait_async(&fs, None, ReturnWhen::AllCompleted))?;
/// assert_eq!((w.done.len(), w.not_done.len()), (2, 0));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`wait`]; and the error that ends an await of the pool's results
/// (a job that no work in progress can finish).
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub async fn wait_async<R: DeserializeOwned + 'static>(
    futures: &[TaskHandle<R>],
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> Result<Waited> {
    let Some(shared) = one_pool(futures.iter())? else {
        return Ok(Waited::default());
    };
    own_future_check(&shared, futures.iter())?;
    let deadline = timeout.map(deadline_after);
    let mut alarm = crate::asynchronous::Alarm::new();
    std::future::poll_fn(|cx| {
        loop {
            let polled = poll_jobs(&shared, cx, |st| {
                let stands: Vec<Stand> = futures.iter().map(|f| f.stand(st)).collect();
                if holds(&stands, return_when) || deadline.is_some_and(|d| Instant::now() >= d) {
                    return Look::Ready(stands);
                }
                let jobs = futures
                    .iter()
                    .zip(&stands)
                    .filter(|(_, s)| !matches!(s, Stand::Done { .. }))
                    .map(|(f, _)| f.inner.handle.job)
                    .collect();
                Look::Await { jobs, each: false }
            });
            match polled {
                Poll::Ready(r) => return Poll::Ready(r.map(|stands| waited(&stands))),
                Poll::Pending => match deadline {
                    Some(d) if alarm.poll_at(d, cx).is_ready() => continue,
                    _ => return Poll::Pending,
                },
            }
        }
    })
    .await
}

/// Python's `concurrent.futures.as_completed`: yields each future (with
/// its index in `futures`) as it completes, those already done first. A
/// `timeout` counts from this call: when it passes, the iterator yields
/// an [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) error that says how many are unfinished,
/// and ends.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// fn double(x: i32) -> i32 {
///     2 * x
/// }
/// let ex = multiproc::Executor::new(2)?;
/// let mut fs = vec![ex.submit(double, 1)?, ex.submit(double, 2)?];
/// let mut sum = 0;
/// for done in multiproc::futures::as_completed(&mut fs, None)? {
///     let (_index, future) = done?;
///     sum += future.result(None)?;
/// }
/// assert_eq!(sum, 6);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for futures of different executors;
/// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) from within a callback of one of them, or in
/// a fork child.
pub fn as_completed<R: DeserializeOwned + 'static>(
    futures: &mut [TaskHandle<R>],
    timeout: Option<Duration>,
) -> Result<AsCompleted<'_, R>> {
    let shared = one_pool(futures.iter())?;
    if let Some(shared) = &shared {
        own_future_check(shared, futures.iter())?;
    }
    let total = futures.len();
    Ok(AsCompleted {
        shared,
        left: futures.iter_mut().map(Some).collect(),
        total,
        deadline: timeout.map(deadline_after),
        ended: false,
        #[cfg(feature = "async")]
        alarm: crate::asynchronous::Alarm::new(),
    })
}

/// The iterator of [`as_completed`].
///
/// With the `async` feature it is also a [`futures_core::Stream`] of the
/// same items, awaited without blocking the runtime's thread: a poll
/// takes what has arrived and, if no future is done, leaves the task's
/// waker with every job not done (the pool's driver thread waits on the
/// workers meanwhile: one thread per pool, none per future); the timeout
/// is a timer in async-io's reactor. A future is taken out only by the
/// poll that yields it, so dropping a `next()` that has not finished
/// loses nothing.
///
/// ```
/// # #[cfg(feature = "async")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// fn double(x: i32) -> i32 {
///     2 * x
/// }
/// let ex = multiproc::Executor::new(2)?;
/// let mut fs = vec![ex.submit(double, 1)?, ex.submit(double, 2)?];
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let sum = rt.block_on(async {
///     let mut done = multiproc::futures::as_completed(&mut fs, None)?;
///     let mut sum = 0;
///     // `StreamExt::next` of `futures` or `tokio-stream` does the same.
///     while let Some(next) = std::future::poll_fn(|cx| {
///         futures_core::Stream::poll_next(std::pin::Pin::new(&mut done), cx)
///     })
///     .await
///     {
///         let (_index, future) = next?;
///         sum += future.await?;
///     }
///     Ok::<_, multiproc::Error>(sum)
/// })?;
/// assert_eq!(sum, 6);
/// # Ok(()) }
/// # #[cfg(not(feature = "async"))]
/// # fn main() {}
/// ```
pub struct AsCompleted<'a, R> {
    shared: Option<Arc<Shared>>,
    left: Vec<Option<&'a mut TaskHandle<R>>>,
    total: usize,
    deadline: Option<Instant>,
    ended: bool,
    #[cfg(feature = "async")]
    alarm: crate::asynchronous::Alarm,
}

impl<R> AsCompleted<'_, R> {
    /// Ends the iteration with the timeout's error.
    fn timed_out(&mut self) -> Error {
        self.ended = true;
        let unfinished = self.left.iter().filter(|f| f.is_some()).count();
        Error::new(
            ErrorKind::Timeout,
            format!("{unfinished} (of {}) futures unfinished", self.total),
        )
    }
}

impl<'a, R: DeserializeOwned + 'static> Iterator for AsCompleted<'a, R> {
    type Item = Result<(usize, &'a mut TaskHandle<R>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let shared = self.shared.clone()?;
        let left = &self.left;
        if left.iter().all(Option::is_none) {
            return None;
        }
        let st = match shared.enter() {
            Ok(st) => st,
            Err(e) => {
                self.ended = true;
                return Some(Err(e));
            }
        };
        let mut found = None;
        let (st, r) = drive(&shared, st, self.deadline, |st| {
            let mut pending = false;
            for (i, f) in left.iter().enumerate() {
                let Some(f) = f else { continue };
                match f.stand(st) {
                    Stand::Done { .. } => {
                        found = Some(i);
                        return Check::Done;
                    }
                    Stand::Pending => pending = true,
                    Stand::Finishing => {}
                }
            }
            if pending { Check::Pump } else { Check::Wait }
        });
        drop(st);
        match (found, r) {
            (Some(i), _) => self.left[i].take().map(|f| Ok((i, f))),
            (None, Err(e)) if e.is_timeout() => Some(Err(self.timed_out())),
            (None, r) => {
                self.ended = true;
                Some(Err(r.err().unwrap_or_else(|| {
                    Error::new(ErrorKind::Protocol, "the pool ended a wait with nothing done")
                })))
            }
        }
    }
}

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
impl<'a, R: DeserializeOwned + 'static> futures_core::Stream for AsCompleted<'a, R> {
    type Item = Result<(usize, &'a mut TaskHandle<R>)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let Some(shared) = this.shared.clone() else {
            return Poll::Ready(None);
        };
        if this.left.iter().all(Option::is_none) {
            return Poll::Ready(None);
        }
        let deadline = this.deadline;
        loop {
            let left = &this.left;
            let polled = poll_jobs(&shared, cx, |st| {
                let mut jobs = Vec::new();
                for (i, f) in left.iter().enumerate() {
                    let Some(f) = f else { continue };
                    match f.stand(st) {
                        Stand::Done { .. } => return Look::Ready(Some(i)),
                        Stand::Pending | Stand::Finishing => jobs.push(f.inner.handle.job),
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Look::Ready(None);
                }
                Look::Await { jobs, each: false }
            });
            return match polled {
                Poll::Ready(Ok(Some(i))) => Poll::Ready(this.left[i].take().map(|f| Ok((i, f)))),
                Poll::Ready(Ok(None)) => Poll::Ready(Some(Err(this.timed_out()))),
                Poll::Ready(Err(e)) => {
                    this.ended = true;
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Pending => match deadline {
                    Some(d) if this.alarm.poll_at(d, cx).is_ready() => continue,
                    _ => Poll::Pending,
                },
            };
        }
    }
}

impl<R> std::fmt::Debug for AsCompleted<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left.iter().filter(|f| f.is_some()).count())
            .field("total", &self.total)
            .finish()
    }
}
