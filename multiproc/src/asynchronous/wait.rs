//! [`wait_async`]: [`wait`](crate::wait) as a future.

use std::{
    future::poll_fn,
    task::Poll,
    time::{Duration, Instant},
};

use super::reactor::{Alarm, Readiness};
use crate::{
    QUEUE_SLICE, Waitable,
    connection::{Watching, deadline, wait_descriptors},
    error::{Error, Result},
    wait,
};

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no limit): [`wait`](crate::wait) as a future, with the same
/// answer (the indexes of the objects ready, in order; empty on timeout).
///
/// Every descriptor (connections, process sentinels, queues' eventfds,
/// raw descriptors) waits in the reactor; the queues count the future as
/// a watcher, so a put wakes it, and are looked at every
/// [`QUEUE_SLICE`] as well. Each wake looks at every object again with
/// `wait(objects, Some(Duration::ZERO))`. Dropping the future consumes
/// nothing.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let (a, b) = multiproc::pipe(true)?;
/// let q = multiproc::Queue::<u8>::new()?;
/// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// rt.block_on(async {
///     let objects = [(&b).into(), (&q).into()];
///     let none = multiproc::wait_async(&objects, Some(Duration::from_millis(10))).await?;
///     assert!(none.is_empty());
///     q.put(1)?;
///     assert_eq!(multiproc::wait_async(&objects, None).await?, [1]);
///     a.send(2u8)?;
///     assert_eq!(multiproc::wait_async(&objects, None).await?, [0, 1]);
///     Ok(())
/// })
/// # }
/// ```
///
/// # Errors
///
/// As for [`wait`](crate::wait), and [`ErrorKind::Io`](crate::ErrorKind::Io)
/// if the reactor refuses a descriptor.
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub async fn wait_async(objects: &[Waitable<'_>], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let end = timeout.map(deadline);
    // Registered for the whole wait: a put signals the eventfds meanwhile.
    let watching = Watching::new(objects);
    let fds = wait_descriptors(objects);
    let mut registered: Option<Vec<Readiness>> = None;
    let mut alarm = Alarm::new();
    let mut slice = Alarm::new();
    let mut look = Instant::now() + QUEUE_SLICE;
    poll_fn(|cx| {
        loop {
            let ready = wait(objects, Some(Duration::ZERO))?;
            if !ready.is_empty() || end.is_some_and(|e| Instant::now() >= e) {
                return Poll::Ready(Ok(ready));
            }
            let regs = match &mut registered {
                Some(r) => r,
                None => {
                    let mut regs = Vec::with_capacity(fds.len());
                    for &fd in fds.iter().filter(|&&fd| fd >= 0) {
                        regs.push(Readiness::new(fd).map_err(|e| Error::io("failed to wait", e))?);
                    }
                    registered.insert(regs)
                }
            };
            let mut woken = false;
            for r in regs.iter() {
                match r.poll_readable(cx) {
                    Poll::Ready(Ok(())) => woken = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("failed to wait", e))),
                    Poll::Pending => {}
                }
            }
            if woken {
                continue;
            }
            if let Some(e) = end {
                if alarm.poll_at(e, cx).is_ready() {
                    continue;
                }
            }
            if !watching.is_empty() && slice.poll_at(look, cx).is_ready() {
                look = Instant::now() + QUEUE_SLICE;
                continue;
            }
            return Poll::Pending;
        }
    })
    .await
}
