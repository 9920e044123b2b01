//! The queues' async puts and gets.

use std::{
    future::poll_fn,
    task::Poll,
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};

use super::reactor::{Alarm, registered};
use crate::{
    QUEUE_SLICE, Queue, SimpleQueue,
    error::Error,
    error::channel::{RecvError, SendError, TryRecvError, TrySendError},
};

/// First pause of a put that waits for room; it doubles up to
/// [`ROOM_POLL_MAX`].
const ROOM_POLL_MIN: Duration = Duration::from_micros(500);
/// Longest pause between two looks for room.
const ROOM_POLL_MAX: Duration = Duration::from_millis(10);

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
    /// A get signals no descriptor, so a put that finds the queue full
    /// looks again after a pause that starts at 0.5 ms and doubles up to
    /// 10 ms (a timer, no thread). Dropping the future puts nothing (the
    /// value is dropped with it); an item is put only by the poll that
    /// returns `Ok`.
    ///
    /// # Errors
    ///
    /// As for [`put`](Self::put).
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn put_async(&self, value: T) -> Result<(), SendError<T>> {
        let mut value = Some(value);
        let mut alarm = Alarm::new();
        let mut pause = ROOM_POLL_MIN;
        let mut look = None;
        poll_fn(|cx| {
            loop {
                let v = value.take().expect("the value is kept until the put ends");
                match self.try_put(v) {
                    Ok(()) => return Poll::Ready(Ok(())),
                    Err(TrySendError::Full(v)) => value = Some(v),
                    Err(TrySendError::Disconnected(v)) => return Poll::Ready(Err(SendError::Disconnected(v))),
                    Err(TrySendError::Failed(v, e)) => return Poll::Ready(Err(SendError::Failed(v, e))),
                }
                let at = *look.get_or_insert_with(|| Instant::now() + pause);
                if alarm.poll_at(at, cx).is_ready() {
                    look = None;
                    pause = (pause * 2).min(ROOM_POLL_MAX);
                    continue;
                }
                return Poll::Pending;
            }
        })
        .await
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
