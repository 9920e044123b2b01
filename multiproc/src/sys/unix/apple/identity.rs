//! Who this thread and process are, and whether another one still exists:
//! `pthread_threadid_np` for threads, `proc_pidinfo` for a process's start
//! time and state (so that a reused pid is not taken for the dead process
//! it once named, and a zombie is known dead).

use std::{
    io, mem,
    sync::{
        Once,
        atomic::{
            AtomicBool, AtomicU32, AtomicU64,
            Ordering::{Acquire, Relaxed, Release, SeqCst},
        },
    },
};

use super::{after_fork_in_child, cpu_count, getpid};
use crate::sys::imp::owner_lock::Holder;

/// This process's pid and start time, 0 until first asked (reset in a fork
/// child).
static ME_PID: AtomicU32 = AtomicU32::new(0);
static ME_START: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();
/// Whether [`forget_identity_after_fork`] is registered, so that caching
/// is safe.
static CACHING: AtomicBool = AtomicBool::new(false);

/// Forgets the cached identity in a fork child. Runs in the child right
/// after `fork`: only a store.
extern "C" fn forget_identity_after_fork() {
    ME_PID.store(0, SeqCst);
}

/// The calling thread's system-wide id (`pthread_threadid_np`, 64 bits,
/// never reused while the system runs), folded to 32 bits; never 0.
pub(crate) fn thread_id() -> u32 {
    let mut id = 0u64;
    // SAFETY: a null thread names the calling thread; id is a valid
    // out-pointer.
    unsafe { libc::pthread_threadid_np(0 as libc::pthread_t, &mut id) };
    (id as u32).max(1)
}

/// This process's identity: (pid, start time in microseconds since the
/// epoch; 0 when unreadable).
pub(crate) fn process_identity() -> (u32, u64) {
    let pid = ME_PID.load(Acquire);
    if pid != 0 {
        return (pid, ME_START.load(Relaxed));
    }
    let pid = getpid();
    let start = start_time(pid).unwrap_or(0);
    ATFORK.call_once(|| CACHING.store(after_fork_in_child(forget_identity_after_fork).is_ok(), SeqCst));
    if CACHING.load(Relaxed) {
        ME_START.store(start, Relaxed);
        ME_PID.store(pid, Release);
    }
    (pid, start)
}

/// `proc_pidinfo(PROC_PIDTBSDINFO)` of `pid`; `NotFound` when there is no
/// such process.
fn bsd_info(pid: u32) -> io::Result<libc::proc_bsdinfo> {
    // SAFETY: an all-zero proc_bsdinfo is a valid out-value.
    let mut info: libc::proc_bsdinfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: info is writable storage of `size` bytes.
    let n = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if n == size {
        return Ok(info);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) || !exists(pid) {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such process"));
    }
    Err(e)
}

/// Whether a process `pid` exists (a zombie does).
fn exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The start time of `pid`, in microseconds since the epoch.
pub(crate) fn start_time(pid: u32) -> io::Result<u64> {
    let info = bsd_info(pid)?;
    Ok(info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec)
}

/// Whether the process `pid`, started at `start` (0: unchecked), still
/// exists. A thread id cannot be checked in another process here, so
/// `tid` is not; a process that cannot be inspected counts as alive.
pub(crate) fn is_alive(pid: u32, _tid: u32, start: u64) -> bool {
    if !exists(pid) {
        return false;
    }
    if start == 0 {
        return true;
    }
    match start_time(pid) {
        Ok(s) => s == start,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// What the owner-word lock needs to know of a holder's pid: dead (no
/// process, or a zombie, which can never unlock), or alive since when.
pub(crate) fn holder(pid: u32) -> Holder {
    match bsd_info(pid) {
        Ok(info) if info.pbi_status == libc::SZOMB => Holder::Dead,
        Ok(info) => Holder::Alive(Some(info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Holder::Dead,
        Err(_) => Holder::Alive(None),
    }
}

/// Whether busy-waiting can help: more than one CPU (macOS has no
/// affinity masks).
pub(crate) fn may_spin() -> bool {
    cpu_count().is_some_and(|n| n > 1)
}
