//! Queues shared by processes: [`Queue`], [`SimpleQueue`] and
//! [`JoinableQueue`] (Python's `multiprocessing.queues`).
//!
//! # Design
//!
//! A queue is a ring of records in shared memory (`ring::ShmRing`, in `ring/`):
//! every process that holds the queue maps the same memory, a put copies
//! the encoded item in under a robust process-shared lock, a get copies it
//! out. There is no feeder thread and no pipe between the caller and the
//! data, which is what makes CPython's queue lose items and hang:
//!
//! - `put` returns once the item is in shared memory. An item whose `put`
//!   returned is never lost, even if the process exits at once (CPython
//!   drops it with its feeder thread), and is visible to `get` at once.
//! - An item is encoded before the lock is taken: a value that does not
//!   serialise is an error at the call, with the value handed back.
//! - A process that dies holding the lock (even mid-copy) leaves the queue
//!   consistent: the next locker is told by the kernel (robust mutex) and
//!   carries on; a half-written item was never committed, a half-read one
//!   was never removed. See the ring's module for the commit protocol.
//! - `len` is exact: the committed count, kept in shared memory.
//! - Unbounded queues grow their memory as needed; nothing blocks a put
//!   but the bound the caller chose, and, for items that carry descriptors,
//!   the room of the side channel below (the kernel's socket buffer: a few
//!   hundred such items with `net.core.wmem_max` at its usual 208 KiB),
//!   where a put waits, within its deadline, for getters to take some.
//!
//! Items that carry descriptors (a [`Connection`](crate::Connection) or
//! another queue inside the item) send them over a sequenced-packet socket
//! pair held by every user of the queue, as one datagram tagged with the
//! index the ring gives the record and a token that the record also holds;
//! both happen under the ring's lock, so datagrams and records stay in the
//! same order. A getter only takes the datagram of its own record: one with
//! an older index, or the same index and another token, was left by a
//! putter that died before committing (its descriptors are closed); one
//! with a later index belongs to a later record and stays. So a getter
//! that dies after taking a record's datagram loses that item's
//! descriptors only (the next getter of that record is told), never those
//! of the items behind it.
//!
//! A record is the encoded item followed by a 12-byte trailer (descriptor
//! count, token), at the end so that a byte buffer is handed to the caller
//! without moving it.
//!
//! # Ending
//!
//! A close for all is a flag in the ring's shared header, set under its
//! lock: a put checks it under the same lock, so a put either went in
//! before the close (and is drained) or fails; a get on the empty ring
//! checks it before it sleeps, and the close wakes every sleeper.
//!
//! Producers are counted by the kernel, not in shared memory: a queue made
//! with producers has a socket pair; every [`Producer`] in every process
//! holds a descriptor of one end (clones in one process share one), every
//! queue handle the other. When the last descriptor of the producers' end
//! is closed (a drop, or the end of its process however it ended, which a
//! count in the header could not see after a `SIGKILL`), the consumers'
//! end reports a hang-up, which a get looks at (`poll` with no wait)
//! whenever it finds the ring empty. A dropped producer wakes every
//! sleeper; a killed one is seen at the sleepers' next slice of the ring's
//! wait (one second). A producer in transit (in a message, or in a
//! spawned child's arguments) is a descriptor in flight, which the kernel
//! counts as open. A fork child inherits every descriptor: the producer's
//! is registered as an endpoint (see `crate::registry`), so a fork child
//! closes the producers not among its target's arguments.
//!
//! # Readiness for `wait`
//!
//! A queue has no descriptor of its own to `poll`, so it carries one: an
//! eventfd shared by every user of the queue (it travels with the queue
//! like the other descriptors). A caller of [`wait`](crate::wait) that
//! watches queues among other objects registers as a *watcher* in the
//! ring's shared header, then looks at the queue and polls its eventfd; a
//! `put` that returns checks the count of watchers (one atomic load: with
//! nobody watching, a put costs nothing more) and, when there are some,
//! signals the eventfd. The watcher registers before it looks and the
//! putter commits before it checks, with a full fence on each side, so a
//! record committed after the watcher's look always finds the watcher
//! counted and wakes it. The eventfd is level-triggered and shared, so a
//! watcher that finds the queue empty drains it and then looks again,
//! signalling it anew if an item arrived meanwhile (other watchers then
//! still see it). A putter killed between its commit and its signal wakes
//! nobody: `wait` also looks at its queues every
//! [`QUEUE_SLICE`](crate::QUEUE_SLICE), as the ring's own waits do.
//!
//! # Room for an async put
//!
//! The same, the other way round, with a second eventfd: an async put
//! that finds a bounded queue full (`put_async`, the `async` feature)
//! registers as a *room watcher* (a second counter in the header), looks
//! again, and polls the room eventfd; a get that removed a record checks
//! the count after its pop returns and, when there are some, signals that
//! eventfd (a queue's end signals both). With no async putter waiting, a
//! get pays one fence and one load. Again the watcher drains the eventfd
//! when it finds the queue still full and looks again, re-signalling if
//! room appeared, and a getter killed between its pop and its signal is
//! covered by a look every `QUEUE_SLICE`. Each eventfd carries one
//! condition (an item is there; there is room), so a watcher's drain never
//! hides an event another kind of watcher waits for.

use std::{
    fmt,
    marker::PhantomData,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    codec::{self, CodecError},
    connection::deadline,
    error::channel::{
        RecvError, RecvFailure, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
    },
    error::{Error, ErrorKind, Result},
    sys::{self, RawFd},
};

mod core;
mod iter;
mod producer;
mod ring;
mod wire;

pub use iter::{QueueIntoIter, QueueIter};
pub use producer::Producer;

use self::core::{Core, PutFail, ring_error};

/// A multi-producer, multi-consumer FIFO shared by processes (Python's
/// `multiprocessing.Queue`), optionally bounded.
///
/// Items are any serde type; each is encoded when it is put. Clone a handle
/// to share it between threads; pass it to a child as (part of) its
/// target's argument, or send it through a connection or another queue, to
/// share it between processes, under every start method.
///
/// ```
/// use multiproc::{ProcessBuilder, Queue};
///
/// fn worker(q: Queue<String>) {
///     q.put(format!("hello from {}", std::process::id())).unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let q = Queue::new()?;
/// let mut p = ProcessBuilder::new().target_with(worker, q.clone());
/// p.start()?;
/// let msg = q.get_timeout(std::time::Duration::from_secs(30))?;
/// assert_eq!(msg, format!("hello from {}", p.pid().unwrap()));
/// p.join()?;
/// # Ok(()) }
/// ```
///
/// Per producer, items come out in the order they went in. Unlike
/// CPython's, a `put` that returned has delivered the item (no feeder
/// thread), `len` is exact, and a process killed while using the queue
/// leaves it usable by the others.
///
/// # Ending a queue
///
/// A queue ends in one of two ways; from then on, in every process, gets
/// take the items still in it and then report the end
/// ([`RecvError::Disconnected`], `is_disconnected()`), and iteration
/// ([`iter`](Self::iter), `for item in &queue`) stops:
///
/// - [`close_for_all`](Self::close_for_all), called in any process. Puts
///   from then on fail with a `Disconnected` error that hands the value
///   back; a put that returned before it is in the queue, and is drained.
/// - For a queue made [`with_producer`](Self::with_producer): the last
///   [`Producer`] handle is gone, dropped or ended with its process,
///   however it ended (`SIGKILL` included). A dropped producer wakes the
///   consumers at once; a killed one is noticed within about a second.
///   Plain `Queue` handles (consumers) do not keep such a queue open.
///
/// Python's `Queue.close()` only says that the calling process will put no
/// more (it flushes that process's feeder thread); this crate's
/// [`close`](Self::close) keeps that meaning and affects this process
/// only. crossbeam has no explicit close: a channel disconnects when its
/// last `Sender` is dropped, which [`Producer`] mirrors across processes.
///
/// A consumer that dies affects nobody else: an item it had taken is gone
/// with it, and the others go on and see the end as well. The end does not
/// change a [`JoinableQueue`]'s count: every item taken is still owed a
/// `task_done`, and `join` still waits for all of them (so an item taken by
/// a consumer that died is never done: use `join_timeout` then).
pub struct Queue<T> {
    core: Arc<Core>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Queue<T> {
        Queue {
            core: self.core.clone(),
            _items: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Queue<T> {
    /// An unbounded queue.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the system refuses the shared memory or the
    /// descriptors.
    pub fn new() -> Result<Queue<T>> {
        Ok(Queue::from_core(Core::new(None, false)?.0))
    }

    /// A queue holding at most `max` items: a put waits while it is full.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for `max == 0`; as for [`new`](Self::new).
    pub fn bounded(max: usize) -> Result<Queue<T>> {
        if max == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a bounded queue needs room for at least one item (use Queue::new for no bound)",
            ));
        }
        Ok(Queue::from_core(Core::new(Some(max as u64), false)?.0))
    }

    /// An unbounded queue that ends when its producers are gone, and the
    /// first of them: every [`Producer`] handle (clones, and copies sent to
    /// other processes) keeps it open; once the last is dropped, or gone
    /// with its process (killed included), gets take what is left and then
    /// report the end, as crossbeam's receivers do once every sender is
    /// dropped. See [the type's docs](Queue#ending-a-queue).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let (tx, rx) = multiproc::Queue::with_producer()?;
    /// tx.put(1)?;
    /// tx.put(2)?;
    /// drop(tx);
    /// let got: Vec<i32> = rx.iter().collect::<multiproc::Result<_>>()?;
    /// assert_eq!(got, [1, 2]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn with_producer() -> Result<(Producer<T>, Queue<T>)> {
        Self::make_with_producer(None)
    }

    /// Like [`with_producer`](Self::with_producer), holding at most `max`
    /// items.
    ///
    /// # Errors
    ///
    /// As for [`bounded`](Self::bounded).
    pub fn bounded_with_producer(max: usize) -> Result<(Producer<T>, Queue<T>)> {
        if max == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a bounded queue needs room for at least one item (use Queue::with_producer for no bound)",
            ));
        }
        Self::make_with_producer(Some(max as u64))
    }

    fn make_with_producer(max: Option<u64>) -> Result<(Producer<T>, Queue<T>)> {
        let (core, token) = Core::new(max, true)?;
        let queue = Queue::from_core(core);
        let token = token.expect("a queue made with producers has their descriptor");
        Ok((Producer::new(queue.clone(), token), queue))
    }

    fn put_inner(&self, value: T, deadline: Option<Instant>) -> std::result::Result<(), (T, PutFail)> {
        let (bytes, exported) = codec::fds::collect(|| codec::encode(&value));
        let bytes = match bytes {
            Ok(b) => b,
            Err(CodecError(e)) => {
                let e = Error::new(ErrorKind::Serialize, format!("failed to serialize the item: {e}"));
                return Err((value, PutFail::Failed(e)));
            }
        };
        let r = self.core.put_bytes(&bytes, &exported.fds, deadline);
        drop(bytes);
        match r {
            Ok(()) => {
                exported.sent();
                Ok(())
            }
            Err(f) => Err((value, f)),
        }
    }

    /// Puts `value`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Failed`] with [`ErrorKind::Serialize`], or
    /// [`ErrorKind::InvalidState`] after [`close`](Self::close).
    pub fn put(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.put_inner(value, None).map_err(|(v, f)| match f {
            PutFail::Closed => SendError::Disconnected(v),
            PutFail::Failed(e) => SendError::Failed(v, e),
            PutFail::Timeout => SendError::Failed(v, Error::new(ErrorKind::Timeout, "timed out")),
        })
    }

    /// Puts `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (Python's `Full`), and as for
    /// [`put`](Self::put).
    pub fn put_timeout(&self, value: T, timeout: Duration) -> std::result::Result<(), SendTimeoutError<T>> {
        self.put_inner(value, Some(deadline(timeout)))
            .map_err(|(v, f)| match f {
                PutFail::Timeout => SendTimeoutError::Timeout(v),
                PutFail::Closed => SendTimeoutError::Disconnected(v),
                PutFail::Failed(e) => SendTimeoutError::Failed(v, e),
            })
    }

    /// Puts `value` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`], and as for [`put`](Self::put).
    pub fn try_put(&self, value: T) -> std::result::Result<(), TrySendError<T>> {
        self.put_inner(value, Some(Instant::now())).map_err(|(v, f)| match f {
            PutFail::Timeout => TrySendError::Full(v),
            PutFail::Closed => TrySendError::Disconnected(v),
            PutFail::Failed(e) => TrySendError::Failed(v, e),
        })
    }

    fn get_inner(&self, deadline: Option<Instant>) -> std::result::Result<T, RecvFailure> {
        let (bytes, fds) = self.core.get_bytes(deadline)?;
        codec::fds::supply(fds, || codec::decode_owned::<T>(bytes)).map_err(|CodecError(e)| {
            RecvFailure::Failed(Error::new(
                ErrorKind::Deserialize,
                format!("failed to deserialize the item: {e}"),
            ))
        })
    }

    /// Takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`RecvError::Failed`] with [`ErrorKind::Deserialize`] (the item is
    /// consumed), [`ErrorKind::InvalidState`] after [`close`](Self::close),
    /// [`ErrorKind::Protocol`] if the shared memory was overwritten.
    pub fn get(&self) -> std::result::Result<T, RecvError> {
        self.get_inner(None).map_err(RecvError::from)
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] (Python's `Empty`), and as for
    /// [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvTimeoutError> {
        self.get_inner(Some(deadline(timeout))).map_err(RecvTimeoutError::from)
    }

    /// Takes the oldest item if there is one (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], and as for [`get`](Self::get).
    pub fn try_get(&self) -> std::result::Result<T, TryRecvError> {
        self.get_inner(Some(Instant::now())).map_err(TryRecvError::from)
    }
}

impl<T> Queue<T> {
    fn from_core(core: Core) -> Queue<T> {
        Queue {
            core: Arc::new(core),
            _items: PhantomData,
        }
    }

    /// Closes the queue for good, for every process: later puts, here and
    /// elsewhere, fail with a `Disconnected` error (the value is handed
    /// back); gets take the items already in and then report the end
    /// ([`RecvError::Disconnected`]), so consumers in every process finish
    /// once it is drained (see [`iter`](Self::iter)). Blocked puts and gets
    /// wake up. Idempotent. See [the type's docs](Queue#ending-a-queue).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let q = multiproc::Queue::new()?;
    /// q.put(1)?;
    /// q.close_for_all()?;
    /// assert!(q.put(2).unwrap_err().is_disconnected());
    /// assert_eq!(q.get()?, 1);
    /// assert!(q.get().unwrap_err().is_disconnected());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Protocol`] if the shared memory was overwritten.
    pub fn close_for_all(&self) -> Result<()> {
        self.core.ring.close().map_err(|e| ring_error(e, "close"))?;
        self.core.notify_watchers();
        // Async puts waiting for room: the put now fails at once.
        self.core.notify_room_watchers();
        Ok(())
    }

    /// `true` once [`close_for_all`](Self::close_for_all) was called, in
    /// any process.
    pub fn is_closed_for_all(&self) -> bool {
        self.core.ring.is_closed()
    }

    /// `true` once no item can come any more: the queue was closed for
    /// all, or every producer of a queue made with producers is gone. Items
    /// put before may still be in it (see [`len`](Self::len)).
    pub fn has_ended(&self) -> bool {
        self.core.ended()
    }

    /// The number of items in the queue, exact at the moment it is read
    /// (every `put` and `get` that returned is counted).
    pub fn len(&self) -> usize {
        self.core.ring.len() as usize
    }

    /// `true` when the queue holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` when a bounded queue holds its maximum.
    pub fn is_full(&self) -> bool {
        self.capacity().is_some_and(|max| self.len() >= max)
    }

    /// The bound, `None` for an unbounded queue.
    pub fn capacity(&self) -> Option<usize> {
        self.core.ring.max_count().map(|m| m as usize)
    }

    /// Stops this process's use of the queue (every handle of it here):
    /// later puts and gets fail with [`ErrorKind::InvalidState`]. Items
    /// already put stay for the other processes; nothing needs flushing.
    /// Idempotent.
    pub fn close(&self) {
        self.core.closed.store(true, Ordering::Relaxed);
    }

    /// `true` after [`close`](Self::close).
    pub fn is_closed(&self) -> bool {
        self.core.closed.load(Ordering::Relaxed)
    }

    /// For [`wait`](crate::wait): an item is there now.
    pub(crate) fn ready_now(&self) -> bool {
        self.core.ring.len() > 0 || self.is_closed() || self.core.ended()
    }

    /// For [`wait`](crate::wait): waits until an item may be there.
    pub(crate) fn wait_ready(&self, deadline: Option<Instant>) -> bool {
        let seen = self.core.ring.put_seq();
        self.ready_now() || self.core.ring.wait_put_seq_change(seen, deadline)
    }

    /// For [`wait`](crate::wait): counts the caller as a watcher, whose
    /// eventfd ([`ready_fd`](Self::ready_fd)) a put signals, until
    /// [`unwatch`](Self::unwatch).
    pub(crate) fn watch(&self) {
        self.core.ring.watch();
    }

    /// Ends a [`watch`](Self::watch).
    pub(crate) fn unwatch(&self) {
        self.core.ring.unwatch();
    }

    /// The eventfd a watcher polls.
    pub(crate) fn ready_fd(&self) -> RawFd {
        self.core.ready.raw()
    }

    /// For an async put: counts the caller as a watcher of room, whose
    /// eventfd ([`room_fd`](Self::room_fd)) a get signals, until
    /// [`unwatch_room`](Self::unwatch_room).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn watch_room(&self) {
        self.core.ring.watch_room();
    }

    /// Ends a [`watch_room`](Self::watch_room).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn unwatch_room(&self) {
        self.core.ring.unwatch_room();
    }

    /// The eventfd a room watcher polls.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn room_fd(&self) -> RawFd {
        self.core.room.raw()
    }

    /// For a room watcher that found the queue full: resets the room
    /// eventfd, then looks again; room (or the queue's end) that came
    /// meanwhile is signalled anew, for the other room watchers. `true`
    /// when a put would not wait now.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn rearm_room(&self) -> bool {
        sys::eventfd_drain(&self.core.room);
        if !self.is_full() || self.is_closed() || self.core.ring.is_closed() {
            sys::eventfd_signal(&self.core.room);
            return true;
        }
        false
    }

    /// For a watcher that found the queue empty: resets the eventfd (a
    /// signal of an item already taken would wake every poll at once),
    /// then looks again; an item that arrived meanwhile is signalled anew,
    /// for the other watchers. `true` when an item is there.
    pub(crate) fn rearm(&self) -> bool {
        sys::eventfd_drain(&self.core.ready);
        if self.ready_now() {
            sys::eventfd_signal(&self.core.ready);
            return true;
        }
        false
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A queue without a bound or a size (Python's `SimpleQueue`): `put`,
/// `get`, `is_empty`, `close`. It is a [`Queue`] underneath, with the same
/// guarantees.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let q = multiproc::SimpleQueue::new()?;
/// q.put(7u8)?;
/// assert_eq!(q.get()?, 7);
/// assert!(q.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SimpleQueue<T>(Queue<T>);

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> SimpleQueue<T> {
        SimpleQueue(self.0.clone())
    }
}

impl<T: Serialize + DeserializeOwned + 'static> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// # Errors
    ///
    /// As for [`Queue::new`].
    pub fn new() -> Result<SimpleQueue<T>> {
        Queue::new().map(SimpleQueue)
    }

    /// A queue that ends when its producers are gone, and the first of
    /// them; see [`Queue::with_producer`].
    ///
    /// # Errors
    ///
    /// As for [`Queue::new`].
    pub fn with_producer() -> Result<(Producer<T>, SimpleQueue<T>)> {
        Queue::with_producer().map(|(tx, q)| (tx, SimpleQueue(q)))
    }

    /// Puts `value`; it is in the queue when this returns.
    ///
    /// # Errors
    ///
    /// As for [`Queue::put`].
    pub fn put(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.0.put(value)
    }

    /// Takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As for [`Queue::get`].
    pub fn get(&self) -> std::result::Result<T, RecvError> {
        self.0.get()
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvTimeoutError> {
        self.0.get_timeout(timeout)
    }
}

impl<T> SimpleQueue<T> {
    /// `true` when the queue holds no item.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Stops this process's use of the queue; see [`Queue::close`].
    pub fn close(&self) {
        self.0.close()
    }

    /// Closes the queue for every process; see [`Queue::close_for_all`].
    ///
    /// # Errors
    ///
    /// As for [`Queue::close_for_all`].
    pub fn close_for_all(&self) -> Result<()> {
        self.0.close_for_all()
    }

    /// The queue underneath, for [`wait`](crate::wait).
    pub fn as_queue(&self) -> &Queue<T> {
        &self.0
    }
}

/// A [`Queue`] that counts unfinished tasks (Python's `JoinableQueue`):
/// every put adds one, [`task_done`](Self::task_done) removes one, and
/// [`join`](Self::join) waits until none is left. The count lives in the
/// shared memory, so it is exact across processes.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let q = multiproc::JoinableQueue::new()?;
/// q.put("job".to_string())?;
/// assert_eq!(q.get()?, "job");
/// q.task_done()?;
/// q.join_timeout(std::time::Duration::from_secs(5))?;
/// # Ok(()) }
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueue<T>(Queue<T>);

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> JoinableQueue<T> {
        JoinableQueue(self.0.clone())
    }
}

impl<T: Serialize + DeserializeOwned + 'static> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// # Errors
    ///
    /// As for [`Queue::new`].
    pub fn new() -> Result<JoinableQueue<T>> {
        Queue::new().map(JoinableQueue)
    }

    /// A joinable queue holding at most `max` items.
    ///
    /// # Errors
    ///
    /// As for [`Queue::bounded`].
    pub fn bounded(max: usize) -> Result<JoinableQueue<T>> {
        Queue::bounded(max).map(JoinableQueue)
    }

    /// A joinable queue that ends when its producers are gone, and the
    /// first of them; see [`Queue::with_producer`].
    ///
    /// # Errors
    ///
    /// As for [`Queue::new`].
    pub fn with_producer() -> Result<(Producer<T>, JoinableQueue<T>)> {
        Queue::with_producer().map(|(tx, q)| (tx, JoinableQueue(q)))
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken from the queue as processed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] when called more times than items were
    /// put (Python's `ValueError('task_done() called too many times')`).
    pub fn task_done(&self) -> Result<()> {
        self.0.core.ring.task_done().map_err(|e| ring_error(e, "task_done"))
    }

    /// Waits until every item put has been marked done.
    ///
    /// As in Python, an item taken by a consumer that died before its
    /// `task_done` is never done, so `join` waits on (the other consumers
    /// are not blocked). The count is one shared number, and `task_done`
    /// may come from any process (a consumer may hand its item on), so no
    /// process can tell which items a dead consumer still owed: a
    /// supervisor bounds the wait with [`join_timeout`](Self::join_timeout)
    /// and, knowing what it lost, calls `task_done` for it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Protocol`] if the shared memory was overwritten.
    pub fn join(&self) -> Result<()> {
        self.0.core.ring.join(None).map_err(|e| ring_error(e, "join"))
    }

    /// Like [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`], and as for [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.0
            .core
            .ring
            .join(Some(deadline(timeout)))
            .map_err(|e| ring_error(e, "join"))
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.0
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ending_tests;
