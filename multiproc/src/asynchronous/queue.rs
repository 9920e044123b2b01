//! The queues' async puts and gets.

use std::{future::poll_fn, task::Poll, time::Instant};

use serde::{Serialize, de::DeserializeOwned};

use super::reactor::{Alarm, registered};
use crate::{
    QUEUE_SLICE, Queue, SimpleQueue,
    error::Error,
    error::channel::{RecvError, SendError, TryRecvError, TrySendError},
};

/// Counts the caller as a watcher of the queue (a put then signals its
/// eventfd) until dropped.
struct Watch<'a, T>(&'a Queue<T>);

impl<'a, T> Watch<'a, T> {
    fn new(q: &'a Queue<T>) -> Watch<'a, T> {
        q.watch();
        Watch(q)
    }
}

impl<T> Drop for Watch<'_, T> {
    fn drop(&mut self) {
        self.0.unwatch();
    }
}

/// Counts the caller as a watcher of the queue's room (a get then signals
/// its room eventfd) until dropped.
struct RoomWatch<'a, T>(&'a Queue<T>);

impl<'a, T> RoomWatch<'a, T> {
    fn new(q: &'a Queue<T>) -> RoomWatch<'a, T> {
        q.watch_room();
        RoomWatch(q)
    }
}

impl<T> Drop for RoomWatch<'_, T> {
    fn drop(&mut self) {
        self.0.unwatch_room();
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Queue<T> {
    /// Takes the oldest item: [`get`](Self::get) as a future.
    ///
    /// While it waits, the future counts as a watcher of the queue, so a
    /// put in any process wakes it through the queue's eventfd (as for
    /// [`wait`](crate::wait)); it also looks at the queue every
    /// [`QUEUE_SLICE`], for an item whose putter was killed before it could
    /// signal. Dropping the future takes nothing: an item is taken only by
    /// the poll that returns it.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::Queue::<String>::new()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    /// rt.block_on(async {
    ///     let getter = tokio::spawn({
    ///         let q = q.clone();
    ///         async move { q.get_async().await }
    ///     });
    ///     q.put_async("hello".to_string()).await?;
    ///     assert_eq!(getter.await??, "hello");
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn get_async(&self) -> Result<T, RecvError> {
        match self.try_get() {
            Err(TryRecvError::Empty) => {}
            r => return r.map_err(recv_error),
        }
        let _watch = Watch::new(self);
        let mut readiness = None;
        let mut alarm = Alarm::new();
        let mut look = Instant::now() + QUEUE_SLICE;
        poll_fn(|cx| {
            loop {
                match self.try_get() {
                    Err(TryRecvError::Empty) => {}
                    r => return Poll::Ready(r.map_err(recv_error)),
                }
                // The eventfd is shared and level-triggered: reset it while
                // the queue is empty, and look again (see `crate::queue`).
                if self.rearm() {
                    continue;
                }
                let r = registered(&mut readiness, self.ready_fd())
                    .map_err(|e| RecvError::Failed(Error::io("failed to wait on the queue", e)))?;
                match r.poll_readable(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(RecvError::Failed(Error::io("failed to wait on the queue", e))));
                    }
                    Poll::Pending => {}
                }
                if alarm.poll_at(look, cx).is_ready() {
                    look = Instant::now() + QUEUE_SLICE;
                    continue;
                }
                return Poll::Pending;
            }
        })
        .await
    }

    /// Puts `value`: [`put`](Self::put) as a future, which waits for room
    /// in a bounded queue without blocking the thread.
    ///
    /// While the queue is full, the future counts as a watcher of its room,
    /// so a get in any process (or the queue's end) wakes it through the
    /// queue's room eventfd; it also looks at the queue every
    /// [`QUEUE_SLICE`], for a getter killed before it could signal.
    /// Dropping the future puts nothing (the value is dropped with it); an
    /// item is put only by the poll that returns `Ok`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::Queue::<u32>::bounded(1)?;
    /// q.put(1)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let putter = tokio::spawn({
    ///         let q = q.clone();
    ///         async move { q.put_async(2).await }
    ///     });
    ///     // The get makes room: it wakes the waiting put.
    ///     assert_eq!(q.get_async().await?, 1);
    ///     putter.await??;
    ///     assert_eq!(q.get_async().await?, 2);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`put`](Self::put).
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn put_async(&self, value: T) -> Result<(), SendError<T>> {
        let value = match self.try_put(value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(v)) => v,
            Err(e) => return Err(send_error(e)),
        };
        let mut value = Some(value);
        let _watch = RoomWatch::new(self);
        let mut readiness = None;
        let mut alarm = Alarm::new();
        let mut look = Instant::now() + QUEUE_SLICE;
        poll_fn(|cx| {
            loop {
                let v = value.take().expect("the value is kept until the put ends");
                match self.try_put(v) {
                    Err(TrySendError::Full(v)) => value = Some(v),
                    r => return Poll::Ready(r.map_err(send_error)),
                }
                // The room eventfd is shared and level-triggered: reset it
                // while the queue is full, and look again (see
                // `crate::queue`).
                if self.rearm_room() {
                    continue;
                }
                let mut failed = |e| {
                    let v = value.take().expect("the value is kept until the put ends");
                    Poll::Ready(Err(SendError::Failed(
                        v,
                        Error::io("failed to wait for room in the queue", e),
                    )))
                };
                let r = match registered(&mut readiness, self.room_fd()) {
                    Ok(r) => r,
                    Err(e) => return failed(e),
                };
                match r.poll_readable(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return failed(e),
                    Poll::Pending => {}
                }
                if alarm.poll_at(look, cx).is_ready() {
                    look = Instant::now() + QUEUE_SLICE;
                    continue;
                }
                return Poll::Pending;
            }
        })
        .await
    }
}

fn send_error<T>(e: TrySendError<T>) -> SendError<T> {
    match e {
        TrySendError::Disconnected(v) => SendError::Disconnected(v),
        TrySendError::Failed(v, e) => SendError::Failed(v, e),
        TrySendError::Full(_) => unreachable!("a full queue is waited on"),
    }
}

fn recv_error(e: TryRecvError) -> RecvError {
    match e {
        TryRecvError::Disconnected => RecvError::Disconnected,
        TryRecvError::Failed(e) => RecvError::Failed(e),
        TryRecvError::Empty => unreachable!("an empty queue is waited on"),
    }
}

impl<T: Serialize + DeserializeOwned + 'static> SimpleQueue<T> {
    /// Takes the oldest item: [`Queue::get_async`].
    ///
    /// # Errors
    ///
    /// As for [`Queue::get`].
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn get_async(&self) -> Result<T, RecvError> {
        self.as_queue().get_async().await
    }

    /// Puts `value`: [`Queue::put_async`].
    ///
    /// # Errors
    ///
    /// As for [`Queue::put`].
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn put_async(&self, value: T) -> Result<(), SendError<T>> {
        self.as_queue().put_async(value).await
    }
}
