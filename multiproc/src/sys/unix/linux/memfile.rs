//! Anonymous memory files shared between processes whose size is sealed:
//! fixed, or grow-only. Another process that receives one can check the
//! seals before mapping it, so nobody can truncate a mapping under it
//! (which would be `SIGBUS`, not an error).

use std::{ffi::CStr, io};

use crate::sys::{MemfileFacts, Resize};

use super::{
    Fd, cvt_r,
    shm::{check_sealed, create_memfd, file_size},
};

impl Resize {
    /// Seals the file must carry, and seals it must not.
    fn seals(self) -> (libc::c_int, libc::c_int) {
        match self {
            Resize::Fixed => (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW, 0),
            Resize::GrowOnly => (libc::F_SEAL_SHRINK, libc::F_SEAL_GROW | libc::F_SEAL_WRITE),
        }
    }
}

/// A new close-on-exec memory file of `size` zeroed bytes, sealed as
/// `resize` says (and against changing its seals). `name` shows in
/// `/proc/<pid>/fd`.
pub(crate) fn memfile_create(name: &CStr, size: u64, resize: Resize) -> io::Result<Fd> {
    create_memfd(name, size, resize.seals().0 | libc::F_SEAL_SEAL)
}

/// Checks that `fd`, received from another process, is a memory file
/// sealed as `resize` says; an `InvalidData` error naming `what` ("the
/// queue's control") otherwise.
pub(crate) fn memfile_check(fd: &Fd, resize: Resize, what: &str) -> io::Result<MemfileFacts> {
    let (must, must_not) = resize.seals();
    let st = check_sealed(fd, must, must_not, what)?;
    Ok(MemfileFacts {
        id: (st.st_dev, st.st_ino),
        size: st.st_size as u64,
    })
}

/// Grows the grow-only memory file `fd` to `size` bytes (new bytes are
/// zero); a file already that large is left alone.
pub(crate) fn memfile_grow(fd: &Fd, size: u64) -> io::Result<()> {
    if file_size(fd)? >= size {
        return Ok(());
    }
    let len = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the size does not fit a file offset"))?;
    // SAFETY: ftruncate on our descriptor; its seals allow growing.
    cvt_r(|| unsafe { libc::ftruncate(fd.raw(), len) }).map(drop)
}

/// The current size of the memory file `fd`.
pub(crate) fn memfile_size(fd: &Fd) -> io::Result<u64> {
    file_size(fd)
}

/// A memory file with no seals at all, to test that receivers refuse it.
#[cfg(test)]
pub(crate) fn memfile_unsealed_for_test(size: u64) -> io::Result<Fd> {
    create_memfd(c"multiproc-test", size, 0)
}
