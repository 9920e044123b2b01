//! One large payload in a memory section (`Memfd`, `read_file`): an
//! anonymous file mapping backed by the paging file, filled by the sender
//! and copied out by the receiver, freed when its last handle and view
//! go. (Shared memory for the layers above, `Mapping`, is not ported yet.)

use std::{io, ptr};

use windows_sys::Win32::{
    Foundation::INVALID_HANDLE_VALUE,
    System::Memory::{
        CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, PAGE_READWRITE,
        UnmapViewOfFile,
    },
};

use super::Fd;

/// A mapped view, unmapped on drop.
struct View {
    addr: MEMORY_MAPPED_VIEW_ADDRESS,
    len: usize,
}

impl View {
    fn new(section: &Fd, access: u32, len: usize) -> io::Result<View> {
        // SAFETY: maps `len` bytes from the start of an open section.
        let addr = unsafe { MapViewOfFile(section.handle(), access, 0, 0, len) };
        if addr.Value.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(View { addr, len })
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: the view was mapped by `new` and nothing refers to it now.
        unsafe { UnmapViewOfFile(self.addr) };
    }
}

/// One large payload in a section of exactly its size.
#[derive(Debug)]
pub(crate) struct Memfd {
    section: Fd,
}

impl Memfd {
    pub(crate) fn with_contents(bytes: &[u8]) -> io::Result<Memfd> {
        let len = bytes.len().max(1) as u64;
        // SAFETY: an unnamed section backed by the paging file, not
        // inheritable; the result is checked.
        let h = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                ptr::null(),
                PAGE_READWRITE,
                (len >> 32) as u32,
                len as u32,
                ptr::null(),
            )
        };
        let section = Fd::from_new(h)?;
        if !bytes.is_empty() {
            let view = View::new(&section, FILE_MAP_WRITE, bytes.len())?;
            // SAFETY: the view is `bytes.len()` writable bytes, mapped by
            // this process only until `view` drops.
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), view.addr.Value.cast::<u8>(), view.len) };
        }
        Ok(Memfd { section })
    }
    pub(crate) fn fd(&self) -> &Fd {
        &self.section
    }
}

/// The first `len` bytes of the section `fd`.
pub(crate) fn read_file(fd: &Fd, len: usize) -> io::Result<Vec<u8>> {
    let mut out = super::buffer(len)?;
    if len == 0 {
        return Ok(out);
    }
    let view = View::new(fd, FILE_MAP_READ, len)?;
    // SAFETY: the view holds `len` readable bytes (mapping fails for a
    // section smaller than that); `out` has room for them.
    unsafe { ptr::copy_nonoverlapping(view.addr.Value.cast::<u8>(), out.as_mut_ptr(), len) };
    // SAFETY: the first `len` bytes were just written.
    unsafe { out.set_len(len) };
    Ok(out)
}
