//! A job (one submission: an `apply`, a `map`, an `imap`) and the table of
//! jobs: what has arrived for each task, how many are outstanding, and
//! where the job stands, as an explicit [`JobState`].

use std::{any::Any, collections::BTreeMap, collections::HashMap, task::Waker, time::Duration};

#[cfg(feature = "progress")]
use indicatif::{ProgressBar, ProgressStyle};

use super::protocol::{self, ReplyBody};
use crate::error::{Error, ErrorKind};

/// A task's outcome bytes, or the error that replaced them (the pool's
/// own: a worker's death, a timeout, a cancellation, an argument that did
/// not encode).
pub(super) type TaskResult = std::result::Result<Vec<u8>, Error>;

/// A job's finished tasks, as the workers sent them.
#[derive(Default)]
pub(super) struct Output {
    pub(super) results: BTreeMap<usize, TaskResult>,
    /// Batch replies: the tasks' indexes and their encoded `Vec<R>`.
    pub(super) batches: Vec<(Vec<usize>, Vec<u8>)>,
}

/// Decodes a finished job's output into the handle's typed slot and runs
/// the user's callback on it (see `callbacks.rs`).
pub(super) type OnDone = Box<dyn FnOnce(Output) -> Summary + Send>;

/// A callback added while a job's callbacks run, run right after them
/// (it reads the decoded value from the handle's slot); given the error
/// that replaced the value when decoding itself failed.
pub(super) type LateCallback = Box<dyn FnOnce(Option<&Error>) + Send>;

/// What the callbacks of a job found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Verdict {
    /// A task failed.
    pub(super) failed: bool,
    /// The kind of the error `get` returns, if any.
    pub(super) error: Option<ErrorKind>,
}

/// What [`OnDone`] gives back.
pub(super) struct Summary {
    pub(super) verdict: Verdict,
    /// The callback's panic.
    pub(super) panic: Option<Box<dyn Any + Send>>,
}

/// What one call asked for (see [`Tasks`](crate::Tasks)).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Options {
    /// The chunk size; `None`: automatic.
    pub(super) chunksize: Option<usize>,
    /// This call's task timeout, over the pool's.
    pub(super) task_timeout: Option<Duration>,
    /// Show a progress bar; `None`: as the pool does.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(super) progress: Option<bool>,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobState {
    /// Tasks are still being submitted (an `imap` submits as it reads).
    Open,
    /// Every task is submitted; some have not finished.
    Sealed,
    /// Every task finished; its callbacks are queued to run.
    Due,
    /// A thread runs its callbacks, without the pool's lock; what its
    /// output said before they took it.
    Calling(Verdict),
    /// Finished, callbacks included; `Some` when callbacks decoded the
    /// output (the value is then in the handle's slot).
    Done(Option<Verdict>),
}

pub(super) struct Job {
    pub(super) state: JobState,
    pub(super) out: Output,
    pub(super) outstanding: usize,
    /// The callbacks, until they run.
    pub(super) on_done: Option<OnDone>,
    /// Callbacks added while the others ran, run after them.
    pub(super) late: Vec<LateCallback>,
    /// Decoding the output panicked: the error that stands for the value.
    pub(super) decode_error: Option<Error>,
    /// The handle was dropped: forget the job once it has finished, its
    /// callbacks included.
    pub(super) orphan: bool,
    /// Its task timeout, over the pool's.
    pub(super) task_timeout: Option<Duration>,
    /// The tasks awaiting it (its handle polled as a `Future`), woken when
    /// it finishes.
    wakers: Vec<Waker>,
    /// Wake them at each task's end, not only the job's (a stream).
    wake_each: bool,
    /// Why awaiting it cannot end (the pool has no work that could finish
    /// it), for the next poll.
    pub(super) async_error: Option<Error>,
    #[cfg(feature = "progress")]
    pub(super) bar: Option<ProgressBar>,
}

impl Job {
    fn new() -> Job {
        Job {
            state: JobState::Open,
            out: Output::default(),
            outstanding: 0,
            on_done: None,
            late: Vec::new(),
            decode_error: None,
            orphan: false,
            task_timeout: None,
            wakers: Vec::new(),
            wake_each: false,
            async_error: None,
            #[cfg(feature = "progress")]
            bar: None,
        }
    }

    /// Finished, callbacks included.
    pub(super) fn finished(&self) -> bool {
        matches!(self.state, JobState::Done(_))
    }

    /// Every task finished, but the callbacks have not (yet) run: another
    /// thread is about to make it finish.
    pub(super) fn finishing(&self) -> bool {
        matches!(self.state, JobState::Due | JobState::Calling(_))
    }

    /// Every task is submitted and none is outstanding.
    pub(super) fn tasks_over(&self) -> bool {
        !matches!(self.state, JobState::Open | JobState::Sealed)
    }

    /// What the output says so far (or what the callbacks found).
    pub(super) fn verdict(&self) -> Verdict {
        match self.state {
            JobState::Calling(v) | JobState::Done(Some(v)) => v,
            _ => Verdict {
                failed: !self
                    .out
                    .results
                    .values()
                    .all(|r| r.as_ref().is_ok_and(|b| protocol::returned(b))),
                error: self
                    .out
                    .results
                    .values()
                    .find_map(|r| r.as_ref().err().map(Error::kind)),
            },
        }
    }

    /// Records tasks `idx`' reply body.
    fn record(&mut self, idx: Vec<usize>, body: ReplyBody<'_>) {
        match body {
            ReplyBody::Outcomes(items) => {
                for (i, bytes) in idx.into_iter().zip(items) {
                    self.out.results.insert(i, Ok(bytes.to_vec()));
                }
            }
            ReplyBody::Values(bytes) => self.out.batches.push((idx, bytes.to_vec())),
            ReplyBody::ArgsFailed(bytes) => {
                for i in idx {
                    self.out.results.insert(i, Ok(bytes.to_vec()));
                }
            }
        }
    }
}

/// The pool's jobs, by id, and those whose callbacks are due.
#[derive(Default)]
pub(super) struct Jobs {
    map: HashMap<u64, Job>,
    next: u64,
    /// Finished jobs whose callbacks have not run yet.
    due: Vec<u64>,
    /// Jobs with a waker (awaited), not finished yet.
    awaited: usize,
}

impl Jobs {
    pub(super) fn create(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        self.map.insert(id, Job::new());
        id
    }

    pub(super) fn get(&self, job: u64) -> Option<&Job> {
        self.map.get(&job)
    }

    pub(super) fn get_mut(&mut self, job: u64) -> Option<&mut Job> {
        self.map.get_mut(&job)
    }

    pub(super) fn contains(&self, job: u64) -> bool {
        self.map.contains_key(&job)
    }

    pub(super) fn remove(&mut self, job: u64) {
        if let Some(j) = self.map.remove(&job) {
            if !j.wakers.is_empty() {
                self.awaited -= 1;
            }
        }
    }

    /// Whether some job is awaited (and not finished).
    pub(super) fn awaited(&self) -> bool {
        self.awaited > 0
    }

    /// `waker` is to be woken when `job` finishes (or cannot); with
    /// `each`, also when any of its tasks ends.
    pub(super) fn register(&mut self, job: u64, waker: &Waker, each: bool) {
        let Some(j) = self.map.get_mut(&job) else { return };
        j.wake_each |= each;
        if j.wakers.is_empty() {
            self.awaited += 1;
        }
        if !j.wakers.iter().any(|w| w.will_wake(waker)) {
            j.wakers.push(waker.clone());
        }
    }

    /// Wakes the tasks awaiting `job`.
    fn wake(&mut self, job: u64) {
        let Some(j) = self.map.get_mut(&job) else { return };
        if j.wakers.is_empty() {
            return;
        }
        self.awaited -= 1;
        j.wake_each = false;
        for w in std::mem::take(&mut j.wakers) {
            w.wake();
        }
    }

    /// Every awaited job that is not about to finish (its callbacks
    /// running in another thread) fails its await with `e`, and its tasks
    /// are woken.
    pub(super) fn fail_awaits(&mut self, e: &Error) {
        let stuck: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, j)| !j.wakers.is_empty() && !j.finishing() && !j.finished())
            .map(|(&id, _)| id)
            .collect();
        for id in stuck {
            if let Some(j) = self.map.get_mut(&id) {
                j.async_error = Some(e.duplicate());
            }
            self.wake(id);
        }
    }

    /// A job whose callbacks are due, to run them.
    pub(super) fn next_due(&mut self) -> Option<u64> {
        self.due.pop()
    }

    /// Counts `n` more tasks of `job` as submitted.
    pub(super) fn submitted(&mut self, job: u64, n: usize) {
        if let Some(j) = self.map.get_mut(&job) {
            j.outstanding += n;
        }
    }

    /// Tasks `idx` of `job` failed with `e` (the pool's error, not theirs).
    pub(super) fn fail(&mut self, job: u64, idx: Vec<usize>, e: &Error) {
        let n = idx.len();
        let Some(j) = self.map.get_mut(&job) else { return };
        for i in idx {
            j.out.results.insert(i, Err(e.duplicate()));
        }
        self.tasks_done(job, n);
    }

    /// Records the reply `body` of tasks `idx` of `job` (a forgotten job,
    /// whose iterator was dropped, takes nothing).
    pub(super) fn record(&mut self, job: u64, idx: Vec<usize>, body: ReplyBody<'_>) {
        let n = idx.len();
        let Some(j) = self.map.get_mut(&job) else { return };
        j.record(idx, body);
        self.tasks_done(job, n);
    }

    /// Counts `n` tasks of `job` as finished; when the job is sealed and
    /// nothing is outstanding, finishes its bar and queues its callbacks.
    fn tasks_done(&mut self, job: u64, n: usize) {
        let Some(j) = self.map.get_mut(&job) else { return };
        j.outstanding -= n;
        #[cfg(feature = "progress")]
        if let Some(bar) = &j.bar {
            bar.inc(n as u64);
        }
        if j.wake_each {
            self.wake(job);
        }
        self.settle(job);
    }

    /// Marks every task of `job` as submitted.
    pub(super) fn seal(&mut self, job: u64) {
        if let Some(j) = self.map.get_mut(&job) {
            if j.state == JobState::Open {
                j.state = JobState::Sealed;
            }
        }
        self.settle(job);
    }

    /// Moves `job` on if its tasks are over: its callbacks are queued, or
    /// it is done (and forgotten, if its handle is gone).
    pub(super) fn settle(&mut self, job: u64) {
        let Some(j) = self.map.get_mut(&job) else { return };
        if j.state == JobState::Open || j.outstanding > 0 {
            return;
        }
        #[cfg(feature = "progress")]
        if let Some(bar) = &j.bar {
            if !bar.is_finished() {
                bar.finish();
            }
        }
        if j.on_done.is_some() {
            if matches!(j.state, JobState::Sealed | JobState::Done(_)) {
                j.state = JobState::Due;
            }
            if !self.due.contains(&job) {
                self.due.push(job);
            }
        } else if j.state == JobState::Sealed {
            j.state = JobState::Done(None);
            self.wake(job);
        }
        let Some(j) = self.map.get_mut(&job) else { return };
        if j.orphan && j.finished() {
            // Its handle is gone and nothing is left to run: forget it.
            self.remove(job);
        }
    }

    /// Takes the callbacks of `job` to run them: the job is
    /// [`Calling`](JobState::Calling) meanwhile.
    pub(super) fn start_callbacks(&mut self, job: u64) -> Option<(OnDone, Output)> {
        let j = self.map.get_mut(&job)?;
        let on_done = j.on_done.take()?;
        j.state = JobState::Calling(j.verdict());
        Some((on_done, std::mem::take(&mut j.out)))
    }

    /// The callbacks of `job` have run and found `verdict`.
    pub(super) fn end_callbacks(&mut self, job: u64, verdict: Verdict, decode_error: Option<Error>) {
        let Some(j) = self.map.get_mut(&job) else { return };
        if j.orphan {
            self.remove(job);
            return;
        }
        j.state = JobState::Done(Some(verdict));
        j.decode_error = decode_error;
        self.wake(job);
    }

    /// A progress bar for `job` of `len` tasks (`None`: unknown).
    #[cfg(feature = "progress")]
    pub(super) fn attach_bar(&mut self, job: u64, len: Option<usize>) {
        let (bar, template) = match len {
            Some(n) => (
                ProgressBar::new(n as u64),
                "{elapsed_precise} {wide_bar} {human_pos}/{human_len} tasks ({per_sec}, {eta} left)",
            ),
            None => (
                ProgressBar::no_length(),
                "{spinner} {elapsed_precise} {human_pos} tasks ({per_sec})",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        if let Some(j) = self.map.get_mut(&job) {
            j.bar = Some(bar);
        }
    }
}
