//! How Linux makes descriptors: close-on-exec atomically (`SOCK_CLOEXEC`,
//! `pipe2`, `accept4`, `MSG_CMSG_CLOEXEC`), eventfds, and the platform
//! parts of `posix_spawn` and of shared mappings that the shared files ask
//! for through `os::`.

use std::{ffi::CString, io, os::fd::RawFd};

use super::{Fd, cvt, cvt_r};

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
pub(crate) fn fix_cloexec(_fd: &Fd) -> io::Result<()> {
    Ok(())
}

/// A connected pair of close-on-exec sockets of `kind`.
pub(crate) fn socketpair_cloexec(kind: libc::c_int) -> io::Result<(Fd, Fd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair returned two new descriptors we own.
    let a = unsafe { Fd::from_raw(fds[0]) };
    // SAFETY: as above.
    let b = unsafe { Fd::from_raw(fds[1]) };
    Ok((a, b))
}

/// A close-on-exec stream socket of `family`; non-blocking if asked.
pub(crate) fn stream_socket(family: libc::c_int, nonblocking: bool) -> io::Result<Fd> {
    let flags = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: socket takes plain integers.
    let raw = cvt(unsafe { libc::socket(family, flags, 0) })?;
    // SAFETY: socket returned a new descriptor we own.
    Ok(unsafe { Fd::from_raw(raw) })
}

/// `accept4` with `SOCK_CLOEXEC`: the new descriptor's number.
///
/// # Safety
/// `addr` and `len` are valid out-pointers for an address of `*len` bytes.
pub(crate) unsafe fn accept_cloexec(
    listener: &Fd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> io::Result<RawFd> {
    // SAFETY: the caller's contract.
    cvt_r(|| unsafe { libc::accept4(listener.raw(), addr, len, libc::SOCK_CLOEXEC) })
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub(crate) fn pipe_cloexec() -> io::Result<(Fd, Fd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new descriptors we own.
    let read = unsafe { Fd::from_raw(fds[0]) };
    // SAFETY: as above.
    let write = unsafe { Fd::from_raw(fds[1]) };
    Ok((read, write))
}

/// `true` when the descriptor is an eventfd (the kernel names its
/// anonymous inode `anon_inode:[eventfd]`).
pub(crate) fn is_eventfd(fd: &Fd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.raw()))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:[eventfd]")
}

/// A close-on-exec, non-blocking eventfd: a counter that makes `poll`
/// return when signalled.
pub(crate) fn eventfd() -> io::Result<Fd> {
    // SAFETY: no pointers; the flags are valid.
    let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: eventfd returned a new descriptor we own.
    Ok(unsafe { Fd::from_raw(raw) })
}

/// Adds one to an eventfd (it becomes readable). A full counter is
/// already readable, so a failure changes nothing.
pub(crate) fn eventfd_signal(fd: &Fd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a valid buffer to a descriptor we own.
    let _ = unsafe { libc::write(fd.raw(), one.as_ptr().cast(), one.len()) };
}

/// Resets an eventfd's counter (it stops being readable).
pub(crate) fn eventfd_drain(fd: &Fd) {
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a valid buffer; non-blocking.
    let _ = unsafe { libc::read(fd.raw(), buf.as_mut_ptr().cast(), buf.len()) };
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

/// Nothing: a fork child's pidfd is what travels to other processes.
pub(crate) struct ForkToken;

impl ForkToken {
    pub(crate) fn new() -> io::Result<ForkToken> {
        Ok(ForkToken)
    }
    pub(crate) fn in_child(self) {}
    pub(crate) fn in_parent(self, handle: super::ChildHandle) -> super::ChildHandle {
        handle
    }
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
