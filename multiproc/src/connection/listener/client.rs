//! [`Client`](super::Client): connecting to a listener, and authenticating.

use std::{fmt, io, time::Duration};

use super::Address;
use crate::{
    connection::{
        Connection,
        auth::{self, Handshake},
    },
    error::{Error, ErrorKind, Result},
    sys,
};

/// Connects to a [`Listener`](super::Listener) (Python's `multiprocessing.connection.Client`).
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

/// Options for connecting to a [`Listener`](super::Listener); made by [`Client::builder`].
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
    /// Authenticates with `key` (see [`ListenerBuilder::authkey`](super::ListenerBuilder::authkey)).
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
