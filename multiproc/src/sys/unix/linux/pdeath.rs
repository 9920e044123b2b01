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
//!   owner (the logical parent) dies, however, so the chain "owner dies,
//!   server exits, death signal" keeps the promise.
//! - **A fork-server child does not die with its server.** Its life is its
//!   owner's: when the server dies while the owner lives (someone killed
//!   it), the handler must not end the daemon. A fork-server child
//!   therefore arms with a pidfd of its owner and its bootstrap socket to
//!   the owner ([`ServerChild`]). The handler first asks the owner's pidfd
//!   (a `poll` with no wait): an ended owner ends the daemon. If the owner
//!   lives and the server is gone, the daemon has lost its death signal's
//!   source (its new parent is a reaper), so the handler turns to the
//!   socket: it makes the socket signal this process, with the same death
//!   signal, when its state changes (`O_ASYNC`, `F_SETOWN`, `F_SETSIG`),
//!   then asks the pidfd once more and whether the owner's end of the
//!   socket is closed. The owner's death closes its end of the socket,
//!   whatever killed it, and the kernel then signals the daemon
//!   (`POLL_HUP`); the handler runs again and finds the end closed. (A
//!   dying process closes its descriptors before its pidfd turns readable:
//!   that is how a server that saw its control socket end can die while
//!   the owner's pidfd still says "running"; the closed end of the daemon's
//!   socket is what tells the handler then.) No thread,
//!   and all of it async-signal-safe (`poll`, `fcntl`, `getpid`, `getppid`,
//!   `_exit`; `errno` is saved and restored). A copy of the owner's end of
//!   the socket kept by a process the owner forked behind the library's
//!   back would delay this second path until that process ends too.
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
    sync::atomic::{AtomicI32, AtomicU32, Ordering},
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
/// For a fork server's child: a pidfd of its owner (-1: none).
static OWNER_PIDFD: AtomicI32 = AtomicI32::new(-1);
/// For a fork server's child: its bootstrap socket to its owner (-1: none).
static OWNER_SOCK: AtomicI32 = AtomicI32::new(-1);

/// What a fork server's child arms with besides its real parent (the
/// server): descriptors that stay open as long as the process lives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServerChild {
    /// A pidfd of the owner (the logical parent).
    pub(crate) owner_pidfd: i32,
    /// The child's end of its bootstrap socket to the owner.
    pub(crate) sock: i32,
}

/// `fcntl`'s `F_SETSIG` (Linux, every architecture; not in the libc crate).
const F_SETSIG: libc::c_int = 10;

/// Whether the process behind `pidfd` has ended (a readable pidfd), asked
/// without waiting. Async-signal-safe.
fn ended(pidfd: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; poll is async-signal-safe.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Whether the peer of the stream socket `sock` has closed its end.
/// Async-signal-safe.
fn hung_up(sock: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: sock,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd; poll is async-signal-safe.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0
}

/// Makes `sock` send this process the death signal when its state changes
/// (its peer closes). Async-signal-safe.
fn signal_on_hangup(sock: i32) {
    // SAFETY: fcntl on a descriptor this process keeps open; F_SETOWN
    // only names the process that its signals go to (this one).
    unsafe { libc::fcntl(sock, libc::F_SETOWN, getpid() as libc::c_int) };
    // SAFETY: as above; F_SETSIG only chooses which signal is sent.
    unsafe { libc::fcntl(sock, F_SETSIG, death_signal()) };
    // SAFETY: F_GETFL only reads the descriptor's status flags.
    let flags = unsafe { libc::fcntl(sock, libc::F_GETFL) };
    if flags != -1 {
        // SAFETY: adds O_ASYNC to the flags just read, which turns the
        // signals on and changes nothing else.
        unsafe { libc::fcntl(sock, libc::F_SETFL, flags | libc::O_ASYNC) };
    }
}

/// For a fork server's child: `true` when its owner has ended; when only
/// the server has, arms the socket path first, and then also takes the
/// owner's end of the socket closed for its end (see the module docs).
/// Async-signal-safe.
fn owner_gone(owner_pidfd: i32, sock: i32) -> bool {
    if ended(owner_pidfd) {
        return true;
    }
    if getppid() != REAL_PARENT.load(Ordering::Acquire) {
        signal_on_hangup(sock);
        return ended(owner_pidfd) || hung_up(sock);
    }
    false
}

/// The death signal's handler: ends the process when the parent recorded at
/// arming is gone; returns otherwise (a re-parenting to another thread of
/// the same process, or a fork of the armed process).
extern "C" fn on_parent_death(_signal: libc::c_int) {
    if getpid() != ARMED_BY.load(Ordering::Acquire) {
        return;
    }
    let owner_pidfd = OWNER_PIDFD.load(Ordering::Acquire);
    if owner_pidfd < 0 {
        if getppid() != REAL_PARENT.load(Ordering::Acquire) {
            exit_now(1);
        }
        return;
    }
    // SAFETY: the calling thread's errno location, valid for its lifetime.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above; read and written only by this thread.
    let saved = unsafe { *errno };
    if owner_gone(owner_pidfd, OWNER_SOCK.load(Ordering::Acquire)) {
        exit_now(1);
    }
    // SAFETY: as above.
    unsafe { *errno = saved };
}

/// Arms the death signal of the calling thread so that this process ends
/// (`_exit(1)`) when `real_parent`, the process that created it (its
/// `getppid()` now), ends; for a fork server's child (`server_child`), when
/// its owner ends, not when the server does.
///
/// Returns `Ok(false)` when the parent whose death ends this process is
/// already gone (the signal may have been sent before it was armed): the
/// caller must end the process.
///
/// # Errors
///
/// The `sigaction`, `pthread_sigmask` or `prctl` error; nothing is armed
/// then (at most the handler is installed, which ignores deliveries).
pub(crate) fn arm_parent_death(real_parent: u32, server_child: Option<ServerChild>) -> io::Result<bool> {
    let signal = death_signal();
    // Set before the handler can run.
    REAL_PARENT.store(real_parent, Ordering::Release);
    if let Some(c) = server_child {
        OWNER_SOCK.store(c.sock, Ordering::Release);
        OWNER_PIDFD.store(c.owner_pidfd, Ordering::Release);
    }
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
    match server_child {
        Some(c) => Ok(!owner_gone(c.owner_pidfd, c.sock)),
        None => Ok(getppid() == real_parent),
    }
}
