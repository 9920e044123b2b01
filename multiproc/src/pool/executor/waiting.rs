//! Waiting on several task handles at once: `wait`, `wait_async` and
//! `as_completed`, whose handles must all belong to one executor.

#[cfg(feature = "async")]
use std::{
    pin::Pin,
    task::{Context, Poll},
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::de::DeserializeOwned;

use super::{Stand, TaskHandle};
#[cfg(feature = "async")]
use crate::pool::driver::{Look, poll_jobs};
use crate::{
    error::{Error, ErrorKind, Result},
    pool::{
        callbacks,
        driver::{Check, Shared, drive},
        scheduler::deadline_after,
    },
};

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
