//! How macOS makes descriptors, and its process facts.
//!
//! No call creates a descriptor close-on-exec atomically here (no
//! `SOCK_CLOEXEC`, `pipe2`, `accept4`, `MSG_CMSG_CLOEXEC` or `dup3`): each
//! is marked `FD_CLOEXEC` right after the call that made it (see the
//! backend's docs for why that is enough). No `MSG_NOSIGNAL` either: every
//! socket the library makes carries `SO_NOSIGPIPE`. The "eventfd" is an
//! unlinked FIFO opened for reading and writing: one descriptor that a
//! write makes readable and a read drains, which any process can be
//! passed.

use std::{
    ffi::{CStr, CString},
    io, mem,
    os::{fd::RawFd, unix::ffi::OsStrExt},
};

use super::{Fd, close_inherited, cvt, cvt_r, getpid, null_device};

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

/// Flags `shm_open` takes for close-on-exec: none ([`fix_cloexec`]).
pub(crate) const OPEN_CLOEXEC: libc::c_int = 0;

/// Marks a descriptor just received over a socket close-on-exec.
pub(crate) fn adopt_received(raw: RawFd) {
    // SAFETY: F_SETFD on a descriptor the kernel just installed in this
    // process; it only sets a flag (a failure leaves it inheritable,
    // which spawn's POSIX_SPAWN_CLOEXEC_DEFAULT still covers).
    unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Marks a descriptor just opened close-on-exec.
pub(crate) fn fix_cloexec(fd: &Fd) -> io::Result<()> {
    fd.set_cloexec()
}

/// Turns `SIGPIPE` off for writes to the socket `fd`.
fn no_sigpipe(fd: &Fd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a c_int living across the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.raw(),
            libc::SOL_SOCKET,
            libc::SO_NOSIGPIPE,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Sets or clears `O_NONBLOCK`.
fn set_nonblocking(fd: &Fd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL on an open descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.raw(), libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL with flags read just above.
    cvt(unsafe { libc::fcntl(fd.raw(), libc::F_SETFL, flags) }).map(drop)
}

/// A socket the library made: close-on-exec, no `SIGPIPE`.
fn adopt_socket(raw: RawFd) -> io::Result<Fd> {
    // SAFETY: the caller passes a descriptor it just created and owns.
    let fd = unsafe { Fd::from_raw(raw) };
    fd.set_cloexec()?;
    no_sigpipe(&fd)?;
    Ok(fd)
}

/// A connected pair of close-on-exec sockets of `kind`.
pub(crate) fn socketpair_cloexec(kind: libc::c_int) -> io::Result<(Fd, Fd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
    let a = adopt_socket(fds[0]);
    let b = adopt_socket(fds[1]);
    Ok((a?, b?))
}

/// A close-on-exec stream socket of `family`; non-blocking if asked.
pub(crate) fn stream_socket(family: libc::c_int, nonblocking: bool) -> io::Result<Fd> {
    // SAFETY: socket takes plain integers.
    let fd = adopt_socket(cvt(unsafe { libc::socket(family, libc::SOCK_STREAM, 0) })?)?;
    if nonblocking {
        set_nonblocking(&fd, true)?;
    }
    Ok(fd)
}

/// `accept`, then close-on-exec, no `SIGPIPE`, and blocking (an accepted
/// socket inherits the listener's `O_NONBLOCK` here): the new
/// descriptor's number.
///
/// # Safety
/// `addr` and `len` are valid out-pointers for an address of `*len` bytes.
pub(crate) unsafe fn accept_cloexec(
    listener: &Fd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> io::Result<RawFd> {
    // SAFETY: the caller's contract.
    let raw = cvt_r(|| unsafe { libc::accept(listener.raw(), addr, len) })?;
    let fd = adopt_socket(raw)?;
    set_nonblocking(&fd, false)?;
    let raw = fd.raw();
    fd.forget();
    Ok(raw)
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub(crate) fn pipe_cloexec() -> io::Result<(Fd, Fd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    // SAFETY: pipe returned two new descriptors we own.
    let read = unsafe { Fd::from_raw(fds[0]) };
    // SAFETY: as above.
    let write = unsafe { Fd::from_raw(fds[1]) };
    read.set_cloexec()?;
    write.set_cloexec()?;
    Ok((read, write))
}

/// `true` when the descriptor is a FIFO (what [`eventfd`] makes).
pub(crate) fn is_eventfd(fd: &Fd) -> bool {
    // SAFETY: an all-zero stat is a valid out-value.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: st is a valid out-pointer for the call.
    cvt(unsafe { libc::fstat(fd.raw(), &mut st) }).is_ok() && st.st_mode & libc::S_IFMT == libc::S_IFIFO
}

/// A unique path in the temporary directory, from `prefix` and random
/// bytes.
pub(crate) fn temp_path(prefix: &str) -> io::Result<CString> {
    let mut bytes = [0u8; 12];
    random_bytes(&mut bytes)?;
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut path = std::env::temp_dir();
    path.push(format!("{prefix}-{}-{suffix}", getpid()));
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the temporary directory's path contains NUL",
        )
    })
}

/// The "eventfd": a close-on-exec, non-blocking FIFO open for reading and
/// writing, whose name is gone at once. A write makes it readable until
/// a read drains it.
pub(crate) fn eventfd() -> io::Result<Fd> {
    let path = temp_path("multiproc-ready")?;
    // SAFETY: path is NUL-terminated.
    cvt(unsafe { libc::mkfifo(path.as_ptr(), 0o600) })?;
    // SAFETY: path is NUL-terminated; opening a FIFO for reading and
    // writing does not wait for a peer.
    let opened = cvt_r(|| unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) });
    // SAFETY: path is NUL-terminated; the name is ours (random, just made).
    unsafe { libc::unlink(path.as_ptr()) };
    // SAFETY: open returned a new descriptor we own.
    Ok(unsafe { Fd::from_raw(opened?) })
}

/// Makes the FIFO readable. A full FIFO is readable already, so a failure
/// changes nothing.
pub(crate) fn eventfd_signal(fd: &Fd) {
    let one = [1u8];
    // SAFETY: writes one byte from a valid buffer; non-blocking.
    let _ = unsafe { libc::write(fd.raw(), one.as_ptr().cast(), 1) };
}

/// Empties the FIFO (it stops being readable).
pub(crate) fn eventfd_drain(fd: &Fd) {
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reads into a valid buffer; non-blocking.
        let n = unsafe { libc::read(fd.raw(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < buf.len() as isize {
            return;
        }
    }
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
    /// `<mach-o/dyld.h>`: the Mach-O header of loaded image `index` (0:
    /// the main executable), as an address.
    fn _dyld_get_image_header(index: u32) -> *const libc::c_void;
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

/// No affinity masks on macOS.
pub(crate) fn affinity_cpu_count() -> Option<usize> {
    None
}

/// No cgroups on macOS.
pub(crate) fn cgroup_cpu_limit() -> Option<f64> {
    None
}

/// Number of threads in this process (`proc_pidinfo`'s task info).
pub(crate) fn thread_count() -> io::Result<usize> {
    // SAFETY: an all-zero proc_taskinfo is a valid out-value.
    let mut info: libc::proc_taskinfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: info is writable storage of `size` bytes.
    let n = unsafe {
        libc::proc_pidinfo(
            getpid() as libc::c_int,
            libc::PROC_PIDTASKINFO,
            0,
            (&mut info as *mut libc::proc_taskinfo).cast(),
            size,
        )
    };
    if n != size {
        return Err(io::Error::last_os_error());
    }
    Ok(info.pti_threadnum.max(1) as usize)
}

/// Fills `buf` from the kernel's random source (`getentropy`, at most 256
/// bytes a call).
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    for chunk in buf.chunks_mut(256) {
        // SAFETY: chunk is a valid writable slice of at most 256 bytes.
        cvt(unsafe { libc::getentropy(chunk.as_mut_ptr().cast(), chunk.len()) })?;
    }
    Ok(())
}

/// Device and inode of the running executable.
pub(crate) fn exe_identity() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(std::env::current_exe()?)?;
    Ok((meta.dev(), meta.ino()))
}

/// The load address of the main executable: dyld's image 0.
pub(crate) fn main_image_base() -> Option<usize> {
    // SAFETY: asks dyld for the header of image 0 (the main executable),
    // which exists as long as the process does.
    let header = unsafe { _dyld_get_image_header(0) };
    (!header.is_null()).then_some(header as usize)
}

/// The pid of the process at the other end of the Unix socket `fd`
/// (`LOCAL_PEERPID`), without taking ownership of `fd`.
pub(crate) fn socket_peer_pid(fd: i32) -> io::Result<u32> {
    let mut pid: libc::pid_t = 0;
    let mut len = mem::size_of::<libc::pid_t>() as libc::socklen_t;
    // SAFETY: pid and len are valid out-pointers of the sizes given; a
    // descriptor that is not a Unix socket only makes the call fail.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_LOCAL,
            libc::LOCAL_PEERPID,
            (&mut pid as *mut libc::pid_t).cast(),
            &mut len,
        )
    })?;
    Ok(pid as u32)
}

/// Points each of `fds` at `/dev/null` (close-on-exec), keeping the
/// numbers taken; falls back to closing them.
pub(crate) fn reserve_closed(fds: &[i32]) {
    let null = match null_device() {
        Ok(n) => n,
        Err(_) => return close_inherited(fds),
    };
    for &fd in fds {
        // SAFETY: dup2 onto a number this process holds (an inherited
        // endpoint), replacing it atomically.
        if unsafe { libc::dup2(null.raw(), fd) } < 0 {
            close_inherited(&[fd]);
            continue;
        }
        // SAFETY: F_SETFD on the descriptor just made.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}
