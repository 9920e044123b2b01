//! `fork` and `_exit`: the only places the crate calls them.
//!
//! The child of a fork is a copy of one thread of the parent. If the parent
//! had other threads, any lock they held (in the allocator, in stdio, in user
//! code) stays locked forever in the child, so the child of a multithreaded
//! parent must behave as if it were in a signal handler. The facade therefore
//! refuses to fork a multithreaded parent unless the caller opted in through
//! an `unsafe` API (`ProcessBuilder::allow_fork_with_threads`), and the
//! library's own state is locked across the fork (see
//! `crate::registry::fork_locked`) so that no other thread holds it at the
//! instant of the fork.

use std::io;

use super::{ChildHandle, cvt, os::ForkToken};

/// Which side of a fork the caller is on.
#[derive(Debug)]
pub(crate) enum ForkSide {
    Parent(ChildHandle),
    Child,
}

/// Forks the calling process.
///
/// # Safety
/// In the child, the caller must only do what is safe in a copy of a
/// process whose other threads vanished: if the parent was multithreaded,
/// no locks that another thread could have held and nothing that allocates
/// unless the allocator is fork-safe (glibc's is). The child must leave
/// through [`exit_now`] and must not unwind into frames that belong to the
/// parent's logic.
#[allow(clippy::disallowed_methods)] // the crate's one fork call
pub(crate) unsafe fn fork_child() -> io::Result<ForkSide> {
    // What the platform hands the child to be known by (macOS: its life
    // token; nothing on Linux, whose pidfds travel).
    let token = ForkToken::new()?;
    // SAFETY: the caller upholds the post-fork contract documented above.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        token.in_child();
        return Ok(ForkSide::Child);
    }
    match ChildHandle::open(pid as u32) {
        Ok(handle) => Ok(ForkSide::Parent(token.in_parent(handle))),
        Err(e) => {
            kill_and_reap(pid);
            Err(e)
        }
    }
}

/// Stops and reaps a child for which no handle could be opened, rather
/// than leave a process nobody can wait for, then a zombie.
pub(super) fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: signalling our own, unreaped child. It cannot have been
    // reaped by anyone else yet, so the pid is still its own.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // Retried on EINTR; any other failure (ECHILD: SIGCHLD is ignored and
    // the kernel reaped it) leaves nothing to do.
    // SAFETY: waitpid on our own child with a NULL status pointer.
    let _ = super::cvt_r(|| unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) });
}

/// Ends the process at once with `code`, running no exit handlers and no
/// destructors (`_exit`). Buffered output must have been flushed before.
#[allow(clippy::disallowed_methods)] // the crate's one _exit call
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Has `handler` run in the child after every fork of this process (the
/// library's and anyone else's): `pthread_atfork` with only a child
/// handler. The handler runs in a copy of one thread of the parent, so it
/// may only do what is safe there: atomic stores, no lock, no allocation.
pub(crate) fn after_fork_in_child(handler: extern "C" fn()) -> io::Result<()> {
    // SAFETY: registering a handler that stays valid for the life of the
    // process (a function); the caller promises it is safe after a fork.
    let rc = unsafe { libc::pthread_atfork(None, None, Some(handler)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}
