//! A child's standard output and error: the pipes that relay them, the
//! memory files that capture them, and the raw reads and writes on both.
//!
//! Everything here stays out of std's `Stdout`/`Stderr` (and their locks):
//! the relay thread writes with `write(2)`, so that a fork child never
//! inherits one of std's locks held by it.

use std::io;

use super::{Fd, cvt, cvt_r, os::pipe_raw};

/// A pipe for a child's output: the read end (this process's, close-on-exec
/// and non-blocking) and the write end (close-on-exec, blocking: the child
/// makes it its descriptor 1 or 2, where a non-blocking descriptor would
/// make its writes fail with `EAGAIN`).
pub(crate) fn output_pipe() -> io::Result<(Fd, Fd)> {
    let (read, write) = pipe_cloexec()?;
    // SAFETY: F_GETFL on a descriptor we own.
    let flags = cvt(unsafe { libc::fcntl(read.raw(), libc::F_GETFL) })?;
    // SAFETY: F_SETFL on a descriptor we own, with flags it reported.
    cvt(unsafe { libc::fcntl(read.raw(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok((read, write))
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub(super) fn pipe_cloexec() -> io::Result<(Fd, Fd)> {
    let [read, write] = pipe_raw()?;
    // SAFETY: pipe returned two new descriptors we own.
    let read = unsafe { Fd::from_raw(read) };
    // SAFETY: as above.
    let write = unsafe { Fd::from_raw(write) };
    Ok((read, write))
}

/// The whole content of the file `fd`, read from offset 0 without moving
/// the file's offset (which the writers share).
pub(crate) fn file_contents(fd: &Fd) -> io::Result<Vec<u8>> {
    // SAFETY: an all-zero stat is a valid out-value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    cvt(unsafe { libc::fstat(fd.raw(), &mut st) })?;
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(st.st_size.max(0) as usize)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "cannot allocate a buffer for the output"))?;
    loop {
        if buf.capacity() == buf.len() {
            // The file may have grown since the fstat.
            buf.reserve(64 * 1024);
        }
        let done = buf.len();
        let spare = buf.spare_capacity_mut();
        // SAFETY: spare is writable memory of the given length.
        let n = cvt_r(|| unsafe { libc::pread(fd.raw(), spare.as_mut_ptr().cast(), spare.len(), done as libc::off_t) })?
            as usize;
        if n == 0 {
            return Ok(buf);
        }
        // SAFETY: pread initialised `n` more bytes.
        unsafe { buf.set_len(done + n) };
    }
}

/// What a non-blocking read got.
pub(crate) enum ReadSome {
    /// Bytes were appended.
    Data(usize),
    /// Nothing to read now.
    Empty,
    /// Every writer has closed its end.
    End,
}

/// Appends at most `max` bytes read from the non-blocking descriptor `fd`.
pub(crate) fn read_some(fd: &Fd, buf: &mut Vec<u8>, max: usize) -> io::Result<ReadSome> {
    buf.reserve(max);
    let done = buf.len();
    let spare = &mut buf.spare_capacity_mut()[..max];
    // SAFETY: spare is writable memory of the given length.
    match cvt_r(|| unsafe { libc::read(fd.raw(), spare.as_mut_ptr().cast(), spare.len()) }) {
        Ok(0) => Ok(ReadSome::End),
        Ok(n) => {
            // SAFETY: read initialised `n` more bytes.
            unsafe { buf.set_len(done + n as usize) };
            Ok(ReadSome::Data(n as usize))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadSome::Empty),
        Err(e) => Err(e),
    }
}

/// Writes all of `bytes` to the raw descriptor `fd` (1 or 2) of this
/// process, without std's stream locks. A descriptor someone made
/// non-blocking is waited on as a blocking one would be: until its reader
/// takes the bytes.
pub(crate) fn write_all_raw(fd: i32, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: bytes is a valid readable slice; `fd` is a number this
        // process may write to (a closed one fails with EBADF).
        match cvt_r(|| unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n as usize..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                super::fd::poll_one(fd, libc::POLLOUT, None)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
