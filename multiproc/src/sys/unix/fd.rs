//! Owned descriptors and the stream sockets that carry frames.

use std::{
    io,
    mem::{self, MaybeUninit},
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd},
    time::Duration,
};

use super::{
    cvt, cvt_r,
    os::{PACKET_KIND, RECV_CLOEXEC, SEND_NOSIGNAL, adopt_received, is_eventfd_raw, is_full, socketpair_raw},
    poll_millis,
};

/// An owned descriptor. Closed on drop, except in a process other than the
/// one that created it (a `fork` child that inherited a copy of the owner's
/// memory): there the number may already belong to something else, so the
/// copy is forgotten instead (see `crate::registry::ForkLock::become_fork_child`).
#[derive(Debug)]
pub(crate) struct Fd {
    fd: Option<OwnedFd>,
    owner: u32,
}

impl Fd {
    pub(crate) fn from_owned(fd: OwnedFd) -> Fd {
        Fd {
            fd: Some(fd),
            owner: super::getpid(),
        }
    }

    /// Takes ownership of `raw`.
    ///
    /// # Safety
    /// `raw` must be an open descriptor that nothing else owns.
    ///
    /// A descriptor numbered 0, 1 or 2 (the parent runs with a standard
    /// stream closed) is moved above them: a fork child makes those numbers
    /// its standard streams, and a library socket there would receive its
    /// output.
    pub(crate) unsafe fn from_raw(raw: RawFd) -> Fd {
        // SAFETY: the caller hands over sole ownership of an open descriptor.
        let fd = Fd::from_owned(unsafe { OwnedFd::from_raw_fd(raw) });
        if raw > 2 {
            return fd;
        }
        // If even this fails (no free descriptor), keep the low number:
        // the caller still gets a working descriptor.
        fd.try_clone().unwrap_or(fd)
    }

    /// The same descriptor, owned as an endpoint's (a user-visible
    /// Connection or Queue): closed on drop in whichever process drops it,
    /// because such a value reaches a fork child only by being moved into
    /// it, and the child then owns its copy of the descriptor.
    pub(crate) fn into_endpoint(mut self) -> Fd {
        Fd {
            fd: self.fd.take(),
            owner: 0,
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    pub(crate) fn borrow(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().expect("an Fd is only emptied by Drop").as_fd()
    }

    /// Gives up the descriptor without closing it (its number was closed
    /// already, behind this value's back).
    pub(crate) fn forget(mut self) {
        if let Some(fd) = self.fd.take() {
            let _ = fd.into_raw_fd();
        }
    }

    /// Closes the descriptor now, even in a fork child that inherited it.
    pub(crate) fn close_now(mut self) {
        drop(self.fd.take());
    }

    /// A second descriptor for the same open file, close-on-exec.
    pub(crate) fn try_clone(&self) -> io::Result<Fd> {
        // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new one we
        // own, numbered 3 or above.
        let raw = cvt(unsafe { libc::fcntl(self.raw(), libc::F_DUPFD_CLOEXEC, 3) })?;
        // SAFETY: the duplicate is new and ours.
        Ok(unsafe { Fd::from_raw(raw) })
    }

    /// A new descriptor, close-on-exec, for the open file that `raw` names
    /// (which stays the caller's): to keep a value's descriptor after the
    /// value is gone.
    pub(crate) fn dup_raw(raw: RawFd) -> io::Result<Fd> {
        // SAFETY: F_DUPFD_CLOEXEC touches no memory; on a descriptor that is
        // not open it fails with EBADF. The duplicate is new and ours.
        let dup = cvt(unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 3) })?;
        // SAFETY: `dup` was just created and nothing else owns it.
        Ok(unsafe { Fd::from_raw(dup) })
    }

    /// Sets close-on-exec on a descriptor inherited without it.
    pub(crate) fn set_cloexec(&self) -> io::Result<()> {
        // SAFETY: F_SETFD on an open descriptor.
        cvt(unsafe { libc::fcntl(self.raw(), libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
    }

    /// Asks for a send buffer of at least `bytes` (the kernel may cap it).
    pub(crate) fn set_send_buffer(&self, bytes: usize) -> io::Result<()> {
        let value = bytes as libc::c_int;
        // SAFETY: value is a c_int living across the call.
        cvt(unsafe {
            libc::setsockopt(
                self.raw(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Sends `header` followed by `payload`, with `fds` attached to the
    /// first byte, blocking until everything is written.
    ///
    /// The descriptors are raw numbers owned by values the caller holds
    /// across the call (an [`Fd`], an endpoint being sent).
    pub(crate) fn send_frame(&self, header: &[u8], payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let mut parts = [header, payload];
        let mut first = true;
        while !parts[0].is_empty() || !parts[1].is_empty() {
            let mut iov = [
                libc::iovec {
                    iov_base: parts[0].as_ptr() as *mut _,
                    iov_len: parts[0].len(),
                },
                libc::iovec {
                    iov_base: parts[1].as_ptr() as *mut _,
                    iov_len: parts[1].len(),
                },
            ];
            let mut cmsg = CmsgBuf::new();
            // SAFETY: an all-zero msghdr is a valid empty message.
            let mut msg: libc::msghdr = unsafe { mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len() as _;
            if first && !fds.is_empty() {
                cmsg.put_fds(&mut msg, fds);
            }
            // SAFETY: msg points at live iovecs and control bytes for the call.
            let n = cvt_r(|| unsafe { libc::sendmsg(self.raw(), &msg, SEND_NOSIGNAL) })? as usize;
            first = false;
            let from_header = n.min(parts[0].len());
            parts[0] = &parts[0][from_header..];
            parts[1] = &parts[1][n - from_header..];
        }
        Ok(())
    }

    /// Writes as much of `parts` (back to back) as the socket takes without
    /// blocking, with `fds` attached to the first byte; `Ok(0)` when its
    /// buffer is full (nothing, descriptors included, was sent).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn send_nonblocking(&self, parts: [&[u8]; 2], fds: &[RawFd]) -> io::Result<usize> {
        let mut iov = parts.map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut _,
            iov_len: p.len(),
        });
        let mut cmsg = CmsgBuf::new();
        // SAFETY: an all-zero msghdr is a valid empty message.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        if !fds.is_empty() {
            cmsg.put_fds(&mut msg, fds);
        }
        let flags = SEND_NOSIGNAL | libc::MSG_DONTWAIT;
        // SAFETY: msg points at live iovecs and control bytes for the call.
        match cvt_r(|| unsafe { libc::sendmsg(self.raw(), &msg, flags) }) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Sends `parts` back to back, as few `sendmsg` calls as the kernel
    /// allows (at most [`MAX_IOV`] parts each), blocking until all is
    /// written. Returns how many bytes went out, with the error that
    /// stopped it (if any): the caller can tell which of its messages the
    /// peer may have received.
    pub(crate) fn send_vectored(&self, parts: &[&[u8]]) -> (usize, io::Result<()>) {
        let mut sent = 0usize;
        let mut first = 0usize;
        // How far into `parts[first]` the previous call got.
        let mut offset = 0usize;
        while first < parts.len() {
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOV];
            let mut count = 0;
            for (slot, (k, p)) in iov.iter_mut().zip(parts[first..].iter().enumerate()) {
                let p = if k == 0 { &p[offset..] } else { p };
                *slot = libc::iovec {
                    iov_base: p.as_ptr() as *mut _,
                    iov_len: p.len(),
                };
                count += 1;
            }
            // SAFETY: an all-zero msghdr is a valid empty message.
            let mut msg: libc::msghdr = unsafe { mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = count as _;
            // SAFETY: msg points at live iovecs over borrowed slices for the
            // call.
            let mut n = match cvt_r(|| unsafe { libc::sendmsg(self.raw(), &msg, SEND_NOSIGNAL) }) {
                Ok(n) => n as usize,
                Err(e) => return (sent, Err(e)),
            };
            sent += n;
            // Skip the parts written whole; keep the offset into the next.
            while first < parts.len() && n >= parts[first].len() - offset {
                n -= parts[first].len() - offset;
                first += 1;
                offset = 0;
            }
            offset += n;
        }
        (sent, Ok(()))
    }

    /// Blocks until `buf` holds `len` bytes, reading into its spare
    /// capacity (which must be at least `len - buf.len()`).
    pub(crate) fn recv_exact_into(&self, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
        while buf.len() < len {
            let done = buf.len();
            let spare = &mut buf.spare_capacity_mut()[..len - done];
            // SAFETY: spare is writable memory of the given length.
            let n = cvt_r(|| unsafe { libc::recv(self.raw(), spare.as_mut_ptr().cast(), spare.len(), 0) })? as usize;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the stream inside a frame",
                ));
            }
            // SAFETY: recv initialised `n` more bytes.
            unsafe { buf.set_len(done + n) };
        }
        Ok(())
    }

    /// The device and inode of the open file, `None` if `fstat` fails.
    pub(crate) fn identity(&self) -> Option<(u64, u64)> {
        // SAFETY: an all-zero stat is a valid out-value.
        let mut st: libc::stat = unsafe { mem::zeroed() };
        // SAFETY: st is a valid out-pointer for the call.
        cvt(unsafe { libc::fstat(self.raw(), &mut st) }).ok()?;
        // A `dev_t` is 64 bits on Linux, 32 on the Apple platforms.
        #[allow(clippy::unnecessary_cast)]
        Some((st.st_dev as u64, st.st_ino))
    }

    /// `true` when the descriptor is a socket.
    pub(crate) fn is_socket(&self) -> bool {
        // SAFETY: an all-zero stat is a valid out-value.
        let mut st: libc::stat = unsafe { mem::zeroed() };
        // SAFETY: st is a valid out-pointer for the call.
        cvt(unsafe { libc::fstat(self.raw(), &mut st) }).is_ok() && st.st_mode & libc::S_IFMT == libc::S_IFSOCK
    }

    /// `true` when the descriptor is what [`eventfd`](super::eventfd)
    /// makes on this platform.
    pub(crate) fn is_eventfd(&self) -> bool {
        is_eventfd_raw(self.raw())
    }

    /// Shuts down one or both directions of a socket, for every process
    /// holding it.
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown on an open descriptor.
        cvt(unsafe { libc::shutdown(self.raw(), how) }).map(drop)
    }

    /// Sends one datagram with `fds` attached, without blocking; `Ok(false)`
    /// when the socket's buffer is full.
    pub(crate) fn try_send_datagram(&self, bytes: &[u8], fds: &[RawFd]) -> io::Result<bool> {
        let mut iov = [libc::iovec {
            iov_base: bytes.as_ptr() as *mut _,
            iov_len: bytes.len(),
        }];
        let mut cmsg = CmsgBuf::new();
        // SAFETY: an all-zero msghdr is a valid empty message.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            cmsg.put_fds(&mut msg, fds);
        }
        // SAFETY: msg points at a live iovec and control bytes for the call.
        match cvt_r(|| unsafe { libc::sendmsg(self.raw(), &msg, SEND_NOSIGNAL | libc::MSG_DONTWAIT) }) {
            Ok(_) => Ok(true),
            Err(e) if is_full(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Copies the start of the next datagram into `buf` without taking it
    /// (nor any descriptor attached to it); `None` when there is none.
    pub(crate) fn peek_datagram(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: buf is writable memory of the given length.
        let res = cvt_r(|| unsafe {
            libc::recv(
                self.raw(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        });
        match res {
            Ok(n) => Ok(Some(n as usize)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes as much of `bytes` as the socket takes without blocking;
    /// `Ok(0)` when its buffer is full.
    pub(crate) fn send_some(&self, bytes: &[u8]) -> io::Result<usize> {
        // SAFETY: bytes is a readable slice.
        let res = cvt_r(|| unsafe {
            libc::send(
                self.raw(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | SEND_NOSIGNAL,
            )
        });
        match res {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Waits until the socket can take more bytes or `other` becomes
    /// readable; returns `(writable, other_ready)`, both false on timeout.
    pub(crate) fn poll_writable_or(&self, other: i32, timeout: Option<Duration>) -> io::Result<(bool, bool)> {
        let mut fds = [
            libc::pollfd {
                fd: self.raw(),
                events: libc::POLLOUT,
                revents: 0,
            },
            libc::pollfd {
                fd: other,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n = poll_within(&mut fds, timeout)?;
        if n == 0 {
            return Ok((false, false));
        }
        Ok((fds[0].revents != 0, fds[1].revents != 0))
    }

    /// Waits until this descriptor is readable or hung up; `false` on
    /// timeout (`None` waits forever).
    pub(crate) fn poll_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        poll_one(self.raw(), libc::POLLIN, timeout)
    }

    /// Waits until this descriptor is readable (or hung up) or `other`
    /// (ignored if negative) becomes readable; returns `(self_ready,
    /// other_ready)`, both false on timeout.
    pub(crate) fn poll_readable_or(&self, other: i32, timeout: Option<Duration>) -> io::Result<(bool, bool)> {
        let ready = poll_readable_set(&[self.raw(), other], timeout)?;
        Ok((ready[0], ready[1]))
    }

    /// Reads what is available (blocking unless `nonblocking`) into the
    /// spare capacity of `buf`, collecting received descriptors into `fds`.
    pub(crate) fn recv_some(&self, buf: &mut Vec<u8>, fds: &mut Vec<Fd>, nonblocking: bool) -> io::Result<RecvSome> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        self.recv_upto(buf, usize::MAX, fds, nonblocking)
    }

    /// Like [`recv_some`](Fd::recv_some), reading at most `limit` bytes
    /// into the spare capacity of `buf` (which the caller reserved).
    pub(crate) fn recv_upto(
        &self,
        buf: &mut Vec<u8>,
        limit: usize,
        fds: &mut Vec<Fd>,
        nonblocking: bool,
    ) -> io::Result<RecvSome> {
        let spare = buf.spare_capacity_mut();
        let len = spare.len().min(limit);
        let got = self.recv_raw(spare.as_mut_ptr().cast(), len, fds, nonblocking)?;
        if let RecvSome::Data(n) = got {
            // SAFETY: the kernel initialised the first `n` spare bytes.
            unsafe { buf.set_len(buf.len() + n) };
        }
        Ok(got)
    }

    /// Like [`recv_upto`](Fd::recv_upto), into an initialised slice.
    pub(crate) fn recv_into(&self, buf: &mut [u8], fds: &mut Vec<Fd>, nonblocking: bool) -> io::Result<RecvSome> {
        self.recv_raw(buf.as_mut_ptr(), buf.len(), fds, nonblocking)
    }

    /// One `recvmsg` into `len` writable bytes at `ptr`.
    fn recv_raw(&self, ptr: *mut u8, len: usize, fds: &mut Vec<Fd>, nonblocking: bool) -> io::Result<RecvSome> {
        let mut iov = [libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len,
        }];
        let mut cmsg = CmsgBuf::new();
        // SAFETY: an all-zero msghdr is a valid empty message.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.buf.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&cmsg.buf) as _;
        let flags = RECV_CLOEXEC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: msg describes `len` writable bytes at `ptr` (the callers'
        // contract) and the control buffer `cmsg`.
        let n = match cvt_r(|| unsafe { libc::recvmsg(self.raw(), &mut msg, flags) }) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(RecvSome::WouldBlock),
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Ok(RecvSome::Eof),
            Err(e) => return Err(e),
        };
        let before = fds.len();
        cmsg.take_fds(&msg, fds);
        if n == 0 && fds.len() == before {
            return Ok(RecvSome::Eof);
        }
        Ok(RecvSome::Data(n))
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.borrow()
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            if self.owner != 0 && self.owner != super::getpid() {
                // A copy inherited through fork whose number was closed or
                // reused in this process: closing it could close someone
                // else's descriptor.
                let _ = fd.into_raw_fd();
            }
        }
    }
}

/// What one `recv_some` produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvSome {
    Data(usize),
    Eof,
    WouldBlock,
}

/// The most descriptors one message carries (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// Parts of one [`Fd::send_vectored`] call (the kernel takes up to 1024).
const MAX_IOV: usize = 64;

/// Ancillary-data buffer for up to [`MAX_FDS`] descriptors each way: a
/// receive buffer smaller than what was sent would make the kernel drop
/// (close) the surplus.
struct CmsgBuf {
    buf: [MaybeUninit<u64>; 2 + MAX_FDS.div_ceil(2)],
}

impl CmsgBuf {
    fn new() -> CmsgBuf {
        CmsgBuf {
            buf: [MaybeUninit::zeroed(); 2 + MAX_FDS.div_ceil(2)],
        }
    }

    /// Attaches up to [`MAX_FDS`] descriptors (callers check the count).
    fn put_fds(&mut self, msg: &mut libc::msghdr, fds: &[RawFd]) {
        assert!(fds.len() <= MAX_FDS, "at most MAX_FDS descriptors per frame");
        let bytes = mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(bytes) } as usize;
        msg.msg_control = self.buf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` zeroed bytes, enough for one header.
        let hdr = unsafe { libc::CMSG_FIRSTHDR(msg) };
        // SAFETY: CMSG_LEN is a pure size computation.
        let len = unsafe { libc::CMSG_LEN(bytes) } as usize;
        // SAFETY: hdr points into self.buf, sized and aligned for a
        // cmsghdr, and nothing else refers to those bytes while we fill it.
        let h = unsafe { &mut *hdr };
        h.cmsg_level = libc::SOL_SOCKET;
        h.cmsg_type = libc::SCM_RIGHTS;
        h.cmsg_len = len as _;
        // SAFETY: hdr is the first header of msg's control buffer.
        let data = unsafe { libc::CMSG_DATA(hdr) }.cast::<RawFd>();
        for (i, fd) in fds.iter().enumerate() {
            // SAFETY: the buffer holds CMSG_SPACE(bytes) bytes, room after
            // the header for all `fds.len()` descriptors; the data need not
            // be aligned for a RawFd, hence the unaligned write.
            unsafe { data.wrapping_add(i).write_unaligned(*fd) };
        }
    }

    fn take_fds(&self, msg: &libc::msghdr, out: &mut Vec<Fd>) {
        if msg.msg_controllen == 0 {
            return;
        }
        // SAFETY: msg was filled by recvmsg; the CMSG macros walk its control data.
        let mut hdr = unsafe { libc::CMSG_FIRSTHDR(msg) };
        while !hdr.is_null() {
            // SAFETY: hdr is a valid, aligned header inside the control
            // buffer that recvmsg filled, which nothing writes any more.
            let h = unsafe { &*hdr };
            let (level, ty, len) = (h.cmsg_level, h.cmsg_type, h.cmsg_len);
            if level == libc::SOL_SOCKET && ty == libc::SCM_RIGHTS {
                // `cmsg_len` is a `usize` on Linux, a `socklen_t` on the
                // Apple platforms.
                // SAFETY: as above; CMSG_LEN(0) is a pure size computation.
                #[allow(clippy::unnecessary_cast)]
                let data_len = len as usize - unsafe { libc::CMSG_LEN(0) } as usize;
                // SAFETY: as above.
                let data = unsafe { libc::CMSG_DATA(hdr) }.cast::<RawFd>();
                for i in 0..data_len / mem::size_of::<RawFd>() {
                    // SAFETY: SCM_RIGHTS data holds `data_len / 4`
                    // descriptors inside the control buffer, not
                    // necessarily aligned.
                    let raw = unsafe { data.wrapping_add(i).read_unaligned() };
                    adopt_received(raw);
                    // SAFETY: the kernel installed a fresh descriptor for
                    // each one passed, which this process now owns.
                    out.push(unsafe { Fd::from_raw(raw) });
                }
            }
            // SAFETY: walking to the next header of the same message.
            hdr = unsafe { libc::CMSG_NXTHDR(msg, hdr) };
        }
    }
}

/// A connected pair of close-on-exec stream sockets.
pub(crate) fn socketpair() -> io::Result<(Fd, Fd)> {
    pair(libc::SOCK_STREAM)
}

/// A connected pair of close-on-exec packet sockets: each send is one
/// datagram, received whole by exactly one reader (sequenced packets on
/// Linux; datagrams on macOS, which has no Unix sequenced-packet sockets
/// and whose Unix datagrams are as reliable and ordered, but show no
/// hang-up of the peer).
pub(crate) fn seqpacket_pair() -> io::Result<(Fd, Fd)> {
    pair(PACKET_KIND)
}

fn pair(kind: libc::c_int) -> io::Result<(Fd, Fd)> {
    let [a, b] = socketpair_raw(kind)?;
    // SAFETY: socketpair returned two new descriptors we own.
    let a = unsafe { Fd::from_raw(a) };
    // SAFETY: as above.
    let b = unsafe { Fd::from_raw(b) };
    Ok((a, b))
}

/// `poll` on one descriptor; `true` when any of `events` (or an error or
/// hang-up) is reported.
pub(super) fn poll_one(fd: RawFd, events: libc::c_short, timeout: Option<Duration>) -> io::Result<bool> {
    let mut pfd = [libc::pollfd { fd, events, revents: 0 }];
    Ok(poll_within(&mut pfd, timeout)? > 0)
}

/// `poll` on `pfds` for at most `timeout` (`None`: no limit); the number
/// of ready descriptors, 0 on timeout. An interrupted call (a signal, such
/// as a daemon's parent-death signal) goes on with the time that is left,
/// not with the whole timeout again.
fn poll_within(pfds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    loop {
        let left = match deadline {
            Some(d) => Some(d.saturating_duration_since(std::time::Instant::now())),
            // No deadline: a timeout too large for an Instant waits as long.
            None => timeout,
        };
        // SAFETY: pfds is a valid array of pollfds of the given length.
        match cvt(unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, poll_millis(left)) }) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                for p in pfds.iter_mut() {
                    p.revents = 0;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until any of `fds` (negative ones are ignored) is readable or hung
/// up; returns which are, all false on timeout.
pub(crate) fn poll_readable_set(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    poll_within(&mut pfds, timeout)?;
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}
