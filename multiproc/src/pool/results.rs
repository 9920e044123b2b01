//! The handles on a pool's results: `AsyncResult`, `MapResult`, `Imap`,
//! and the callbacks.

use super::state::*;
use super::*;
/// A job's registration in the pool. Dropping the handle of an
/// `AsyncResult`, `MapResult` or `Future` leaves the job to run to its end
/// (as Python's pool cache keeps it: fire and forget, and `join` waits for
/// it), then forgets it. Dropping an iterator's (`cancel_on_drop`: `imap`,
/// the executor's `map`) forgets the job at once: its queued chunks are
/// skipped, late results dropped, unless it has callbacks to run.
pub(super) struct JobHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) job: u64,
    pub(super) len: usize,
    pub(super) cancel_on_drop: bool,
}

impl JobHandle {
    /// Takes what has arrived (without blocking), runs due callbacks, and
    /// says whether the job has finished.
    pub(super) fn ready(&self) -> bool {
        let Ok(mut st) = self.shared.enter() else { return false };
        st.harvest();
        let st = run_due(&self.shared, st, true);
        st.jobs.get(&self.job).is_none_or(Job::finished)
    }

    pub(super) fn wait_done(&self, deadline: Option<Instant>) -> Result<()> {
        if in_callback_of(&self.shared, self.job) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "a callback cannot wait for the result it is called with",
            ));
        }
        let st = self.shared.enter()?;
        let job = self.job;
        drive(&self.shared, st, deadline, |st| match st.jobs.get(&job) {
            None => Check::Done,
            Some(j) if j.finished() => Check::Done,
            Some(j) if j.sealed && j.outstanding == 0 => Check::Wait,
            Some(_) => Check::Pump,
        })
        .1
    }

    #[cfg(feature = "progress")]
    pub(super) fn bar(&self) -> Option<ProgressBar> {
        self.shared.enter().ok()?.jobs.get(&self.job)?.bar.clone()
    }

    pub(super) fn successful(&self) -> Option<bool> {
        let st = self.shared.enter().ok()?;
        let j = st.jobs.get(&self.job)?;
        j.finished().then(|| !j.failed())
    }

    pub(super) fn peek_error_kind(&self) -> Option<ErrorKind> {
        let st = self.shared.enter().ok()?;
        st.jobs.get(&self.job)?.error_kind()
    }

    pub(super) fn take_all<R: DeserializeOwned + 'static>(&self) -> Result<Vec<R>> {
        let out = {
            let mut st = self.shared.enter()?;
            let j = st
                .jobs
                .get_mut(&self.job)
                .ok_or_else(|| Error::new(ErrorKind::InvalidState, "the result was already taken"))?;
            if let Some((_, value)) = j.decoded.take() {
                return match value.downcast::<Result<Vec<R>>>() {
                    Ok(v) => *v,
                    // The decoding itself failed (`run_due` caught it).
                    Err(value) => Err(match value.downcast::<Error>() {
                        Ok(e) => *e,
                        Err(_) => Error::new(ErrorKind::Protocol, "a pool result of another type"),
                    }),
                };
            }
            std::mem::take(&mut j.out)
        };
        decode_output(out, self.len)
    }
}

/// Decodes a finished job's `n` results, in order; the first error in
/// input order, if any.
pub(super) fn decode_output<R: DeserializeOwned + 'static>(out: Output, len: usize) -> Result<Vec<R>> {
    let Output { results, batches } = out;
    let got = results.len() + batches.iter().map(|b| b.0.len()).sum::<usize>();
    if got != len || (got == 0 && len == 1) {
        return Err(Error::new(ErrorKind::InvalidState, "the result was already taken"));
    }
    if results.is_empty() && batches.len() <= 1 {
        // The common case: one batch, or none for an empty input.
        return match batches.into_iter().next() {
            None => Ok(Vec::new()),
            Some((_, bytes)) => decode_batch::<R>(&bytes, len),
        };
    }
    let mut slots: Vec<Option<Result<R>>> = (0..len).map(|_| None).collect();
    for (i, r) in results {
        slots[i] = Some(decode::<R>(r));
    }
    for (idx, bytes) in batches {
        let values = decode_batch_each::<R>(&bytes, idx.len());
        for (i, v) in idx.into_iter().zip(values) {
            slots[i] = Some(v);
        }
    }
    slots
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Err(Error::new(ErrorKind::Protocol, "a task's result is missing"))))
        .collect()
}

fn result_error(CodecError(e): CodecError) -> Error {
    Error::new(
        ErrorKind::Deserialize,
        format!("failed to deserialize the task's result: {e}"),
    )
}

fn wrong_count() -> Error {
    Error::new(ErrorKind::Protocol, "a pool worker sent the wrong number of results")
}

/// Decodes a batch reply of `n` results, one `Result` per task: a result
/// that does not decode fails its task alone (the reply carries each
/// result's bytes: see `worker::encode_seq`).
pub(super) fn decode_batch_each<R: DeserializeOwned + 'static>(bytes: &[u8], n: usize) -> Vec<Result<R>> {
    each_of(worker::decode_seq_each::<R>(bytes), n)
}

fn each_of<R>(
    decoded: std::result::Result<Vec<std::result::Result<R, CodecError>>, CodecError>,
    n: usize,
) -> Vec<Result<R>> {
    match decoded {
        Ok(values) if values.len() == n => values.into_iter().map(|r| r.map_err(result_error)).collect(),
        Ok(_) => (0..n).map(|_| Err(wrong_count())).collect(),
        Err(e) => {
            let e = result_error(e);
            (0..n).map(|_| Err(e.duplicate())).collect()
        }
    }
}

/// Decodes a batch reply of `n` results; the first error in input order.
pub(super) fn decode_batch<R: DeserializeOwned + 'static>(bytes: &[u8], n: usize) -> Result<Vec<R>> {
    match worker::decode_seq::<R>(bytes) {
        Ok(values) if values.len() == n => Ok(values),
        Ok(_) => Err(wrong_count()),
        Err(e) => each_of(worker::decode_seq_elements::<R>(bytes, e), n)
            .into_iter()
            .collect(),
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        // In a fork child, the state is a copy of the parent's: leave it.
        let Ok(mut st) = self.shared.enter() else { return };
        if let Some(j) = st.jobs.get_mut(&self.job) {
            #[cfg(feature = "progress")]
            if let Some(bar) = &j.bar {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            let keep = if self.cancel_on_drop {
                j.on_done.is_some() || j.running
            } else {
                !j.finished()
            };
            if keep {
                j.orphan = true;
            } else {
                st.jobs.remove(&self.job);
            }
        }
    }
}

/// A callback on a value.
pub(super) type ValueCallback<T> = Box<dyn FnOnce(&T) + Send>;

/// A callback on an error.
pub(super) type ErrorCallback = Box<dyn FnOnce(&Error) + Send>;

/// Python's `callback` and `error_callback` for
/// [`Pool::apply_async_with`] (`T` is the result type) and
/// [`Pool::map_async_with`] (`T` is `[R]`).
pub struct Callbacks<T: ?Sized> {
    pub(super) value: Option<ValueCallback<T>>,
    pub(super) error: Option<ErrorCallback>,
}

impl<T: ?Sized> Callbacks<T> {
    /// No callbacks yet.
    pub fn new() -> Callbacks<T> {
        Callbacks {
            value: None,
            error: None,
        }
    }

    /// Called with the result when the task (every task of a `map`)
    /// returned.
    pub fn callback(mut self, f: impl FnOnce(&T) + Send + 'static) -> Callbacks<T> {
        self.value = Some(Box::new(f));
        self
    }

    /// Called with the error when the task (a task of a `map`: the first
    /// in input order) failed.
    pub fn error_callback(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Callbacks<T> {
        self.error = Some(Box::new(f));
        self
    }
}

impl<T: ?Sized> Default for Callbacks<T> {
    fn default() -> Callbacks<T> {
        Callbacks::new()
    }
}

impl<T: ?Sized> std::fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("callback", &self.value.is_some())
            .field("error_callback", &self.error.is_some())
            .finish()
    }
}

/// A done callback of one task (an executor `Future`'s).
pub(super) type DoneCallback<R> = Box<dyn FnOnce(std::result::Result<&R, &Error>) + Send>;

/// `old` (the job's callbacks so far, if any), then `f` with the result
/// it decoded: how a callback is added to a job after its submission.
pub(super) fn chain<R: DeserializeOwned + Send + 'static>(old: Option<OnDone>, f: DoneCallback<R>) -> OnDone {
    Box::new(move |out| {
        let done = match old {
            Some(old) => old(out),
            None => {
                let r = decode_output::<R>(out, 1);
                Decoded {
                    error: r.as_ref().err().map(Error::kind),
                    value: Box::new(r),
                    panic: None,
                }
            }
        };
        let panic = panic::catch_unwind(AssertUnwindSafe(|| call_with_one(f, &*done.value))).err();
        Decoded {
            panic: done.panic.or(panic),
            ..done
        }
    })
}

/// Calls `f` with the first result of a decoded `Result<Vec<R>>` (or with
/// the [`Error`] that stands for it when decoding failed).
pub(super) fn call_with_one<R: 'static>(f: DoneCallback<R>, value: &(dyn Any + Send)) {
    if let Some(r) = value.downcast_ref::<Result<Vec<R>>>() {
        match r {
            Ok(values) => {
                if let Some(one) = values.first() {
                    f(Ok(one));
                }
            }
            Err(e) => f(Err(e)),
        }
    } else if let Some(e) = value.downcast_ref::<Error>() {
        f(Err(e));
    }
}

/// The type-erased end of a job with callbacks: decodes its `len`
/// results, calls the right callback (catching its panic), keeps the
/// decoded result for `get`.
pub(super) fn erase<R: DeserializeOwned + Send + 'static>(
    len: usize,
    value: Option<ValueCallback<[R]>>,
    error: Option<ErrorCallback>,
) -> OnDone {
    Box::new(move |out| {
        let r = decode_output::<R>(out, len);
        let panic = panic::catch_unwind(AssertUnwindSafe(|| match &r {
            Ok(v) => {
                if let Some(cb) = value {
                    cb(v);
                }
            }
            Err(e) => {
                if let Some(cb) = error {
                    cb(e);
                }
            }
        }))
        .err();
        Decoded {
            error: r.as_ref().err().map(Error::kind),
            value: Box::new(r),
            panic,
        }
    })
}

pub(super) fn deadline_after(timeout: Duration) -> Instant {
    crate::sys::deadline_after(timeout)
}

/// The pending result of [`Pool::apply_async`] (Python's `AsyncResult`).
pub struct AsyncResult<R> {
    pub(super) handle: JobHandle,
    pub(super) _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned + 'static> AsyncResult<R> {
    /// Waits for the result.
    ///
    /// # Errors
    ///
    /// The task's error; [`ErrorKind::InvalidState`] once the result was
    /// taken (by [`get_timeout`](AsyncResult::get_timeout)), from within
    /// this task's own callback, or in a fork child.
    pub fn get(self) -> Result<R> {
        self.handle.wait_done(None)?;
        self.take()
    }

    /// Waits up to `timeout` for the result; on [`ErrorKind::Timeout`] the
    /// result can still be waited for.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`]; as [`get`](AsyncResult::get).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R> {
        self.handle.wait_done(Some(deadline_after(timeout)))?;
        self.take()
    }

    pub(super) fn take(&self) -> Result<R> {
        self.handle
            .take_all::<R>()?
            .pop()
            .ok_or_else(|| Error::new(ErrorKind::InvalidState, "no result"))
    }

    /// Waits up to `timeout` (`None`: no limit); `true` if the result is
    /// ready.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if waiting fails; [`ErrorKind::InvalidState`] from within this job's own callback, or in a fork child.
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

/// The pending results of [`Pool::map_async`].
pub struct MapResult<R> {
    pub(super) handle: JobHandle,
    pub(super) _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned + 'static> MapResult<R> {
    /// Waits for every result; the first error in input order, if any.
    ///
    /// # Errors
    ///
    /// The first failed task's error; [`ErrorKind::InvalidState`] once the
    /// results were taken (by [`get_timeout`](MapResult::get_timeout)),
    /// from within this map's own callback, or in a fork child.
    pub fn get(self) -> Result<Vec<R>> {
        self.handle.wait_done(None)?;
        self.handle.take_all()
    }

    /// Like [`get`](MapResult::get) within `timeout`; on
    /// [`ErrorKind::Timeout`] the results can still be waited for.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`], or as [`get`](MapResult::get).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<Vec<R>> {
        self.handle.wait_done(Some(deadline_after(timeout)))?;
        self.handle.take_all()
    }

    /// Waits up to `timeout` (`None`: no limit); `true` if every result is
    /// ready.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if waiting fails; [`ErrorKind::InvalidState`] from within this job's own callback, or in a fork child.
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

    /// The progress bar of this `map` (with [`PoolBuilder::progress`]).
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress_bar(&self) -> Option<ProgressBar> {
        self.handle.bar()
    }
}

impl<R> std::fmt::Debug for MapResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapResult").field("job", &self.handle.job).finish()
    }
}

/// The iterator of [`Executor::map`](crate::Executor::map): every task's
/// result, in input order.
///
/// As in Python, the tasks are all queued by the call and its timeout
/// counts from the call: a result not ready by then gives
/// [`ErrorKind::Timeout`], ends the iteration and cancels the tasks not
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
        }
    }

    /// Decodes what arrived into [`MapIter::ahead`].
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
            let Some(j) = st.jobs.get_mut(&job) else {
                return Check::Done;
            };
            if !j.out.results.is_empty() || !j.out.batches.is_empty() {
                let out = std::mem::take(&mut j.out);
                have = have || out.results.contains_key(&at) || out.batches.iter().any(|(idx, _)| idx.contains(&at));
                arrived.push(out);
            }
            if have || (j.sealed && j.outstanding == 0) {
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

impl<R> std::fmt::Debug for MapIter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapIter")
            .field("job", &self.handle.job)
            .field("next", &self.next)
            .finish()
    }
}

/// The iterator of [`Pool::imap`], [`Pool::imap_unordered`] and
/// [`Executor::map_buffered`](crate::Executor::map_buffered). Ordered, it
/// yields each task's result; unordered, `(index, result)` pairs as
/// [`Imap::next_indexed`] (its `Iterator` items drop the index).
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
    pub(super) _r: PhantomData<fn(A) -> R>,
}

impl<I, A, R> Imap<I, A, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + 'static,
{
    /// The next result with its input index (in input order for
    /// [`Pool::imap`], in arrival order for [`Pool::imap_unordered`]: of
    /// the results that arrived together, lowest index first).
    /// After an error of the pool itself (not of a task), the iteration
    /// ends.
    pub fn next_indexed(&mut self) -> Option<(usize, Result<R>)> {
        self.next_within(None)
    }

    /// Python's `next(timeout)`: the next result, waiting at most
    /// `timeout`. A result not ready in time gives
    /// [`ErrorKind::Timeout`] and the iteration goes on: a later call
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
            let closed = st.life != Life::Running;
            // Closed and joined: no worker is left to run what is read.
            let joined = st.life == Life::Closed && st.workers.is_empty();
            if st.broken.is_some() || st.life == Life::Terminated || joined || (self.stop_at_close && closed) {
                let e = match st.check_open() {
                    Err(e) if st.broken.is_some() || !joined => e,
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
            st.add(job, enc);
        }
        if self.input.is_none() {
            st.seal(job);
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
            let Some(j) = st.jobs.get_mut(&job) else {
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

    /// The progress bar of this `imap` (with
    /// [`PoolBuilder::progress`]).
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress_bar(&self) -> Option<ProgressBar> {
        self.handle.bar()
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
