//! The iterator of the executor's `map`: [`MapIter`](crate::MapIter).

use std::{collections::BTreeMap, time::Instant};

use serde::de::DeserializeOwned;

use super::{
    decode::{decode, decode_batch_each},
    driver::{Check, cancel_job, drive},
    handle::JobHandle,
    job::Output,
};
use crate::error::{Error, ErrorKind, Result};

/// The iterator of [`Executor::map`](crate::Executor::map): every task's
/// result, in input order.
///
/// As in Python, the tasks are all queued by the call and its timeout
/// counts from the call: a result not ready by then gives
/// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), ends the iteration and cancels the tasks not
/// sent to a worker yet. A task's error is its own item, and the
/// iteration goes on after it (unlike Python's, which stops at the first
/// exception). Dropping the iterator cancels the tasks not yet sent to a
/// worker.
///
/// The pool has no thread of its own: it sends tasks and reads results
/// while some thread waits on it (in `next`, or in any other wait on the
/// same pool). Time the consumer spends between two `next` calls is
/// time the workers only get through the chunks already sent to them (up
/// to 16 each), so a consumer much slower than the timeout can see a
/// timeout that Python's background thread would have avoided; give
/// such a consumer no timeout, or a deadline of its own.
///
/// With the `async` feature it is also a [`futures_core::Stream`] of the
/// same items (see [`Pool`](crate::Pool)'s "Async" section for who waits
/// on the workers meanwhile); its timeout is then a timer in async-io's
/// reactor. Results that arrived are kept in the iterator until their
/// turn, so dropping a `next()` that has not finished loses nothing.
///
/// ```
/// # #[cfg(feature = "async")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let ex = multiproc::Executor::new(2)?;
/// let mut squares = ex.map(square, 0..4, None)?;
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let got = rt.block_on(async {
///     let mut got = Vec::new();
///     // `StreamExt::next` of `futures` or `tokio-stream` does the same.
///     while let Some(r) = std::future::poll_fn(|cx| {
///         futures_core::Stream::poll_next(std::pin::Pin::new(&mut squares), cx)
///     })
///     .await
///     {
///         got.push(r?);
///     }
///     Ok::<_, multiproc::Error>(got)
/// })?;
/// assert_eq!(got, [0, 1, 4, 9]);
/// # Ok(()) }
/// # #[cfg(not(feature = "async"))]
/// # fn main() {}
/// ```
pub struct MapIter<R> {
    pub(super) handle: JobHandle,
    pub(super) next: usize,
    pub(super) deadline: Option<Instant>,
    /// The run of results being yielded: the index of its next one.
    pub(super) run: Option<(usize, std::vec::IntoIter<Result<R>>)>,
    /// Results decoded ahead: runs of consecutive results (a batch reply,
    /// or one task's), by the index of their first.
    pub(super) ahead: BTreeMap<usize, Vec<Result<R>>>,
    /// Outputs taken from the job and not decoded yet: kept here, not in
    /// a local, so that a callback's panic unwinding through `next`
    /// loses none.
    pub(super) arrived: Vec<Output>,
    pub(super) ended: bool,
    /// The deadline's timer, for a poll as a stream.
    #[cfg(feature = "async")]
    alarm: crate::asynchronous::Alarm,
}

impl<R: DeserializeOwned + 'static> MapIter<R> {
    pub(super) fn new(mut handle: JobHandle, deadline: Option<Instant>) -> MapIter<R> {
        handle.cancel_on_drop = true;
        MapIter {
            handle,
            next: 0,
            deadline,
            run: None,
            ahead: BTreeMap::new(),
            arrived: Vec::new(),
            ended: false,
            #[cfg(feature = "async")]
            alarm: crate::asynchronous::Alarm::new(),
        }
    }

    /// Decodes what arrived into [`MapIter::ahead`](crate::MapIter::ahead).
    fn keep_arrived(&mut self) {
        for out in std::mem::take(&mut self.arrived) {
            self.keep(out);
        }
    }

    fn keep(&mut self, out: Output) {
        for (i, r) in out.results {
            self.ahead.insert(i, vec![decode::<R>(r)]);
        }
        for (idx, bytes) in out.batches {
            let values = decode_batch_each::<R>(&bytes, idx.len());
            // A batch's tasks are consecutive; any other order is kept
            // one result per index.
            let first = idx.first().copied().unwrap_or_default();
            if idx.iter().enumerate().all(|(k, &i)| i == first + k) {
                self.ahead.insert(first, values);
            } else {
                self.ahead
                    .extend(idx.into_iter().zip(values).map(|(i, v)| (i, vec![v])));
            }
        }
    }

    /// The result at index `at` if it has arrived, advancing past it.
    fn take_ready(&mut self, at: usize) -> Option<Result<R>> {
        loop {
            if let Some((i, run)) = &mut self.run {
                if *i == at {
                    if let Some(r) = run.next() {
                        *i += 1;
                        self.next += 1;
                        return Some(r);
                    }
                }
            }
            self.run = Some((at, self.ahead.remove(&at)?.into_iter()));
        }
    }

    /// Ends the iteration with `e`; the tasks not sent yet are cancelled
    /// (as Python's `map` cancels its futures on a timeout).
    fn end_with(&mut self, e: Error) -> Option<Result<R>> {
        self.ended = true;
        // A panicking callback run there must not take this item's place
        // (the panic hook has reported it).
        cancel_job(&self.handle.shared, self.handle.job, false);
        Some(Err(e))
    }
}

impl<R: DeserializeOwned + 'static> Iterator for MapIter<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if self.ended || self.next >= self.handle.len {
            return None;
        }
        let at = self.next;
        self.keep_arrived();
        if let Some(r) = self.take_ready(at) {
            return Some(r);
        }
        let shared = self.handle.shared.clone();
        let job = self.handle.job;
        let st = match shared.enter() {
            Ok(st) => st,
            Err(e) => return self.end_with(e),
        };
        // Everything that has arrived is taken at once (and decoded
        // without the lock), so each reply is looked at only once.
        let arrived = &mut self.arrived;
        let mut have = false;
        let (st, r) = drive(&shared, st, self.deadline, |st| {
            let Some(j) = st.sched.jobs.get_mut(job) else {
                return Check::Done;
            };
            if !j.out.results.is_empty() || !j.out.batches.is_empty() {
                let out = std::mem::take(&mut j.out);
                have = have || out.results.contains_key(&at) || out.batches.iter().any(|(idx, _)| idx.contains(&at));
                arrived.push(out);
            }
            if have || j.tasks_over() {
                Check::Done
            } else {
                Check::Pump
            }
        });
        drop(st);
        self.keep_arrived();
        if let Err(e) = r {
            return self.end_with(e);
        }
        match self.take_ready(at) {
            Some(r) => Some(r),
            None => self.end_with(Error::new(ErrorKind::Protocol, "a task's result is missing")),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.ended { 0 } else { self.handle.len - self.next };
        (0, Some(left))
    }
}

// No pinned field: the iterator moves freely, as a stream too.
impl<R> Unpin for MapIter<R> {}

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
impl<R: DeserializeOwned + 'static> futures_core::Stream for MapIter<R> {
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<R>>> {
        use std::task::Poll;

        use super::driver::{Look, poll_jobs};

        let this = self.get_mut();
        if this.ended || this.next >= this.handle.len {
            return Poll::Ready(None);
        }
        let at = this.next;
        this.keep_arrived();
        if let Some(r) = this.take_ready(at) {
            return Poll::Ready(Some(r));
        }
        let shared = this.handle.shared.clone();
        let (job, deadline) = (this.handle.job, this.deadline);
        loop {
            let arrived = &mut this.arrived;
            let polled = poll_jobs(&shared, cx, |st| {
                let Some(j) = st.sched.jobs.get_mut(job) else {
                    return Look::Ready(false);
                };
                let mut have = false;
                if !j.out.results.is_empty() || !j.out.batches.is_empty() {
                    let out = std::mem::take(&mut j.out);
                    have = out.results.contains_key(&at) || out.batches.iter().any(|(idx, _)| idx.contains(&at));
                    arrived.push(out);
                }
                if have || j.tasks_over() {
                    Look::Ready(false)
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    Look::Ready(true)
                } else {
                    Look::Await {
                        jobs: vec![job],
                        each: true,
                    }
                }
            });
            this.keep_arrived();
            return match polled {
                Poll::Pending => match deadline {
                    Some(d) if this.alarm.poll_at(d, cx).is_ready() => continue,
                    _ => Poll::Pending,
                },
                Poll::Ready(Err(e)) => Poll::Ready(this.end_with(e)),
                Poll::Ready(Ok(timed_out)) => Poll::Ready(match this.take_ready(at) {
                    Some(r) => Some(r),
                    None if timed_out => {
                        this.end_with(Error::new(ErrorKind::Timeout, "the pool's result is not ready yet"))
                    }
                    None => this.end_with(Error::new(ErrorKind::Protocol, "a task's result is missing")),
                }),
            };
        }
    }
}

impl<R> std::fmt::Debug for MapIter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapIter")
            .field("job", &self.handle.job)
            .field("next", &self.next)
            .finish()
    }
}
