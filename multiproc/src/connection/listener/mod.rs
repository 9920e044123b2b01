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
//! [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)). Evicting the oldest rather than refusing the
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

mod accept;
mod address;
mod client;
mod files;

use std::{fmt, sync::Mutex, time::Duration};

use self::{
    accept::Handshakes,
    files::{SocketFiles, bind_error, bind_private},
};
pub use self::{
    address::Address,
    client::{Client, ClientBuilder},
};
use super::{Connection, auth, lock};
use crate::{
    error::{Error, Result},
    sys::{self, Fd},
};

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
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the address is in use (a listener or a file is
    /// there) or cannot be bound; [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a Unix
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
    /// [`ErrorKind::Authentication`](crate::ErrorKind::Authentication) when the peer does not prove it knows
    /// the key (`"digest received was wrong"`) or rejects this side's proof,
    /// or closes the connection during the handshake;
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when the handshake does not finish within the
    /// [auth timeout](ListenerBuilder::auth_timeout), or was evicted by a
    /// newer connection when [too many were
    /// pending](ListenerBuilder::max_pending_handshakes);
    /// [`ErrorKind::Protocol`](crate::ErrorKind::Protocol) when the peer's bytes are not messages;
    /// [`ErrorKind::Io`](crate::ErrorKind::Io). After any of these the listener keeps working: the
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
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when no peer connected (and authenticated) in
    /// time, and as for [`accept`](Self::accept).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Some((super::deadline(timeout), timeout)))
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
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) error (see [concurrent authentication](Listener#concurrent-authentication)).
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
                    crate::connection::portable::make_private(path)
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
