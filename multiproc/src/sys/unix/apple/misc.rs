//! Process facts on macOS, and its "eventfd": an unlinked FIFO opened
//! for reading and writing, one descriptor that a write makes readable
//! and a read drains, which any process can be passed.

use std::{ffi::CString, io, mem, os::unix::ffi::OsStrExt};

use super::{Fd, close_inherited, cvt, cvt_r, getpid, null_device};

unsafe extern "C" {
    /// `<mach-o/dyld.h>`: the Mach-O header of loaded image `index` (0:
    /// the main executable), as an address (declared here: the libc crate
    /// deprecates its own declaration in favour of another crate).
    fn _dyld_get_image_header(index: u32) -> *const libc::c_void;
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
