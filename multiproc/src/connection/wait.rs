//! Readiness over connections, queues, processes and descriptors together
//! (Python's `multiprocessing.connection.wait`).
//!
//! Descriptors (connections, process sentinels, raw descriptors) are
//! watched with one `poll`, so they wake the caller at once. A queue lives
//! in shared memory; with nothing else to watch, a single queue is awaited
//! on its futex. In a mixed wait, each queue's eventfd joins the `poll`:
//! the caller registers as a watcher of the queue, and a put signals the
//! eventfd while anyone watches (design in `crate::queue`). After every
//! wake, whatever woke it, every object is looked at again, and all that
//! are ready are returned, as Python's `wait` does. The `poll` lasts at
//! most [`QUEUE_SLICE`] while queues are watched: the only wake a queue can
//! miss is that of a putter killed between committing its item and
//! signalling, which the next look finds.

use std::time::{Duration, Instant};

use crate::{
    Process, Queue,
    connection::{Connection, deadline},
    error::{Error, Result},
    sys::{self, RawFd},
};

/// Longest interval between two looks at the queues of a mixed wait when
/// nothing wakes it. A put wakes a waiting [`wait`] at once; this bound
/// only matters for a putter killed between committing its item and
/// signalling the waiters.
pub const QUEUE_SLICE: Duration = Duration::from_millis(100);

/// Something [`wait`] can watch. Build one with `From`/`into()` from a
/// `&Connection`, `&Queue<T>`, `&Process<R>` or a `BorrowedFd` (on
/// Windows a `BorrowedHandle`).
pub struct Waitable<'a>(Kind<'a>);

enum Kind<'a> {
    Connection(&'a Connection),
    Queue(&'a (dyn QueueReady + Sync)),
    /// A descriptor that is ready when readable (a process sentinel, a
    /// socket); `None` for a process that was not started here.
    Fd(Option<RawFd>),
}

/// The part of a queue that `wait` needs, without its item type.
trait QueueReady {
    fn ready_now(&self) -> bool;
    fn wait_one(&self, deadline: Option<Instant>) -> bool;
    fn watch(&self);
    fn unwatch(&self);
    fn ready_fd(&self) -> RawFd;
    fn rearm(&self) -> bool;
}

impl<T> QueueReady for Queue<T> {
    fn ready_now(&self) -> bool {
        Queue::ready_now(self)
    }
    fn wait_one(&self, deadline: Option<Instant>) -> bool {
        Queue::wait_ready(self, deadline)
    }
    fn watch(&self) {
        Queue::watch(self);
    }
    fn unwatch(&self) {
        Queue::unwatch(self);
    }
    fn ready_fd(&self) -> RawFd {
        Queue::ready_fd(self)
    }
    fn rearm(&self) -> bool {
        Queue::rearm(self)
    }
}

/// The queues of one mixed wait, watched until it returns (or until an
/// async wait's future is dropped).
pub(crate) struct Watching<'a>(Vec<&'a (dyn QueueReady + Sync)>);

impl<'a> Watching<'a> {
    pub(crate) fn new(objects: &[Waitable<'a>]) -> Watching<'a> {
        let queues: Vec<&'a (dyn QueueReady + Sync)> = objects
            .iter()
            .filter_map(|o| match o.0 {
                Kind::Queue(q) => Some(q),
                _ => None,
            })
            .collect();
        for q in &queues {
            q.watch();
        }
        Watching(queues)
    }

    /// `true` when no queue is watched.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The descriptor `wait` polls for each object (`-1`: none).
pub(crate) fn descriptors(objects: &[Waitable<'_>]) -> Vec<RawFd> {
    objects
        .iter()
        .map(|o| match o.0 {
            // A send-only end never has anything to receive.
            Kind::Connection(c) if !c.readable() => -1,
            Kind::Connection(c) => c.raw_fd(),
            Kind::Queue(q) => q.ready_fd(),
            Kind::Fd(Some(fd)) => fd,
            Kind::Fd(None) => -1,
        })
        .collect()
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        for q in &self.0 {
            q.unwatch();
        }
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
        Waitable(Kind::Fd(p.sentinel_fd()))
    }
}

#[cfg(unix)]
impl<'a> From<std::os::fd::BorrowedFd<'a>> for Waitable<'a> {
    fn from(fd: std::os::fd::BorrowedFd<'a>) -> Waitable<'a> {
        use std::os::fd::AsRawFd;
        Waitable(Kind::Fd(Some(fd.as_raw_fd())))
    }
}

/// A handle that is signalled when its object is ready (a process, an
/// event): [`wait`] checks it with a zero-time wait.
#[cfg(windows)]
impl<'a> From<std::os::windows::io::BorrowedHandle<'a>> for Waitable<'a> {
    fn from(h: std::os::windows::io::BorrowedHandle<'a>) -> Waitable<'a> {
        use std::os::windows::io::AsRawHandle;
        Waitable(Kind::Fd(Some(sys::raw_of_handle(h.as_raw_handle()))))
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
/// Every object is looked at again after the wait wakes, whatever woke it,
/// and all that are ready then are returned. So items a process put before
/// it ended are reported with its end: the loop "wait; drain the queue if
/// it is ready; stop once the process is ready and the queue is not" loses
/// nothing.
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
    if let [Waitable(Kind::Queue(q))] = objects {
        // A lone queue: its futex, no descriptor at all.
        loop {
            if q.ready_now() {
                return Ok(vec![0]);
            }
            if !q.wait_one(deadline) {
                return Ok(Vec::new());
            }
        }
    }
    let watching = Watching::new(objects);
    let fds = descriptors(objects);
    let mut ready = Vec::new();
    loop {
        // What is ready without asking the kernel (a queue that looks empty
        // has its eventfd reset and is looked at again).
        for (i, o) in objects.iter().enumerate() {
            let now = match o.0 {
                Kind::Connection(c) => c.readable() && c.ready_now() == Some(true),
                Kind::Queue(q) => q.ready_now() || q.rearm(),
                Kind::Fd(None) => true,
                Kind::Fd(Some(_)) => false,
            };
            if now {
                ready.push(i);
            }
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // With something ready already, the descriptors are only looked at,
        // so that every ready object is reported.
        let slice = if !ready.is_empty() {
            Some(Duration::ZERO)
        } else if watching.is_empty() {
            left
        } else {
            Some(left.map_or(QUEUE_SLICE, |l| l.min(QUEUE_SLICE)))
        };
        let polled = sys::poll_readable_set(&fds, slice).map_err(|e| Error::io("failed to wait", e))?;
        // After the wake, whatever woke it: every object again.
        for (i, (o, polled)) in objects.iter().zip(polled).enumerate() {
            let now = match o.0 {
                Kind::Queue(q) => q.ready_now(),
                Kind::Connection(c) => polled || (c.readable() && c.ready_now() == Some(true)),
                Kind::Fd(_) => polled,
            };
            if now && !ready.contains(&i) {
                ready.push(i);
            }
        }
        if !ready.is_empty() || left == Some(Duration::ZERO) {
            ready.sort_unstable();
            return Ok(ready);
        }
    }
}
