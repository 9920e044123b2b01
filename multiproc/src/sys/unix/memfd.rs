//! Anonymous memory files for payloads too large to stream through a socket
//! buffer, and read-only views of them.

use std::{io, ptr::NonNull};

use super::{Fd, cvt, cvt_r};

/// An anonymous, close-on-exec memory file holding one payload.
pub(crate) struct Memfd {
    fd: Fd,
}

impl Memfd {
    /// Creates a memory file holding a copy of `bytes`.
    pub(crate) fn with_contents(bytes: &[u8]) -> io::Result<Memfd> {
        // SAFETY: the name is a NUL-terminated literal.
        let raw = cvt(unsafe { libc::memfd_create(c"multiproc-payload".as_ptr(), libc::MFD_CLOEXEC) })?;
        // SAFETY: memfd_create returned a new descriptor we own.
        let fd = unsafe { Fd::from_raw(raw) };
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

/// A read-only, private view of the first `len` bytes of a memory file.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `fd`, faulting them in up front; fails if the file
    /// is shorter than `len`.
    pub(crate) fn new(fd: &Fd, len: usize) -> io::Result<Mapping> {
        // SAFETY: an all-zero stat is a valid out-value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: st is a valid out-pointer.
        cvt(unsafe { libc::fstat(fd.raw(), &mut st) })?;
        if (st.st_size as u64) < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "payload file is shorter than its frame says",
            ));
        }
        if len == 0 {
            return Ok(Mapping {
                ptr: NonNull::dangling(),
                len,
            });
        }
        // SAFETY: a fresh private read-only mapping of a file we hold open.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                fd.raw(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap never returns NULL on success"),
            len,
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: ptr maps `len` readable bytes for as long as self lives;
        // the mapping is private, so no other process can change them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the region mapped in `new`.
            // munmap of a valid mapping cannot fail; nothing to report.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}
