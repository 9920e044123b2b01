//! [`Pool`](crate::Pool): the facade, where submissions are encoded and registered.

pub(super) mod builder;
pub(super) mod tasks;

use std::{
    marker::PhantomData,
    sync::{Arc, Mutex},
};

use serde::{Serialize, de::DeserializeOwned};

use super::{
    AsyncResult, Callbacks, Imap, MapResult, PoolBuilder,
    callbacks::{self, Kept, ValueCallback},
    driver::{Shared, run_due},
    encode::{LARGE_ARG, encode_batch, encode_caught, encode_one},
    handle::JobHandle,
    job::{OnDone, Options},
    scheduler::WorkerLink,
    worker,
};
use crate::{
    codec,
    error::{Error, ErrorKind, Result},
    target,
};

/// A chunk size of 0 is refused (Python: "Chunksize must be 1+").
fn check_chunksize(chunksize: Option<usize>) -> Result<()> {
    if chunksize == Some(0) {
        return Err(Error::new(ErrorKind::InvalidInput, "the chunk size must be at least 1"));
    }
    Ok(())
}

/// The automatic chunk size of large arguments keeps a chunk near this
/// size.
const BATCH_BYTES: usize = 256 * 1024;

/// The code offsets that name `f` in a worker.
fn offsets<A: DeserializeOwned + 'static, R: Serialize + 'static>(f: fn(A) -> R) -> Result<(i64, i64)> {
    target::offsets_of(f).ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "a pool task must be a function of the main executable",
        )
    })
}

/// Python's automatic chunk size: `len / (4 × workers)`, rounded up.
pub(super) fn auto_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers).max(1)
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Each worker has its own connection to the parent, and the parent waits
/// on the workers' connections and their pidfds together, so a worker's
/// death is seen at once: the chunk it ran fails with
/// [`ErrorKind::ChildKilled`](crate::ErrorKind::ChildKilled) or [`ErrorKind::ChildExited`](crate::ErrorKind::ChildExited) carrying the
/// exit status, the worker is replaced and the pool keeps serving. A task's
/// panic, or a result that fails to serialize, fails only that task. There
/// is no background thread: the callers drive the pool (one of them
/// waits on the workers, without the pool's lock, for all). `map` returns
/// the first error in input order;
/// `imap` yields each task's result. Dropping the pool terminates it
/// (kills and reaps the workers; unfinished tasks fail with
/// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled)) and never hangs.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let pool = multiproc::Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// assert_eq!(pool.apply(square, 7)?, 49);
/// pool.close();
/// pool.join()?;
/// # Ok(()) }
/// ```
///
/// # Async
///
/// Every result handle is a [`std::future::Future`]: [`AsyncResult`]
/// and [`TaskHandle`](crate::TaskHandle) give the task's result,
/// [`MapResult`] every result, on any runtime (no runtime is named). With
/// the `async` feature, [`Imap`] and the executor's
/// [`MapIter`](crate::MapIter) are `futures_core::Stream`s, as is
/// [`as_completed`](crate::futures::as_completed)'s iterator, and
/// `futures::wait_async` is [`wait`](crate::futures::wait) as a future. An
/// async task must not block, and the pool has no thread of its own, so
/// while some result is awaited and no caller is waiting on the pool, one
/// helper thread per pool (`multiproc-pool-driver`) waits on the workers
/// in its place; it ends once nothing is awaited. Whoever takes a job's
/// last result (that thread, or any caller) wakes the tasks awaiting it.
/// Callbacks that come due then run in that thread (a callback's panic is
/// reported by the panic hook, and lost). While it runs the process has a
/// second thread: the fork start method refuses to start processes then
/// (the pool's replacement workers go to the fork server). Dropping a
/// future loses nothing: the task runs on; await `&mut handle` to keep it.
///
/// ```
/// # async fn doc(pool: &multiproc::Pool) -> multiproc::Result<()> {
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let one = pool.apply_async(square, 7)?.await?;
/// let all = pool.map_async(square, 0..5, None)?.await?;
/// assert_eq!((one, all), (49, vec![0, 1, 4, 9, 16]));
/// # Ok(()) }
/// # fn main() {
/// #     let _ = doc;
/// # }
/// ```
#[derive(Debug)]
pub struct Pool {
    pub(super) shared: Arc<Shared>,
}

impl Pool {
    /// A pool of `processes` workers with the default start method.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`](crate::PoolBuilder::build).
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for a pool with an initializer, `maxtasksperchild`, a start
    /// method or a task timeout.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of workers the pool keeps.
    pub fn processes(&self) -> usize {
        self.shared.size
    }

    /// The pids of the current workers. A worker whose process has ended
    /// is replaced first (its task fails, as in any round), so that a
    /// pid the caller has seen end is never named.
    pub fn pids(&self) -> Vec<u32> {
        let mut st = self.shared.lock();
        if !self.shared.is_owner() {
            // A fork child's copy: the parent's workers, as they were.
            return st.sched.workers.iter().filter_map(|w| w.link.pid()).collect();
        }
        st.notice_deaths();
        let pids = st.sched.workers.iter().filter_map(|w| w.link.pid()).collect();
        drop(run_due(&self.shared, st, true));
        pids
    }

    /// Runs `f(args)` in a worker and waits for its result.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); then the task's own error
    /// ([`ErrorKind::ChildPanicked`](crate::ErrorKind::ChildPanicked), a codec error, a worker's death, a
    /// timeout).
    pub fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Queues `f(args)` and returns a handle on its result.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) on a closed pool; the pool's error if it
    /// is broken; [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) for a function outside the
    /// main executable.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, args: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_job(f, args, None)
    }

    /// [`apply_async`](Pool::apply_async) with Python's `callback` and
    /// `error_callback`: when the task finishes, one of them is called
    /// with a reference to its value or error, which
    /// [`AsyncResult::get`](crate::AsyncResult::get) still returns afterwards.
    ///
    /// Callbacks run in one of your threads that drives the pool: one
    /// waiting for a result ([`get`](AsyncResult::get),
    /// [`wait`](AsyncResult::wait), [`ready`](AsyncResult::ready), an
    /// `imap`), submitting work, or in [`join`](Pool::join),
    /// [`terminate`](Pool::terminate) and `Drop` (a cancelled task's
    /// error callback). They run without the pool's lock, so they may use
    /// the pool, but not wait for their own result. They run even if the
    /// [`AsyncResult`](crate::AsyncResult) was dropped. A callback's panic propagates out of
    /// the call that ran it (except during `Drop`).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use std::sync::{Arc, Mutex};
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let pool = multiproc::Pool::new(2)?;
    /// for x in 0..4 {
    ///     let seen = seen.clone();
    ///     let cb = multiproc::Callbacks::new().callback(move |v: &u64| seen.lock().unwrap().push(*v));
    ///     pool.apply_async_with(square, x, cb)?;
    /// }
    /// pool.close();
    /// pool.join()?;
    /// let mut seen = seen.lock().unwrap().clone();
    /// seen.sort();
    /// assert_eq!(seen, [0, 1, 4, 9]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); the callbacks are not called
    /// when the submission itself fails.
    pub fn apply_async_with<A, R>(&self, f: fn(A) -> R, args: A, callbacks: Callbacks<R>) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let Callbacks { value, error } = callbacks;
        let kept = callbacks::kept();
        let on_done = callbacks::on_done::<R>(
            1,
            value.map(|cb| {
                Box::new(move |v: &[R]| {
                    if let Some(one) = v.first() {
                        cb(one);
                    }
                }) as ValueCallback<[R]>
            }),
            error,
            kept.clone(),
        );
        self.apply_job(f, args, Some((on_done, kept)))
    }

    fn apply_job<A, R>(&self, f: fn(A) -> R, args: A, on_done: Option<(OnDone, Kept<R>)>) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let offs = offsets(f)?;
        let enc = encode_one(offs, 0, args);
        let mut st = self.shared.enter()?;
        st.sched.check_open()?;
        let job = st.sched.jobs.create();
        let (on_done, kept) = on_done.unzip();
        if let Some(j) = st.sched.jobs.get_mut(job) {
            j.on_done = on_done;
        }
        let handle = JobHandle {
            shared: self.shared.clone(),
            job,
            len: 1,
            cancel_on_drop: false,
        };
        st.sched.add(job, enc);
        st.sched.jobs.seal(job);
        st.harvest();
        drop(run_due(&self.shared, st, true));
        Ok(AsyncResult { handle, kept })
    }

    /// `f` over every item, in order, with Python's automatic chunk size
    /// (for arguments of 64 KiB or more: chunks near 256 KiB).
    /// The input is collected first (as Python's `map` does); use
    /// [`imap`](Pool::imap) for a long or endless input.
    ///
    /// # Errors
    ///
    /// The first failed task's error, in input order; as
    /// [`apply_async`](Pool::apply_async) for a closed pool.
    pub fn map<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, None)?.get()
    }

    /// `f` over every item, in order, with one `Result` per input instead
    /// of the first error: a task that panics, times out or whose worker
    /// dies fails its own slot, and the others keep their values. Chunks
    /// are of one item when the pool has a
    /// [`task_timeout`](PoolBuilder::task_timeout) (so an overdue task
    /// costs only its own input), else of Python's automatic size (a
    /// worker's death then fails every item of its chunk). The input is
    /// collected first; [`imap_chunked`](Pool::imap_chunked) gives the same
    /// per-item results lazily.
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    ///
    /// fn checked_sqrt(x: f64) -> f64 {
    ///     assert!(x >= 0.0, "negative input {x}");
    ///     x.sqrt()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let pool = Pool::new(2)?;
    /// let results = pool.map_results(checked_sqrt, [4.0, -1.0, 9.0])?;
    /// assert_eq!(*results[0].as_ref().unwrap(), 2.0);
    /// assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::ChildPanicked);
    /// assert_eq!(*results[2].as_ref().unwrap(), 3.0);
    /// pool.close();
    /// pool.join()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only what fails the whole call: as [`apply_async`](Pool::apply_async)
    /// for a closed pool; each task's own failure is in its slot.
    #[doc(alias = "map")]
    pub fn map_results<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<Result<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.results_job(f, items, Options::default())
    }

    /// One result per input, in order (see [`map_results`](Pool::map_results)).
    pub(super) fn results_job<A, R, I>(&self, f: fn(A) -> R, items: I, opts: Options) -> Result<Vec<Result<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        let timeout = opts.task_timeout.is_some() || self.shared.lock().sched.rules.task_timeout.is_some();
        let chunksize = match opts.chunksize {
            Some(c) => c,
            None if timeout => 1,
            None => auto_chunksize(items.len(), self.shared.size),
        };
        Ok(self.imap_with(f, items, chunksize, true, opts)?.collect())
    }

    /// [`map`](Pool::map) with an explicit chunk size.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a chunk size of 0; as
    /// [`map`](Pool::map).
    pub fn map_chunked<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, Some(chunksize))?.get()
    }

    /// Python's `starmap`: the same as [`map`](Pool::map), since several
    /// arguments are already one tuple (`fn((A, B)) -> R`).
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map(f, items)
    }

    /// Queues `f` over every item and returns a handle on the results;
    /// `chunksize` `None` picks Python's automatic size (for arguments of
    /// 64 KiB or more: chunks near 256 KiB).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a chunk size of 0; as
    /// [`apply_async`](Pool::apply_async).
    pub fn map_async<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: Option<usize>) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_job(
            f,
            items,
            Options {
                chunksize,
                ..Options::default()
            },
            None,
        )
    }

    /// [`map_async`](Pool::map_async) with Python's `callback` (called
    /// with every result, in order) and `error_callback` (called with the
    /// first error in input order); see
    /// [`apply_async_with`](Pool::apply_async_with) for where they run.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async).
    pub fn map_async_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<[R]>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let Callbacks { value, error } = callbacks;
        let items: Vec<A> = items.into_iter().collect();
        let kept = callbacks::kept();
        let on_done = callbacks::on_done::<R>(items.len(), value, error, kept.clone());
        self.map_job(
            f,
            items,
            Options {
                chunksize,
                ..Options::default()
            },
            Some((on_done, kept)),
        )
    }

    pub(super) fn map_job<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        opts: Options,
        on_done: Option<(OnDone, Kept<R>)>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let offs = offsets(f)?;
        self.shared.enter()?.sched.check_open()?;
        check_chunksize(opts.chunksize)?;
        let items: Vec<A> = items.into_iter().collect();
        let len = items.len();
        // Large arguments (judged by the first) travel each encoded on its
        // own (a byte buffer is then sent as it is, not element by element
        // inside a `Vec`), and the automatic chunk size keeps a chunk's
        // message near `BATCH_BYTES`.
        let first = items.first().map_or(0, |a| {
            let mut probe = Vec::new();
            // The descriptors of library objects are not wanted here.
            let (r, _) = codec::fds::collect(|| encode_caught(a, &mut probe));
            r.map_or(0, |()| probe.len())
        });
        let large = first >= LARGE_ARG;
        let chunk = match opts.chunksize {
            Some(c) => c,
            // With a task timeout, an overdue task costs only its own input.
            None if opts.task_timeout.is_some() => 1,
            None if large => (BATCH_BYTES / first).max(1),
            None => auto_chunksize(len, self.shared.size),
        }
        .max(1);
        // Encode without the lock.
        let batch_offs = if large { None } else { worker::batch_offsets_of(f) };
        let mut encoded = Vec::with_capacity(len.div_ceil(chunk));
        let mut it = items.into_iter();
        let mut start = 0;
        loop {
            let part: Vec<A> = it.by_ref().take(chunk).collect();
            if part.is_empty() {
                break;
            }
            let n = part.len();
            let mut part = part;
            if large && n == 1 {
                if let Some(a) = part.pop() {
                    encoded.push(encode_one(offs, start, a));
                }
            } else {
                encoded.push(encode_batch(offs, batch_offs, start, part));
            }
            start += n;
        }
        let mut st = self.shared.enter()?;
        st.sched.check_open()?;
        let job = st.sched.jobs.create();
        let (on_done, kept) = on_done.unzip();
        if let Some(j) = st.sched.jobs.get_mut(job) {
            j.on_done = on_done;
            j.task_timeout = opts.task_timeout;
        }
        #[cfg(feature = "progress")]
        if opts.progress.unwrap_or(st.progress) {
            st.sched.jobs.attach_bar(job, Some(len));
        }
        let handle = JobHandle {
            shared: self.shared.clone(),
            job,
            len,
            cancel_on_drop: false,
        };
        for enc in encoded {
            st.sched.add(job, enc);
        }
        st.sched.jobs.seal(job);
        st.harvest();
        drop(run_due(&self.shared, st, true));
        Ok(MapResult { handle, kept })
    }

    /// Python's `starmap_async`: [`map_async`](Pool::map_async).
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async).
    pub fn starmap_async<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: Option<usize>) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, chunksize)
    }

    /// A lazy, ordered `map`: the input is read as results are consumed,
    /// at most `4 × processes` chunks ahead; chunk size 1.
    ///
    /// A panic of the input comes out of `next` after the results of every
    /// item read before it, in order (Python's `imap` yields them, then
    /// raises the input's exception); the iteration then ends.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); each item is the task's
    /// result.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, 1, true, Options::default())
    }

    /// [`imap`](Pool::imap) with a chunk size.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a chunk size of 0; as
    /// [`imap`](Pool::imap).
    pub fn imap_chunked<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: usize) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, chunksize, true, Options::default())
    }

    /// Like [`imap`](Pool::imap), but yields results in the order they
    /// arrive (of those that arrived together, lowest index first)
    /// ([`Imap::next_indexed`](crate::Imap::next_indexed) gives each one's input index too). A panic
    /// of the input comes out of the `next` that read it; the items read
    /// before it are still queued, and their results come later.
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_unordered<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, 1, false, Options::default())
    }

    /// [`imap_unordered`](Pool::imap_unordered) with a chunk size.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a chunk size of 0; as
    /// [`imap`](Pool::imap).
    pub fn imap_unordered_chunked<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, chunksize, false, Options::default())
    }

    pub(super) fn imap_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
        opts: Options,
    ) -> Result<Imap<I::IntoIter, A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let offs = offsets(f)?;
        check_chunksize(Some(chunksize))?;
        let items = items.into_iter();
        let mut st = self.shared.enter()?;
        st.sched.check_open()?;
        let job = st.sched.jobs.create();
        if let Some(j) = st.sched.jobs.get_mut(job) {
            j.task_timeout = opts.task_timeout;
        }
        let ahead = st.sched.size.saturating_mul(4).saturating_mul(chunksize);
        #[cfg(feature = "progress")]
        {
            let len = match items.size_hint() {
                (lo, Some(hi)) if lo == hi => Some(lo),
                _ => None,
            };
            if opts.progress.unwrap_or(st.progress) {
                st.sched.jobs.attach_bar(job, len);
            }
        }
        drop(st);
        Ok(Imap {
            handle: JobHandle {
                shared: self.shared.clone(),
                job,
                len: 0,
                cancel_on_drop: true,
            },
            input: Some(items),
            offs,
            chunksize,
            ahead,
            deadline: None,
            stop_at_close: false,
            yielded: 0,
            ordered,
            input_panic: Mutex::new(None),
            #[cfg(feature = "async")]
            alarm: crate::asynchronous::Alarm::new(),
            _r: PhantomData,
        })
    }
}
