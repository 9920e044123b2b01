//! The lazy `map` iterator: [`Imap`](crate::Imap) (`imap`, `imap_unordered`, the
//! executor's `map_buffered`).

use std::{
    any::Any,
    marker::PhantomData,
    panic::{self, AssertUnwindSafe},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};

#[cfg(feature = "progress")]
use super::progress::Progress;
use super::{
    decode::decode,
    driver::{Check, Shared, State, cancel_job, drive},
    encode::{encode_items, encode_one},
    handle::JobHandle,
    scheduler::{Life, deadline_after},
};
use crate::error::{Error, ErrorKind, Result};

/// The iterator of [`Pool::imap`](super::Pool::imap), [`Pool::imap_unordered`](super::Pool::imap_unordered) and
/// [`Executor::map_buffered`](crate::Executor::map_buffered). Ordered, it
/// yields each task's result; unordered, `(index, result)` pairs as
/// [`Imap::next_indexed`](crate::Imap::next_indexed) (its `Iterator` items drop the index).
pub struct Imap<I, A, R> {
    pub(super) handle: JobHandle,
    pub(super) input: Option<I>,
    pub(super) offs: (i64, i64),
    pub(super) chunksize: usize,
    pub(super) ahead: usize,
    /// A deadline for the whole iteration (an executor's `map`): past
    /// it, a timeout ends the iteration.
    pub(super) deadline: Option<Instant>,
    /// Stop reading the input once the pool is closed (an executor's
    /// `map_buffered` after `shutdown`, as Python's raises there); a
    /// pool's `imap` reads on, as Python's task thread does.
    pub(super) stop_at_close: bool,
    pub(super) yielded: usize,
    pub(super) ordered: bool,
    /// Ordered: the input's panic, and the index of the item it took
    /// the place of; resumed once every result before it was yielded.
    /// (In a mutex only to keep the iterator `Sync`: it is reached
    /// through `&mut self`, without locking.)
    pub(super) input_panic: Mutex<Option<(usize, Box<dyn Any + Send>)>>,
    /// The timer of `deadline`, for a poll as a stream.
    #[cfg(feature = "async")]
    pub(super) alarm: crate::asynchronous::Alarm,
    pub(super) _r: PhantomData<fn(A) -> R>,
}

impl<I, A, R> Imap<I, A, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + 'static,
{
    /// The next result with its input index (in input order for
    /// [`Pool::imap`](super::Pool::imap), in arrival order for [`Pool::imap_unordered`](super::Pool::imap_unordered): of
    /// the results that arrived together, lowest index first).
    /// After an error of the pool itself (not of a task), the iteration
    /// ends.
    pub fn next_indexed(&mut self) -> Option<(usize, Result<R>)> {
        self.next_within(None)
    }

    /// Python's `next(timeout)`: the next result, waiting at most
    /// `timeout`. A result not ready in time gives
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) and the iteration goes on: a later call
    /// returns it. `None` at the end. (The whole-iteration timeout of
    /// [`Executor::map_buffered`](crate::Executor::map_buffered) still
    /// ends the iteration once it has passed.)
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use std::time::Duration;
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let pool = multiproc::Pool::new(2)?;
    /// let mut it = pool.imap(square, 0..3)?;
    /// let mut got = Vec::new();
    /// while let Some(r) = it.next_timeout(Duration::from_secs(10)) {
    ///     got.push(r?);
    /// }
    /// assert_eq!(got, [0, 1, 4]);
    /// # Ok(()) }
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_within(Some(deadline_after(timeout))).map(|(_, r)| r)
    }

    /// Reads and queues the input up to the read-ahead bound; the pool
    /// stays locked for the caller. A pool that takes no more work (broken,
    /// terminated, or, for an executor's `map_buffered`, shut down) ends
    /// the reading with its error once there is something to submit (an
    /// input found to be at its end submits nothing: the results of what
    /// went out before still come), and the unsent tasks are cancelled.
    pub(super) fn feed<'a>(&mut self, shared: &'a Shared) -> Result<MutexGuard<'a, State>> {
        let job = self.handle.job;
        // Read and encode the input without the lock: it is the caller's
        // code, and may itself use the pool. What was read before a panic
        // of the input is still queued (it is counted in the job), a
        // chunk's part included.
        let mut parts = Vec::new();
        let mut part: Vec<(usize, A)> = Vec::new();
        let (offs, chunksize) = (self.offs, self.chunksize);
        let encode = |part: Vec<(usize, A)>| match <[_; 1]>::try_from(part) {
            Ok([(i, a)]) => encode_one(offs, i, a),
            Err(part) => encode_items(offs, part),
        };
        let read = panic::catch_unwind(AssertUnwindSafe(|| {
            while self.handle.len - self.yielded < self.ahead {
                let Some(input) = self.input.as_mut() else { break };
                let start = self.handle.len;
                while part.len() < chunksize {
                    match input.next() {
                        Some(a) => part.push((start + part.len(), a)),
                        None => {
                            self.input = None;
                            break;
                        }
                    }
                }
                if part.is_empty() {
                    break;
                }
                let n = part.len();
                parts.push(encode(std::mem::take(&mut part)));
                self.handle.len += n;
            }
        }));
        if !part.is_empty() {
            let n = part.len();
            parts.push(encode(part));
            self.handle.len += n;
        }
        // Ordered, the input's panic waits for its turn (Python's `imap`
        // yields the results before a failing input, then raises), and the
        // input is not read again.
        let read = match read {
            Err(payload) if self.ordered => {
                self.input = None;
                let at = self.handle.len;
                *self.input_panic.get_mut().unwrap_or_else(PoisonError::into_inner) = Some((at, payload));
                Ok(())
            }
            read => read,
        };
        let mut st = shared.enter()?;
        if !parts.is_empty() {
            let closed = st.sched.life != Life::Running;
            // Closed and joined: no worker is left to run what is read.
            let joined = st.sched.life == Life::Closed && st.sched.workers.is_empty();
            if st.sched.broken.is_some()
                || st.sched.life == Life::Terminated
                || joined
                || (self.stop_at_close && closed)
            {
                let e = match st.sched.check_open() {
                    Err(e) if st.sched.broken.is_some() || !joined => e,
                    _ if joined && !self.stop_at_close => Error::new(
                        ErrorKind::InvalidState,
                        "the pool was joined before this imap had read all its input (it reads \
                         lazily, as results are taken): take its results before join",
                    ),
                    _ => Error::new(ErrorKind::InvalidState, "the pool is closed"),
                };
                drop(st);
                cancel_job(shared, job, false);
                if let Err(payload) = read {
                    panic::resume_unwind(payload);
                }
                return Err(e);
            }
        }
        for enc in parts {
            st.sched.add(job, enc);
        }
        if self.input.is_none() {
            st.sched.jobs.seal(job);
        }
        if let Err(payload) = read {
            drop(st);
            panic::resume_unwind(payload);
        }
        Ok(st)
    }

    fn next_within(&mut self, deadline: Option<Instant>) -> Option<(usize, Result<R>)> {
        let shared = self.handle.shared.clone();
        let job = self.handle.job;
        // The iteration's own deadline (an executor `map`'s) ends it.
        let deadline = match (deadline, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let st = match self.feed(&shared) {
            Ok(st) => st,
            Err(e) => return self.fail(e),
        };
        let slot = self.input_panic.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, payload)) = slot.take_if(|(at, _)| *at == self.yielded) {
            // Every result before it was yielded: the input's panic now,
            // and the iteration ends.
            drop(st);
            panic::resume_unwind(payload);
        }
        let (yielded, ordered, len) = (self.yielded, self.ordered, self.handle.len);
        let mut found = None;
        let (st, r) = drive(&shared, st, deadline, |st| {
            let Some(j) = st.sched.jobs.get_mut(job) else {
                return Check::Done;
            };
            found = if ordered {
                j.out.results.remove(&yielded).map(|r| (yielded, r))
            } else {
                j.out.results.pop_first()
            };
            if found.is_some() || yielded == len {
                Check::Done
            } else {
                Check::Pump
            }
        });
        drop(st);
        match r {
            Err(e) if e.is_timeout() && self.deadline.is_some_and(|d| Instant::now() >= d) => {
                let end = self.fail(e);
                cancel_job(&shared, job, false);
                return end;
            }
            // Not ready in time: the iteration goes on.
            Err(e) if e.is_timeout() => return Some((self.yielded, Err(e))),
            Err(e) => return self.fail(e),
            Ok(()) => {}
        }
        let (i, r) = found?;
        self.yielded += 1;
        Some((i, decode::<R>(r)))
    }

    /// Reports `e` and ends the iteration.
    fn fail(&mut self, e: Error) -> Option<(usize, Result<R>)> {
        if self.input.is_none() && self.yielded == self.handle.len {
            return None;
        }
        let at = self.yielded;
        self.input = None;
        self.yielded = self.handle.len;
        Some((at, Err(e)))
    }

    /// How far this `imap` has come, if it shows a progress bar
    /// ([`Tasks::progress`](crate::Tasks::progress), or the pool's
    /// [`PoolBuilder::progress`](crate::PoolBuilder::progress)).
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(&self) -> Option<Progress> {
        self.handle.progress()
    }
}

impl<I, A, R> Iterator for Imap<I, A, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_indexed().map(|(_, r)| r)
    }
}

impl<I, A, R> std::fmt::Debug for Imap<I, A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("job", &self.handle.job)
            .field("yielded", &self.yielded)
            .finish()
    }
}

/// With the `async` feature, an `Imap` is a [`futures_core::Stream`] of
/// the same items as its `Iterator` (see [`Pool`](crate::Pool)'s "Async"
/// section for who waits on the workers meanwhile). A poll reads and
/// submits the input as `next` does (the input itself is read in the
/// polling task: give it an input that does not block); dropping the
/// stream cancels the tasks not sent yet, as dropping the iterator does.
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
impl<I, A, R> futures_core::Stream for Imap<I, A, R>
where
    I: Iterator<Item = A> + Unpin,
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + 'static,
{
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<R>>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            // One look, without waiting.
            match this.next_within(Some(Instant::now())) {
                Some((_, Err(e))) if e.is_timeout() && this.deadline.is_none_or(|d| Instant::now() < d) => {}
                item => return Poll::Ready(item.map(|(_, r)| r)),
            }
            let (yielded, ordered) = (this.yielded, this.ordered);
            let ready = move |j: &super::job::Job| {
                j.tasks_over()
                    || if ordered {
                        j.out.results.contains_key(&yielded)
                    } else {
                        !j.out.results.is_empty()
                    }
            };
            let shared = this.handle.shared.clone();
            match super::driver::poll_job_until(&shared, this.handle.job, cx, true, ready) {
                // The whole iteration's deadline (`map_buffered`'s timeout)
                // ends it even when no result arrives.
                Poll::Pending => match this.deadline {
                    Some(d) if this.alarm.poll_at(d, cx).is_ready() => {}
                    _ => return Poll::Pending,
                },
                Poll::Ready(Err(e)) => return Poll::Ready(this.fail(e).map(|(_, r)| r)),
                Poll::Ready(Ok(())) => {}
            }
        }
    }
}
