//! [`Connection`]'s async sends and receives.

use std::{borrow::Cow, future::poll_fn, task::Poll};

use serde::{Serialize, de::DeserializeOwned};

use super::{
    outgoing::Tail,
    reactor::{Readiness, registered},
};
use crate::{
    Connection,
    codec::{self, CodecError},
    connection::{HEADER, Message, message_header, send_error},
    error::channel::{RecvError, RecvFailure, SendError},
    error::{Error, ErrorKind, Result},
    sys::{self, RawFd},
};

impl Connection {
    /// Receives one value: [`recv`](Self::recv) as a future.
    ///
    /// Dropping the future loses nothing: a message it had started to
    /// read (a large one arrives in pieces) stays in the connection, and
    /// the next receive, async or not, carries on with it. Several
    /// receives may wait at once, in tasks or threads; each message goes
    /// to one of them.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = multiproc::pipe(true)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let echo = tokio::spawn(async move {
    ///         let n: u32 = b.recv_async().await.expect("a number");
    ///         b.send_async(n + 1).await.expect("room for the reply");
    ///     });
    ///     a.send_async(41u32).await?;
    ///     assert_eq!(a.recv_async::<u32>().await?, 42);
    ///     echo.await?;
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn recv_async<T: DeserializeOwned + 'static>(&self) -> std::result::Result<T, RecvError> {
        let (bytes, fds) = recv_message(self).await?;
        codec::fds::supply(fds, || codec::decode_owned::<T>(bytes)).map_err(|CodecError(e)| {
            RecvError::Failed(Error::new(
                ErrorKind::Deserialize,
                format!("failed to deserialize the message: {e}"),
            ))
        })
    }

    /// Receives one message as bytes: [`recv_bytes`](Self::recv_bytes) as
    /// a future, dropped without loss as [`recv_async`](Self::recv_async).
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn recv_bytes_async(&self) -> std::result::Result<Vec<u8>, RecvError> {
        Ok(recv_message(self).await?.0)
    }

    /// Sends `value` as one message: [`send`](Self::send) as a future,
    /// which waits for room in the socket instead of blocking.
    ///
    /// The message is written whole or not at all, whatever happens to the
    /// future: dropped before its first byte went out, it sent nothing (and
    /// the value is dropped with it); dropped later, the rest of the
    /// message stays with the connection and goes out before anything else
    /// sent on it (or, at the latest, when the connection is dropped,
    /// which then waits until the peer has read it or closed).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn send_async<T: Serialize + 'static>(&self, value: T) -> std::result::Result<(), SendError<T>> {
        let (bytes, exported) = codec::fds::collect(|| codec::encode(&value));
        let bytes = match bytes {
            Ok(b) => b,
            Err(CodecError(e)) => {
                let e = Error::new(ErrorKind::Serialize, format!("failed to serialize the message: {e}"));
                return Err(SendError::Failed(value, e));
            }
        };
        let mut exported = Some(exported);
        let fds = exported.as_ref().map(|x| x.fds.clone()).unwrap_or_default();
        let r = send_message(self, bytes, &fds, || {
            // The descriptors went with the first byte: the endpoints in the
            // value now belong to the message.
            if let Some(x) = exported.take() {
                x.sent();
            }
        })
        .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Disconnected => Err(SendError::Disconnected(value)),
            Err(e) => Err(SendError::Failed(value, e)),
        }
    }

    /// Sends `bytes` as one message: [`send_bytes`](Self::send_bytes) as a
    /// future, written whole or not at all as for
    /// [`send_async`](Self::send_async).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub async fn send_bytes_async<'a>(&self, bytes: &'a [u8]) -> std::result::Result<(), SendError<&'a [u8]>> {
        match send_message(self, Cow::Borrowed(bytes), &[], || {}).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Disconnected => Err(SendError::Disconnected(bytes)),
            Err(e) => Err(SendError::Failed(bytes, e)),
        }
    }
}

/// Receives one message, waiting for the socket (or for another receive
/// that left a message buffered) between non-blocking attempts.
async fn recv_message(conn: &Connection) -> std::result::Result<Message, RecvFailure> {
    let mut readiness = None;
    poll_fn(|cx| {
        loop {
            // Before the attempt: a receive that ends after it and leaves a
            // message buffered wakes this task.
            conn.recv_waiters().register(cx.waker());
            match conn.recv_message_now() {
                Err(RecvFailure::Timeout) => {}
                r => return Poll::Ready(r),
            }
            let r = registered(&mut readiness, conn.raw_fd()).map_err(wait_error)?;
            match r.poll_readable(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(wait_error(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

fn wait_error(e: std::io::Error) -> RecvFailure {
    RecvFailure::Failed(Error::io("failed to wait on the connection", e))
}

/// Where an async send is.
enum Stage<'a> {
    /// Nothing written yet.
    Start(Cow<'a, [u8]>),
    /// The first bytes are out; the rest is the connection's tail `id`.
    InTail(u64),
}

/// Sends one message (header, `payload`, `fds` on the first byte); calls
/// `first_byte` once the first byte is in the socket.
async fn send_message(
    conn: &Connection,
    payload: Cow<'_, [u8]>,
    fds: &[RawFd],
    mut first_byte: impl FnMut(),
) -> Result<()> {
    let header = message_header(payload.len() as u64, fds.len());
    let mut stage = Stage::Start(payload);
    let mut readiness: Option<Readiness> = None;
    let me = sys::getpid();
    poll_fn(|cx| {
        loop {
            let (fd, mut out) = conn.send_state()?;
            let mine = match stage {
                Stage::InTail(id) => Some(id),
                Stage::Start(_) => None,
            };
            if let Some(tail) = &mut out.tail {
                if tail.pid != me {
                    // A fork child's copy of its parent's state.
                    out.tail = None;
                    continue;
                }
                if mine.is_some_and(|id| id != tail.id) {
                    // Another send finished ours and started its own.
                    return Poll::Ready(Ok(()));
                }
                // Every send finishes the tail before its own message.
                match fd.send_nonblocking(tail.rest(), &[]) {
                    Ok(n) if n > 0 => {
                        tail.sent += n;
                        if tail.is_done() {
                            let id = tail.id;
                            out.tail = None;
                            out.done.wake_all();
                            if mine == Some(id) {
                                return Poll::Ready(Ok(()));
                            }
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        out.tail = None;
                        out.done.wake_all();
                        return Poll::Ready(Err(send_error(e)));
                    }
                }
                if mine.is_some() {
                    out.done.register(cx.waker());
                }
            } else if mine.is_some() {
                // Someone else finished ours.
                return Poll::Ready(Ok(()));
            } else {
                let Stage::Start(payload) = &mut stage else {
                    unreachable!("checked above")
                };
                let total = HEADER + payload.len();
                match fd.send_nonblocking([&header, payload], fds) {
                    Ok(0) => {}
                    Ok(n) => {
                        first_byte();
                        if n == total {
                            return Poll::Ready(Ok(()));
                        }
                        let id = out.next_id;
                        out.next_id += 1;
                        let payload = std::mem::take(payload).into_owned();
                        out.tail = Some(Tail {
                            id,
                            pid: me,
                            header,
                            payload,
                            sent: n,
                        });
                        stage = Stage::InTail(id);
                        continue;
                    }
                    Err(e) => return Poll::Ready(Err(send_error(e))),
                }
            }
            drop(out);
            let r =
                registered(&mut readiness, fd.raw()).map_err(|e| Error::io("failed to wait on the connection", e))?;
            match r.poll_writable(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("failed to wait on the connection", e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}
