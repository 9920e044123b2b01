//! Readiness over connections, queues, processes and descriptors together
//! (Python's `multiprocessing.connection.wait`).
//!
//! Descriptors (connections, process sentinels, raw descriptors) are
//! watched with one `poll`, so they wake the caller at once. A queue lives
//! in shared memory and has no descriptor: with nothing else to watch, a
//! single queue is awaited on its futex; otherwise queues are looked at
//! between `poll` slices of at most [`QUEUE_SLICE`], which bounds how late
//! a queue's readiness is noticed in a mixed wait.

use std::{
    os::fd::{AsRawFd, BorrowedFd, RawFd},
    time::{Duration, Instant},
};

use crate::{
    Process, Queue,
    connection::{Connection, deadline},
    error::{Error, Result},
    sys,
};

/// Longest interval between two looks at the queues of a mixed wait.
pub const QUEUE_SLICE: Duration = Duration::from_millis(2);

/// Something [`wait`] can watch. Build one with `From`/`into()` from a
/// `&Connection`, `&Queue<T>`, `&Process<R>` or a `BorrowedFd`.
pub struct Waitable<'a>(Kind<'a>);

enum Kind<'a> {
    Connection(&'a Connection),
    Queue(&'a dyn QueueReady),
    /// A descriptor that is ready when readable (a process sentinel, a
    /// socket); `None` for a process that was not started here.
    Fd(Option<RawFd>),
}

/// The part of a queue that `wait` needs, without its item type.
trait QueueReady {
    fn ready_now(&self) -> bool;
    fn wait_one(&self, deadline: Option<Instant>) -> bool;
}

impl<T> QueueReady for Queue<T> {
    fn ready_now(&self) -> bool {
        Queue::ready_now(self)
    }
    fn wait_one(&self, deadline: Option<Instant>) -> bool {
        Queue::wait_ready(self, deadline)
    }
}

impl<'a> From<&'a Connection> for Waitable<'a> {
    fn from(c: &'a Connection) -> Waitable<'a> {
        Waitable(Kind::Connection(c))
    }
}

impl<'a, T> From<&'a Queue<T>> for Waitable<'a> {
    fn from(q: &'a Queue<T>) -> Waitable<'a> {
        Waitable(Kind::Queue(q))
    }
}

impl<'a, R> From<&'a Process<R>> for Waitable<'a> {
    /// Ready when the process has ended (or was never started here).
    fn from(p: &'a Process<R>) -> Waitable<'a> {
        Waitable(Kind::Fd(p.sentinel().map(|fd| fd.as_raw_fd())))
    }
}

impl<'a> From<BorrowedFd<'a>> for Waitable<'a> {
    fn from(fd: BorrowedFd<'a>) -> Waitable<'a> {
        Waitable(Kind::Fd(Some(fd.as_raw_fd())))
    }
}

impl std::fmt::Debug for Waitable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::Connection(c) => f.debug_tuple("Waitable").field(c).finish(),
            Kind::Queue(_) => f.write_str("Waitable(Queue)"),
            Kind::Fd(fd) => f.debug_tuple("Waitable").field(fd).finish(),
        }
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no limit); returns the indexes of those ready, in order (empty
/// on timeout).
///
/// Ready means: a connection has something to receive (a message, the end
/// of the stream, or an error to report), a queue holds an item, a
/// process has ended, a descriptor is readable. A process that was not
/// started here counts as ready. For a queue, "ready" is advice: another
/// consumer may take the item first.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// use std::time::Duration;
/// let (a, b) = multiproc::pipe(true)?;
/// let q = multiproc::Queue::<u8>::new()?;
/// assert!(multiproc::wait(&[(&b).into(), (&q).into()], Some(Duration::ZERO))?.is_empty());
/// q.put(1)?;
/// a.send(2u8)?;
/// assert_eq!(multiproc::wait(&[(&b).into(), (&q).into()], Some(Duration::from_secs(5)))?, [0, 1]);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) if `poll` fails (an invalid
/// descriptor is reported as ready, not as an error).
pub fn wait(objects: &[Waitable<'_>], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.map(deadline);
    let fds: Vec<RawFd> = objects
        .iter()
        .map(|o| match o.0 {
            // A send-only end never has anything to receive.
            Kind::Connection(c) if !c.readable() => -1,
            Kind::Connection(c) => c.as_raw_fd(),
            Kind::Fd(Some(fd)) => fd,
            Kind::Fd(None) | Kind::Queue(_) => -1,
        })
        .collect();
    let queues = objects.iter().filter(|o| matches!(o.0, Kind::Queue(_))).count();
    loop {
        let mut ready: Vec<usize> = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| match o.0 {
                Kind::Connection(c) => c.readable() && c.ready_now() == Some(true),
                Kind::Queue(q) => q.ready_now(),
                Kind::Fd(None) => true,
                Kind::Fd(Some(_)) => false,
            })
            .map(|(i, _)| i)
            .collect();
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // Look at the descriptors without waiting if something is ready
        // already, so that every ready object is reported.
        let mut slice = if ready.is_empty() { left } else { Some(Duration::ZERO) };
        if queues == objects.len() && queues == 1 && ready.is_empty() {
            if let Kind::Queue(q) = objects[0].0 {
                if q.wait_one(deadline) {
                    continue;
                }
                return Ok(Vec::new());
            }
        }
        if queues > 0 && ready.is_empty() {
            slice = Some(slice.map_or(QUEUE_SLICE, |s| s.min(QUEUE_SLICE)));
        }
        let polled = sys::poll_readable_set(&fds, slice).map_err(|e| Error::io("failed to wait", e))?;
        for (i, r) in polled.into_iter().enumerate() {
            if r && !ready.contains(&i) {
                ready.push(i);
            }
        }
        ready.sort_unstable();
        if !ready.is_empty() || left == Some(Duration::ZERO) {
            return Ok(ready);
        }
    }
}
