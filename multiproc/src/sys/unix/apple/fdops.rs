//! How macOS makes descriptors, and the platform parts of `posix_spawn`
//! and of shared mappings. Raw numbers only: the shared files own them as
//! `Fd`s (so that this module depends on none of them).
//!
//! No call creates a descriptor close-on-exec atomically here (no
//! `SOCK_CLOEXEC`, `pipe2`, `accept4`, `MSG_CMSG_CLOEXEC` or `dup3`): each
//! is marked `FD_CLOEXEC` right after the call that made it (see the
//! backend's docs for why that is enough). No `MSG_NOSIGNAL` either: every
//! socket the library makes carries `SO_NOSIGPIPE`.

use std::{
    ffi::{CStr, CString},
    io, mem,
    os::fd::RawFd,
};

use super::{cvt, cvt_r};

/// Flags every send takes: none (`SO_NOSIGPIPE` is set on the socket).
pub(crate) const SEND_NOSIGNAL: libc::c_int = 0;
/// Flags every `recvmsg` takes: none ([`adopt_received`] marks them).
pub(crate) const RECV_CLOEXEC: libc::c_int = 0;
/// The kind of socket a packet pair is: datagrams (macOS has no Unix
/// sequenced-packet sockets).
pub(crate) const PACKET_KIND: libc::c_int = libc::SOCK_DGRAM;

/// Whether a non-blocking send failed only because the socket is full: a
/// Unix datagram socket here says `ENOBUFS` as often as `EAGAIN`.
pub(crate) fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Flags `shm_open` takes for close-on-exec: none ([`fix_cloexec_raw`]).
pub(crate) const OPEN_CLOEXEC: libc::c_int = 0;

/// Marks a descriptor just received over a socket close-on-exec.
pub(crate) fn adopt_received(raw: RawFd) {
    // SAFETY: F_SETFD on a descriptor the kernel just installed in this
    // process; it only sets a flag (a failure leaves it inheritable,
    // which spawn's POSIX_SPAWN_CLOEXEC_DEFAULT still covers).
    unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Marks the descriptor `raw` close-on-exec.
pub(crate) fn fix_cloexec_raw(raw: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor the caller holds; it only sets a flag.
    cvt(unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// Closes `raw` (an error path's cleanup).
fn close_raw(raw: RawFd) {
    // SAFETY: the caller owns `raw` and gives it up.
    unsafe { libc::close(raw) };
}

/// Turns `SIGPIPE` off for writes to the socket `raw`.
fn no_sigpipe(raw: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a c_int living across the call.
    cvt(unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_NOSIGPIPE,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Sets or clears `O_NONBLOCK` on `raw`.
fn set_nonblocking(raw: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL on a descriptor the caller holds.
    let flags = cvt(unsafe { libc::fcntl(raw, libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL with flags read just above.
    cvt(unsafe { libc::fcntl(raw, libc::F_SETFL, flags) }).map(drop)
}

/// Makes the new socket `raw` close-on-exec, without `SIGPIPE` and, if
/// asked, (non-)blocking; closes it on failure.
fn adopt_socket(raw: RawFd, nonblocking: Option<bool>) -> io::Result<RawFd> {
    let res = fix_cloexec_raw(raw)
        .and_then(|()| no_sigpipe(raw))
        .and_then(|()| nonblocking.map_or(Ok(()), |on| set_nonblocking(raw, on)));
    match res {
        Ok(()) => Ok(raw),
        Err(e) => {
            close_raw(raw);
            Err(e)
        }
    }
}

/// A connected pair of close-on-exec sockets of `kind`: their numbers,
/// which the caller owns.
pub(crate) fn socketpair_raw(kind: libc::c_int) -> io::Result<[RawFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
    if let Err(e) = adopt_socket(fds[0], None) {
        close_raw(fds[1]);
        return Err(e);
    }
    if let Err(e) = adopt_socket(fds[1], None) {
        close_raw(fds[0]);
        return Err(e);
    }
    Ok(fds)
}

/// A close-on-exec stream socket of `family`, non-blocking if asked: its
/// number, which the caller owns.
pub(crate) fn socket_raw(family: libc::c_int, nonblocking: bool) -> io::Result<RawFd> {
    // SAFETY: socket takes plain integers.
    let raw = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM, 0) })?;
    adopt_socket(raw, nonblocking.then_some(true))
}

/// `accept` on the listening socket `listener`, then close-on-exec, no
/// `SIGPIPE`, and blocking (an accepted socket inherits the listener's
/// `O_NONBLOCK` here): the new descriptor's number, which the caller owns.
///
/// # Safety
/// `addr` and `len` are valid out-pointers for an address of `*len` bytes.
pub(crate) unsafe fn accept_raw(
    listener: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> io::Result<RawFd> {
    // SAFETY: the caller's contract.
    let raw = cvt_r(|| unsafe { libc::accept(listener, addr, len) })?;
    adopt_socket(raw, Some(false))
}

/// A pipe, both ends close-on-exec: [read end, write end], which the
/// caller owns.
pub(crate) fn pipe_raw() -> io::Result<[RawFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    if let Err(e) = fix_cloexec_raw(fds[0]).and_then(|()| fix_cloexec_raw(fds[1])) {
        close_raw(fds[0]);
        close_raw(fds[1]);
        return Err(e);
    }
    Ok(fds)
}

/// `true` when the descriptor is a FIFO (what `eventfd` makes here).
pub(crate) fn is_eventfd_raw(raw: RawFd) -> bool {
    // SAFETY: an all-zero stat is a valid out-value.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: st is a valid out-pointer for the call.
    cvt(unsafe { libc::fstat(raw, &mut st) }).is_ok() && st.st_mode & libc::S_IFMT == libc::S_IFIFO
}

/// No page-population advice here: the writes fault the pages in.
pub(crate) fn populate(_ptr: *mut u8, _len: usize) {}

/// Flags `posix_spawn` takes besides the signal settings: only the
/// descriptors the file actions name reach the child.
pub(crate) const SPAWN_FLAGS: libc::c_int = libc::POSIX_SPAWN_CLOEXEC_DEFAULT;

unsafe extern "C" {
    /// `<mach-o/dyld.h>`: the executable's path (declared here: the libc
    /// crate deprecates its own declaration in favour of another crate).
    fn _NSGetExecutablePath(buf: *mut libc::c_char, bufsize: *mut u32) -> libc::c_int;
    /// `<spawn.h>`, macOS 10.7 and later (not in the libc crate): keeps
    /// `fd` open in the child under `POSIX_SPAWN_CLOEXEC_DEFAULT`.
    fn posix_spawn_file_actions_addinherit_np(
        actions: *mut libc::posix_spawn_file_actions_t,
        fd: libc::c_int,
    ) -> libc::c_int;
}

/// Under [`SPAWN_FLAGS`], every descriptor the file actions do not name is
/// closed in the child: names standard output and error, which the child
/// keeps (standard input and the boot socket are named already).
///
/// # Safety
/// `actions` is an initialised file-actions object.
pub(crate) unsafe fn close_others(actions: *mut libc::posix_spawn_file_actions_t, _boot_fd: i32) -> libc::c_int {
    for fd in [1, 2] {
        // SAFETY: the caller's contract; any descriptor number is valid
        // to name (a closed one stays closed).
        let err = unsafe { posix_spawn_file_actions_addinherit_np(actions, fd) };
        if err != 0 {
            return err;
        }
    }
    0
}

/// The path of this very executable (`_NSGetExecutablePath`).
pub(crate) fn self_exe() -> io::Result<CString> {
    let mut size: u32 = 1024;
    loop {
        let mut buf = vec![0u8; size as usize];
        // SAFETY: buf holds `size` writable bytes; on -1 the call stores
        // the size it needs in `size`.
        let rc = unsafe { _NSGetExecutablePath(buf.as_mut_ptr().cast(), &mut size) };
        if rc == 0 {
            let path =
                CStr::from_bytes_until_nul(&buf).map_err(|_| io::Error::other("the executable's path has no end"))?;
            return Ok(path.to_owned());
        }
        if size as usize <= buf.len() {
            return Err(io::Error::other("cannot read the executable's path"));
        }
    }
}
