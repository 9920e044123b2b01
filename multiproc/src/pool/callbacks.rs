//! Callbacks: Python's `callback` and `error_callback`, the executor's
//! done callbacks, and which thread runs them.
//!
//! A job with callbacks carries an [`OnDone`]: it decodes the job's output
//! into the handle's typed slot ([`Kept`]) and calls the user's callback
//! with a reference to it; `get` then takes the value from the slot. The
//! callbacks run in whichever caller drives or submits when the job
//! finishes, without the pool's lock (`driver::run_due`).

use std::{
    any::Any,
    cell::{Cell, RefCell},
    panic::{self, AssertUnwindSafe},
    sync::{Arc, Mutex, PoisonError},
};

use serde::de::DeserializeOwned;

use super::{
    decode::decode_output,
    job::{LateCallback, OnDone, Summary, Verdict},
};
use crate::error::{Error, Result};

/// A callback on a value.
pub(super) type ValueCallback<T> = Box<dyn FnOnce(&T) + Send>;

/// A callback on an error.
pub(super) type ErrorCallback = Box<dyn FnOnce(&Error) + Send>;

/// A done callback of one task (an executor future's).
pub(super) type DoneCallback<R> = Box<dyn FnOnce(std::result::Result<&R, &Error>) + Send>;

/// Where the callbacks of a job leave its decoded results, for `get`.
pub(super) type Kept<R> = Arc<Mutex<Option<Result<Vec<R>>>>>;

/// A new, empty slot.
pub(super) fn kept<R>() -> Kept<R> {
    Arc::new(Mutex::new(None))
}

/// Takes the decoded results out of `slot`.
pub(super) fn take_kept<R>(slot: &Kept<R>) -> Option<Result<Vec<R>>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Python's `callback` and `error_callback` for
/// [`Pool::apply_async_with`](crate::Pool::apply_async_with) (`T` is the
/// result type) and [`Pool::map_async_with`](crate::Pool::map_async_with)
/// (`T` is `[R]`).
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

fn verdict_of<R>(r: &Result<Vec<R>>) -> Verdict {
    Verdict {
        failed: r.is_err(),
        error: r.as_ref().err().map(Error::kind),
    }
}

/// Stores `r` in `slot` and says what it was.
fn keep<R>(slot: &Kept<R>, r: Result<Vec<R>>) -> Verdict {
    let verdict = verdict_of(&r);
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
    verdict
}

/// The end of a job with callbacks: decodes its `len` results into
/// `slot`, calls the right callback (catching its panic).
pub(super) fn on_done<R: DeserializeOwned + Send + 'static>(
    len: usize,
    value: Option<ValueCallback<[R]>>,
    error: Option<ErrorCallback>,
    slot: Kept<R>,
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
        Summary {
            verdict: keep(&slot, r),
            panic,
        }
    })
}

/// `old` (the job's callbacks so far, if any, which fill `slot`), then
/// `f` with the result: how a callback is added to a one-task job after
/// its submission.
pub(super) fn chain<R: DeserializeOwned + Send + 'static>(
    old: Option<OnDone>,
    f: DoneCallback<R>,
    slot: Kept<R>,
) -> OnDone {
    Box::new(move |out| {
        let done = match old {
            Some(old) => old(out),
            None => Summary {
                verdict: keep(&slot, decode_output::<R>(out, 1)),
                panic: None,
            },
        };
        let panic = panic::catch_unwind(AssertUnwindSafe(|| call_with_one(f, &slot, None))).err();
        Summary {
            panic: done.panic.or(panic),
            ..done
        }
    })
}

/// `f` to run right after the callbacks running now (see
/// [`LateCallback`]).
pub(super) fn late<R: Send + 'static>(f: DoneCallback<R>, slot: Kept<R>) -> LateCallback {
    Box::new(move |lost| call_with_one(f, &slot, lost))
}

/// Calls `f` with the first result in `slot` (or with the error that
/// stands for it when decoding failed).
fn call_with_one<R>(f: DoneCallback<R>, slot: &Kept<R>, lost: Option<&Error>) {
    let held = slot.lock().unwrap_or_else(PoisonError::into_inner);
    match (&*held, lost) {
        (Some(Ok(values)), _) => {
            if let Some(one) = values.first() {
                f(Ok(one));
            }
        }
        (Some(Err(e)), _) | (None, Some(e)) => f(Err(e)),
        (None, None) => {}
    }
}

thread_local! {
    /// The jobs whose callbacks this thread is running, innermost last
    /// (pool address, job): a callback that drives the pool can run
    /// another's.
    static IN_CALLBACK: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
    /// A panic of a callback run inside another callback, for the
    /// outermost call to resume.
    static STASHED_PANIC: Cell<Option<Box<dyn Any + Send>>> = const { Cell::new(None) };
}

/// The key of `job` of the pool whose state is at `pool`.
fn key<T>(pool: &T, job: u64) -> (usize, u64) {
    (std::ptr::from_ref(pool) as usize, job)
}

/// Whether this thread is running the callbacks of `job` of `pool`,
/// however deeply nested: waiting for that job would never end.
pub(super) fn in_callback_of<T>(pool: &T, job: u64) -> bool {
    let key = key(pool, job);
    IN_CALLBACK.with_borrow(|v| v.contains(&key))
}

/// This thread starts running the callbacks of `job` of `pool`.
pub(super) fn enter<T>(pool: &T, job: u64) {
    let key = key(pool, job);
    IN_CALLBACK.with_borrow_mut(|v| v.push(key));
}

/// This thread is done with the innermost callbacks it ran.
pub(super) fn leave() {
    IN_CALLBACK.with_borrow_mut(|v| v.pop());
}

/// What to do with a callback's panic `p` (or a stashed one) once the
/// pool's state is consistent: inside another callback, it is kept for
/// the outermost call; otherwise it is returned, to resume.
pub(super) fn settle_panic(p: Option<Box<dyn Any + Send>>) -> Option<Box<dyn Any + Send>> {
    let stashed = STASHED_PANIC.take();
    let p = p.or(stashed)?;
    if IN_CALLBACK.with_borrow(|v| !v.is_empty()) {
        STASHED_PANIC.set(Some(p));
        None
    } else {
        Some(p)
    }
}
