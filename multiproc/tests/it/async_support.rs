//! Running async scenarios under tokio's two runtimes, and polling a
//! future by hand (to drop it half-way at a known point).
#![cfg(feature = "async")]

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

/// Runs `make()` to completion on a current-thread runtime.
pub(crate) fn current_thread<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
        .block_on(fut)
}

/// Runs `fut` as a task of a two-worker multi-thread runtime.
pub(crate) fn multi_thread<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a multi-thread runtime");
    rt.block_on(async { tokio::spawn(fut).await.expect("the task panicked") })
}

/// Polls `fut` once, with a waker that does nothing.
pub(crate) fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}
