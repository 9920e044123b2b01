//! Shared memory segments: POSIX named segments (`shm_open`, in `/dev/shm`
//! on Linux) and shared mappings of memory files (which files: the
//! platform's `memfile.rs`).
//!
//! A [`Mapping`] never hands out a Rust reference to the shared bytes on
//! its own: other processes (and other threads of this one) may write
//! them at any time, so its safe accessors view the bytes as atomics
//! ([`Mapping::atomic_bytes`]) and copy byte by byte with relaxed atomic
//! loads and stores ([`Mapping::copy_out`], [`Mapping::copy_in`],
//! [`Mapping::fill`], [`Mapping::load`], [`Mapping::store`]). Plain slices
//! exist only behind `unsafe` calls whose callers promise exclusion.

use std::{
    ffi::CString,
    io,
    ptr::NonNull,
    sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed},
};

use super::{
    Fd, cvt, cvt_r,
    os::{OPEN_CLOEXEC, fix_cloexec_raw, populate},
};

/// A shared, readable and writable mapping of a whole file, unmapped on
/// drop.
///
/// Invariant: `ptr` starts `len > 0` mapped bytes, page-aligned, that stay
/// mapped as long as `self` lives.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Left mapped on drop (see [`Mapping::keep_mapped`]).
    keep: bool,
}

// SAFETY: the mapping is plain memory shared with other processes anyway;
// every access through `Mapping` is a raw copy, an atomic access, or an
// `unsafe` call whose caller guarantees exclusion, so sharing the handle
// between threads adds nothing another process could not do.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

/// Ranges at least this long are faulted in with one
/// `MADV_POPULATE_WRITE` before a bulk write: one call instead of one page
/// fault per 4 KiB page.
const POPULATE_MIN: usize = 4 << 20;

/// Maps `len` bytes of `fd`, shared, readable and writable.
pub(crate) fn map_shared(fd: &Fd, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh mapping chosen by the kernel touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.raw(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(NonNull::new(p.cast()).expect("mmap does not return a null mapping"))
}

impl Mapping {
    /// Maps the first `len` bytes of `fd` (`len > 0`).
    pub(crate) fn new(fd: &Fd, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map zero bytes"));
        }
        Ok(Mapping {
            ptr: map_shared(fd, len)?,
            len,
            keep: false,
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Panics unless `[off, off + n)` lies inside the mapping (callers
    /// check ranges first and report their own errors).
    pub(super) fn check(&self, off: usize, n: usize) {
        assert!(
            off.checked_add(n).is_some_and(|end| end <= self.len),
            "range checked by the caller"
        );
    }

    /// Copies `out.len()` bytes at `off` into `out`, one relaxed atomic
    /// load per byte (see [`shared`](Self::shared)).
    pub(crate) fn copy_out(&self, off: usize, out: &mut [u8]) {
        let src = self.shared(off, out.len());
        for (d, s) in out.iter_mut().zip(src) {
            *d = s.load(Relaxed);
        }
    }

    /// Copies `src` to the bytes at `off`, one relaxed atomic store per
    /// byte (see [`shared`](Self::shared)).
    pub(crate) fn copy_in(&self, off: usize, src: &[u8]) {
        let dst = self.shared(off, src.len());
        self.populate(off, src.len());
        for (d, &s) in dst.iter().zip(src) {
            d.store(s, Relaxed);
        }
    }

    /// Sets `n` bytes at `off` to `byte`, one relaxed atomic store per
    /// byte (see [`shared`](Self::shared)).
    pub(crate) fn fill(&self, off: usize, n: usize, byte: u8) {
        let dst = self.shared(off, n);
        self.populate(off, n);
        for d in dst {
            d.store(byte, Relaxed);
        }
    }

    /// The bytes `[off, off + n)` as atomics (panics outside the mapping).
    ///
    /// Every safe access to the shared bytes goes through these: threads of
    /// this process may copy in and out of one mapping at once (a handle is
    /// `Sync`, and [`atomic_bytes`](Self::atomic_bytes) hands out the same
    /// view), and plain copies would then be a data race in Rust's memory
    /// model. Byte-sized accesses, because the model forbids racing atomic
    /// accesses of different sizes and users get `AtomicU8`s; relaxed,
    /// because a copy promises no order, only no undefined behaviour (a
    /// concurrent writer can still make the copied bytes a mix of old and
    /// new). Relaxed byte loads and stores compile to plain `mov`s.
    fn shared(&self, off: usize, n: usize) -> &[AtomicU8] {
        self.check(off, n);
        &self.atomic_bytes()[off..off + n]
    }

    /// Faults in the pages of a large range about to be written. Only a
    /// hint: a kernel without `MADV_POPULATE_WRITE` (before 5.14) or a
    /// failure leaves the writes to fault the pages in one by one.
    fn populate(&self, off: usize, n: usize) {
        if n < POPULATE_MIN {
            return;
        }
        let start = self.ptr.as_ptr() as usize + off;
        let aligned = start.next_multiple_of(4096);
        let end = (start + n) & !4095;
        if end > aligned {
            populate(aligned as *mut u8, end - aligned);
        }
    }

    /// The mapped bytes as atomics: sound whatever other processes do.
    pub(crate) fn atomic_bytes(&self) -> &[AtomicU8] {
        // SAFETY: AtomicU8 has the size and alignment of u8 and any bit
        // pattern is valid; the bytes stay mapped while `self` is borrowed;
        // atomics may be accessed concurrently by anyone.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU8>(), self.len) }
    }

    /// The mapped bytes as a plain slice.
    ///
    /// # Safety
    /// Nothing (another process, another mapping, a `bytes_mut` slice)
    /// may write the bytes while the slice lives.
    pub(crate) unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: the bytes are mapped while `self` is borrowed; the caller
        // excludes writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes as a mutable slice.
    ///
    /// # Safety
    /// Nothing else may read or write the bytes while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self) -> &mut [u8] {
        // SAFETY: the bytes are mapped while `self` is borrowed; the caller
        // guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Mapping {
    /// Leaves the memory mapped when `self` is dropped (a deliberate leak
    /// of address space): for a mapping holding a robust mutex that a
    /// thread of this process still holds, because glibc keeps the mutex's
    /// address on that thread's robust list and walks the list on every
    /// later robust lock and unlock.
    pub(crate) fn keep_mapped(&mut self) {
        self.keep = true;
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // SAFETY: unmapping our own mapping; nothing borrowed from it
        // outlives `self`. A failure (impossible for a valid range) would
        // only leak address space.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "the size does not fit a file offset")
}

/// `/name` for `shm_open`; `name` has been validated (no `/`, no NUL).
fn posix_name(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}")).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the name contains NUL"))
}

/// Creates the named segment `name` of `size` bytes, failing with
/// `AlreadyExists` if the name is taken. The new file is unlinked again
/// if it cannot be sized.
pub(crate) fn shm_create(name: &str, size: usize) -> io::Result<Fd> {
    let path = posix_name(name)?;
    let size = libc::off_t::try_from(size).map_err(|_| too_large())?;
    // SAFETY: path is NUL-terminated.
    let raw = cvt_r(|| unsafe {
        libc::shm_open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | OPEN_CLOEXEC,
            0o600,
        )
    })?;
    // SAFETY: shm_open returned a new descriptor we own.
    let fd = unsafe { Fd::from_raw(raw) };
    fix_cloexec_raw(fd.raw())?;
    // SAFETY: ftruncate on our descriptor.
    if let Err(e) = cvt_r(|| unsafe { libc::ftruncate(fd.raw(), size) }) {
        // The name is ours (O_EXCL) and useless unsized; an unlink failure
        // leaves nothing better to do than report the first error.
        let _ = shm_unlink(name);
        return Err(e);
    }
    Ok(fd)
}

/// Opens the existing named segment `name` for reading and writing.
pub(crate) fn shm_attach(name: &str) -> io::Result<Fd> {
    let path = posix_name(name)?;
    // SAFETY: path is NUL-terminated.
    let raw = cvt_r(|| unsafe { libc::shm_open(path.as_ptr(), libc::O_RDWR | OPEN_CLOEXEC, 0) })?;
    // SAFETY: shm_open returned a new descriptor we own.
    let fd = unsafe { Fd::from_raw(raw) };
    fix_cloexec_raw(fd.raw())?;
    Ok(fd)
}

/// Removes the name `name` from `/dev/shm` (mappings stay valid).
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    let path = posix_name(name)?;
    // SAFETY: path is NUL-terminated.
    cvt(unsafe { libc::shm_unlink(path.as_ptr()) }).map(drop)
}

/// Makes this process (a cleanup tracker) ignore `SIGINT` and `SIGTERM`:
/// Ctrl-C or a `killpg` reaches the whole process group, and the tracker
/// must outlive its owner to clean up after it.
pub(crate) fn ignore_group_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: setting a signal's disposition to SIG_IGN is always valid.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

/// Whether a file of `actual` bytes is one of `wanted` bytes, or that
/// size rounded up to whole pages of `page` bytes (how macOS sizes a
/// shared memory object).
#[cfg(any(test, target_os = "macos"))]
pub(crate) fn size_within_page(actual: u64, wanted: u64, page: u64) -> bool {
    actual == wanted || wanted.checked_next_multiple_of(page) == Some(actual)
}

/// The widest atomic access (1, 2, 4 or 8 bytes) that tiles a `T` and is
/// aligned wherever a `T` is: the unit of every access to shared `T`s, so
/// that a word-sized `T` is never torn and all accesses to it have one
/// size (Rust's model forbids racing atomic accesses of different sizes).
pub(crate) const fn unit_of<T>() -> usize {
    let mut unit = 8;
    while unit > 1 && (size_of::<T>() % unit != 0 || align_of::<T>() % unit != 0) {
        unit /= 2;
    }
    unit
}

/// Copies between `n` shared units starting at `p` and a private buffer,
/// as relaxed atomics of type `$atomic` (`$n` bytes).
macro_rules! copy_units {
    (out $atomic:ty, $n:literal, $p:expr, $out:expr) => {{
        let out: &mut [u8] = $out;
        // SAFETY: the caller checked that `$p` starts `out.len()` mapped
        // bytes, aligned to `$n`, and `out.len()` is a multiple of `$n`;
        // the atomic type has the size and alignment of `$n` bytes, any bit
        // pattern is valid, and the bytes stay mapped while `self` is
        // borrowed. Atomics may be accessed concurrently by anyone.
        let src = unsafe { std::slice::from_raw_parts($p.cast::<$atomic>(), out.len() / $n) };
        for (d, s) in out.chunks_exact_mut($n).zip(src) {
            d.copy_from_slice(&s.load(Relaxed).to_ne_bytes());
        }
    }};
    (in $atomic:ty, $int:ty, $n:literal, $p:expr, $src:expr) => {{
        let src: &[u8] = $src;
        // SAFETY: as for `out`, for `src.len()` bytes, which are writable.
        let dst = unsafe { std::slice::from_raw_parts($p.cast::<$atomic>(), src.len() / $n) };
        for (d, s) in dst.iter().zip(src.chunks_exact($n)) {
            d.store(<$int>::from_ne_bytes(s.try_into().expect("a whole unit")), Relaxed);
        }
    }};
}

impl Mapping {
    /// Copies `out.len()` bytes at `off` into `out` as relaxed atomics of
    /// `unit` bytes (1, 2, 4 or 8; `off` and the length are multiples).
    pub(crate) fn copy_out_units(&self, off: usize, out: &mut [u8], unit: usize) {
        self.check(off, out.len());
        let p = self.ptr.as_ptr().wrapping_add(off);
        assert!(
            out.len() % unit == 0 && p as usize % unit == 0,
            "units checked by the caller"
        );
        match unit {
            8 => copy_units!(out AtomicU64, 8, p, out),
            4 => copy_units!(out AtomicU32, 4, p, out),
            2 => copy_units!(out AtomicU16, 2, p, out),
            _ => self.copy_out(off, out),
        }
    }

    /// Copies `src` to the bytes at `off` as relaxed atomics of `unit`
    /// bytes (1, 2, 4 or 8; `off` and the length are multiples).
    pub(crate) fn copy_in_units(&self, off: usize, src: &[u8], unit: usize) {
        self.check(off, src.len());
        let p = self.ptr.as_ptr().wrapping_add(off);
        assert!(
            src.len() % unit == 0 && p as usize % unit == 0,
            "units checked by the caller"
        );
        self.populate(off, src.len());
        match unit {
            8 => copy_units!(in AtomicU64, u64, 8, p, src),
            4 => copy_units!(in AtomicU32, u32, 4, p, src),
            2 => copy_units!(in AtomicU16, u16, 2, p, src),
            _ => self.copy_in(off, src),
        }
    }

    /// Reads a `T` at byte `off` (aligned for `T`) as relaxed atomics of
    /// [`unit_of::<T>`] bytes: a `T` wider than a machine word, or not
    /// aligned to its size, can be torn by a concurrent writer.
    pub(crate) fn load<T: bytemuck::Pod>(&self, off: usize) -> T {
        let mut v = T::zeroed();
        self.copy_out_units(off, bytemuck::bytes_of_mut(&mut v), unit_of::<T>());
        v
    }

    /// Writes `v` at byte `off` (aligned for `T`) as relaxed atomics of
    /// [`unit_of::<T>`] bytes.
    pub(crate) fn store<T: bytemuck::Pod>(&self, off: usize, v: T) {
        self.copy_in_units(off, bytemuck::bytes_of(&v), unit_of::<T>());
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A [`Mapping`] over `words` zeroed heap words, left alone on drop:
    /// the copy paths then run under Miri, which has no memory files.
    struct Heap {
        buf: *mut [u64],
        map: Option<Mapping>,
    }

    impl Heap {
        fn new(words: usize) -> Heap {
            let buf = Box::into_raw(vec![0u64; words].into_boxed_slice());
            let map = Mapping {
                ptr: NonNull::new(buf.cast::<u8>()).expect("a box is not null"),
                len: words * 8,
                keep: true,
            };
            Heap { buf, map: Some(map) }
        }

        fn map(&self) -> &Mapping {
            self.map.as_ref().expect("mapped until drop")
        }
    }

    impl Drop for Heap {
        fn drop(&mut self) {
            self.map = None;
            // SAFETY: from Box::into_raw in `new`; the mapping that used it
            // is gone.
            drop(unsafe { Box::from_raw(self.buf) });
        }
    }

    #[test]
    fn a_size_rounded_up_to_whole_pages_matches_and_nothing_else() {
        assert!(size_within_page(4096, 4096, 16384));
        assert!(size_within_page(16384, 4096, 16384));
        assert!(size_within_page(16384, 16384, 16384));
        assert!(size_within_page(16384, 1, 16384));
        assert!(!size_within_page(32768, 4096, 16384), "a whole page more");
        assert!(!size_within_page(4095, 4096, 4096), "shorter");
        assert!(!size_within_page(8192, 4096, 4096));
        assert!(
            !size_within_page(u64::MAX, u64::MAX - 1, 4096),
            "no rounding past the end"
        );
    }

    #[test]
    fn the_access_unit_tiles_the_type_within_its_alignment() {
        assert_eq!(unit_of::<u8>(), 1);
        assert_eq!(unit_of::<u16>(), 2);
        assert_eq!(unit_of::<f32>(), 4);
        assert_eq!(unit_of::<u64>(), 8);
        assert_eq!(unit_of::<[u32; 3]>(), 4);
        assert_eq!(unit_of::<[u8; 8]>(), 1);
        assert_eq!(unit_of::<u128>(), 8);
    }

    /// Threads of one process copying in and out of one mapping at once:
    /// no data race (Miri checks this one; plain copies fail it), and every
    /// value read is one that was written whole (a `u64` is one unit).
    #[test]
    fn threads_copy_concurrently_without_tearing_words() {
        let rounds = if cfg!(miri) { 20 } else { 10_000 };
        let heap = Heap::new(16);
        let map = heap.map();
        let words = [0x1111_1111_1111_1111u64, 0x2222_2222_2222_2222];
        map.store(64, words[0]);
        std::thread::scope(|s| {
            for w in words {
                s.spawn(move || {
                    for _ in 0..rounds {
                        map.store(64, w);
                        map.copy_in(0, &[w as u8; 64]);
                        map.fill(72, 8, w as u8);
                    }
                });
            }
            for _ in 0..rounds {
                let v: u64 = map.load(64);
                assert!(words.contains(&v), "torn word {v:#x}");
                let mut bytes = [0u8; 64];
                map.copy_out(0, &mut bytes);
                assert!(bytes.iter().all(|&b| b == 0 || b == 0x11 || b == 0x22), "{bytes:?}");
                let _ = map.atomic_bytes()[3].load(Relaxed);
            }
        });
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: if cfg!(miri) { 8 } else { 256 },
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// Copies in units of any size agree with byte copies, and leave
        /// the bytes around the range alone.
        #[test]
        fn unit_copies_agree_with_byte_copies(
            shift in 0u32..4,
            first in 0usize..16,
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let unit = 1usize << shift;
            let off = first * unit;
            let data = &data[..data.len() / unit * unit];
            let heap = Heap::new(32);
            let map = heap.map();
            map.fill(0, map.len(), 0xa5);
            map.copy_in_units(off, data, unit);
            let mut bytes = vec![0u8; map.len()];
            map.copy_out(0, &mut bytes);
            let mut model = vec![0xa5u8; map.len()];
            model[off..off + data.len()].copy_from_slice(data);
            prop_assert_eq!(&bytes, &model);
            let mut units = vec![0u8; data.len()];
            map.copy_out_units(off, &mut units, unit);
            prop_assert_eq!(&units[..], data);
        }
    }
}
