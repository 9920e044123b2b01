//! Stream sockets by address: Unix (a filesystem path or a Linux abstract
//! name) and TCP, for `Listener` and `Client`.
//!
//! Every socket is created close-on-exec (see the backend's docs). Abstract
//! names exist on Linux only. A listening socket is non-blocking, so that
//! an accept racing another thread for the same connection never blocks
//! past its deadline; accepted and connected sockets are blocking, as a
//! connection expects.

use std::{
    ffi::OsStr,
    io, mem,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::{
    Fd, cvt,
    fd::poll_one,
    os::{accept_raw, socket_raw},
};
use crate::sys::{PeerAddr, SockAddr};

/// The longest Unix socket path or abstract name, in bytes (`sun_path`
/// holds 108 bytes on Linux, 104 on the Apple platforms: a path needs its
/// NUL, a name its leading NUL).
pub(crate) const UNIX_NAME_MAX: usize = SUN_PATH_LEN - 1;

/// Bytes of `sockaddr_un::sun_path`.
const SUN_PATH_LEN: usize = {
    // SAFETY: an all-zero sockaddr_un is a valid value (evaluated at
    // compile time, only to take the array's length).
    let sun: libc::sockaddr_un = unsafe { mem::zeroed() };
    sun.sun_path.len()
};

/// Where `sun_path` starts in a `sockaddr_un` (after the family; on the
/// Apple platforms after a length byte too).
const SUN_PATH_OFFSET: usize = mem::offset_of!(libc::sockaddr_un, sun_path);

/// A `sockaddr` ready for the kernel.
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn empty() -> RawAddr {
        RawAddr {
            // SAFETY: an all-zero sockaddr_storage is a valid (unspecified) address.
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    fn ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    fn ptr_mut(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut libc::sockaddr_storage).cast()
    }

    fn family(&self) -> libc::c_int {
        libc::c_int::from(self.storage.ss_family)
    }
}

fn encode(addr: SockAddr<'_>) -> io::Result<RawAddr> {
    let mut raw = RawAddr::empty();
    match addr {
        SockAddr::Path(path) => encode_unix(&mut raw, path.as_os_str().as_bytes(), false)?,
        SockAddr::Abstract(name) => encode_unix(&mut raw, name, true)?,
        SockAddr::Inet(SocketAddr::V4(a)) => {
            // SAFETY: an all-zero sockaddr_in is valid (the Apple platforms'
            // has a length byte besides these fields, which may stay 0).
            let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { raw.ptr_mut().cast::<libc::sockaddr_in>().write(sin) };
            raw.len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        SockAddr::Inet(SocketAddr::V6(a)) => {
            // SAFETY: as for sockaddr_in.
            let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { raw.ptr_mut().cast::<libc::sockaddr_in6>().write(sin6) };
            raw.len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        }
    }
    Ok(raw)
}

fn encode_unix(raw: &mut RawAddr, name: &[u8], abstract_name: bool) -> io::Result<()> {
    if name.len() > UNIX_NAME_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a Unix socket name has at most {UNIX_NAME_MAX} bytes, this one has {}",
                name.len()
            ),
        ));
    }
    if abstract_name && cfg!(not(target_os = "linux")) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "abstract Unix socket names exist on Linux only",
        ));
    }
    if !abstract_name && (name.is_empty() || name.contains(&0)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a Unix socket path must be non-empty and contain no NUL byte",
        ));
    }
    // SAFETY: an all-zero sockaddr_un is valid; the storage is larger than
    // and aligned for it.
    let sun = unsafe { &mut *raw.ptr_mut().cast::<libc::sockaddr_un>() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let start = usize::from(abstract_name);
    for (dst, &src) in sun.sun_path[start..].iter_mut().zip(name) {
        *dst = src as libc::c_char;
    }
    let base = SUN_PATH_OFFSET;
    // A path is passed with its NUL; an abstract name is exactly its bytes
    // after the leading NUL.
    raw.len = (base + start + name.len() + usize::from(!abstract_name)) as libc::socklen_t;
    Ok(())
}

fn decode(raw: &RawAddr) -> PeerAddr {
    match raw.family() {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let sin = unsafe { &*raw.ptr().cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            PeerAddr::Inet(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let sin6 = unsafe { &*raw.ptr().cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            PeerAddr::Inet(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        libc::AF_UNIX => {
            // SAFETY: the kernel wrote a sockaddr_un for AF_UNIX.
            let sun = unsafe { &*raw.ptr().cast::<libc::sockaddr_un>() };
            let base = SUN_PATH_OFFSET;
            let n = (raw.len as usize).saturating_sub(base).min(sun.sun_path.len());
            let bytes: Vec<u8> = sun.sun_path[..n].iter().map(|&c| c as u8).collect();
            match bytes.split_first() {
                None => PeerAddr::Unnamed,
                Some((0, name)) => PeerAddr::Abstract(name.to_vec()),
                Some(_) => {
                    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                    PeerAddr::Path(PathBuf::from(OsStr::from_bytes(&bytes[..end])))
                }
            }
        }
        _ => PeerAddr::Unnamed,
    }
}

fn family(addr: SockAddr<'_>) -> libc::c_int {
    match addr {
        SockAddr::Path(_) | SockAddr::Abstract(_) => libc::AF_UNIX,
        SockAddr::Inet(SocketAddr::V4(_)) => libc::AF_INET,
        SockAddr::Inet(SocketAddr::V6(_)) => libc::AF_INET6,
    }
}

/// A close-on-exec stream socket of the family of `addr`; non-blocking
/// if asked.
fn stream_socket(addr: SockAddr<'_>, nonblocking: bool) -> io::Result<Fd> {
    let raw = socket_raw(family(addr), nonblocking)?;
    // SAFETY: socket returned a new descriptor we own.
    Ok(unsafe { Fd::from_raw(raw) })
}

/// A non-blocking socket of the family of `addr`, bound to it (with
/// `SO_REUSEADDR` for TCP, so that a port in `TIME_WAIT` can be bound
/// again, as Python does), not yet listening.
pub(crate) fn bound_socket(addr: SockAddr<'_>) -> io::Result<Fd> {
    let raw = encode(addr)?;
    let fd = stream_socket(addr, true)?;
    if let SockAddr::Inet(_) = addr {
        set_int_option(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    // SAFETY: raw holds a valid address of `raw.len` bytes.
    cvt(unsafe { libc::bind(fd.raw(), raw.ptr(), raw.len) })?;
    Ok(fd)
}

/// Marks a bound socket as listening.
pub(crate) fn listen(fd: &Fd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen on an open descriptor.
    cvt(unsafe { libc::listen(fd.raw(), backlog) }).map(drop)
}

/// The address a TCP socket is bound to (its port, when it asked for 0).
pub(crate) fn local_inet_addr(fd: &Fd) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::empty();
    // SAFETY: raw is writable storage of `raw.len` bytes.
    cvt(unsafe { libc::getsockname(fd.raw(), raw.ptr_mut(), &mut raw.len) })?;
    match decode(&raw) {
        PeerAddr::Inet(a) => Ok(a),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "not a TCP socket")),
    }
}

/// Takes one pending connection from a non-blocking listening socket:
/// `None` when there is none (or it was reset before it was taken). The
/// new socket is blocking and close-on-exec.
pub(crate) fn accept(listener: &Fd) -> io::Result<Option<(Fd, PeerAddr)>> {
    let mut raw = RawAddr::empty();
    // SAFETY: raw is writable storage of `raw.len` bytes.
    let res = unsafe { accept_raw(listener.raw(), raw.ptr_mut(), &mut raw.len) };
    match res {
        // SAFETY: accept returned a new descriptor we own.
        Ok(fd) => Ok(Some((unsafe { Fd::from_raw(fd) }, decode(&raw)))),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ECONNABORTED)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A blocking, close-on-exec stream socket connected to `addr`, waiting at
/// most `timeout` (`None`: as long as the system does) for the connection.
/// Running out of time is an [`io::ErrorKind::TimedOut`] error.
pub(crate) fn connect(addr: SockAddr<'_>, timeout: Option<Duration>) -> io::Result<Fd> {
    let raw = encode(addr)?;
    match addr {
        SockAddr::Inet(_) => connect_inet(addr, &raw, timeout),
        SockAddr::Path(_) | SockAddr::Abstract(_) => connect_unix(addr, &raw, timeout),
    }
}

/// TCP: a non-blocking connect, a wait for writability, then the socket is
/// made blocking again.
fn connect_inet(addr: SockAddr<'_>, raw: &RawAddr, timeout: Option<Duration>) -> io::Result<Fd> {
    let fd = stream_socket(addr, true)?;
    // SAFETY: raw holds a valid address of `raw.len` bytes.
    match cvt(unsafe { libc::connect(fd.raw(), raw.ptr(), raw.len) }) {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR)) => {
            // Interrupted or not, the connection proceeds in the background.
            if !poll_one(fd.raw(), libc::POLLOUT, timeout)? {
                return Err(timed_out());
            }
            let err = get_int_option(&fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
        }
        Err(e) => return Err(e),
    }
    set_blocking(&fd)?;
    Ok(fd)
}

/// Unix: a blocking connect only waits while the listener's backlog is
/// full, for at most the socket's send timeout, after which it fails with
/// `EAGAIN`; the timeout is cleared afterwards (it would bound every send).
fn connect_unix(addr: SockAddr<'_>, raw: &RawAddr, timeout: Option<Duration>) -> io::Result<Fd> {
    let fd = stream_socket(addr, false)?;
    // A timeout too large to represent leaves the wait unbounded.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        if let Some(d) = deadline {
            // Zero would mean "no timeout": wait at least a microsecond.
            let left = d.saturating_duration_since(Instant::now());
            set_send_timeout(&fd, Some(left.max(Duration::from_micros(1))))?;
        }
        // SAFETY: raw holds a valid address of `raw.len` bytes.
        match cvt(unsafe { libc::connect(fd.raw(), raw.ptr(), raw.len) }) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && deadline.is_some() => return Err(timed_out()),
            Err(e) => return Err(e),
        }
    }
    if deadline.is_some() {
        set_send_timeout(&fd, None)?;
    }
    Ok(fd)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the connection was not established in time")
}

/// Sets `SO_SNDTIMEO` (`None` clears it).
fn set_send_timeout(fd: &Fd, timeout: Option<Duration>) -> io::Result<()> {
    let timeout = timeout.unwrap_or(Duration::ZERO);
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: tv is a timeval living across the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.raw(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn set_blocking(fd: &Fd) -> io::Result<()> {
    // SAFETY: F_GETFL on an open descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.raw(), libc::F_GETFL) })?;
    // SAFETY: F_SETFL with flags read just above.
    cvt(unsafe { libc::fcntl(fd.raw(), libc::F_SETFL, flags & !libc::O_NONBLOCK) }).map(drop)
}

/// Turns Nagle's algorithm off on a TCP socket: a message is one write, and
/// the authentication handshake is a ping-pong of small ones.
pub(crate) fn set_nodelay(fd: &Fd) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// `<netinet/tcp.h>` on Apple platforms (the libc crate lacks it):
/// seconds after which retransmissions stop and the connection drops.
#[cfg(target_vendor = "apple")]
const TCP_RXT_CONNDROPTIME: libc::c_int = 0x80;

/// Makes a TCP connection fail when the peer stops acknowledging for
/// `timeout` (`TCP_USER_TIMEOUT`), and probes an idle one (keepalive at
/// that period), so a read on a cut network ends with an error instead of
/// waiting forever.
pub(crate) fn set_tcp_liveness(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let ms = libc::c_int::try_from(timeout.as_millis())
        .unwrap_or(libc::c_int::MAX)
        .max(1);
    let secs = (ms / 1000).max(1);
    let raw = fd.as_raw_fd();
    // macOS has no TCP_USER_TIMEOUT: unacknowledged data is given up after
    // TCP_RXT_CONNDROPTIME seconds, and the idle time is TCP_KEEPALIVE.
    #[cfg(target_os = "linux")]
    let options = [
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 2),
    ];
    #[cfg(target_vendor = "apple")]
    let options = [
        (libc::IPPROTO_TCP, TCP_RXT_CONNDROPTIME, secs),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPALIVE, secs),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 2),
    ];
    #[cfg(target_vendor = "apple")]
    let _ = ms;
    for (level, name, value) in options {
        // SAFETY: value is a c_int living across the call; `raw` is open
        // for the borrow's lifetime.
        cvt(unsafe {
            libc::setsockopt(
                raw,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
    }
    Ok(())
}

/// Waits until `timeout` for the peer of a stream socket to shut down
/// its sending side or reset the connection (`POLLRDHUP`), without
/// reading; `true` once it has. Bytes the peer sent before count for
/// nothing: another thread may be reading them.
#[cfg(target_os = "linux")]
pub(crate) fn peer_closed(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    poll_one(fd.as_raw_fd(), libc::POLLRDHUP, Some(timeout))
}

/// Without `POLLRDHUP` (macOS): waits for readability, then peeks; an end
/// of stream or a reset is the peer's close. Bytes waiting for another
/// thread's read make the socket readable without saying anything of the
/// peer: the rest of `timeout` is slept, not spun, and the answer is
/// `false` (the next call looks again).
#[cfg(target_vendor = "apple")]
pub(crate) fn peer_closed(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let start = std::time::Instant::now();
    if !poll_one(fd.as_raw_fd(), libc::POLLIN, Some(timeout))? {
        return Ok(false);
    }
    let mut byte = 0u8;
    // SAFETY: one writable byte that lives across the call; the borrow
    // keeps the descriptor open.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Ok(true),
        n if n > 0 => {
            std::thread::sleep(timeout.saturating_sub(start.elapsed()));
            Ok(false)
        }
        _ => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
                _ => Ok(true),
            }
        }
    }
}

fn set_int_option(fd: &Fd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: value is a c_int living across the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.raw(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn get_int_option(fd: &Fd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are writable and live across the call.
    cvt(unsafe { libc::getsockopt(fd.raw(), level, name, (&mut value as *mut libc::c_int).cast(), &mut len) })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn unix_names_round_trip() {
        for (addr, peer) in [
            (
                SockAddr::Path(Path::new("/tmp/x.sock")),
                PeerAddr::Path("/tmp/x.sock".into()),
            ),
            (
                SockAddr::Abstract(b"name\0with nul"),
                PeerAddr::Abstract(b"name\0with nul".to_vec()),
            ),
            (SockAddr::Abstract(b""), PeerAddr::Abstract(Vec::new())),
        ] {
            assert_eq!(decode(&encode(addr).unwrap()), peer);
        }
        let long = vec![b'a'; UNIX_NAME_MAX + 1];
        assert_eq!(
            encode(SockAddr::Abstract(&long)).err().unwrap().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(encode(SockAddr::Path(Path::new(""))).is_err());
    }

    #[test]
    fn inet_addresses_round_trip() {
        for a in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(decode(&encode(SockAddr::Inet(a)).unwrap()), PeerAddr::Inet(a));
        }
    }
}
