//! Readiness of descriptors and timers, from async-io's reactor.

use std::{
    future::Future,
    io,
    os::fd::{AsFd, BorrowedFd, RawFd},
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use async_io::{Async, Timer};

use crate::sys::Fd;

/// A descriptor registered with the reactor: a duplicate of the caller's,
/// so that two futures may wait on one descriptor at once (the kernel's
/// epoll refuses one number twice) and the caller's descriptor keeps its
/// blocking mode (the duplicate shares it, and is never switched to
/// non-blocking: every operation here asks for non-blocking itself).
#[derive(Debug)]
pub(crate) struct Readiness(Async<Dup>);

/// The duplicate, as the reactor takes it.
#[derive(Debug)]
struct Dup(Fd);

impl AsFd for Dup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.borrow()
    }
}

impl Readiness {
    pub(crate) fn new(fd: RawFd) -> io::Result<Readiness> {
        Async::new_nonblocking(Dup(Fd::dup_raw(fd)?)).map(Readiness)
    }

    /// `Ready` once the descriptor has been readable (or hung up, or in
    /// error) since the last `Pending`; registers the waker otherwise.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_readable(cx)
    }

    /// As [`poll_readable`](Self::poll_readable), for room to write.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_writable(cx)
    }
}

/// Registers `fd` on first use.
pub(crate) fn registered(slot: &mut Option<Readiness>, fd: RawFd) -> io::Result<&Readiness> {
    match slot {
        Some(r) => Ok(r),
        None => Ok(slot.insert(Readiness::new(fd)?)),
    }
}

/// A timer that can be moved to another instant.
#[derive(Debug)]
pub(crate) struct Alarm(Option<(Instant, Timer)>);

impl Alarm {
    pub(crate) fn new() -> Alarm {
        Alarm(None)
    }

    /// `Ready` once `at` has passed; registers the waker otherwise.
    pub(crate) fn poll_at(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= at {
            return Poll::Ready(());
        }
        let timer = match &mut self.0 {
            Some((when, timer)) if *when == at => timer,
            slot => &mut slot.insert((at, Timer::at(at))).1,
        };
        Pin::new(timer).poll(cx).map(drop)
    }
}
