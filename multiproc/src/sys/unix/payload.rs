//! Reading a payload file received beside a frame (POSIX: Linux and
//! macOS alike; the buffer comes from the platform, which on Linux asks
//! for transparent huge pages so a fresh 16 MiB buffer does not cost 4096
//! page faults).

use std::io;

use super::{cvt_r, fd::Fd, os};

/// Reads the first `len` bytes of the file `fd` into a new buffer.
pub(crate) fn read_file(fd: &Fd, len: usize) -> io::Result<Vec<u8>> {
    if os::file_size(fd)? < len as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "payload file is shorter than its frame says",
        ));
    }
    let mut buf = os::buffer(len)?;
    while buf.len() < len {
        let done = buf.len();
        let at = done as libc::off_t;
        let spare = &mut buf.spare_capacity_mut()[..len - done];
        // SAFETY: spare is writable memory of the given length.
        let n = cvt_r(|| unsafe { libc::pread(fd.raw(), spare.as_mut_ptr().cast(), spare.len(), at) })? as usize;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "payload file ended early"));
        }
        // SAFETY: pread initialised `n` more bytes.
        unsafe { buf.set_len(buf.len() + n) };
    }
    Ok(buf)
}
