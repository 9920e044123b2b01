//! [`Process::join_async`]: the child's pidfd as a readable descriptor.

use std::{future::poll_fn, task::Poll, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use super::reactor::{Alarm, registered};
use crate::{
    Process,
    error::{Error, ErrorKind, Result},
};

impl<R> Process<R>
where
    R: Serialize + DeserializeOwned + 'static,
{
    /// Waits for the child to end and returns the target's result:
    /// [`join`](Self::join) as a future.
    ///
    /// It waits on the child's pidfd (its [`sentinel`](Self::sentinel))
    /// through the reactor, and on a timer for the bootstrap deadline
    /// while the child has not reached its entry point. Dropping the
    /// future loses nothing: the child and its outcome stay with the
    /// handle, and a later `join` or `join_async` returns them.
    ///
    /// ```
    /// fn double(x: u32) -> u32 {
    ///     2 * x
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut p = multiproc::spawn(double, 21)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// assert_eq!(rt.block_on(p.join_async())?, 42);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`join`](Self::join).
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn join_async(&mut self) -> Result<R> {
        let mut readiness = None;
        let mut alarm = Alarm::new();
        poll_fn(|cx| {
            loop {
                match self.join_timeout(Duration::ZERO) {
                    Err(e) if e.kind() == ErrorKind::Timeout => {}
                    r => return Poll::Ready(r),
                }
                let Some(fd) = self.sentinel_fd() else {
                    // A process that is running here has a pidfd.
                    return Poll::Ready(Err(Error::new(
                        ErrorKind::InvalidState,
                        "a running child has no sentinel to wait on",
                    )));
                };
                let r = registered(&mut readiness, fd).map_err(|e| Error::io("failed to wait for the child", e))?;
                match r.poll_readable(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("failed to wait for the child", e))),
                    Poll::Pending => {}
                }
                if let Some(at) = self.boot_deadline() {
                    if alarm.poll_at(at, cx).is_ready() {
                        continue;
                    }
                }
                return Poll::Pending;
            }
        })
        .await
    }
}
