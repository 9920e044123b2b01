//! Who this thread and process are, and whether another one still
//! exists: kernel thread ids, a process's start time (so that a reused
//! pid is not taken for the dead process it once named), liveness checks
//! and whether spinning can help.

use std::{
    cell::Cell,
    io, mem,
    sync::{
        Once,
        atomic::{
            AtomicBool, AtomicU32, AtomicU64,
            Ordering::{Acquire, Relaxed, Release, SeqCst},
        },
    },
};

use super::getpid;

thread_local! {
    /// This thread's kernel id, 0 until first asked (reset in a fork child).
    static TID: Cell<u32> = const { Cell::new(0) };
}
/// This process's pid and start time, 0 until first asked (reset in a fork
/// child).
static ME_PID: AtomicU32 = AtomicU32::new(0);
static ME_START: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();
/// Whether [`forget_identity_after_fork`] is registered, so that caching
/// is safe.
static CACHING: AtomicBool = AtomicBool::new(false);

/// Forgets the cached identities in a fork child (its thread and process
/// ids are new). Runs in the child right after `fork`: only stores.
extern "C" fn forget_identity_after_fork() {
    TID.with(|t| t.set(0));
    ME_PID.store(0, SeqCst);
}

/// Registers [`forget_identity_after_fork`] once per process, before the
/// first identity is cached; whether identities may be cached (not if the
/// registration failed: a fork child would keep its parent's).
fn install_atfork() -> bool {
    ATFORK.call_once(|| CACHING.store(super::after_fork_in_child(forget_identity_after_fork).is_ok(), SeqCst));
    CACHING.load(Relaxed)
}

/// The calling thread's kernel id (never 0).
pub(crate) fn thread_id() -> u32 {
    TID.with(|t| {
        let v = t.get();
        if v != 0 {
            return v;
        }
        // SAFETY: gettid has no preconditions.
        let v = unsafe { libc::gettid() } as u32;
        if install_atfork() {
            t.set(v);
        }
        v
    })
}

/// This process's identity: (pid, start time; 0 when unreadable).
pub(crate) fn process_identity() -> (u32, u64) {
    let pid = ME_PID.load(Acquire);
    if pid != 0 {
        return (pid, ME_START.load(Relaxed));
    }
    let pid = getpid();
    let start = start_time(pid).unwrap_or(0);
    if install_atfork() {
        ME_START.store(start, Relaxed);
        ME_PID.store(pid, Release);
    }
    (pid, start)
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks after boot.
pub(crate) fn start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let odd = || io::Error::new(io::ErrorKind::InvalidData, "odd /proc stat");
    // The command name (field 2) is in parentheses and may hold anything.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(odd)?;
    // `rest` starts at field 3.
    rest.split_whitespace()
        .nth(22 - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(odd)
}

/// Whether the thread `tid` (0: any) of process `pid`, started at `start`
/// (0: unchecked), still exists. A process that cannot be inspected (not
/// ours to signal, `/proc` unreadable) counts as alive.
pub(crate) fn is_alive(pid: u32, tid: u32, start: u64) -> bool {
    let rc = if tid != 0 {
        // SAFETY: signal 0 only checks that the thread exists.
        unsafe { libc::syscall(libc::SYS_tgkill, pid as libc::pid_t, tid as libc::pid_t, 0) }
    } else {
        // SAFETY: as above, for the process.
        i64::from(unsafe { libc::kill(pid as libc::pid_t, 0) })
    };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
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

/// Whether `tid` (a robust mutex's owner, 0: none) is a live thread of
/// this process.
pub(crate) fn is_thread_of_this_process(tid: u32) -> bool {
    if tid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the thread exists in our thread group.
    unsafe { libc::syscall(libc::SYS_tgkill, getpid() as libc::pid_t, tid as libc::pid_t, 0) == 0 }
}

thread_local! {
    /// [`may_spin`]'s last answer and how many more calls reuse it.
    static SPIN_OK: Cell<(bool, u32)> = const { Cell::new((false, 0)) };
}

/// Whether this thread may run on more than one CPU (spinning only helps
/// when the peer runs at the same time). The answer is reused for 64 calls:
/// asking the kernel costs a system call per wait otherwise.
pub(crate) fn may_spin() -> bool {
    SPIN_OK.with(|c| {
        let (ok, left) = c.get();
        if left > 0 {
            c.set((ok, left - 1));
            return ok;
        }
        let ok = affinity_allows_spin();
        c.set((ok, 63));
        ok
    })
}

/// Asks the kernel whether this thread may run on more than one CPU.
fn affinity_allows_spin() -> bool {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: set is a valid out-pointer of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    // SAFETY: set was filled by sched_getaffinity.
    rc == 0 && unsafe { libc::CPU_COUNT(&set) } > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_is_stable() {
        let pid = std::process::id();
        let a = start_time(pid).unwrap();
        assert!(a > 0);
        assert_eq!(a, start_time(pid).unwrap());
        assert!(is_alive(pid, 0, a));
        assert!(!is_alive(pid, 0, a + 1));
        assert_eq!(process_identity(), (pid, a));
    }

    #[test]
    fn another_threads_id_is_seen_alive_until_it_ends() {
        let me = thread_id();
        assert!(is_thread_of_this_process(me));
        let other = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(other, me);
        assert!(!is_thread_of_this_process(0));
    }
}
