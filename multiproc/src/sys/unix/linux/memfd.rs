//! Anonymous memory files for payloads too large to stream through a socket
//! buffer, and read-only views of them.

use std::io;

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

/// An empty buffer with room for `len` bytes, backed by huge pages where
/// the system allows it; an allocation failure is an error, not an abort.
pub(crate) fn buffer(len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate a {len}-byte buffer"),
        )
    })?;
    advise_huge_pages(buf.spare_capacity_mut());
    Ok(buf)
}

/// Largest block that the allocator keeps serving from its heap after
/// [`retain_freed_memory`] (glibc's own ceiling for the setting, 32 MiB).
const RETAIN_BLOCK: i32 = 32 << 20;

/// How much free memory the heap keeps after [`retain_freed_memory`]
/// before it returns the excess to the kernel.
const RETAIN_FREE: i32 = 64 << 20;

/// Makes glibc's allocator keep freed memory for reuse in this process:
/// blocks up to [`RETAIN_BLOCK`] come from the heap instead of fresh
/// mappings, and the heap gives memory back only past [`RETAIN_FREE`] of
/// free space. For the pool's workers, whose every large argument would
/// otherwise arrive in fresh pages (one page fault per 4 KiB, dearer than
/// the copy itself) and leave them again when the task drops it. A hint:
/// another global allocator ignores it, and a failure changes only speed.
pub(crate) fn retain_freed_memory() {
    // SAFETY: mallopt only changes the allocator's tuning parameters;
    // RETAIN_BLOCK is within glibc's accepted mmap threshold range.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, RETAIN_BLOCK) };
    // SAFETY: as above; any trim threshold is accepted.
    unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, RETAIN_FREE) };
}

/// Asks for huge pages over the 2 MiB-aligned interior of `mem`; a hint
/// whose failure changes nothing but speed.
fn advise_huge_pages<T>(mem: &mut [T]) {
    const HUGE: usize = 2 << 20;
    let start = mem.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(mem);
    let aligned = start.next_multiple_of(HUGE);
    if end.saturating_sub(aligned) >= HUGE {
        let len = (end - aligned) / HUGE * HUGE;
        // SAFETY: the range lies inside memory this process owns; advice
        // does not change its contents.
        unsafe { libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
    }
}

/// An empty, close-on-exec anonymous memory file for a captured stream.
pub(crate) fn capture_file() -> io::Result<Fd> {
    // SAFETY: the name is a NUL-terminated literal.
    let raw = cvt(unsafe { libc::memfd_create(c"multiproc-output".as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: memfd_create returned a new descriptor we own.
    Ok(unsafe { Fd::from_raw(raw) })
}
