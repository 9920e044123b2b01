//! How Linux makes descriptors: close-on-exec atomically (`SOCK_CLOEXEC`,
//! `pipe2`, `accept4`, `MSG_CMSG_CLOEXEC`), and the platform parts of
//! `posix_spawn` and of shared mappings that the shared files ask for
//! through `os::`. Raw numbers only: the shared files own them as `Fd`s
//! (so that this module depends on none of them).

use std::{ffi::CString, io, os::fd::RawFd};

use super::{cvt, cvt_r};

/// Flags every send takes: no `SIGPIPE` for a closed peer.
pub(crate) const SEND_NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
/// Flags every `recvmsg` takes: received descriptors are close-on-exec.
pub(crate) const RECV_CLOEXEC: libc::c_int = libc::MSG_CMSG_CLOEXEC;
/// The kind of socket a packet pair is: sequenced packets.
pub(crate) const PACKET_KIND: libc::c_int = libc::SOCK_SEQPACKET;

/// Whether a non-blocking send failed only because the socket is full.
pub(crate) fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Flags `shm_open` takes for a close-on-exec descriptor.
pub(crate) const OPEN_CLOEXEC: libc::c_int = libc::O_CLOEXEC;

/// A received descriptor is close-on-exec already (`MSG_CMSG_CLOEXEC`).
pub(crate) fn adopt_received(_raw: RawFd) {}

/// A descriptor opened with [`OPEN_CLOEXEC`] is close-on-exec already.
pub(crate) fn fix_cloexec_raw(_raw: RawFd) -> io::Result<()> {
    Ok(())
}

/// A connected pair of close-on-exec sockets of `kind`: their numbers,
/// which the caller owns.
pub(crate) fn socketpair_raw(kind: libc::c_int) -> io::Result<[RawFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    Ok(fds)
}

/// A close-on-exec stream socket of `family`, non-blocking if asked: its
/// number, which the caller owns.
pub(crate) fn socket_raw(family: libc::c_int, nonblocking: bool) -> io::Result<RawFd> {
    let flags = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: socket takes plain integers.
    cvt(unsafe { libc::socket(family, flags, 0) })
}

/// `accept4` with `SOCK_CLOEXEC` on the listening socket `listener`: the
/// new descriptor's number, which the caller owns.
///
/// # Safety
/// `addr` and `len` are valid out-pointers for an address of `*len` bytes.
pub(crate) unsafe fn accept_raw(
    listener: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> io::Result<RawFd> {
    // SAFETY: the caller's contract.
    cvt_r(|| unsafe { libc::accept4(listener, addr, len, libc::SOCK_CLOEXEC) })
}

/// A pipe, both ends close-on-exec: [read end, write end], which the
/// caller owns.
pub(crate) fn pipe_raw() -> io::Result<[RawFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok(fds)
}

/// `true` when the descriptor is an eventfd (the kernel names its
/// anonymous inode `anon_inode:[eventfd]`).
pub(crate) fn is_eventfd_raw(raw: RawFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{raw}")).is_ok_and(|target| target.as_os_str() == "anon_inode:[eventfd]")
}

/// Faults in the pages of `len` bytes at `ptr` (page-aligned, inside a
/// shared mapping) about to be written, with one `MADV_POPULATE_WRITE`. A
/// hint: before Linux 5.14, or on a failure, the writes fault them in one
/// by one.
pub(crate) fn populate(ptr: *mut u8, len: usize) {
    // SAFETY: the caller names a page-aligned range inside its mapping;
    // populating changes no contents.
    unsafe { libc::madvise(ptr.cast(), len, libc::MADV_POPULATE_WRITE) };
}

/// Flags `posix_spawn` takes besides the signal settings: none.
pub(crate) const SPAWN_FLAGS: libc::c_int = 0;

/// Adds to `actions` the closing of every descriptor above the boot
/// socket (`posix_spawn_file_actions_addclosefrom_np`), so that nothing
/// leaks into the child whatever its close-on-exec flag.
///
/// # Safety
/// `actions` is an initialised file-actions object.
pub(crate) unsafe fn close_others(actions: *mut libc::posix_spawn_file_actions_t, boot_fd: i32) -> libc::c_int {
    // SAFETY: the caller's contract.
    unsafe { libc::posix_spawn_file_actions_addclosefrom_np(actions, boot_fd + 1) }
}

/// The path that starts this very executable again.
pub(crate) fn self_exe() -> io::Result<CString> {
    Ok(CString::from(c"/proc/self/exe"))
}
