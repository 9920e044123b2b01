//! Shared-memory building blocks: sealed anonymous memory files and
//! futex waits (the mutex is in `mutex.rs`, mappings in `../segment.rs`).
//!
//! Everything here is process-shared by construction: futex calls use the
//! shared (not `_PRIVATE`) operations, because other processes wake the
//! same word through their own mappings.

use std::{
    ffi::CStr,
    io,
    mem::MaybeUninit,
    ptr,
    sync::atomic::AtomicU32,
    time::{Duration, Instant},
};

use super::{Fd, cvt, cvt_r};

/// Sleeps while `word` holds `seen`, at most `slice` and not past
/// `deadline`; returns on a wake, a change, a signal or the timeout alike.
pub(crate) fn futex_wait(word: &AtomicU32, seen: u32, deadline: Option<Instant>, slice: Duration) {
    let left = match deadline {
        None => slice,
        Some(d) => d.saturating_duration_since(Instant::now()).min(slice),
    };
    if left.is_zero() {
        return;
    }
    let ts = libc::timespec {
        tv_sec: left.as_secs() as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
    };
    // SAFETY: word is a live, aligned u32 in a shared mapping; ts is a valid
    // relative timeout. Shared (not _PRIVATE) because other processes wake
    // it through their own mappings.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            &ts as *const libc::timespec,
            ptr::null::<u32>(),
            0u32,
        )
    };
}

/// Wakes up to `n` sleepers on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: word is a live, aligned u32 in a shared mapping.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        )
    };
}

/// Wakes every sleeper on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    futex_wake(word, i32::MAX);
}

/// A new memory file of `size` bytes with `seals` applied.
pub(crate) fn create_memfd(name: &CStr, size: u64, seals: libc::c_int) -> io::Result<Fd> {
    // SAFETY: name is NUL-terminated.
    let raw = cvt(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
    // SAFETY: memfd_create returned a new descriptor we own.
    let fd = unsafe { Fd::from_raw(raw) };
    // SAFETY: ftruncate on our descriptor.
    cvt_r(|| unsafe { libc::ftruncate(fd.raw(), size as libc::off_t) })?;
    // SAFETY: F_ADD_SEALS on our descriptor.
    cvt(unsafe { libc::fcntl(fd.raw(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}

/// Seals an anonymous segment carries: its size is fixed, so no process
/// can truncate it under another's mapping (which would be `SIGBUS`).
const SIZE_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// A new memory file of `size` bytes, sealed at that size, close-on-exec.
pub(crate) fn memfd_sealed(size: usize) -> io::Result<Fd> {
    memfd_sealed_labelled(c"multiproc-shm", size)
}

/// [`memfd_sealed`], with `label` as the file's name (shown in
/// `/proc/<pid>/fd`).
pub(crate) fn memfd_sealed_labelled(label: &CStr, size: usize) -> io::Result<Fd> {
    let size = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the size does not fit a file offset"))?;
    create_memfd(label, size as u64, SIZE_SEALS)
}

/// Whether `fd` is a memory file sealed at its size.
pub(crate) fn is_size_sealed(fd: &Fd) -> bool {
    // SAFETY: F_GET_SEALS reads flags of an open descriptor.
    let have = unsafe { libc::fcntl(fd.raw(), libc::F_GET_SEALS) };
    have != -1 && have & (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW) == libc::F_SEAL_SHRINK | libc::F_SEAL_GROW
}

/// Whether a received fixed-size memory file of `actual` bytes is the
/// one of `wanted` bytes its sender made: here, of exactly that size.
pub(crate) fn size_matches(actual: u64, wanted: u64) -> bool {
    actual == wanted
}

/// `fstat` of `fd`.
pub(crate) fn stat(fd: &Fd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is a valid out-pointer.
    cvt(unsafe { libc::fstat(fd.raw(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled it.
    Ok(unsafe { st.assume_init() })
}

/// The size of the regular file `fd`; an error for anything else.
pub(crate) fn file_size(fd: &Fd) -> io::Result<u64> {
    let st = stat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(invalid("the descriptor is not a shared memory file"));
    }
    Ok(st.st_size as u64)
}

/// Checks that `fd` is a regular memory file carrying every seal of `must`
/// and none of `must_not`; returns its `fstat`. `what` names the
/// descriptor in the error ("the queue's control").
pub(crate) fn check_sealed(fd: &Fd, must: libc::c_int, must_not: libc::c_int, what: &str) -> io::Result<libc::stat> {
    let st = stat(fd)?;
    // SAFETY: F_GET_SEALS reads flags of an open descriptor.
    let have = unsafe { libc::fcntl(fd.raw(), libc::F_GET_SEALS) };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || have == -1 || have & must != must || have & must_not != 0 {
        return Err(invalid(&format!(
            "{what} descriptor is not a suitably sealed memory file"
        )));
    }
    Ok(st)
}

/// An `InvalidData` error.
pub(crate) fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}
