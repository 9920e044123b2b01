//! [`Producer`]: a handle that keeps a queue open, for queues that end
//! when their producers are gone.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

use super::{Queue, core::Core};
use crate::{
    codec,
    error::channel::{SendError, SendTimeoutError, TrySendError},
    error::{Error, ErrorKind},
    registry::{self, Revoke},
    sys::Fd,
};

/// A handle that puts into a queue and keeps it open: the queue ends when
/// every `Producer` of it, in every process, is gone (crossbeam's
/// `Sender`). Made with [`Queue::with_producer`] (or the `with_producer`
/// of [`SimpleQueue`](crate::SimpleQueue) and
/// [`JoinableQueue`](crate::JoinableQueue)).
///
/// Clone it to produce from several threads; pass it to a child (in its
/// target's argument, through a connection or another queue) to produce
/// from another process. A producer is gone when it is dropped, or when
/// its process ends in any way, `SIGKILL` included (the kernel closes the
/// descriptor it holds). A fork child keeps only the producers among its
/// target's arguments; one running a closure keeps every producer its
/// parent held, until it ends.
///
/// ```
/// use multiproc::{ProcessBuilder, Producer, Queue};
///
/// fn produce(tx: Producer<u32>) {
///     for i in 0..3 {
///         tx.put(i).unwrap();
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let (tx, rx) = Queue::with_producer()?;
/// let mut p = ProcessBuilder::new().target_with(produce, tx);
/// p.start()?;
/// // Ends when the child's producer is gone, whether it returned or died.
/// let got: Vec<u32> = rx.iter().collect::<multiproc::Result<_>>()?;
/// assert_eq!(got, [0, 1, 2]);
/// p.join()?;
/// # Ok(()) }
/// ```
pub struct Producer<T> {
    queue: Queue<T>,
    token: Arc<Token>,
}

/// This process's hold on the queue: one descriptor of the producers'
/// socket, shared by the clones of a producer here.
struct Token {
    /// `None` once dropped.
    fd: Option<Fd>,
    /// The queue, to wake its consumers when this hold ends.
    core: Arc<Core>,
    /// Set in a fork child that was not given this producer.
    revoked: AtomicBool,
}

impl Token {
    fn new(fd: Fd, core: Arc<Core>) -> Arc<Token> {
        let raw = fd.raw();
        let token = Arc::new(Token {
            fd: Some(fd),
            core,
            revoked: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&token);
        registry::endpoint_opened(raw, weak);
        token
    }
}

impl Revoke for Token {
    fn revoke(&self) {
        // The registry puts /dev/null on the number, which closes this
        // process's copy of the producers' socket.
        self.revoked.store(true, Ordering::Relaxed);
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            registry::endpoint_closed(fd.raw());
            drop(fd);
        }
        // Consumers look again: this may have been the last producer.
        self.core.wake_everyone();
    }
}

impl<T> Producer<T> {
    pub(super) fn new(queue: Queue<T>, fd: Fd) -> Producer<T> {
        let token = Token::new(fd, queue.core.clone());
        Producer { queue, token }
    }

    fn check(&self) -> Result<(), Error> {
        if self.token.revoked.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "this producer was not given to this fork child (it is not among the target's arguments)",
            ));
        }
        Ok(())
    }

    /// The number of items in the queue (see [`Queue::len`]).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// `true` when the queue holds no item.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Producer<T> {
    /// Puts `value`, waiting while the queue is full (see [`Queue::put`]).
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] once the queue was closed for all, and
    /// as for [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), SendError<T>> {
        match self.check() {
            Ok(()) => self.queue.put(value),
            Err(e) => Err(SendError::Failed(value, e)),
        }
    }

    /// Puts `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As for [`Queue::put_timeout`].
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        match self.check() {
            Ok(()) => self.queue.put_timeout(value, timeout),
            Err(e) => Err(SendTimeoutError::Failed(value, e)),
        }
    }

    /// Puts `value` if there is room now.
    ///
    /// # Errors
    ///
    /// As for [`Queue::try_put`].
    pub fn try_put(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.check() {
            Ok(()) => self.queue.try_put(value),
            Err(e) => Err(TrySendError::Failed(value, e)),
        }
    }
}

impl<T> Clone for Producer<T> {
    fn clone(&self) -> Producer<T> {
        Producer {
            queue: self.queue.clone(),
            token: self.token.clone(),
        }
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer").field("queue", &self.queue).finish()
    }
}

impl<T> Serialize for Producer<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let fd = self.token.fd.as_ref().expect("a live producer holds its descriptor");
        let token = codec::fds::export(fd.raw()).map_err(S::Error::custom)?;
        (&self.queue, token).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Producer<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Producer<T>, D::Error> {
        use serde::de::Error as _;
        let (queue, token): (Queue<T>, u32) = Deserialize::deserialize(d)?;
        let fd = codec::fds::import(token).map_err(D::Error::custom)?;
        if queue.core.producers.is_none() || !fd.is_socket() {
            return Err(D::Error::custom("not a producer: its queue was made without producers"));
        }
        Ok(Producer::new(queue, fd))
    }
}
