//! Message streams between processes: [`pipe`] and [`Connection`]
//! (Python's `multiprocessing.connection`).
//!
//! # Design
//!
//! A connection is one end of a Unix stream socket pair (also for a one-way
//! pipe, whose ends are shut down in the unused direction: only a socket
//! can carry descriptors, and passing endpoints is the point). Each message
//! is the crate's one 16-byte header (`crate::frame::Header`, kind 0) and
//! its payload:
//!
//! ```text
//! bytes 0..2   magic "mp"          bytes 4..6  descriptors attached (u16 LE)
//! byte  2      version (1)         bytes 6..8  flags, zero (both zero here)
//! byte  3      kind (0)            bytes 8..16 payload length (u64 LE)
//! ```
//!
//! A send is one `sendmsg` of header and payload (descriptors ride on its
//! first byte), under a per-connection lock so that threads sharing a
//! connection never interleave their messages. The receiver (the crate's
//! one frame reader, `crate::frame::Reader`, under the connection's
//! framing) reads whatever the socket holds into a buffer and cuts
//! messages out of it, so a burst
//! of small messages costs one system call, not two per message; a large
//! message is read straight into its own buffer. Lengths are not trusted:
//! a buffer grows with the bytes that actually arrive, so a corrupted
//! header costs an error, not an allocation. A message cut short by the
//! writer's end, a bad header, or a message over the caller's limit leaves
//! the connection *broken*: every later receive reports it.
//!
//! Passing a connection (as a process argument, or inside a message) sends
//! its descriptor with `SCM_RIGHTS` (see `crate::codec::fds`); bytes it had
//! buffered but not yet delivered move with it, so nothing is received
//! twice or lost.

mod auth;
mod listener;
mod portable;
mod wait;
mod wire;

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

use crate::{
    asynchronous::{Outgoing, Wakers},
    codec::{self, CodecError},
    error::channel::{RecvError, RecvFailure, RecvTimeoutError, SendError, TryRecvError},
    error::{Error, ErrorKind, Result},
    registry,
    sys::{self, Fd, RawFd},
};

pub use listener::{Address, Client, ClientBuilder, Listener, ListenerBuilder};
pub use wait::{QUEUE_SLICE, Waitable, wait};
#[cfg(feature = "async")]
pub(crate) use wait::{Watching, descriptors as wait_descriptors};
pub(crate) use wire::{HEADER, Rx};
#[cfg(feature = "async")]
pub(crate) use wire::{Message, header as message_header, send_error};

/// Creates a pair of connected [`Connection`]s (Python's `Pipe(duplex)`).
///
/// With `duplex`, both ends send and receive. Without it, the first end
/// only receives and the second only sends, as in Python.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let (a, b) = multiproc::pipe(true)?;
/// a.send(vec![1, 2, 3])?;
/// assert_eq!(b.recv::<Vec<i32>>()?, [1, 2, 3]);
/// b.send_bytes(b"")?; // empty messages are messages
/// assert_eq!(a.recv_bytes()?, b"");
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`ErrorKind::Io`] when the system has no descriptor to spare.
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    let (a, b) = sys::socketpair().map_err(|e| Error::io("failed to create a socket pair", e))?;
    let (a, b) = (a.into_endpoint(), b.into_endpoint());
    if duplex {
        return Ok((Connection::new(a, true, true), Connection::new(b, true, true)));
    }
    a.shutdown(std::net::Shutdown::Write)
        .and_then(|()| b.shutdown(std::net::Shutdown::Read))
        .map_err(|e| Error::io("failed to make the pipe one-way", e))?;
    Ok((Connection::new(a, true, false), Connection::new(b, false, true)))
}

/// One end of a message stream between processes.
///
/// Messages are either values (any serde type: [`send`](Self::send),
/// [`recv`](Self::recv)) or raw bytes ([`send_bytes`](Self::send_bytes),
/// [`recv_bytes`](Self::recv_bytes)); a value is its encoded bytes, so the
/// two mix. A message is never merged with another or split, empty
/// messages are kept, and lengths are 64-bit.
///
/// A connection is `Send` and `Sync`: threads may share one, sends are
/// whole messages, and receives take turns. It travels to another process
/// as a target's argument or inside a message sent on another connection or
/// queue, under every start method; the receiving process may pass it on.
///
/// When every copy of the other end is closed (or every process holding
/// one has died), a receive returns [`RecvError::Disconnected`] once the
/// messages already sent are consumed, and a send returns
/// [`SendError::Disconnected`]: never a hang.
pub struct Connection {
    /// `None` only while dropping.
    fd: Option<Fd>,
    readable: bool,
    writable: bool,
    /// The receiving state; held only by the thread whose turn it is.
    shared: Arc<Shared>,
    /// Receives take turns: a receive waits for its turn until its
    /// deadline, so that a receive blocked in the kernel in one thread
    /// never makes another thread's timeout late.
    turn: Turn,
    /// The send lock, with the end of a message an async send left.
    tx: Mutex<Outgoing>,
}

/// The part of a connection that outlives a call: the receive buffer (a
/// passed copy's deferred effect drains it) and the revocation flag.
struct Shared {
    rx: Mutex<Rx>,
    /// Set in a fork child that was not given this connection: the
    /// library pointed the child's copy of the descriptor at `/dev/null`
    /// (see `crate::registry::ForkLock::become_fork_child`).
    revoked: AtomicBool,
}

impl registry::Revoke for Shared {
    fn revoke(&self) {
        self.revoked.store(true, Ordering::Relaxed);
        // No other thread runs in the fork child; a lock held by a thread
        // of the parent at the fork (allowed only with the unsafe opt-in)
        // is left alone.
        if let Ok(mut rx) = self.rx.try_lock() {
            rx.close_buffered_fds();
        }
    }
}

/// Turn-taking between the threads receiving on one connection.
#[derive(Default)]
struct Turn {
    /// Whether a receive has the turn, and how many wait for it (so that
    /// the common case, nobody waiting, costs no wake-up system call).
    state: Mutex<(bool, usize)>,
    freed: Condvar,
    /// Async receives waiting: woken when a receive leaves a whole message
    /// buffered, which no descriptor reports (see `crate::asynchronous`).
    waiters: Wakers,
}

/// The turn of one receive; the next waiting receive goes when it drops.
struct TurnGuard<'a>(&'a Turn);

impl Turn {
    /// Waits for the turn until `deadline`; `None` when it did not come.
    fn take(&self, deadline: Option<Instant>) -> Option<TurnGuard<'_>> {
        let mut state = lock(&self.state);
        while state.0 {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return None;
            }
            state.1 += 1;
            state = match left {
                None => self.freed.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(left) => {
                    self.freed
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            state.1 -= 1;
        }
        state.0 = true;
        Some(TurnGuard(self))
    }
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.0 = false;
        if state.1 > 0 {
            self.0.freed.notify_all();
        }
    }
}

impl Connection {
    fn new(fd: Fd, readable: bool, writable: bool) -> Connection {
        Connection::with_rx(fd, readable, writable, Rx::default())
    }

    fn with_rx(fd: Fd, readable: bool, writable: bool, rx: Rx) -> Connection {
        let shared = Arc::new(Shared {
            rx: Mutex::new(rx),
            revoked: AtomicBool::new(false),
        });
        let weak: std::sync::Weak<dyn registry::Revoke> = Arc::downgrade(&shared) as _;
        registry::endpoint_opened(fd.raw(), weak);
        Connection {
            fd: Some(fd),
            readable,
            writable,
            shared,
            turn: Turn::default(),
            tx: Mutex::default(),
        }
    }

    /// The descriptor, unless this is a fork child's copy of a connection
    /// the child was not given.
    fn fd(&self) -> Result<&Fd> {
        if self.shared.revoked.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "this connection belongs to the parent process: a fork child holds only the connections passed to it",
            ));
        }
        Ok(self.fd.as_ref().expect("set until drop"))
    }

    /// A second handle on the same end (Python's pickled copy, std's
    /// `try_clone`): for sending from two places, or for handing one copy
    /// to another process while keeping this one. Its receive buffer starts
    /// empty, so receive through one handle only.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when no descriptor is left.
    pub fn try_clone(&self) -> Result<Connection> {
        let fd = self
            .fd()?
            .try_clone()
            .map_err(|e| Error::io("failed to duplicate the connection", e))?;
        Ok(Connection::new(fd.into_endpoint(), self.readable, self.writable))
    }

    /// A connection over an accepted or connected stream socket.
    pub(crate) fn from_socket(fd: Fd) -> Connection {
        Connection::new(fd.into_endpoint(), true, true)
    }

    /// `true` if this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// `true` if this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Closes this end (dropping it does the same). The other end sees
    /// [`RecvError::Disconnected`] once every copy of this end is closed.
    pub fn close(self) {}

    /// Ends this end's sending (and, with `receiving`, its receiving too)
    /// while the descriptor stays open: the other end's receive sees
    /// [`RecvError::Disconnected`] once it has read what was sent, and
    /// with `receiving` its sends fail. The pool closes its link to a
    /// worker this way, still reading what the worker sends before it
    /// leaves, without freeing a descriptor number another thread may be
    /// polling.
    pub(crate) fn shut_down(&self, receiving: bool) -> Result<()> {
        let how = if receiving {
            std::net::Shutdown::Both
        } else {
            std::net::Shutdown::Write
        };
        self.fd()?
            .shutdown(how)
            .map_err(|e| Error::io("failed to shut down a connection", e))
    }

    /// Sends `value` as one message.
    ///
    /// The value is encoded here, so an error in its `Serialize` is
    /// returned at once, with the value. A value holding endpoints (other
    /// connections, queues) sends their descriptors along.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the other end is gone;
    /// [`SendError::Failed`] with [`ErrorKind::Serialize`],
    /// [`ErrorKind::InvalidState`] (a receive-only end) or
    /// [`ErrorKind::Io`].
    pub fn send<T: Serialize + 'static>(&self, value: T) -> std::result::Result<(), SendError<T>> {
        let (bytes, exported) = codec::fds::collect(|| codec::encode(&value));
        let bytes = match bytes {
            Ok(b) => b,
            Err(CodecError(e)) => {
                let e = Error::new(ErrorKind::Serialize, format!("failed to serialize the message: {e}"));
                return Err(SendError::Failed(value, e));
            }
        };
        match self.send_message(&bytes, &exported.fds) {
            Ok(()) => {
                exported.sent();
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                drop(bytes);
                Err(SendError::Disconnected(value))
            }
            Err(e) => {
                drop(bytes);
                Err(SendError::Failed(value, e))
            }
        }
    }

    /// Sends `bytes` as one message (Python's `send_bytes`; slice the
    /// buffer for its `offset` and `size`).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_bytes<'a>(&self, bytes: &'a [u8]) -> std::result::Result<(), SendError<&'a [u8]>> {
        match self.send_message(bytes, &[]) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Disconnected => Err(SendError::Disconnected(bytes)),
            Err(e) => Err(SendError::Failed(bytes, e)),
        }
    }

    /// Sends each of `msgs` as a message of its own, in as few system
    /// calls as the kernel allows (the pool sends a worker its chunks so).
    /// On a failure: how many of them went out whole (the peer may have
    /// received those), with the error.
    pub(crate) fn send_bytes_batch(&self, msgs: &[&[u8]]) -> std::result::Result<(), (usize, Error)> {
        if !self.writable {
            return Err((0, Error::new(ErrorKind::InvalidState, "connection is read-only")));
        }
        let fd = self.fd().map_err(|e| (0, e))?;
        let headers: Vec<[u8; wire::HEADER]> = msgs.iter().map(|m| wire::header(m.len() as u64, 0)).collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * msgs.len());
        for (h, m) in headers.iter().zip(msgs) {
            parts.push(h);
            parts.push(m);
        }
        let mut out = lock(&self.tx);
        out.finish_blocking(fd).map_err(|e| (0, wire::send_error(e)))?;
        let (sent, r) = fd.send_vectored(&parts);
        r.map_err(|e| {
            let mut end = 0;
            let whole = msgs
                .iter()
                .take_while(|m| {
                    end += wire::HEADER + m.len();
                    end <= sent
                })
                .count();
            (whole, wire::send_error(e))
        })
    }

    fn send_message(&self, payload: &[u8], fds: &[RawFd]) -> Result<()> {
        if !self.writable {
            return Err(Error::new(ErrorKind::InvalidState, "connection is read-only"));
        }
        let fd = self.fd()?;
        let header = wire::header(payload.len() as u64, fds.len());
        let mut out = lock(&self.tx);
        out.finish_blocking(fd).map_err(wire::send_error)?;
        fd.send_frame(&header, payload, fds).map_err(wire::send_error)
    }

    /// Receives one value, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] when the other end is gone and every
    /// message was received; [`RecvError::Failed`] with
    /// [`ErrorKind::Deserialize`] (the message is consumed),
    /// [`ErrorKind::Protocol`] (a corrupted or cut stream),
    /// [`ErrorKind::InvalidState`] (a send-only end) or [`ErrorKind::Io`].
    pub fn recv<T: DeserializeOwned + 'static>(&self) -> std::result::Result<T, RecvError> {
        self.recv_value(None).map_err(RecvError::from)
    }

    /// Receives one value, waiting at most `timeout`. A timeout never
    /// loses data: a message half received stays for the next call.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], and as for [`recv`](Self::recv).
    pub fn recv_timeout<T: DeserializeOwned + 'static>(
        &self,
        timeout: Duration,
    ) -> std::result::Result<T, RecvTimeoutError> {
        self.recv_value(Some(deadline(timeout))).map_err(RecvTimeoutError::from)
    }

    /// Receives one value if a whole message is already here.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], and as for [`recv`](Self::recv).
    pub fn try_recv<T: DeserializeOwned + 'static>(&self) -> std::result::Result<T, TryRecvError> {
        self.recv_value(Some(Instant::now())).map_err(TryRecvError::from)
    }

    fn recv_value<T: DeserializeOwned + 'static>(
        &self,
        deadline: Option<Instant>,
    ) -> std::result::Result<T, RecvFailure> {
        let (bytes, fds) = self.recv_message(deadline, None)?;
        codec::fds::supply(fds, || codec::decode_owned::<T>(bytes)).map_err(|CodecError(e)| {
            RecvFailure::Failed(Error::new(
                ErrorKind::Deserialize,
                format!("failed to deserialize the message: {e}"),
            ))
        })
    }

    /// Receives one message as bytes (Python's `recv_bytes`).
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
        Ok(self.recv_message(None, None)?.0)
    }

    /// Receives one message as bytes, with the descriptors that came with
    /// it (the pool's task messages carry those of their arguments).
    pub(crate) fn recv_bytes_with_fds(&self) -> std::result::Result<wire::Message, RecvError> {
        self.recv_message(None, None).map_err(RecvError::from)
    }

    /// Sends `bytes` as one message with the descriptors `fds`.
    pub(crate) fn send_bytes_with_fds(&self, bytes: &[u8], fds: &[RawFd]) -> Result<()> {
        self.send_message(bytes, fds)
    }

    /// Receives one message as bytes, refusing one longer than `max_len`
    /// (Python's `recv_bytes(maxlength)`): a longer message is an
    /// [`ErrorKind::Protocol`] error and leaves the connection broken, since
    /// its bytes would otherwise be read as the next message.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn recv_bytes_max(&self, max_len: usize) -> std::result::Result<Vec<u8>, RecvError> {
        Ok(self.recv_message(None, Some(max_len))?.0)
    }

    /// Receives one message as bytes, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> std::result::Result<Vec<u8>, RecvTimeoutError> {
        Ok(self.recv_message(Some(deadline(timeout)), None)?.0)
    }

    /// Receives one message into `buf` at byte `offset`; returns its length
    /// (Python's `recv_bytes_into`).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let (a, b) = multiproc::pipe(true)?;
    /// a.send_bytes(b"abc")?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(b.recv_bytes_into(&mut buf, 2)?, 3);
    /// assert_eq!(&buf[..5], b"\0\0abc");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for an offset past the end (nothing is
    /// received); [`ErrorKind::BufferTooShort`] when the message does not fit:
    /// it is consumed and available from [`Error::message_bytes`]; and as
    /// for [`recv`](Self::recv).
    pub fn recv_bytes_into(&self, buf: &mut [u8], offset: usize) -> std::result::Result<usize, RecvError> {
        if offset > buf.len() {
            return Err(RecvError::Failed(Error::new(
                ErrorKind::InvalidInput,
                format!("offset {offset} is past the end of a {}-byte buffer", buf.len()),
            )));
        }
        if !self.readable {
            return Err(RecvError::Failed(Error::new(
                ErrorKind::InvalidState,
                "connection is write-only",
            )));
        }
        let fd = self.fd().map_err(RecvError::Failed)?;
        let turn = self.turn.take(None);
        let mut rx = lock(&self.shared.rx);
        let direct = rx.next_message_into(fd, &mut buf[offset..]);
        self.release(turn, rx);
        let direct = direct?;
        let msg = match direct {
            Ok(len) => return Ok(len),
            Err((msg, _fds)) => msg,
        };
        let room = buf.len() - offset;
        if msg.len() > room {
            let text = format!("a {}-byte message does not fit in {room} bytes", msg.len());
            return Err(RecvError::Failed(
                Error::new(ErrorKind::BufferTooShort, text).with_bytes(msg),
            ));
        }
        buf[offset..offset + msg.len()].copy_from_slice(&msg);
        Ok(msg.len())
    }

    /// `true` when a whole message (or the end of the stream) can be
    /// received without waiting; waits up to `timeout` for one (`None`:
    /// as long as it takes). Never consumes a message.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] for a send-only end, [`ErrorKind::Io`].
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        if !self.readable {
            return Err(Error::new(ErrorKind::InvalidState, "connection is write-only"));
        }
        let fd = self.fd()?;
        let deadline = timeout.map(deadline);
        let Some(turn) = self.turn.take(deadline) else {
            // Another thread is receiving until the deadline.
            return Ok(false);
        };
        let mut rx = lock(&self.shared.rx);
        let r = rx.poll(fd, deadline);
        self.release(Some(turn), rx);
        r
    }

    /// For [`wait`]: `Some(true)` when a message, the end of the stream or
    /// an error is buffered; `None` while another thread is receiving.
    pub(crate) fn ready_now(&self) -> Option<bool> {
        if self.shared.revoked.load(Ordering::Relaxed) {
            return Some(true);
        }
        let rx = self.shared.rx.try_lock().ok()?;
        Some(rx.has_message_or_end())
    }

    fn recv_message(
        &self,
        deadline: Option<Instant>,
        max_len: Option<usize>,
    ) -> std::result::Result<wire::Message, RecvFailure> {
        if !self.readable {
            return Err(RecvFailure::Failed(Error::new(
                ErrorKind::InvalidState,
                "connection is write-only",
            )));
        }
        let fd = self.fd().map_err(RecvFailure::Failed)?;
        let Some(turn) = self.turn.take(deadline) else {
            return Err(RecvFailure::Timeout);
        };
        let mut rx = lock(&self.shared.rx);
        let r = rx.next_message(fd, deadline, max_len);
        self.release(Some(turn), rx);
        r
    }

    /// Ends a receive's turn; wakes the async receives waiting if a whole
    /// message stays buffered (no descriptor would tell them).
    fn release(&self, turn: Option<TurnGuard<'_>>, rx: MutexGuard<'_, Rx>) {
        let more = self.turn.waiters.any() && rx.has_message_or_end();
        drop(rx);
        drop(turn);
        if more {
            self.turn.waiters.wake_all();
        }
    }

    #[cfg(feature = "async")]
    /// For the async receive: one receive that does not wait (`Timeout`
    /// when no whole message is here, or another receive has the turn:
    /// register with [`recv_waiters`](Self::recv_waiters) first, and the
    /// end of that receive wakes the waker if it left a message buffered).
    pub(crate) fn recv_message_now(&self) -> std::result::Result<Message, RecvFailure> {
        self.recv_message(Some(Instant::now()), None)
    }

    #[cfg(feature = "async")]
    /// The async receives waiting on this connection.
    pub(crate) fn recv_waiters(&self) -> &Wakers {
        &self.turn.waiters
    }

    #[cfg(feature = "async")]
    /// For the async send: the descriptor and the send state, locked.
    pub(crate) fn send_state(&self) -> Result<(&Fd, MutexGuard<'_, Outgoing>)> {
        if !self.writable {
            return Err(Error::new(ErrorKind::InvalidState, "connection is read-only"));
        }
        Ok((self.fd()?, lock(&self.tx)))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn deadline(timeout: Duration) -> Instant {
    crate::sys::deadline_after(timeout)
}

impl Drop for Connection {
    fn drop(&mut self) {
        let fd = self.fd.take().expect("set until drop");
        if self.shared.revoked.load(Ordering::Relaxed) {
            fd.forget();
        } else {
            // The end of a message an async send left: the peer reads it or
            // closes; its error has nobody to go to.
            let _ = self
                .tx
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .finish_blocking(&fd);
            registry::endpoint_closed(fd.raw());
        }
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Connection {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_ref().expect("set until drop").borrow()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Connection {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.raw_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawHandle for Connection {
    fn as_raw_handle(&self) -> std::os::windows::io::RawHandle {
        self.fd.as_ref().expect("set until drop").raw_handle()
    }
}

impl Connection {
    /// The descriptor (a handle on Windows) as the crate's layers see it.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().expect("set until drop").raw()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.raw_fd())
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}

/// What a connection is on the wire: descriptor indexes (see
/// `crate::codec::fds`) and the bytes it had received but not delivered.
#[derive(Serialize, Deserialize)]
struct Passed {
    fd: u32,
    readable: bool,
    writable: bool,
    buffered: Vec<u8>,
    buffered_fds: Vec<u32>,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let fd = self.fd().map_err(S::Error::custom)?;
        if codec::fds::dry_run() {
            let index = codec::fds::export(fd.raw()).map_err(S::Error::custom)?;
            return (index, self.readable, self.writable).serialize(s);
        }
        // The index first: a serializer that is not the library's fails
        // here, before anything else.
        let index = codec::fds::export(fd.raw()).map_err(S::Error::custom)?;
        let (buffered, fds) = lock(&self.shared.rx).passing_view().map_err(S::Error::custom)?;
        let mut buffered_fds = Vec::with_capacity(fds.len());
        for fd in &fds {
            buffered_fds.push(codec::fds::export(*fd).map_err(S::Error::custom)?);
        }
        // The undelivered bytes travel with the copy; this end forgets them
        // only once the copy has really been sent (a failed send loses
        // nothing).
        let (n_bytes, n_fds) = (buffered.len(), fds.len());
        let shared = self.shared.clone();
        codec::fds::on_sent(Box::new(move || lock(&shared.rx).discard_passed(n_bytes, n_fds)));
        let passed = Passed {
            fd: index,
            readable: self.readable,
            writable: self.writable,
            buffered,
            buffered_fds,
        };
        passed.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Connection, D::Error> {
        use serde::de::Error as _;
        let p = Passed::deserialize(d)?;
        let fd = codec::fds::import(p.fd).map_err(D::Error::custom)?;
        if !fd.is_socket() {
            return Err(D::Error::custom("the descriptor sent as a Connection is not a socket"));
        }
        let mut fds = VecDeque::with_capacity(p.buffered_fds.len());
        for i in p.buffered_fds {
            fds.push_back(codec::fds::import(i).map_err(D::Error::custom)?);
        }
        Ok(Connection::with_rx(
            fd,
            p.readable,
            p.writable,
            Rx::with_buffered(p.buffered, fds),
        ))
    }
}

#[cfg(all(test, feature = "async"))]
mod async_tests;
#[cfg(test)]
mod tests;
