//! Shared-memory building blocks used by the queue ring (`shmring.rs`) and
//! the synchronisation primitives (`sync.rs`): sealed anonymous memory
//! files, shared mappings, robust process-shared mutexes and futex waits.
//!
//! Everything here is process-shared by construction: futex calls use the
//! shared (not `_PRIVATE`) operations, because other processes wake the
//! same word through their own mappings.

use std::{
    ffi::CStr,
    io,
    mem::MaybeUninit,
    ptr::{self, NonNull},
    sync::atomic::AtomicU32,
    time::{Duration, Instant},
};

use super::{Fd, cvt, cvt_r};

/// Maps `len` bytes of `fd`, shared, readable and writable.
pub(crate) fn map_shared(fd: &Fd, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh mapping chosen by the kernel touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
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

/// Whether `deadline` has passed.
pub(crate) fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

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

/// The `CLOCK_REALTIME` instant `after` from now, for
/// `pthread_mutex_timedlock`.
pub(crate) fn realtime_after(after: Duration) -> libc::timespec {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: now is a valid out-pointer; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let nanos = now.tv_nsec as u64 + u64::from(after.subsec_nanos());
    libc::timespec {
        tv_sec: now.tv_sec + after.as_secs() as libc::time_t + (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

/// A pthread return code as a result.
pub(crate) fn check_pthread(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Initialises a process-shared, robust mutex of type `kind`
/// (`PTHREAD_MUTEX_ERRORCHECK` or `PTHREAD_MUTEX_RECURSIVE`) at `m`, which
/// must point at zeroed, writable, shared memory that nobody uses yet.
pub(crate) fn init_mutex(m: *mut libc::pthread_mutex_t, kind: libc::c_int) -> io::Result<()> {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: attr is writable storage for an attribute object.
    check_pthread(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
    let a = attr.as_mut_ptr();
    // The attribute is destroyed on every path, hence the closure.
    let res = (|| {
        // SAFETY: a is an initialised attribute object.
        check_pthread(unsafe { libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED) })?;
        // SAFETY: as above.
        check_pthread(unsafe { libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST) })?;
        // SAFETY: as above.
        check_pthread(unsafe { libc::pthread_mutexattr_settype(a, kind) })?;
        // SAFETY: a is initialised; m points at zeroed, writable, shared
        // memory that no one else uses yet (the caller's contract).
        check_pthread(unsafe { libc::pthread_mutex_init(m, a) })
    })();
    // SAFETY: a was initialised above.
    unsafe { libc::pthread_mutexattr_destroy(a) };
    res
}

/// Marks a robust mutex consistent after `EOWNERDEAD` handed it to this
/// thread, so that it stays usable for every process.
///
/// `pthread_mutex_consistent` fails (`EINVAL`) only when the mutex is not
/// robust or not in the owner-died state, that is when our own invariants
/// broke. Then the mutex is unlocked without being made consistent (glibc
/// then marks it not recoverable, so every later lock fails with
/// `ENOTRECOVERABLE` instead of waiting on a holder that went away), and
/// the failure is returned: the caller holds no lock.
///
/// # Safety
///
/// `m` points at an initialised mutex, and this thread's last lock call
/// on it returned `EOWNERDEAD` (so this thread holds it).
pub(crate) unsafe fn recover_owner_died(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
    // SAFETY: m is initialised and held by this thread (the contract).
    let rc = unsafe { libc::pthread_mutex_consistent(m) };
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: m is initialised and still held by this thread: a failed
    // `pthread_mutex_consistent` changes nothing.
    unsafe { libc::pthread_mutex_unlock(m) };
    let e = io::Error::from_raw_os_error(rc);
    Err(io::Error::new(
        e.kind(),
        format!("could not make a lock consistent after its owner died: {e}"),
    ))
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

/// `fstat` of `fd`.
pub(crate) fn stat(fd: &Fd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is a valid out-pointer.
    cvt(unsafe { libc::fstat(fd.raw(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled it.
    Ok(unsafe { st.assume_init() })
}

/// The size of the file `fd`.
pub(crate) fn file_size(fd: &Fd) -> io::Result<u64> {
    Ok(stat(fd)?.st_size as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A robust error-checking mutex in private memory (robustness works
    /// between threads too).
    fn robust_mutex() -> Box<libc::pthread_mutex_t> {
        // SAFETY: an all-zero pthread_mutex_t is valid storage to initialise.
        let mut m = Box::new(unsafe { MaybeUninit::<libc::pthread_mutex_t>::zeroed().assume_init() });
        init_mutex(&mut *m, libc::PTHREAD_MUTEX_ERRORCHECK).expect("init mutex");
        m
    }

    /// Address of the boxed mutex, sendable to another thread.
    struct Addr(usize);

    #[test]
    fn recovery_after_a_dead_owner_keeps_the_mutex_usable() {
        let mut m = robust_mutex();
        let addr = Addr(&raw mut *m as usize);
        std::thread::spawn(move || {
            let addr = addr;
            // SAFETY: the mutex is initialised and outlives this thread,
            // which exits holding it.
            let rc = unsafe { libc::pthread_mutex_lock(addr.0 as *mut libc::pthread_mutex_t) };
            assert_eq!(rc, 0);
        })
        .join()
        .expect("locking thread");
        // SAFETY: initialised; its owner thread exited holding it.
        let rc = unsafe { libc::pthread_mutex_lock(&mut *m) };
        assert_eq!(rc, libc::EOWNERDEAD);
        // SAFETY: our lock call just returned EOWNERDEAD.
        unsafe { recover_owner_died(&mut *m) }.expect("consistent");
        // SAFETY: held by this thread (recovered above).
        assert_eq!(unsafe { libc::pthread_mutex_unlock(&mut *m) }, 0);
        // SAFETY: initialised, unlocked.
        assert_eq!(unsafe { libc::pthread_mutex_trylock(&mut *m) }, 0, "consistent again");
        // SAFETY: held by this thread.
        assert_eq!(unsafe { libc::pthread_mutex_unlock(&mut *m) }, 0);
    }

    #[test]
    fn failed_recovery_is_an_error_and_releases_the_mutex() {
        let mut m = robust_mutex();
        // SAFETY: initialised, unlocked.
        assert_eq!(unsafe { libc::pthread_mutex_lock(&mut *m) }, 0);
        // Breaks the contract on purpose (the mutex is not in the
        // owner-died state), which is the failure the check is for.
        // SAFETY: initialised and held by this thread, which is all
        // `pthread_mutex_consistent` needs to report EINVAL safely.
        let err = unsafe { recover_owner_died(&mut *m) }.expect_err("not in the owner-died state");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("owner died"), "{err}");
        // SAFETY: initialised; the failed recovery must have unlocked it.
        assert_eq!(unsafe { libc::pthread_mutex_trylock(&mut *m) }, 0, "released");
        // SAFETY: held by this thread.
        assert_eq!(unsafe { libc::pthread_mutex_unlock(&mut *m) }, 0);
    }
}
