//! Readiness of descriptors and timers, from async-io's reactor.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

#[cfg(unix)]
use async_io::Async;
use async_io::Timer;

use crate::sys::{Fd, RawFd};

/// A descriptor registered with the reactor: a duplicate of the caller's,
/// so that two futures may wait on one descriptor at once (the kernel's
/// epoll refuses one number twice) and the caller's descriptor keeps its
/// blocking mode (the duplicate shares it, and is never switched to
/// non-blocking: every operation here asks for non-blocking itself).
#[cfg(unix)]
#[derive(Debug)]
pub(crate) struct Readiness(Async<Dup>);

/// The duplicate, as the reactor takes it.
#[cfg(unix)]
#[derive(Debug)]
struct Dup(Fd);

#[cfg(unix)]
impl std::os::fd::AsFd for Dup {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.borrow()
    }
}

#[cfg(unix)]
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

/// A handle watched by the reactor's timers (Windows: async-io's reactor
/// takes only sockets, and a pipe, process or event handle is none). Each
/// poll looks at the handle without waiting and, when it is not ready,
/// asks to be polled again after [`HANDLE_POLL`]: futures work, with that
/// much latency, until a completion-port reactor replaces this.
#[cfg(windows)]
#[derive(Debug)]
pub(crate) struct Readiness {
    fd: Fd,
    timer: std::sync::Mutex<Timer>,
}

/// How often a [`Readiness`] on Windows looks at its handle again.
#[cfg(windows)]
const HANDLE_POLL: std::time::Duration = std::time::Duration::from_millis(2);

#[cfg(windows)]
impl Readiness {
    pub(crate) fn new(fd: RawFd) -> io::Result<Readiness> {
        Ok(Readiness {
            fd: Fd::dup_raw(fd)?,
            timer: std::sync::Mutex::new(Timer::after(HANDLE_POLL)),
        })
    }

    /// `Ready` once the handle is readable (or hung up, or signalled).
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.fd.poll_readable(Some(std::time::Duration::ZERO))? {
            return Poll::Ready(Ok(()));
        }
        let mut timer = self.timer.lock().unwrap_or_else(|e| e.into_inner());
        timer.set_after(HANDLE_POLL);
        match Pin::new(&mut *timer).poll(cx) {
            // Due already: let the caller retry at once.
            Poll::Ready(_) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// A pipe's writes on Windows wait for room themselves: always
    /// `Ready`, the caller's non-blocking send says how much went.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
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
