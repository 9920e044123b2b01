//! [`Address`]: where a listener listens and a client connects, and its
//! form on the wire.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, ErrorKind, Result},
    sys::{self, PeerAddr, SockAddr},
};

/// Where a [`Listener`](super::Listener) listens and a [`Client`](super::Client) connects (Python's
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
    /// [`Listener::address`](super::Listener::address) reports it.
    Tcp(SocketAddr),
}

impl Address {
    pub(super) fn sock_addr(&self) -> SockAddr<'_> {
        match self {
            Address::Unix(p) => SockAddr::Path(p),
            Address::Abstract(n) => SockAddr::Abstract(n),
            Address::Tcp(a) => SockAddr::Inet(*a),
        }
    }

    pub(super) fn from_peer(peer: PeerAddr) -> Option<Address> {
        match peer {
            PeerAddr::Unnamed => None,
            PeerAddr::Path(p) => Some(Address::Unix(p)),
            PeerAddr::Abstract(n) => Some(Address::Abstract(n)),
            PeerAddr::Inet(a) => Some(Address::Tcp(a)),
        }
    }

    pub(super) fn check(&self) -> Result<()> {
        let name = match self {
            Address::Unix(p) => {
                let bytes = crate::connection::portable::path_bytes(p);
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
            WireAddress::Unix(p) => Address::Unix(crate::connection::portable::path_from_bytes(p)),
            WireAddress::Abstract(n) => Address::Abstract(n),
            WireAddress::Tcp(a) => Address::Tcp(a),
        }
    }
}

impl From<Address> for WireAddress {
    fn from(a: Address) -> WireAddress {
        match a {
            Address::Unix(p) => WireAddress::Unix(crate::connection::portable::path_into_bytes(p)),
            Address::Abstract(n) => WireAddress::Abstract(n),
            Address::Tcp(a) => WireAddress::Tcp(a),
        }
    }
}
