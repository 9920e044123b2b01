//! Life tokens: a descriptor that turns readable when a process ends,
//! which any other process can be passed (what a pidfd is on Linux). The
//! macOS backend's stand-in for pidfds that travel; POSIX only, so it
//! compiles on Linux too, where its unit tests run it with real forks.
//!
//! # Design
//!
//! A process's token is a pipe. The process alone holds the write end; it
//! hands out duplicates of the read end. A pipe whose every write end is
//! closed reads as the end of the file (`poll` says readable, `POLLHUP`),
//! and the kernel closes a process's descriptors when it ends, however it
//! ends: so the read end turns readable exactly when the process has
//! ended, for every holder of a duplicate, in any process.
//!
//! Nothing else may keep the write end open:
//!
//! - it is close-on-exec, so no program started from the process inherits
//!   it (a process that `exec`s itself closes it, so its token turns
//!   readable then; the library's fork children never `exec`);
//! - a fork child would inherit it: an `atfork` child handler closes the
//!   inherited token (two `close` calls, safe right after `fork`), and the
//!   child gets a token of its own when it needs one;
//! - a child forked by the library gets its own token made *before* the
//!   fork ([`LifeToken`]): the child installs the pipe as its token, and
//!   the parent keeps only the read end, so the parent can hand the
//!   child's token on (the fork server's owner) from the first instant.
//!
//! A fork made by another thread of the parent while a [`LifeToken`]'s
//! write end is still open in the parent (between its `pipe` and the
//! parent's `close`) would inherit that end and delay the child's token
//! until that other child ends; the library makes its forks under its
//! fork lock, so only a fork behind its back can do this.

use std::{
    io,
    sync::{
        Once,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
};

use super::{Fd, after_fork_in_child, stdio::pipe_cloexec};

/// This process's token: read end (high half) and write end (low half)
/// of a pipe, or `NONE`.
static TOKEN: AtomicU64 = AtomicU64::new(NONE);
const NONE: u64 = u64::MAX;
static ATFORK: Once = Once::new();

fn pack(read: i32, write: i32) -> u64 {
    (u64::from(read as u32) << 32) | u64::from(write as u32)
}

/// In a fork child: closes the inherited token (its pipe must hang up
/// when the parent ends, not when the child does). Only `close` and
/// atomics: safe right after `fork`.
extern "C" fn drop_token_after_fork() {
    let t = TOKEN.swap(NONE, SeqCst);
    if t != NONE {
        for raw in [(t >> 32) as i32, t as i32] {
            // SAFETY: the numbers are the token's, which nothing else owns.
            unsafe { libc::close(raw) };
        }
    }
}

/// Registers [`drop_token_after_fork`] once per process, before any
/// token exists. Without it a fork child would keep its parent's token
/// open; the tokens stay right for every process but such children.
fn install_atfork() {
    ATFORK.call_once(|| {
        let _ = after_fork_in_child(drop_token_after_fork);
    });
}

/// A duplicate of this process's token's read end, to hand to another
/// process (made at the first call).
pub(crate) fn token_of_self() -> io::Result<Fd> {
    install_atfork();
    let mut t = TOKEN.load(SeqCst);
    if t == NONE {
        let (read, write) = pipe_cloexec()?;
        match TOKEN.compare_exchange(NONE, pack(read.raw(), write.raw()), SeqCst, SeqCst) {
            Ok(_) => {
                t = pack(read.raw(), write.raw());
                read.forget();
                write.forget();
            }
            // Another thread made one first: ours closes on drop.
            Err(theirs) => t = theirs,
        }
    }
    Fd::dup_raw((t >> 32) as i32)
}

/// A child's token, made before the fork that starts the child.
pub(crate) struct LifeToken {
    read: Fd,
    write: Fd,
}

impl LifeToken {
    pub(crate) fn new() -> io::Result<LifeToken> {
        install_atfork();
        let (read, write) = pipe_cloexec()?;
        Ok(LifeToken { read, write })
    }

    /// In the child, right after the fork (the `atfork` handler dropped
    /// the inherited token): makes the pipe this process's token. Only
    /// stores.
    pub(crate) fn in_child(self) {
        TOKEN.store(pack(self.read.raw(), self.write.raw()), SeqCst);
        // Owned by the token now, for the life of the process.
        self.read.forget();
        self.write.forget();
    }

    /// In the parent: the read end (the write end is the child's alone).
    pub(crate) fn into_parent(self) -> Fd {
        self.write.close_now();
        self.read
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sys::{self, ForkSide};

    const SOON: Duration = Duration::from_secs(30);

    #[test]
    fn this_processs_token_stays_unreadable_while_it_lives() {
        let a = token_of_self().unwrap();
        let b = token_of_self().unwrap();
        assert_eq!(a.identity(), b.identity(), "one pipe");
        assert!(!a.poll_readable(Some(Duration::ZERO)).unwrap());
    }

    /// The child's token turns readable when the child exits, although a
    /// grandchild (a fork of the child) still runs.
    #[test]
    fn a_forked_childs_token_turns_readable_when_it_ends_not_its_forks() {
        let token = LifeToken::new().unwrap();
        let (ours, theirs) = sys::socketpair().unwrap();
        // SAFETY: the child installs its token (stores), reads a byte,
        // forks once more and leaves through exit_now; the grandchild
        // only reads until the end of its socket and leaves.
        match unsafe { sys::fork_child() }.unwrap() {
            ForkSide::Child => {
                // The parent's end: the grandchild must see it close.
                ours.close_now();
                token.in_child();
                let mut buf = Vec::with_capacity(1);
                if theirs.recv_exact_into(&mut buf, 1).is_err() {
                    sys::exit_now(1);
                }
                // SAFETY: as above.
                match unsafe { sys::fork_child() } {
                    Ok(ForkSide::Child) => {
                        let mut buf = Vec::with_capacity(1);
                        let _ = theirs.recv_exact_into(&mut buf, 1);
                        sys::exit_now(0);
                    }
                    Ok(ForkSide::Parent(_)) => sys::exit_now(0),
                    Err(_) => sys::exit_now(2),
                }
            }
            ForkSide::Parent(child) => {
                drop(theirs);
                let read = token.into_parent();
                assert!(!read.poll_readable(Some(Duration::ZERO)).unwrap(), "the child runs");
                ours.send_frame(&[1], &[], &[]).unwrap();
                assert!(child.poll_exit(Some(SOON)).unwrap());
                assert_eq!(child.try_reap().unwrap(), Some(sys::RawStatus::Exited(0)));
                // The grandchild still holds its socket (nobody closed
                // `ours`), yet the token says the child ended.
                assert!(read.poll_readable(Some(SOON)).unwrap());
                // Ends the grandchild.
                drop(ours);
            }
        }
    }
}
