//! A daemonic child's death with its parent, without a thread.
//!
//! # Design
//!
//! The promise: a daemonic child dies with its parent, however the parent
//! ends (`SIGKILL` included). [`arm_parent_death`] keeps it with the
//! kernel's parent-death signal (`PR_SET_PDEATHSIG`) and a small handler:
//!
//! - **Why not a thread.** A thread blocked on a pidfd of the parent keeps
//!   the promise too (it is the fallback when arming fails, see
//!   `crate::bootstrap`), but it costs every daemon, hence every pool
//!   worker, a 2 MiB stack mapping, a clone, a malloc arena and a
//!   signal stack at start, and one more task for the kernel to kill and
//!   reap at exit.
//! - **Why not `SIGKILL` as the death signal.** The kernel sends the death
//!   signal whenever the child is re-parented, and a child's parent is the
//!   *thread* that created it: when that thread exits while other threads
//!   of its process live on, the child is re-parented to one of them and
//!   gets the signal although its parent process is alive. A daemon
//!   started from a short-lived thread would die with the thread. The
//!   signal is therefore a catchable one, and the handler tells the cases
//!   apart.
//! - **The handler** ([`on_parent_death`]) compares `getppid()` with the
//!   real parent recorded at arming: the kernel updates the parent before
//!   it sends the signal (`forget_original_parent` in `kernel/exit.c`). A
//!   re-parenting to another thread of the same process leaves `getppid()`
//!   unchanged (it names the process): the handler returns, and the death
//!   signal, which stays armed, fires again at the next re-parenting,
//!   including the one at the parent process's real death, which names
//!   another process (init or a subreaper): the handler then `_exit`s
//!   with status 1, without flushing (a thread blocked on a full stdout
//!   pipe holds its lock, and the daemon must not outlive its parent for
//!   that). Signals are never lost here: one sent without `siginfo` by the
//!   kernel is always queued or left pending, and the handler reads the
//!   parent when it runs, after the last re-parenting that sent it. The
//!   handler calls only `getpid`, `getppid` and `_exit`, all
//!   async-signal-safe, and preserves `errno` (none of them sets it).
//! - **A fork of the daemon** (the user's own `fork`; the library refuses
//!   children to daemons) inherits the handler but not the death signal
//!   (the kernel clears it in a fork child): the handler returns at once
//!   in any process other than the one that armed it, so a stray delivery
//!   of the signal there is ignored.
//! - **The real parent.** For spawn and fork children it is the logical
//!   parent. A fork-server child's real parent is the fork server, which
//!   records its own pid before forking; the server exits as soon as its
//!   owner's end of the control socket closes (the owner died, however),
//!   so the chain "owner dies, server exits, death signal" keeps the
//!   promise. A consequence: such a daemon also dies when its fork server
//!   is killed while the owner lives.
//! - **The arming thread.** The death signal belongs to the thread that
//!   armed it: the one that then runs the target and ends the process, so
//!   it lives as long as the daemon. The signal itself is sent to the
//!   whole process; any thread that does not block it runs the handler.
//! - **Interrupted calls.** The handler is installed with `SA_RESTART`,
//!   but when the parent's thread that created the daemon exits, a call
//!   of the daemon that the kernel never restarts after a handler (`poll`,
//!   `nanosleep`, a socket read or write with a timeout, ...) may fail
//!   once with `EINTR`. The library's own calls retry; user code in a
//!   daemon should too (std's `thread::sleep`, `read_exact` and
//!   `write_all` do, a plain `read` or `recv` does not). This is the price
//!   of having no thread: the watch thread never interrupted anything.
//!
//! - **Credentials.** The kernel clears the death signal when the process
//!   changes its effective user or group ID, its filesystem IDs or its
//!   capabilities (`commit_creds`; see `prctl(2)`). A daemon that drops
//!   privileges is then no longer ended by its parent's death (its
//!   parent's normal exit still terminates it, through the exit routine);
//!   the watch thread had no such gap. Documented on
//!   `ProcessBuilder::daemon`, not worked around.
//!
//! # The signal, and what a user must not do with it
//!
//! The death signal is [`death_signal`]: `SIGRTMIN() + 2` (36 with glibc,
//! whose `SIGRTMIN()` already skips the real-time signals it reserves for
//! itself). In a daemonic child, user code must not install its own
//! handler for it (or ignore it), nor block it in every thread: either
//! would leave the daemon alive after its parent's death. A daemon that
//! calls `exec` keeps the death signal at its default action (terminate).
//!
//! # References
//!
//! `prctl(2)` (`PR_SET_PDEATHSIG`), `sigaction(2)`, `signal-safety(7)`.

use std::{
    io,
    sync::atomic::{AtomicU32, Ordering},
};

use super::{cvt, exit_now, getpid, getppid};

/// Offset of the death signal from `SIGRTMIN()`. glibc's `SIGRTMIN()`
/// already skips its own real-time signals; applications tend to take the
/// first few above it (`SIGRTMIN`, `SIGRTMIN + 1`) for timers and the like.
const DEATH_SIGNAL_OFFSET: i32 = 2;

/// The signal a daemonic child gets when it is re-parented (see the module
/// docs).
fn death_signal() -> i32 {
    libc::SIGRTMIN() + DEATH_SIGNAL_OFFSET
}

/// The pid of the process that armed the death signal (0: none).
static ARMED_BY: AtomicU32 = AtomicU32::new(0);
/// The real parent of the process that armed it.
static REAL_PARENT: AtomicU32 = AtomicU32::new(0);

/// The death signal's handler: ends the process when the parent recorded at
/// arming is gone; returns otherwise (a re-parenting to another thread of
/// the same process, or a fork of the armed process).
extern "C" fn on_parent_death(_signal: libc::c_int) {
    if getpid() != ARMED_BY.load(Ordering::Acquire) {
        return;
    }
    if getppid() != REAL_PARENT.load(Ordering::Acquire) {
        exit_now(1);
    }
}

/// Arms the death signal of the calling thread so that this process ends
/// (`_exit(1)`) when `real_parent`, the process that created it (its
/// `getppid()` now), ends.
///
/// Returns `Ok(false)` when `real_parent` is already gone (the signal may
/// have been sent before it was armed): the caller must end the process.
///
/// # Errors
///
/// The `sigaction`, `pthread_sigmask` or `prctl` error; nothing is armed
/// then (at most the handler is installed, which ignores deliveries).
pub(crate) fn arm_parent_death(real_parent: u32) -> io::Result<bool> {
    let signal = death_signal();
    // Set before the handler can run.
    REAL_PARENT.store(real_parent, Ordering::Release);
    ARMED_BY.store(getpid(), Ordering::Release);

    // SAFETY: an all-zero sigaction is a valid value (no flags, empty
    // mask) that the fields below complete.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_parent_death as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: sa_mask is a valid sigset_t to initialise.
    cvt(unsafe { libc::sigemptyset(&mut action.sa_mask) })?;
    // SAFETY: `action` is a complete sigaction whose handler is
    // async-signal-safe (getpid, getppid, _exit and atomic loads); a NULL
    // old action is allowed.
    cvt(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })?;

    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    cvt(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    // SAFETY: the set was initialised just above; `signal` is a valid
    // real-time signal number.
    cvt(unsafe { libc::sigaddset(set.as_mut_ptr(), signal) })?;
    // SAFETY: an initialised set; a NULL old mask is allowed. Unblocked in
    // this thread, and so in the threads it starts from now on.
    let err = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), std::ptr::null_mut()) };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }

    // SAFETY: PR_SET_PDEATHSIG takes a signal number in the second
    // argument; the others are unused.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) })?;
    // Armed now: a parent that dies from here on sends the signal. One that
    // died before is seen here (its child was re-parented already).
    Ok(getppid() == real_parent)
}
