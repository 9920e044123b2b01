//! The driver: the pool has no thread of its own, so the callers drive
//! it, in rounds.
//!
//! One caller at a time waits on the workers (the *driver*): it takes the
//! descriptors of every link and the pool's eventfd, releases the lock,
//! waits, relocks and hands the scheduler what it found. Meanwhile other
//! threads submit, take results and cancel; those waiting for their own
//! result sleep on a condition variable, woken after each round. The
//! eventfd wakes the driver when the set of workers changes under it
//! (terminate, replacements) or when a callback may have finished what it
//! waits for. Callbacks run here too ([`run_due`]), without the lock.

use std::{
    panic::{self, AssertUnwindSafe},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use super::{
    callbacks,
    job::{Job, Verdict},
    link::ProcessLauncher,
    scheduler::{Death, Scheduler, WorkerLink},
};
use crate::{
    error::{Error, ErrorKind, Result},
    sys,
};

/// How the scheduler wakes the driver.
pub(super) type Notify = Box<dyn Fn() + Send>;

/// The pool's state, behind the lock.
pub(super) struct State {
    pub(super) sched: Scheduler<ProcessLauncher>,
    /// An eventfd in every round's wait: signalled when the driver must
    /// look again.
    wake: Arc<sys::Fd>,
    /// Threads asleep on the condition variable.
    sleepers: usize,
    /// Show a progress bar for each `map` and `imap`.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(super) progress: bool,
    /// A thread drives the pool for the tasks awaiting its results
    /// ([`start_async_driver`]).
    async_driver: bool,
}

impl State {
    pub(super) fn new(sched: Scheduler<ProcessLauncher>, wake: Arc<sys::Fd>, progress: bool) -> State {
        State {
            sched,
            wake,
            sleepers: 0,
            progress,
            async_driver: false,
        }
    }

    /// An eventfd and the scheduler's way to signal it.
    pub(super) fn wake_fd() -> Result<(Arc<sys::Fd>, Notify)> {
        let fd = Arc::new(sys::eventfd().map_err(|e| Error::io("failed to create the pool's wake-up eventfd", e))?);
        let signal = fd.clone();
        Ok((fd, Box::new(move || sys::eventfd_signal(&signal))))
    }

    /// Wakes the threads asleep on the condition variable (a system call
    /// saved when there are none).
    pub(super) fn wake_sleepers(&self, shared: &Shared) {
        if self.sleepers > 0 {
            shared.callback_done.notify_all();
        }
    }

    /// One round under the lock, without waiting: dispatch and take what
    /// has arrived. For callers that must not block (submissions,
    /// `ready`).
    pub(super) fn harvest(&mut self) {
        if self.sched.driving {
            self.sched.dispatch();
            return;
        }
        if let Some(mut round) = self.sched.prepare(None) {
            round.fds.push(self.wake.raw());
            if let Ok(polled) = sys::poll_readable_set(&round.fds, Some(Duration::ZERO)) {
                self.finish(&round, &polled);
            }
        }
    }

    fn finish(&mut self, round: &super::scheduler::Round, polled: &[bool]) {
        if polled.last() == Some(&true) {
            sys::eventfd_drain(&self.wake);
        }
        self.sched.finish(round, polled, Instant::now());
    }

    /// Replaces the workers whose process has ended, without waiting. A
    /// round looks at the workers' exits only while there is work: an idle
    /// pool notices an idle worker's death here, or at the next send.
    pub(super) fn notice_deaths(&mut self) {
        let fds: Vec<_> = self.sched.workers.iter().map(|w| w.link.wait_fds()[1]).collect();
        let Ok(polled) = sys::poll_readable_set(&fds, Some(Duration::ZERO)) else {
            return;
        };
        // From the highest index: `on_death` may remove its worker.
        for i in (0..fds.len()).rev() {
            if polled.get(i) == Some(&true) {
                self.sched.on_death(i, Death::Ended);
            }
        }
    }
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Signalled after each of the driver's rounds, when it stops
    /// driving, and when a callback has run.
    pub(super) callback_done: Condvar,
    /// The process that created the pool: the only one that may use it.
    pub(super) owner: u32,
    /// The number of workers the pool keeps.
    pub(super) size: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared { .. }")
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, in the process that created the pool; an error in
    /// another (a fork child: the workers and their connections are the
    /// parent's).
    pub(super) fn enter(&self) -> Result<MutexGuard<'_, State>> {
        if !self.is_owner() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "a pool can only be used by the process that created it",
            ));
        }
        Ok(self.lock())
    }

    pub(super) fn is_owner(&self) -> bool {
        sys::getpid() == self.owner
    }
}

/// What a driving caller waits for.
pub(super) enum Check {
    /// It has happened.
    Done,
    /// Another thread is about to make it happen (it runs the callbacks
    /// of the job): wait for its signal.
    Wait,
    /// Results are needed.
    Pump,
}

/// Drives the pool until `check` says done, or `deadline` passes.
///
/// One thread at a time waits on the workers (the driver), and it does so
/// *without* holding the lock: other threads submit, look at results and
/// take them meanwhile, and the threads waiting for their own results
/// sleep on the condition variable, woken after each of the driver's
/// rounds. A thread that needs results while nobody drives becomes the
/// driver. A wait whose deadline has passed still takes one look before
/// it gives up (Python's `timeout=0` polls).
pub(super) fn drive<'a>(
    shared: &'a Shared,
    mut st: MutexGuard<'a, State>,
    deadline: Option<Instant>,
    mut check: impl FnMut(&mut State) -> Check,
) -> (MutexGuard<'a, State>, Result<()>) {
    loop {
        st = run_due(shared, st, true);
        let step = check(&mut st);
        if matches!(step, Check::Done) {
            return (st, Ok(()));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            // One look at what has arrived before giving up: nobody else
            // may have read it.
            if matches!(step, Check::Pump) && !st.sched.driving {
                st.harvest();
                st.wake_sleepers(shared);
                st = run_due(shared, st, true);
                if matches!(check(&mut st), Check::Done) {
                    return (st, Ok(()));
                }
            }
            return (
                st,
                Err(Error::new(ErrorKind::Timeout, "the pool's result is not ready yet")),
            );
        }
        if matches!(step, Check::Wait) || st.sched.driving {
            st.sleepers += 1;
            st = match deadline {
                None => shared.callback_done.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    shared
                        .callback_done
                        .wait_timeout(st, d.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            st.sleepers -= 1;
            continue;
        }
        let Some(mut round) = st.sched.prepare(deadline) else {
            st = run_due(shared, st, true);
            if matches!(check(&mut st), Check::Done) {
                return (st, Ok(()));
            }
            let e = Error::new(
                ErrorKind::InvalidState,
                "the pool has no work in progress that could produce this result",
            );
            return (st, Err(e));
        };
        round.fds.push(st.wake.raw());
        st.sched.driving = true;
        drop(st);
        let polled = sys::poll_readable_set(&round.fds, round.timeout);
        st = shared.lock();
        st.sched.driving = false;
        let polled = match polled {
            Ok(p) => p,
            Err(e) => {
                st.sched.retired.clear();
                st.wake_sleepers(shared);
                return (st, Err(Error::io("failed to wait for the pool's workers", e)));
            }
        };
        st.finish(&round, &polled);
        st.sched.retired.clear();
        st.wake_sleepers(shared);
    }
}

/// Runs the callbacks of finished jobs, without the lock, then the
/// callbacks added to them meanwhile. A callback's panic is resumed once
/// the pool's state is consistent (with `resume`; otherwise dropped: the
/// panic hook has reported it already); a panic that escapes the decoding
/// fails the job instead of leaving it running.
pub(super) fn run_due<'a>(shared: &'a Shared, mut st: MutexGuard<'a, State>, resume: bool) -> MutexGuard<'a, State> {
    let mut first_panic = None;
    while let Some(id) = st.sched.jobs.next_due() {
        let Some((on_done, out)) = st.sched.jobs.start_callbacks(id) else {
            continue;
        };
        drop(st);
        callbacks::enter(shared, id);
        let (verdict, lost, mut panic) = match panic::catch_unwind(AssertUnwindSafe(|| on_done(out))) {
            Ok(s) => (s.verdict, None, s.panic),
            Err(p) => {
                let e = Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "decoding the task's result panicked: {}",
                        crate::child::panic::payload_text(&*p)
                    ),
                );
                let v = Verdict {
                    failed: true,
                    error: Some(e.kind()),
                };
                (v, Some(e), Some(p))
            }
        };
        st = shared.lock();
        loop {
            let late = st
                .sched
                .jobs
                .get_mut(id)
                .map(|j| std::mem::take(&mut j.late))
                .unwrap_or_default();
            if late.is_empty() {
                break;
            }
            drop(st);
            for cb in late {
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| cb(lost.as_ref()))) {
                    panic.get_or_insert(p);
                }
            }
            st = shared.lock();
        }
        callbacks::leave();
        st.sched.jobs.end_callbacks(id, verdict, lost);
        st.wake_sleepers(shared);
        // A driver waiting on the workers may be waiting for this job.
        st.sched.nudge();
        if first_panic.is_none() {
            first_panic = panic;
        }
    }
    if let Some(p) = callbacks::settle_panic(first_panic) {
        if resume {
            drop(st);
            panic::resume_unwind(p);
        }
    }
    st
}

/// Removes `job`'s chunks that no worker has yet; `true` if there were any.
pub(super) fn cancel_job(shared: &Shared, job: u64, resume: bool) -> bool {
    let Ok(mut st) = shared.enter() else { return false };
    if !st.sched.cancel_job(job) {
        return false;
    }
    st.wake_sleepers(shared);
    drop(run_due(shared, st, resume));
    true
}

/// For a task awaiting `job` (its handle polled as a `Future`): takes what
/// has arrived without blocking, and says whether the job has finished;
/// if not, registers the task's waker, which is woken once it has (or
/// once it cannot), and makes sure a thread drives the pool meanwhile.
///
/// The pool has no thread of its own and an async task must not block,
/// so while results are awaited and no caller drives, one helper thread
/// per pool does ([`start_async_driver`]); it ends once nothing is
/// awaited. Whoever finishes a job (that thread, or any caller driving or
/// taking results) wakes its wakers.
pub(super) fn poll_job(shared: &Arc<Shared>, job: u64, cx: &mut Context<'_>) -> Poll<Result<()>> {
    poll_job_until(shared, job, cx, false, Job::finished)
}

/// [`poll_job`] until `ready` holds for the job (with `each`, its waker is
/// woken at each task's end, to look again).
pub(super) fn poll_job_until(
    shared: &Arc<Shared>,
    job: u64,
    cx: &mut Context<'_>,
    each: bool,
    ready: impl Fn(&Job) -> bool,
) -> Poll<Result<()>> {
    if callbacks::in_callback_of(&**shared, job) {
        return Poll::Ready(Err(Error::new(
            ErrorKind::InvalidState,
            "a callback cannot wait for the result it is called with",
        )));
    }
    poll_jobs(shared, cx, |st| match st.sched.jobs.get(job) {
        Some(j) if !ready(j) => Look::Await { jobs: vec![job], each },
        _ => Look::Ready(()),
    })
}

/// What a task awaiting one or several jobs found ([`poll_jobs`]).
pub(super) enum Look<T> {
    /// What it waits for has happened: this is the answer.
    Ready(T),
    /// Not yet: wake the task when one of `jobs` finishes (or cannot);
    /// with `each`, also when any of their tasks ends.
    Await { jobs: Vec<u64>, each: bool },
}

/// The async form of [`drive`]: takes what has arrived without blocking,
/// runs due callbacks, then lets `look` decide under the lock. When it
/// says [`Look::Await`], registers the task's waker with each job named
/// and makes sure a thread drives the pool meanwhile (see [`poll_job`]).
/// A job that the pool can no longer finish ends the await with the
/// reason (the job's `async_error`).
pub(super) fn poll_jobs<T>(
    shared: &Arc<Shared>,
    cx: &mut Context<'_>,
    look: impl FnOnce(&mut State) -> Look<T>,
) -> Poll<Result<T>> {
    let mut st = match shared.enter() {
        Ok(st) => st,
        Err(e) => return Poll::Ready(Err(e)),
    };
    st.harvest();
    let mut st = run_due(shared, st, true);
    let (jobs, each) = match look(&mut st) {
        Look::Ready(v) => return Poll::Ready(Ok(v)),
        Look::Await { jobs, each } => (jobs, each),
    };
    for &job in &jobs {
        if let Some(e) = st.sched.jobs.get_mut(job).and_then(|j| j.async_error.take()) {
            return Poll::Ready(Err(e));
        }
    }
    for &job in &jobs {
        st.sched.jobs.register(job, cx.waker(), each);
    }
    // A lingering driver thread waits for this.
    st.wake_sleepers(shared);
    if let Err(e) = start_async_driver(shared, &mut st) {
        return Poll::Ready(Err(e));
    }
    Poll::Pending
}

/// Starts the pool's async driver thread unless it runs.
fn start_async_driver(shared: &Arc<Shared>, st: &mut State) -> Result<()> {
    if st.async_driver {
        return Ok(());
    }
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("multiproc-pool-driver".into())
        .spawn(move || async_driver(&shared))
        .map_err(|e| Error::io("failed to start the pool's driver thread for awaited results", e))?;
    st.async_driver = true;
    Ok(())
}

/// How long the async driver thread stays once nothing is awaited, for
/// the next await (one thread start per await would cost more than the
/// await itself).
const ASYNC_LINGER: Duration = Duration::from_millis(100);

/// The async driver thread: drives the pool while some job is awaited,
/// and lingers a little for the next await. A job that no work in
/// progress can finish fails its await. A callback's panic (the panic
/// hook has reported it) does not end it.
fn async_driver(shared: &Shared) {
    loop {
        let ended = panic::catch_unwind(AssertUnwindSafe(|| {
            let mut st = shared.lock();
            loop {
                let r;
                (st, r) = drive(shared, st, None, |st| {
                    if st.sched.jobs.awaited() {
                        Check::Pump
                    } else {
                        Check::Done
                    }
                });
                if let Err(e) = r {
                    st.sched.jobs.fail_awaits(&e);
                    break;
                }
                let until = Instant::now() + ASYNC_LINGER;
                while !st.sched.jobs.awaited() && Instant::now() < until {
                    st.sleepers += 1;
                    st = shared
                        .callback_done
                        .wait_timeout(st, until.saturating_duration_since(Instant::now()))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    st.sleepers -= 1;
                }
                if !st.sched.jobs.awaited() || !shared.is_owner() {
                    break;
                }
            }
            st.async_driver = false;
        }));
        if ended.is_ok() {
            return;
        }
    }
}
