//! Shared memory segments (Python's `multiprocessing.shared_memory`).
//!
//! # Design
//!
//! **Anonymous or named.** [`SharedMemory::new`] makes an anonymous segment
//! (a `memfd`, sealed at its size): nothing to name, nothing to clean up,
//! gone with its last handle. Python has no such thing; it is the better
//! default. [`SharedMemory::create`] makes a named one in `/dev/shm`
//! (`shm_open` with `O_CREAT | O_EXCL`, a random `psm_` name, retried on a
//! collision), which unrelated processes can [`attach`](SharedMemory::attach)
//! to by name.
//!
//! **Who unlinks.** The creator owns the name: dropping (or
//! [closing](SharedMemory::close)) the creating handle unlinks it, in the
//! creating process only (a `fork` child's copy never does). Attaching never
//! unlinks (Python 3.11 lets an attacher's tracker unlink segments still in
//! use, gh-82300). [`persist`](SharedMemory::persist) gives the name up: it
//! then outlives its creator until someone calls
//! [`unlink`](SharedMemory::unlink). A creator that dies without dropping
//! its handle (`SIGKILL`, `process::exit`, `mem::forget`) does not leak the
//! name: a cleanup tracker process, started with the first named segment,
//! unlinks it (see `tracker.rs`). The tracker itself creates each named
//! segment and passes its descriptor back, so that no name exists, not even
//! for an instant, without the tracker knowing it: a creator killed at any
//! point of `create` leaves nothing behind.
//!
//! **Passing to other processes.** A `SharedMemory` is a process argument
//! (or an item sent through a `Connection` or `Queue`) like a `Queue`: it
//! travels as its *descriptor*, anonymous or named, so the receiver maps the
//! very same memory even if the name was unlinked in between, and never
//! owns the name. (Python pickles by name and re-attaches, which fails once
//! the creator unlinked.) A named segment's name travels with it.
//!
//! **Reading and writing.** Other processes, and other threads of this
//! one (a `SharedMemory` is `Sync`), may write the bytes at any moment, so
//! handing out `&[u8]` or `&mut [u8]` would be undefined behaviour in safe
//! code (a reference promises the bytes do not change, or that nobody else
//! sees them), and so would plain `memcpy`s racing between two threads
//! (a data race in Rust's memory model). The safe interface is therefore:
//!
//! - copies: [`read_at`](SharedMemory::read_at),
//!   [`write_at`](SharedMemory::write_at), [`fill`](SharedMemory::fill),
//!   [`to_vec`](SharedMemory::to_vec): one relaxed atomic load or store per
//!   byte, so any number of threads may copy at once; a concurrent writer
//!   can make a copy a mix of old and new bytes, nothing worse. Large
//!   writes fault their pages in with one `MADV_POPULATE_WRITE` first;
//! - [`as_atomic_bytes`](SharedMemory::as_atomic_bytes): the bytes as
//!   `&[AtomicU8]`, for byte-wise concurrent access (the copies above use
//!   the same byte-sized atomics: Rust's model forbids racing atomic
//!   accesses of different sizes);
//! - for code that establishes exclusion itself (a lock, a protocol such as
//!   "the child has exited"): the `unsafe` [`as_slice`](SharedMemory::as_slice)
//!   and [`as_mut_slice`](SharedMemory::as_mut_slice), and
//!   [`as_ptr`](SharedMemory::as_ptr).
//!
//! *Why atomic copies and not `write_at(&mut self)`:* a `&mut` rule would
//! stop neither other processes nor other handles to the same segment in
//! this one (`try_clone`, a received copy), and Python's `buf` is shared
//! freely. Byte-wise relaxed copies are plain `mov`s that the compiler
//! does not merge into `memcpy`: filling a pre-faulted 256 MiB segment
//! takes about 1.4 times as long as `memset` did (the `shm/256MiB_reused`
//! benchmark row); page faults dominate a fresh one. Word-sized copies
//! would be cheaper but would race, at a different size, with the bytes
//! `as_atomic_bytes` hands out, which Rust's model does not allow. Code
//! that has exclusion anyway can use the `unsafe` slices above.
//!
//! Typed shared values with a lock are [`Value`](crate::Value) and
//! [`Array`](crate::Array).

mod shareable_list;
pub(crate) mod tracker;

use std::{fmt, io, sync::atomic::AtomicU8};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use self::shareable_list::{ListItem, ShareableList};
use crate::{
    Error, ErrorKind, Result, codec,
    sys::{self, Fd, Mapping},
};

/// The prefix of generated names, as in Python.
const NAME_PREFIX: &str = "psm_";
/// The longest name `/dev/shm` takes (`NAME_MAX`).
const MAX_NAME: usize = 255;

/// A block of memory shared between processes, anonymous or named.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// use multiproc::{ProcessBuilder, SharedMemory};
///
/// fn child(shm: SharedMemory) {
///     shm.write_at(0, b"hello").unwrap();
/// }
///
/// let shm = SharedMemory::new(4096)?;
/// let mut p = ProcessBuilder::new().target_with(child, shm.try_clone()?);
/// p.start()?;
/// p.join()?;
/// let mut buf = [0u8; 5];
/// shm.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok(()) }
/// ```
pub struct SharedMemory {
    map: Mapping,
    fd: Fd,
    name: Option<String>,
    /// The creating process, while it still owns the name (it unlinks it
    /// on drop); `None` for anonymous, attached, persisted or unlinked
    /// segments.
    owner: Option<u32>,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .field("owns_name", &self.owns_name())
            .finish()
    }
}

impl SharedMemory {
    /// A new anonymous segment of `size` zeroed bytes.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let shm = multiproc::SharedMemory::new(1 << 20)?;
    /// assert_eq!(shm.size(), 1 << 20);
    /// assert_eq!(shm.name(), None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a size of 0; [`ErrorKind::Io`] when
    /// the system refuses the memory.
    pub fn new(size: usize) -> Result<SharedMemory> {
        check_size(size)?;
        let fd = sys::memfd_sealed(size).map_err(|e| Error::io("failed to create a shared memory segment", e))?;
        SharedMemory::map(fd, size, None)
    }

    /// A new named segment of `size` zeroed bytes in `/dev/shm`, under a
    /// random name (`psm_` and 16 hex digits), owned by this handle.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let shm = multiproc::SharedMemory::create(4096)?;
    /// let name = shm.name().unwrap().to_owned();
    /// assert!(name.starts_with("psm_"));
    /// let other = multiproc::SharedMemory::attach(&name)?;
    /// other.write_at(0, &[42])?;
    /// assert_eq!(shm.to_vec()[0], 42);
    /// drop(shm); // the creator unlinks the name
    /// assert!(multiproc::SharedMemory::attach(&name).is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new), and [`ErrorKind::Io`] when the cleanup
    /// tracker cannot be started.
    #[doc(alias = "SharedMemory(create=True)")]
    pub fn create(size: usize) -> Result<SharedMemory> {
        check_size(size)?;
        for _ in 0..100 {
            let mut random = [0u8; 8];
            sys::random_bytes(&mut random).map_err(|e| Error::io("failed to draw a random name", e))?;
            let name = format!("{NAME_PREFIX}{:016x}", u64::from_le_bytes(random));
            match SharedMemory::create_named(&name, size) {
                Err(e) if io_kind(&e) == Some(io::ErrorKind::AlreadyExists) => continue,
                other => return other,
            }
        }
        Err(Error::new(
            ErrorKind::Io,
            "failed to find a free shared memory name in 100 tries",
        ))
    }

    /// A new segment of `size` zeroed bytes named `name` (with or without
    /// a leading `/`), owned by this handle.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a size of 0 or an invalid name (empty,
    /// containing `/` or NUL, longer than 255 bytes); [`ErrorKind::Io`] with
    /// an [`io::ErrorKind::AlreadyExists`] source when the name is taken.
    pub fn create_named(name: &str, size: usize) -> Result<SharedMemory> {
        check_size(size)?;
        let name = check_name(name)?;
        // The tracker creates the segment, so that the name is tracked from
        // the instant it exists (see tracker.rs).
        let fd = tracker::create(name, size).map_err(|e| match e {
            tracker::CreateError::Segment(e) => {
                Error::io(format!("failed to create the shared memory segment {name:?}"), e)
            }
            tracker::CreateError::Tracker(e) => Error::io(
                format!("failed to create the shared memory segment {name:?}: the cleanup tracker failed"),
                e,
            ),
        })?;
        let mut shm = match SharedMemory::map(fd, size, Some(name.to_owned())) {
            Ok(shm) => shm,
            Err(e) => {
                let _ = sys::shm_unlink(name);
                tracker::unregister(name);
                return Err(e);
            }
        };
        shm.owner = Some(sys::getpid());
        Ok(shm)
    }

    /// Attaches to the existing segment `name` (with or without a leading
    /// `/`); its size is the segment's. The handle never unlinks the name
    /// unless asked to with [`unlink`](Self::unlink).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] with an [`io::ErrorKind::NotFound`] source when no
    /// such segment exists; [`ErrorKind::InvalidInput`] for an invalid name
    /// or an empty segment.
    #[doc(alias = "SharedMemory(name)")]
    pub fn attach(name: &str) -> Result<SharedMemory> {
        let name = check_name(name)?;
        let fd = sys::shm_attach(name)
            .map_err(|e| Error::io(format!("failed to attach to the shared memory segment {name:?}"), e))?;
        let size = sys::file_size(&fd)
            .map_err(|e| Error::io(format!("failed to read the size of shared memory segment {name:?}"), e))?;
        let size = usize::try_from(size).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("shared memory segment {name:?} is too large to map"),
            )
        })?;
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("shared memory segment {name:?} is empty (its creator has not sized it yet)"),
            ));
        }
        SharedMemory::map(fd, size, Some(name.to_owned()))
    }

    fn map(fd: Fd, size: usize, name: Option<String>) -> Result<SharedMemory> {
        let map = Mapping::new(&fd, size).map_err(|e| Error::io("failed to map a shared memory segment", e))?;
        Ok(SharedMemory {
            map,
            fd: fd.into_endpoint(),
            name,
            owner: None,
        })
    }

    /// A second handle on the same memory (its own mapping and
    /// descriptor); it never owns the name.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the system refuses a descriptor or mapping.
    pub fn try_clone(&self) -> Result<SharedMemory> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| Error::io("failed to duplicate a shared memory descriptor", e))?;
        SharedMemory::map(fd, self.size(), self.name.clone())
    }

    /// The segment's name (without the leading `/`), `None` if anonymous.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// Whether this handle unlinks the name when dropped.
    pub fn owns_name(&self) -> bool {
        self.owner == Some(sys::getpid())
    }

    /// The first byte. The memory is shared: see the module docs before
    /// dereferencing it.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "bytes {offset}..{} are out of range for a shared memory segment of {} bytes",
                    offset.saturating_add(len),
                    self.size()
                ),
            )),
        }
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when the range passes the end.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        self.map.copy_out(offset, buf);
        Ok(())
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when the range passes the end.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_range(offset, data.len())?;
        self.map.copy_in(offset, data);
        Ok(())
    }

    /// Sets every byte to `byte`.
    pub fn fill(&self, byte: u8) {
        self.map.fill(0, self.size(), byte);
    }

    /// A copy of the whole segment.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.size()];
        self.map.copy_out(0, &mut v);
        v
    }

    /// The bytes as atomics: sound to read and write while other processes
    /// do the same.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use std::sync::atomic::Ordering;
    /// let shm = multiproc::SharedMemory::new(16)?;
    /// shm.as_atomic_bytes()[3].store(7, Ordering::Release);
    /// assert_eq!(shm.to_vec()[3], 7);
    /// # Ok(()) }
    /// ```
    pub fn as_atomic_bytes(&self) -> &[AtomicU8] {
        self.map.atomic_bytes()
    }

    /// The bytes as a slice, without copying.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let shm = multiproc::SharedMemory::new(4)?;
    /// shm.fill(1);
    /// // SAFETY: no other handle or process exists that could write.
    /// let sum: u32 = unsafe { shm.as_slice() }.iter().map(|&b| u32::from(b)).sum();
    /// assert_eq!(sum, 4);
    /// # Ok(()) }
    /// ```
    ///
    /// # Safety
    ///
    /// While the slice lives, nothing may write the segment: no other
    /// process, and no other handle or `as_mut_slice` in this one.
    #[allow(unsafe_code)]
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the caller excludes writers for the slice's lifetime.
        unsafe { self.map.bytes() }
    }

    /// The bytes as a mutable slice, without copying.
    ///
    /// # Safety
    ///
    /// While the slice lives, nothing else may read or write the segment:
    /// no other process, and no other handle in this one.
    #[allow(unsafe_code)]
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `&mut self` excludes this handle's other views; the
        // caller excludes everyone else for the slice's lifetime.
        unsafe { self.map.bytes_mut() }
    }

    /// Removes the name from `/dev/shm` now: later attaches fail, existing
    /// mappings (in every process) stay valid. Any handle may do this; the
    /// creator's handle then no longer unlinks on drop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] for an anonymous segment;
    /// [`ErrorKind::Io`] with an [`io::ErrorKind::NotFound`] source when the
    /// name is already gone.
    pub fn unlink(&mut self) -> Result<()> {
        let Some(name) = self.name.as_deref() else {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "an anonymous shared memory segment has no name to unlink",
            ));
        };
        let res = sys::shm_unlink(name)
            .map_err(|e| Error::io(format!("failed to unlink the shared memory segment {name:?}"), e));
        if self.owns_name() {
            tracker::unregister(name);
        }
        self.owner = None;
        res
    }

    /// Gives up ownership of the name: it stays in `/dev/shm` after this
    /// handle is dropped (and after this process dies) until someone
    /// [unlinks](Self::unlink) it.
    #[doc(alias = "leak")]
    #[doc(alias = "track")]
    pub fn persist(&mut self) {
        if let (true, Some(name)) = (self.owns_name(), self.name.as_deref()) {
            tracker::unregister(name);
        }
        self.owner = None;
    }

    /// Unmaps the segment and closes its descriptor; the creator's handle
    /// also unlinks the name (Python's `close`, plus `unlink` for the
    /// owner). Dropping does the same, ignoring errors.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the owner's unlink failed (someone else
    /// unlinked the name).
    pub fn close(mut self) -> Result<()> {
        if self.owns_name() { self.unlink() } else { Ok(()) }
    }

    /// The pid of this process's cleanup tracker, if one runs. Not part of
    /// the API: for tests and diagnostics.
    #[doc(hidden)]
    pub fn __tracker_pid() -> Option<u32> {
        tracker::pid()
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if !self.owns_name() {
            return;
        }
        if let Some(name) = self.name.as_deref()
            && !names_this_file(name, &self.fd)
        {
            // Someone unlinked the name and it now names another segment
            // (or nothing): not ours to remove.
            tracker::unregister(name);
            self.owner = None;
            return;
        }
        // The name may be gone by now (someone else unlinked it): nothing
        // to report from a destructor.
        let _ = self.unlink();
    }
}

/// Whether `/dev/shm/<name>` is the file `fd` is open on (same device and
/// inode; `true` when that cannot be told), checked before the creator's drop unlinks the name: after
/// someone else unlinked it and another process created a namesake, the
/// name is not ours any more. (A namesake created between this check and
/// the unlink is still removed; the tracker, which unlinks by name after
/// its owner died, does not check at all.)
fn names_this_file(name: &str, fd: &Fd) -> bool {
    match sys::shm_attach(name) {
        Ok(now) => now
            .identity()
            .is_none_or(|i| fd.identity().is_none_or(|mine| mine == i)),
        // Gone, or someone else's.
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied) => false,
        // Unknown (out of descriptors, say): unlink as if it were ours.
        Err(_) => true,
    }
}

/// The kind of the `io::Error` behind `e`, if any.
fn io_kind(e: &Error) -> Option<io::ErrorKind> {
    std::error::Error::source(e)?
        .downcast_ref::<io::Error>()
        .map(io::Error::kind)
}

fn check_size(size: usize) -> Result<()> {
    if size == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "a shared memory segment needs a size of at least 1 byte",
        ));
    }
    Ok(())
}

/// The name without a leading `/`, if valid.
fn check_name(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.len() > MAX_NAME || bare.contains(['/', '\0']) || bare == "." || bare == ".." {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{name:?} is not a valid shared memory name (1 to 255 bytes, no '/' or NUL after the first)"),
        ));
    }
    Ok(bare)
}

/// What a `SharedMemory` becomes on the wire: the index of its descriptor
/// (see `crate::codec::fds`), its size and its name.
#[derive(Serialize, Deserialize)]
struct Passed {
    fd: u32,
    size: u64,
    name: Option<String>,
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        Passed {
            fd: codec::fds::export(self.fd.raw()).map_err(S::Error::custom)?,
            size: self.size() as u64,
            name: self.name.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<SharedMemory, D::Error> {
        use serde::de::Error as _;
        let p = Passed::deserialize(d)?;
        let fd = codec::fds::import(p.fd).map_err(D::Error::custom)?;
        let actual = sys::file_size(&fd).map_err(|e| D::Error::custom(format!("not a shared memory segment: {e}")))?;
        // An anonymous segment must be sealed at its size, so that nobody
        // can shrink it under this mapping (a named one cannot be sealed:
        // its users trust each other not to truncate it, as in Python).
        if !sys::size_matches(actual, p.size) || (p.name.is_none() && !sys::is_size_sealed(&fd)) {
            return Err(D::Error::custom(format!(
                "the received shared memory segment has {actual} bytes, not the {} announced, or is not sealed",
                p.size
            )));
        }
        let size = usize::try_from(p.size).map_err(|_| D::Error::custom("the shared memory segment is too large"))?;
        SharedMemory::map(fd, size, p.name).map_err(D::Error::custom)
    }
}
