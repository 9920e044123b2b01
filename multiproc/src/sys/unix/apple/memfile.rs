//! Memory files on macOS, which has no memfd and no seals.
//!
//! - **Fixed-size files** (`memfd_sealed`, `memfile_create(Fixed)`): a
//!   POSIX shared memory object (`shm_open` under a random name, unlinked
//!   at once, so it is as anonymous as a memfd and freed with its last
//!   descriptor and mapping). macOS sizes such an object once: every
//!   later `ftruncate` fails with `EINVAL`, so its size is as fixed as a
//!   sealed memfd's. That failure is also how a receiver checks a
//!   descriptor ([`is_size_sealed`]): it must not be a file of the file
//!   system (`F_GETPATH` answers for those; a sender could shrink one
//!   under a mapping, a `SIGBUS`), and must refuse a same-size
//!   `ftruncate`.
//! - **Grow-only files** (the queue ring's data) and **payloads and
//!   captured output**: an unlinked file in the temporary directory,
//!   because a shared memory object can neither grow nor be written with
//!   `write`. Nothing stops a process holding one from shrinking it: the
//!   receiver checks its size and the ring checks its headers, as on
//!   Linux, but a hostile holder could make another process's access
//!   fault. The ring's users are the library's own processes.

use std::{ffi::CStr, io, mem};

use super::{
    Fd, cvt, cvt_r,
    misc::{random_bytes, temp_path},
};
use crate::sys::{MemfileFacts, Resize};

/// `fstat` of `fd`.
fn stat(fd: &Fd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid out-value.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    cvt(unsafe { libc::fstat(fd.raw(), &mut st) })?;
    Ok(st)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "the size does not fit a file offset")
}

/// A new, anonymous, close-on-exec shared memory object of `size` zeroed
/// bytes, whose size can never change.
fn shm_anonymous(size: u64) -> io::Result<Fd> {
    let len = libc::off_t::try_from(size).map_err(|_| too_large())?;
    // Shared memory names have at most 31 bytes here.
    let mut bytes = [0u8; 12];
    random_bytes(&mut bytes)?;
    let name: String = std::iter::once("/mp".to_owned())
        .chain(bytes.iter().map(|b| format!("{b:02x}")))
        .collect();
    let name = std::ffi::CString::new(name).expect("hex digits hold no NUL");
    // SAFETY: name is NUL-terminated; the mode is promoted as the
    // variadic call expects.
    let raw = cvt_r(|| unsafe {
        libc::shm_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            0o600 as libc::c_uint,
        )
    })?;
    // SAFETY: shm_open returned a new descriptor we own.
    let fd = unsafe { Fd::from_raw(raw) };
    // SAFETY: name is NUL-terminated; the name is ours (O_EXCL).
    unsafe { libc::shm_unlink(name.as_ptr()) };
    fd.set_cloexec()?;
    // SAFETY: ftruncate on our descriptor; the one sizing the object gets.
    cvt_r(|| unsafe { libc::ftruncate(fd.raw(), len) })?;
    Ok(fd)
}

/// A new, close-on-exec file in the temporary directory, unlinked at
/// once, of `size` zeroed bytes.
fn unlinked_file(label: &str, size: u64) -> io::Result<Fd> {
    let len = libc::off_t::try_from(size).map_err(|_| too_large())?;
    let path = temp_path(label)?;
    // SAFETY: path is NUL-terminated.
    let raw = cvt_r(|| unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    })?;
    // SAFETY: open returned a new descriptor we own.
    let fd = unsafe { Fd::from_raw(raw) };
    // SAFETY: path is NUL-terminated; the name is ours (O_EXCL).
    unsafe { libc::unlink(path.as_ptr()) };
    if len > 0 {
        // SAFETY: ftruncate on our descriptor.
        cvt_r(|| unsafe { libc::ftruncate(fd.raw(), len) })?;
    }
    Ok(fd)
}

/// A new memory file of `size` bytes whose size no process can change.
pub(crate) fn memfd_sealed(size: usize) -> io::Result<Fd> {
    shm_anonymous(size as u64)
}

/// [`memfd_sealed`] (a shared memory object has no label to show).
pub(crate) fn memfd_sealed_labelled(_label: &CStr, size: usize) -> io::Result<Fd> {
    memfd_sealed(size)
}

/// Whether `fd` is a file of the file system (a vnode): `F_GETPATH`
/// fails with `EBADF` only for descriptors that are not (shared memory
/// objects, sockets, pipes).
fn is_vnode(fd: &Fd) -> bool {
    let mut path = [0u8; 1024];
    // SAFETY: F_GETPATH writes at most MAXPATHLEN (1024) bytes into `path`.
    let rc = unsafe { libc::fcntl(fd.raw(), libc::F_GETPATH, path.as_mut_ptr()) };
    rc != -1 || io::Error::last_os_error().raw_os_error() != Some(libc::EBADF)
}

/// Whether `fd` is a memory file whose size cannot change: a shared
/// memory object (not a file of the file system, nor a socket or a pipe)
/// that refuses a further `ftruncate`, even to its own size. A file of
/// the file system is never probed: truncating it to the size just read
/// could shrink it under a process growing it at that moment.
pub(crate) fn is_size_sealed(fd: &Fd) -> bool {
    let Ok(st) = stat(fd) else { return false };
    if matches!(st.st_mode & libc::S_IFMT, libc::S_IFSOCK | libc::S_IFIFO) || is_vnode(fd) {
        return false;
    }
    // SAFETY: ftruncate on a shared memory object we hold, to the size it
    // has: refused once it was sized, which is the answer sought.
    let rc = unsafe { libc::ftruncate(fd.raw(), st.st_size) };
    rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
}

/// The size of the memory file `fd`; an error for anything that is not a
/// file (a socket, a pipe, a directory, a device).
pub(crate) fn file_size(fd: &Fd) -> io::Result<u64> {
    let st = stat(fd)?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK | libc::S_IFIFO | libc::S_IFDIR | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFLNK => {
            Err(invalid("the descriptor is not a shared memory file".to_owned()))
        }
        _ => Ok(st.st_size as u64),
    }
}

/// Whether a received fixed-size memory file of `actual` bytes is the
/// one of `wanted` bytes its sender made: that size, or that size rounded
/// up to whole pages (macOS sizes a shared memory object in pages, and
/// `fstat` says so).
pub(crate) fn size_matches(actual: u64, wanted: u64) -> bool {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = u64::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096);
    super::super::segment::size_within_page(actual, wanted, page)
}

/// A new close-on-exec memory file of `size` zeroed bytes: a shared
/// memory object for [`Resize::Fixed`], an unlinked file for
/// [`Resize::GrowOnly`].
pub(crate) fn memfile_create(_name: &CStr, size: u64, resize: Resize) -> io::Result<Fd> {
    match resize {
        Resize::Fixed => shm_anonymous(size),
        Resize::GrowOnly => unlinked_file("multiproc-data", size),
    }
}

/// Checks that `fd`, received from another process, is a memory file of
/// the kind `resize` says; an `InvalidData` error naming `what`
/// otherwise.
pub(crate) fn memfile_check(fd: &Fd, resize: Resize, what: &str) -> io::Result<MemfileFacts> {
    let size = file_size(fd).map_err(|_| invalid(format!("{what} descriptor is not a memory file")))?;
    let ok = match resize {
        Resize::Fixed => is_size_sealed(fd),
        Resize::GrowOnly => is_vnode(fd) && stat(fd)?.st_mode & libc::S_IFMT == libc::S_IFREG,
    };
    if !ok {
        return Err(invalid(format!("{what} descriptor is not a suitable memory file")));
    }
    let st = stat(fd)?;
    Ok(MemfileFacts {
        id: (st.st_dev as u64, st.st_ino),
        size,
    })
}

/// Grows the grow-only memory file `fd` to `size` bytes (new bytes are
/// zero); a file already that large is left alone.
pub(crate) fn memfile_grow(fd: &Fd, size: u64) -> io::Result<()> {
    if file_size(fd)? >= size {
        return Ok(());
    }
    let len = libc::off_t::try_from(size).map_err(|_| too_large())?;
    // SAFETY: ftruncate on our descriptor.
    cvt_r(|| unsafe { libc::ftruncate(fd.raw(), len) }).map(drop)
}

/// The current size of the memory file `fd`.
pub(crate) fn memfile_size(fd: &Fd) -> io::Result<u64> {
    file_size(fd)
}

/// A memory file of no fixed kind (a plain unlinked file), to test that
/// receivers refuse it where a fixed one is due.
#[cfg(test)]
pub(crate) fn memfile_unsealed_for_test(size: u64) -> io::Result<Fd> {
    unlinked_file("multiproc-test", size)
}

/// One large payload in a memory file (an unlinked file: a shared memory
/// object cannot be written with `write`).
pub(crate) struct Memfd {
    fd: Fd,
}

impl Memfd {
    /// Creates a memory file holding a copy of `bytes`.
    pub(crate) fn with_contents(bytes: &[u8]) -> io::Result<Memfd> {
        let fd = unlinked_file("multiproc-payload", 0)?;
        let mut done = 0;
        while done < bytes.len() {
            let rest = &bytes[done..];
            // SAFETY: rest is a valid readable slice.
            let n = cvt_r(|| unsafe { libc::write(fd.raw(), rest.as_ptr().cast(), rest.len()) })?;
            done += n as usize;
        }
        Ok(Memfd { fd })
    }

    pub(crate) fn fd(&self) -> &Fd {
        &self.fd
    }
}

/// An empty buffer with room for `len` bytes; an allocation failure is an
/// error, not an abort.
pub(crate) fn buffer(len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate a {len}-byte buffer"),
        )
    })?;
    Ok(buf)
}

/// No allocator tuning here (the system allocator has no such knob).
pub(crate) fn retain_freed_memory() {}

/// An empty, close-on-exec unlinked file for a captured stream.
pub(crate) fn capture_file() -> io::Result<Fd> {
    unlinked_file("multiproc-output", 0)
}
