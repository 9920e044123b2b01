//! [`Listener`] and [`Client`]: connections by address (a Unix socket path,
//! a Linux abstract name, or TCP), optionally authenticated (Python's
//! `multiprocessing.connection.Listener` and `Client`).
//!
//! # Design
//!
//! A listener is a non-blocking listening socket; [`Listener::accept`]
//! waits for it with `poll` and takes a connection with `accept4`, so a
//! deadline holds even when another thread takes the connection first.
//! Each accepted or connected socket becomes an ordinary [`Connection`]
//! (so it can be passed to other processes like any other), and then, if a
//! key was given, runs the mutual handshake of `super::auth` before the
//! caller sees it.
//!
//! **Handshakes run concurrently**, without a thread: a listener with a
//! key keeps a set of *pending* handshakes, each a non-blocking state
//! machine (`auth::Accepting`) over its connection, with its own deadline
//! (ten seconds unless configured). `accept` polls the listening socket
//! and every pending connection at once; it takes each new connection
//! into the set (sending the challenge), advances each handshake whose
//! peer has sent something, and returns the first one that is over. So a
//! peer that stays silent, trickles its bytes or never finishes holds only
//! its own slot: an honest peer is delayed by nothing but its own
//! handshake (CPython authenticates inline, so each silent peer there
//! holds every later one up for the whole deadline). A handshake that
//! fails (a wrong key, garbage, its deadline) is reported by one `accept`
//! as its error, after any handshake already over, and the listener keeps
//! working. Handshakes advance only while some thread is inside `accept`;
//! their deadlines run regardless.
//!
//! The set is bounded ([`ListenerBuilder::max_pending_handshakes`], 32 by
//! default): a new connection that finds it full evicts the *oldest*
//! pending handshake (its connection is closed and its `accept` error is a
//! [`ErrorKind::Timeout`]). Evicting the oldest rather than refusing the
//! newest means that peers which connect and wait cannot lock honest ones
//! out: to starve them, a flood must open more connections than the bound
//! within one handshake's round trip. Failures waiting to be reported are
//! bounded likewise; beyond that, the oldest is dropped and the next one
//! reported counts it.
//!
//! As in Python, no key means no authentication. The process key that
//! Python uses elsewhere is [`CurrentProcess::authkey`](crate::CurrentProcess::authkey),
//! inherited by every child: pass it to both sides to accept only this
//! process tree.
//!
//! **The default address** is a socket `listener-XXXXXXXX` in a fresh
//! directory `pymp-XXXXXXXX` under [`std::env::temp_dir`], created with mode
//! `0700`. The socket file is made `0600` before the socket listens; since
//! nobody else can enter the directory, the file is never reachable with
//! looser permissions, and no process-wide `umask` change is needed (it
//! would race with other threads creating files). A socket on an explicit
//! path is made `0600` the same way, before it listens (Python leaves it
//! to the `umask`): connecting needs write permission on the socket, so
//! only the owner (and root) can connect. A listener removes its socket file (and the directory it
//! made) when dropped, in the process that created it only: a fork child
//! holding a copy leaves them alone, as Python's finalizer does.

use std::{
    collections::VecDeque,
    fmt, fs, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::{
    Connection,
    auth::{self, Accepting, Handshake},
    lock,
};
use crate::{
    error::{Error, ErrorKind, Result},
    sys::{self, Fd, PeerAddr, RawFd, SockAddr},
};

/// Where a [`Listener`] listens and a [`Client`] connects (Python's
/// `AF_UNIX` and `AF_INET` addresses).
///
/// An address is `Serialize` and `Deserialize`, so a child process can be
/// told where to connect.
///
/// ```
/// use std::path::Path;
/// use multiproc::Address;
///
/// let path = Address::from(Path::new("/tmp/app.sock"));
/// assert_eq!(path.to_string(), "/tmp/app.sock");
/// let tcp = Address::from("127.0.0.1:5000".parse::<std::net::SocketAddr>().unwrap());
/// assert_eq!(tcp.to_string(), "127.0.0.1:5000");
/// assert_eq!(Address::Abstract(b"app".to_vec()).to_string(), "@app");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "WireAddress", into = "WireAddress")]
#[non_exhaustive]
pub enum Address {
    /// A Unix socket file at this path (at most 107 bytes).
    Unix(PathBuf),
    /// A name in Linux's abstract Unix socket namespace (Python's
    /// `'\0name'`): no file, gone with the last socket bound to it, at most
    /// 107 bytes. Any process in the network namespace can connect to it,
    /// so use a key.
    Abstract(Vec<u8>),
    /// A TCP address. Binding port 0 picks a free port:
    /// [`Listener::address`] reports it.
    Tcp(SocketAddr),
}

impl Address {
    fn sock_addr(&self) -> SockAddr<'_> {
        match self {
            Address::Unix(p) => SockAddr::Path(p),
            Address::Abstract(n) => SockAddr::Abstract(n),
            Address::Tcp(a) => SockAddr::Inet(*a),
        }
    }

    fn from_peer(peer: PeerAddr) -> Option<Address> {
        match peer {
            PeerAddr::Unnamed => None,
            PeerAddr::Path(p) => Some(Address::Unix(p)),
            PeerAddr::Abstract(n) => Some(Address::Abstract(n)),
            PeerAddr::Inet(a) => Some(Address::Tcp(a)),
        }
    }

    fn check(&self) -> Result<()> {
        let name = match self {
            Address::Unix(p) => {
                let bytes = super::portable::path_bytes(p);
                if bytes.is_empty() {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "a Unix socket path cannot be empty",
                    ));
                }
                if bytes.contains(&0) {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("the Unix socket path {self} contains a NUL byte"),
                    ));
                }
                bytes
            }
            Address::Abstract(n) => n,
            Address::Tcp(_) => return Ok(()),
        };
        if name.len() > sys::UNIX_NAME_MAX {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the Unix socket address {self} is {} bytes long; the limit is {}",
                    name.len(),
                    sys::UNIX_NAME_MAX
                ),
            ));
        }
        Ok(())
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Address {
        Address::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Address {
        Address::Unix(path.to_owned())
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

impl From<&Address> for Address {
    fn from(addr: &Address) -> Address {
        addr.clone()
    }
}

impl fmt::Display for Address {
    /// A path as it is, an abstract name as `@name` (as `ss` shows it),
    /// bytes outside printable ASCII escaped; a TCP address as `ip:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => fmt::Display::fmt(&p.display(), f),
            Address::Abstract(n) => write!(f, "@{}", n.escape_ascii()),
            Address::Tcp(a) => fmt::Display::fmt(a, f),
        }
    }
}

/// An address on the wire: paths as bytes, so that a path that is not
/// UTF-8 travels too.
#[derive(Serialize, Deserialize)]
enum WireAddress {
    Unix(Vec<u8>),
    Abstract(Vec<u8>),
    Tcp(SocketAddr),
}

impl From<WireAddress> for Address {
    fn from(w: WireAddress) -> Address {
        match w {
            WireAddress::Unix(p) => Address::Unix(super::portable::path_from_bytes(p)),
            WireAddress::Abstract(n) => Address::Abstract(n),
            WireAddress::Tcp(a) => Address::Tcp(a),
        }
    }
}

impl From<Address> for WireAddress {
    fn from(a: Address) -> WireAddress {
        match a {
            Address::Unix(p) => WireAddress::Unix(super::portable::path_into_bytes(p)),
            Address::Abstract(n) => WireAddress::Abstract(n),
            Address::Tcp(a) => WireAddress::Tcp(a),
        }
    }
}

/// Accepts connections at an address (Python's
/// `multiprocessing.connection.Listener`).
///
/// With a key, each accepted peer must prove it knows the key, and this
/// side proves it too (see [`ListenerBuilder::authkey`]); without one,
/// anyone who can reach the address is accepted, as in Python.
///
/// # Examples
///
/// A listener and a client in one process:
///
/// ```
/// use multiproc::{Client, Listener};
///
/// # fn main() -> multiproc::Result<()> {
/// let listener = Listener::bind(None, Some(b"secret"))?;
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || -> multiproc::Result<()> {
///     let conn = Client::connect(&address, Some(b"secret"))?;
///     conn.send("hello".to_string())?;
///     Ok(())
/// });
/// let conn = listener.accept()?;
/// assert_eq!(conn.recv::<String>()?, "hello");
/// client.join().expect("client thread")?;
/// # Ok(()) }
/// ```
///
/// A client in a child process, authenticated with the key every process
/// of the tree shares:
///
/// ```
/// use multiproc::{Address, Client, Listener, Process};
///
/// fn say_hello(address: Address) {
///     let key = *multiproc::current_process().authkey();
///     let conn = Client::connect(&address, Some(&key)).expect("connect");
///     conn.send("hello".to_string()).expect("send");
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let key = *multiproc::current_process().authkey();
/// let listener = Listener::bind(None, Some(&key))?;
/// let mut child = Process::with_args(say_hello, listener.address().clone());
/// child.start()?;
/// let conn = listener.accept()?;
/// assert_eq!(conn.recv::<String>()?, "hello");
/// child.join()?;
/// # Ok(()) }
/// ```
///
/// # Concurrent authentication
///
/// With a key, handshakes run concurrently inside `accept`, without a
/// thread: each accepted peer gets its challenge at once and joins a set
/// of pending handshakes, each with its own deadline
/// ([`auth_timeout`](ListenerBuilder::auth_timeout)); `accept` waits on all
/// of them and the listening socket together and returns the first peer
/// that has authenticated. A peer that stays silent or trickles its bytes
/// holds only its own place: it never delays a peer that authenticates
/// (CPython authenticates inline, one peer at a time). A failed handshake
/// is reported by one `accept` call as its error, after any peer already
/// authenticated. At most [`max_pending_handshakes`](ListenerBuilder::max_pending_handshakes)
/// are pending (32 by default); a new connection that finds the set full
/// evicts the oldest pending one, so peers that connect and wait cannot
/// lock honest ones out. Handshakes advance only while some thread is
/// inside `accept`.
///
/// # The default address
///
/// Without an address, a listener binds a Unix socket `listener-XXXXXXXX`
/// in a fresh directory `pymp-XXXXXXXX` under [`std::env::temp_dir`]
/// (Python's naming). The directory is created with mode `0700` and the
/// socket file is made `0600` before the socket listens, so only this user
/// can ever reach it. A socket on an explicit path gets the permissions the
/// `umask` gives, as with `std`'s `UnixListener`.
///
/// A listener removes its socket file, and the directory it made, when it
/// is dropped or [closed](Self::close), in the process that created it
/// only (a fork child holding a copy leaves them alone). An abstract name
/// disappears with the socket; a TCP port is released.
///
/// # Python names
///
/// | Python | here |
/// |---|---|
/// | `Listener(address, family, backlog, authkey)` | [`Listener::bind`], [`Listener::builder`] |
/// | `l.accept()` | [`accept`](Self::accept), [`accept_timeout`](Self::accept_timeout) |
/// | `l.address`, `l.last_accepted` | [`address`](Self::address), [`last_accepted`](Self::last_accepted) |
/// | `l.close()` | [`close`](Self::close) or drop; using a closed listener does not compile |
pub struct Listener {
    fd: Fd,
    address: Address,
    authkey: Option<Vec<u8>>,
    auth_timeout: Duration,
    max_pending: usize,
    last_accepted: Mutex<Option<Address>>,
    /// Handshakes under way and failures not yet reported (see the module
    /// docs).
    handshakes: Mutex<Handshakes>,
    /// Declared after `fd`: the socket closes before its file is removed.
    _files: Option<SocketFiles>,
}

/// Options for a [`Listener`]; made by [`Listener::builder`].
#[derive(Clone)]
pub struct ListenerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    backlog: u32,
    auth_timeout: Duration,
    max_pending: usize,
}

/// The default backlog: enough that a burst of clients is queued rather
/// than left retrying (Python's default of 1 would make TCP clients wait
/// out SYN retransmissions).
const DEFAULT_BACKLOG: u32 = 128;
/// The default bound on handshakes under way at once.
const DEFAULT_MAX_PENDING: usize = 32;

/// One accepted connection whose peer is authenticating.
struct Pending {
    conn: Connection,
    peer: Option<Address>,
    handshake: Accepting,
}

/// The shared part of a keyed listener's handshakes. A thread inside
/// `accept` takes the pending ones out (counted in `held`), drives them,
/// and puts back those not over when it returns.
#[derive(Default)]
struct Handshakes {
    pending: Vec<Pending>,
    held: usize,
    failures: VecDeque<Error>,
    /// Failures dropped because `failures` was full.
    dropped: usize,
}

impl Handshakes {
    fn fail(&mut self, e: Error, bound: usize) {
        if self.failures.len() >= bound {
            self.failures.pop_front();
            self.dropped += 1;
        }
        self.failures.push_back(e);
    }

    fn next_failure(&mut self) -> Option<Error> {
        let e = self.failures.pop_front()?;
        if self.dropped == 0 {
            return Some(e);
        }
        let dropped = std::mem::take(&mut self.dropped);
        let kind = e.kind();
        Some(
            Error::new(
                kind,
                format!("{e} (and {dropped} earlier failed handshakes were not reported: too many failed at once)"),
            )
            .with_source(e),
        )
    }
}

fn evicted_error(peer: Option<&Address>, listener: &Listener) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "the handshake with {} was abandoned unfinished: {} handshakes were pending at {}, the limit \
             (see ListenerBuilder::max_pending_handshakes)",
            peer_name(peer),
            listener.max_pending,
            listener.address
        ),
    )
}

/// The error `accept` reports for a failed handshake: the handshake's
/// kind and message, and the peer's address.
fn handshake_failed(peer: Option<&Address>, e: &Error) -> Error {
    Error::new(e.kind(), format!("authentication of {} failed: {e}", peer_name(peer)))
}

fn peer_name(peer: Option<&Address>) -> String {
    peer.map_or_else(|| "an unnamed peer".to_owned(), |a| a.to_string())
}

impl Listener {
    /// Listens at `address`, or at a fresh private Unix socket if `None`;
    /// with `authkey`, every accepted peer must authenticate (Python's
    /// `Listener(address, authkey=authkey)`). See [`Listener::builder`] for
    /// the backlog and the handshake deadline.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let tcp = multiproc::Listener::bind(Some("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()), None)?;
    /// let multiproc::Address::Tcp(bound) = tcp.address() else { unreachable!() };
    /// assert_ne!(bound.port(), 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the address is in use (a listener or a file is
    /// there) or cannot be bound; [`ErrorKind::InvalidInput`] for a Unix
    /// name longer than 107 bytes, or an empty path.
    pub fn bind(address: Option<Address>, authkey: Option<&[u8]>) -> Result<Listener> {
        let mut b = Listener::builder();
        b.address = address;
        b.authkey = authkey.map(<[u8]>::to_vec);
        b.bind()
    }

    /// Options beyond [`bind`](Self::bind)'s: backlog, handshake deadline.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let listener = multiproc::Listener::builder()
    ///     .address(multiproc::Address::Abstract(format!("doc-{}", std::process::id()).into_bytes()))
    ///     .authkey(b"secret")
    ///     .backlog(16)
    ///     .auth_timeout(Duration::from_secs(2))
    ///     .bind()?;
    /// # drop(listener);
    /// # Ok(()) }
    /// ```
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder {
            address: None,
            authkey: None,
            backlog: DEFAULT_BACKLOG,
            auth_timeout: auth::DEFAULT_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }

    /// Waits for a peer and, if this listener has a key, for it to
    /// authenticate; returns the first peer that has. Handshakes run
    /// concurrently (see [concurrent authentication](Listener#concurrent-authentication)): peers that are slow
    /// or silent never hold up one that authenticates.
    ///
    /// # Errors
    ///
    /// A handshake that failed, one per call (after any peer that
    /// authenticated):
    /// [`ErrorKind::Authentication`] when the peer does not prove it knows
    /// the key (`"digest received was wrong"`) or rejects this side's proof,
    /// or closes the connection during the handshake;
    /// [`ErrorKind::Timeout`] when the handshake does not finish within the
    /// [auth timeout](ListenerBuilder::auth_timeout), or was evicted by a
    /// newer connection when [too many were
    /// pending](ListenerBuilder::max_pending_handshakes);
    /// [`ErrorKind::Protocol`] when the peer's bytes are not messages;
    /// [`ErrorKind::Io`]. After any of these the listener keeps working: the
    /// failed peer's connection is closed, and the other handshakes go on.
    pub fn accept(&self) -> Result<Connection> {
        self.accept_until(None)
    }

    /// Like [`accept`](Self::accept), waiting at most `timeout` in all.
    /// Handshakes still under way then stay pending for the next call,
    /// each within its own deadline (see [`ListenerBuilder::auth_timeout`]).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let listener = multiproc::Listener::bind(None, None)?;
    /// let e = listener.accept_timeout(std::time::Duration::from_millis(10)).unwrap_err();
    /// assert!(e.is_timeout());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when no peer connected (and authenticated) in
    /// time, and as for [`accept`](Self::accept).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Some((super::deadline(timeout), timeout)))
    }

    fn accept_until(&self, deadline: Option<(Instant, Duration)>) -> Result<Connection> {
        let Some(key) = &self.authkey else {
            let (fd, peer) = self.take_connection(deadline)?;
            *lock(&self.last_accepted) = peer;
            return Ok(Connection::from_socket(fd));
        };
        let mut mine = {
            let mut shared = lock(&self.handshakes);
            if let Some(e) = shared.next_failure() {
                return Err(e);
            }
            let mine = std::mem::take(&mut shared.pending);
            shared.held += mine.len();
            mine
        };
        let result = self.drive(key, &mut mine, deadline);
        let mut shared = lock(&self.handshakes);
        shared.held -= mine.len();
        shared.pending.append(&mut mine);
        drop(shared);
        result.map(|p| self.accepted(p))
    }

    fn accepted(&self, p: Pending) -> Connection {
        *lock(&self.last_accepted) = p.peer;
        p.conn
    }

    /// Drives the handshakes in `mine` and takes new connections into them
    /// until one is over (returned, out of `mine`), one failed, or the
    /// deadline. Every change to `mine` is counted in `held`.
    fn drive(&self, key: &[u8], mine: &mut Vec<Pending>, deadline: Option<(Instant, Duration)>) -> Result<Pending> {
        let io_err = |e| Error::io(format!("failed to accept a connection at {}", self.address), e);
        // Descriptors of handshakes whose peer sent something; `None`: all
        // (the first round, where some may have been waiting for a caller).
        let mut readable: Option<Vec<RawFd>> = None;
        loop {
            // New connections first: their challenge goes out at once.
            while let Some((fd, peer)) = sys::accept(&self.fd).map_err(io_err)? {
                self.start_handshake(fd, peer, mine);
            }
            // Then every handshake whose peer sent something, or whose
            // deadline has come.
            let now = Instant::now();
            let mut failed = None;
            let mut i = 0;
            while i < mine.len() {
                let p = &mut mine[i];
                let due =
                    readable.as_ref().is_none_or(|r| r.contains(&p.conn.raw_fd())) || now >= p.handshake.deadline();
                let advanced = if due {
                    p.handshake.advance(&p.conn, key)
                } else {
                    Ok(false)
                };
                match advanced {
                    Ok(false) => i += 1,
                    Ok(true) => {
                        let p = mine.swap_remove(i);
                        let mut shared = lock(&self.handshakes);
                        shared.held -= 1;
                        if let Some(e) = failed {
                            // Reported by a later call: this peer goes first.
                            shared.failures.push_front(e);
                        }
                        return Ok(p);
                    }
                    Err(e) => {
                        let p = mine.swap_remove(i);
                        let e = handshake_failed(p.peer.as_ref(), &e);
                        drop(p);
                        let mut shared = lock(&self.handshakes);
                        shared.held -= 1;
                        match failed {
                            None => failed = Some(e),
                            Some(_) => shared.fail(e, self.max_pending),
                        }
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let now = Instant::now();
            let caller_left = deadline.map(|(d, _)| d.saturating_duration_since(now));
            if caller_left == Some(Duration::ZERO) {
                let waited = deadline.map_or(Duration::ZERO, |(_, t)| t);
                let pending = match mine.len() {
                    0 => String::new(),
                    n => format!(" ({n} still authenticating)"),
                };
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no connection was accepted at {} within {waited:?}{pending}",
                        self.address
                    ),
                ));
            }
            let first_due = mine
                .iter()
                .map(|p| p.handshake.deadline().saturating_duration_since(now))
                .min();
            let left = match (caller_left, first_due) {
                (Some(a), Some(d)) => Some(a.min(d)),
                (a, d) => a.or(d),
            };
            let mut fds = Vec::with_capacity(mine.len() + 1);
            fds.push(self.fd.raw());
            fds.extend(mine.iter().map(|p| p.conn.raw_fd()));
            let polled = sys::poll_readable_set(&fds, left).map_err(io_err)?;
            readable = Some(
                fds.iter()
                    .zip(polled)
                    .skip(1)
                    .filter_map(|(&fd, r)| r.then_some(fd))
                    .collect(),
            );
        }
    }

    /// Takes an accepted socket into `mine` and sends it the challenge;
    /// when the set of pending handshakes is full, the oldest is evicted
    /// first (see the module docs).
    fn start_handshake(&self, fd: Fd, peer: PeerAddr, mine: &mut Vec<Pending>) {
        if let Address::Tcp(_) = self.address {
            // Latency only, see `take_connection`.
            let _ = sys::set_nodelay(&fd);
        }
        let peer = Address::from_peer(peer);
        let conn = Connection::from_socket(fd);
        let mut shared = lock(&self.handshakes);
        if shared.pending.len() + shared.held >= self.max_pending {
            let in_mine = mine
                .iter()
                .map(|p| p.handshake.deadline())
                .enumerate()
                .min_by_key(|&(_, d)| d);
            let in_shared = shared
                .pending
                .iter()
                .map(|p| p.handshake.deadline())
                .enumerate()
                .min_by_key(|&(_, d)| d);
            let evicted = match (in_mine, in_shared) {
                (Some((i, a)), Some((_, b))) if a <= b => {
                    shared.held -= 1;
                    mine.swap_remove(i)
                }
                (Some((i, _)), None) => {
                    shared.held -= 1;
                    mine.swap_remove(i)
                }
                (_, Some((i, _))) => shared.pending.swap_remove(i),
                // Every pending handshake is held by other threads: this
                // connection is the one refused.
                (None, None) => {
                    let e = evicted_error(peer.as_ref(), self);
                    shared.fail(e, self.max_pending);
                    return;
                }
            };
            let e = evicted_error(evicted.peer.as_ref(), self);
            shared.fail(e, self.max_pending);
        }
        drop(shared);
        match Accepting::start(&conn, self.auth_timeout) {
            Ok(handshake) => {
                mine.push(Pending { conn, peer, handshake });
                lock(&self.handshakes).held += 1;
            }
            Err(e) => {
                let e = handshake_failed(peer.as_ref(), &e);
                lock(&self.handshakes).fail(e, self.max_pending);
            }
        }
    }

    /// Waits for a connection without a handshake.
    fn take_connection(&self, deadline: Option<(Instant, Duration)>) -> Result<(Fd, Option<Address>)> {
        let io_err = |e| Error::io(format!("failed to accept a connection at {}", self.address), e);
        let (fd, peer) = loop {
            if let Some(got) = sys::accept(&self.fd).map_err(io_err)? {
                break got;
            }
            let left = deadline.map(|(d, _)| d.saturating_duration_since(Instant::now()));
            if !self.fd.poll_readable(left).map_err(io_err)? {
                let waited = deadline.map_or(Duration::ZERO, |(_, t)| t);
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no connection arrived at {} within {waited:?}", self.address),
                ));
            }
        };
        if let Address::Tcp(_) = self.address {
            // Latency only: a socket this fails on (the peer already
            // reset it) fails the handshake or first receive more clearly.
            let _ = sys::set_nodelay(&fd);
        }
        Ok((fd, Address::from_peer(peer)))
    }

    /// The address this listener is bound to; for TCP port 0, the port the
    /// system picked.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The address of the peer of the last connection [`accept`](Self::accept)
    /// returned. `None` before the first, and for a Unix peer that never
    /// bound its socket to a name (a [`Client`] never does).
    pub fn last_accepted(&self) -> Option<Address> {
        lock(&self.last_accepted).clone()
    }

    /// `true` if accepted peers must authenticate.
    pub fn is_authenticated(&self) -> bool {
        self.authkey.is_some()
    }

    /// Stops listening and removes the socket file (dropping does the
    /// same). Connections already accepted stay open.
    pub fn close(self) {}
}

impl ListenerBuilder {
    /// The address to listen at (default: a fresh private Unix socket, see
    /// [the default address](Listener#the-default-address)).
    pub fn address(mut self, address: impl Into<Address>) -> ListenerBuilder {
        self.address = Some(address.into());
        self
    }

    /// Requires every peer to prove it knows `key`, and proves it to them
    /// (HMAC-SHA256 challenge-response both ways, Python 3.12's protocol;
    /// the key itself is never sent). Without a key nothing is checked.
    /// The same key must be given to [`Client`].
    pub fn authkey(mut self, key: &[u8]) -> ListenerBuilder {
        self.authkey = Some(key.to_vec());
        self
    }

    /// How many connections the system queues before `accept` takes them
    /// (default 128; Python's default is 1). The system caps it at
    /// `net.core.somaxconn`.
    pub fn backlog(mut self, backlog: u32) -> ListenerBuilder {
        self.backlog = backlog;
        self
    }

    /// How long the authentication handshake of one accepted peer may take
    /// (default 10 s), so that a silent or slow peer cannot hold `accept`
    /// up for longer.
    pub fn auth_timeout(mut self, timeout: Duration) -> ListenerBuilder {
        self.auth_timeout = timeout;
        self
    }

    /// How many handshakes may be under way at once (default 32; at least
    /// 1). A connection that arrives when this many are pending evicts the
    /// oldest: its connection is closed and one `accept` reports it as an
    /// [`ErrorKind::Timeout`] error (see [concurrent authentication](Listener#concurrent-authentication)).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let listener = multiproc::Listener::builder()
    ///     .authkey(b"secret")
    ///     .max_pending_handshakes(4)
    ///     .bind()?;
    /// # drop(listener);
    /// # Ok(()) }
    /// ```
    pub fn max_pending_handshakes(mut self, max: usize) -> ListenerBuilder {
        self.max_pending = max.max(1);
        self
    }

    /// Binds and listens.
    ///
    /// # Errors
    ///
    /// As for [`Listener::bind`].
    pub fn bind(self) -> Result<Listener> {
        let backlog = i32::try_from(self.backlog).unwrap_or(i32::MAX);
        let (fd, address, files) = match self.address {
            None => bind_private(backlog)?,
            Some(address) => {
                address.check()?;
                let fd = sys::bound_socket(address.sock_addr()).map_err(|e| bind_error(&address, e))?;
                let files = match &address {
                    Address::Unix(path) => Some(SocketFiles::new(Some(path.clone()), None)),
                    _ => None,
                };
                if let Address::Unix(path) = &address {
                    // Owner-only before it listens: nobody can connect
                    // before `listen`, so no moment exists where the socket
                    // accepts others.
                    super::portable::make_private(path)
                        .map_err(|e| Error::io(format!("failed to make {} private", path.display()), e))?;
                }
                let address = match address {
                    Address::Tcp(_) => Address::Tcp(
                        sys::local_inet_addr(&fd).map_err(|e| Error::io("failed to read the bound TCP address", e))?,
                    ),
                    other => other,
                };
                sys::listen(&fd, backlog).map_err(|e| Error::io(format!("failed to listen at {address}"), e))?;
                (fd, address, files)
            }
        };
        Ok(Listener {
            fd: fd.into_endpoint(),
            address,
            authkey: self.authkey,
            auth_timeout: self.auth_timeout,
            max_pending: self.max_pending,
            last_accepted: Mutex::new(None),
            handshakes: Mutex::new(Handshakes::default()),
            _files: files,
        })
    }
}

/// Binds a socket in a fresh private directory; see the module docs.
fn bind_private(backlog: i32) -> Result<(Fd, Address, Option<SocketFiles>)> {
    let base = std::env::temp_dir();
    let mut attempts = 0;
    let dir = loop {
        let dir = base.join(format!("pymp-{}", random_name()?));
        match super::portable::create_private_dir(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => {
                return Err(Error::io(
                    format!("failed to create a private directory in {}", base.display()),
                    e,
                ));
            }
        }
    };
    let mut files = SocketFiles::new(None, Some(dir.clone()));
    let address = Address::Unix(dir.join(format!("listener-{}", random_name()?)));
    address.check()?;
    let fd = sys::bound_socket(address.sock_addr()).map_err(|e| bind_error(&address, e))?;
    let Address::Unix(path) = &address else {
        unreachable!("made as a path just above")
    };
    files.socket = Some(SocketFiles::identify(path.clone()));
    super::portable::make_private(path)
        .map_err(|e| Error::io(format!("failed to make {} private", path.display()), e))?;
    sys::listen(&fd, backlog).map_err(|e| Error::io(format!("failed to listen at {address}"), e))?;
    Ok((fd, address, Some(files)))
}

fn bind_error(address: &Address, e: io::Error) -> Error {
    let hint = match (e.raw_os_error(), address) {
        (Some(libc::EADDRINUSE), Address::Unix(_)) => {
            " (another listener or a file is there; remove a stale socket file first)"
        }
        (Some(libc::EADDRINUSE), _) => " (another socket is bound there)",
        _ => "",
    };
    Error::io(format!("failed to bind a listener to {address}{hint}"), e)
}

/// Eight characters from `[a-z0-9]`, as in Python's temporary names.
fn random_name() -> Result<String> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 8];
    sys::random_bytes(&mut bytes).map_err(|e| Error::io("failed to make a random socket name", e))?;
    Ok(bytes
        .iter()
        .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect())
}

/// The socket file (and the private directory) a listener made, removed
/// on drop by the process that made them.
struct SocketFiles {
    /// The path and the (device, inode) it had once bound: a file someone
    /// else put there since is not ours to remove.
    socket: Option<(PathBuf, Option<(u64, u64)>)>,
    dir: Option<PathBuf>,
    pid: u32,
}

impl SocketFiles {
    fn new(socket: Option<PathBuf>, dir: Option<PathBuf>) -> SocketFiles {
        SocketFiles {
            socket: socket.map(SocketFiles::identify),
            dir,
            pid: sys::getpid(),
        }
    }

    fn identify(path: PathBuf) -> (PathBuf, Option<(u64, u64)>) {
        let id = super::portable::file_id(&path);
        (path, id)
    }
}

impl Drop for SocketFiles {
    fn drop(&mut self) {
        if self.pid != sys::getpid() {
            return;
        }
        // Failures are ignored: a drop cannot report them, and a file or
        // directory someone else removed or changed is not ours to insist on.
        if let Some((path, id)) = &self.socket {
            let now = super::portable::file_id(path);
            if now.is_some() && now == *id {
                let _ = fs::remove_file(path);
            }
        }
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.borrow()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Listener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is secret: never print it.
        f.debug_struct("Listener")
            .field("fd", &self.fd.raw())
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .field("auth_timeout", &self.auth_timeout)
            .field("max_pending_handshakes", &self.max_pending)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ListenerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerBuilder")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .field("backlog", &self.backlog)
            .field("auth_timeout", &self.auth_timeout)
            .field("max_pending_handshakes", &self.max_pending)
            .finish_non_exhaustive()
    }
}

/// Connects to a [`Listener`] (Python's `multiprocessing.connection.Client`).
///
/// Not a value: its functions return a [`Connection`].
/// [`Client::connect`] covers Python's `Client(address, authkey=key)`;
/// [`Client::builder`] adds a connect timeout and the handshake deadline.
///
/// ```
/// use multiproc::{Address, Client, ErrorKind};
///
/// // Nobody listens there.
/// let e = Client::connect(Address::Abstract(b"nobody-listens-here".to_vec()), None).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::Io);
/// ```
#[derive(Debug)]
pub enum Client {}

/// Options for connecting to a [`Listener`]; made by [`Client::builder`].
#[derive(Clone)]
pub struct ClientBuilder {
    authkey: Option<Vec<u8>>,
    auth_timeout: Duration,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to `address`; with `authkey`, answers the listener's
    /// challenge and then challenges it (the listener must have the same
    /// key). As in Python, no key means no authentication.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when nothing listens at the address or the
    /// connection fails; with a key, [`ErrorKind::Authentication`] when the
    /// listener rejects this side's proof (`"digest sent was rejected"`) or
    /// fails to prove it knows the key (`"digest received was wrong"`),
    /// [`ErrorKind::Timeout`] when the handshake does not finish within its
    /// deadline (10 s by default; the listener must call `accept` in that
    /// time), [`ErrorKind::Protocol`] when the listener's bytes are not
    /// messages; [`ErrorKind::InvalidInput`] for a Unix name longer than
    /// 107 bytes.
    pub fn connect(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Connection> {
        let mut b = Client::builder();
        b.authkey = authkey.map(<[u8]>::to_vec);
        b.connect(address)
    }

    /// Like [`connect`](Self::connect), waiting at most `timeout` for the
    /// connection to be established (a TCP handshake, or room in a full
    /// Unix backlog); the authentication handshake has its own deadline.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when the connection was not established in
    /// time, and as for [`connect`](Self::connect).
    pub fn connect_timeout(
        address: impl Into<Address>,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Connection> {
        let mut b = Client::builder().timeout(timeout);
        b.authkey = authkey.map(<[u8]>::to_vec);
        b.connect(address)
    }

    /// Options beyond [`connect`](Self::connect)'s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Client, Listener};
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let listener = Listener::builder().authkey(b"k").bind()?;
    /// let client = Client::builder()
    ///     .authkey(b"k")
    ///     .timeout(Duration::from_secs(1))
    ///     .auth_timeout(Duration::from_secs(5));
    /// let address = listener.address().clone();
    /// let t = std::thread::spawn(move || client.connect(&address).map(drop));
    /// listener.accept()?;
    /// t.join().expect("client thread")?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            authkey: None,
            auth_timeout: auth::DEFAULT_TIMEOUT,
            timeout: None,
        }
    }
}

impl ClientBuilder {
    /// Authenticates with `key` (see [`ListenerBuilder::authkey`]).
    pub fn authkey(mut self, key: &[u8]) -> ClientBuilder {
        self.authkey = Some(key.to_vec());
        self
    }

    /// How long the authentication handshake may take, counted from the
    /// connection (default 10 s). The listener only starts it when it
    /// accepts, so this also bounds how long the listener may take to call
    /// `accept`.
    pub fn auth_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.auth_timeout = timeout;
        self
    }

    /// How long establishing the connection may take (default: as long as
    /// the system allows).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// Connects to `address`, then authenticates if a key was given.
    ///
    /// # Errors
    ///
    /// As for [`Client::connect`] and [`Client::connect_timeout`].
    pub fn connect(&self, address: impl Into<Address>) -> Result<Connection> {
        let address = address.into();
        address.check()?;
        let fd = sys::connect(address.sock_addr(), self.timeout).map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => Error::new(
                ErrorKind::Timeout,
                format!(
                    "could not connect to {address} within {:?}",
                    self.timeout.unwrap_or_default()
                ),
            ),
            _ => Error::io(format!("failed to connect to {address}"), e),
        })?;
        if let Address::Tcp(_) = address {
            // Latency only; see `Listener::accept_until`.
            let _ = sys::set_nodelay(&fd);
        }
        let conn = Connection::from_socket(fd);
        if let Some(key) = &self.authkey {
            Handshake::new(self.auth_timeout).connect(&conn, key)?;
        }
        Ok(conn)
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("authenticated", &self.authkey.is_some())
            .field("auth_timeout", &self.auth_timeout)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
