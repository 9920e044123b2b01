//! Process handles on macOS, which has no pidfds: kqueue watches
//! (`EVFILT_PROC`, `NOTE_EXIT`), a life token to hand to another process,
//! and death with the parent through a watch thread.
//!
//! # Waiting for a child without a race
//!
//! A [`ChildHandle`] holds a kqueue with `EVFILT_PROC`/`NOTE_EXIT`
//! registered for the child's pid. A kqueue descriptor is readable while
//! an event is pending, so `poll` on it (alone, with other descriptors, or
//! in async-io's reactor) waits for the child's end as a pidfd would; the
//! event is never taken off the queue, so it stays readable. The child is
//! ours and unreaped until [`ChildHandle::try_reap`] reaps it, so its pid
//! cannot name another process while the handle lives: the registration
//! cannot watch the wrong process, and a child that ended before it (the
//! registration fails with `ESRCH`, or `waitid(WNOWAIT)` already sees it)
//! triggers a user event on the same kqueue instead. Reaping and
//! signalling take one lock and a reaped child is never signalled, so a
//! pid reused after the reaping is never touched.
//!
//! # The parent
//!
//! [`ParentWatch::open_parent`] registers the same watch on the parent's
//! pid, then checks that `getppid()` still names it (a parent that died
//! before the registration may have given its pid to another process). A
//! daemonic child dies with its parent through a thread blocked on that
//! watch: [`arm_parent_death`] has no `PR_SET_PDEATHSIG` to arm here and
//! says so, and the caller starts the thread.
//!
//! # Handing a process to another one
//!
//! A kqueue cannot be passed to another process, so [`ParentWatch::of_self`]
//! hands out a life token instead (`../token.rs`: a pipe that hangs up
//! when the process ends, as a pidfd turns readable), and
//! [`ParentWatch::from_pidfd`] watches one. A forked child's token is made
//! before the fork ([`ForkToken`]), so that its parent holds the read end
//! from the start: that is what a fork server sends its owner for each
//! child ([`ChildHandle::pidfd_copy`], [`ChildHandle::remote`]).

use std::{io, mem, sync::Mutex, time::Duration};

use super::{Fd, cvt, cvt_r, getppid, poll_one};
use crate::sys::RawStatus;
use crate::sys::imp::token::{LifeToken, token_of_self};

/// A new close-on-exec kqueue watching `pid`'s exit; `ESRCH` when there is
/// no such process (any more).
fn watch_exit(pid: u32) -> io::Result<Fd> {
    // SAFETY: kqueue takes no arguments.
    let kq = cvt(unsafe { libc::kqueue() })?;
    // SAFETY: kqueue returned a new descriptor we own.
    let kq = unsafe { Fd::from_raw(kq) };
    kq.set_cloexec()?;
    // SAFETY: an all-zero kevent is a valid value that the fields complete.
    let mut change: libc::kevent = unsafe { mem::zeroed() };
    change.ident = pid as libc::uintptr_t;
    change.filter = libc::EVFILT_PROC;
    change.flags = libc::EV_ADD;
    change.fflags = libc::NOTE_EXIT;
    register(&kq, &change)?;
    Ok(kq)
}

/// Adds one change to the kqueue `kq`, its error as the call's.
fn register(kq: &Fd, change: &libc::kevent) -> io::Result<()> {
    // SAFETY: one valid change, no event list: an error is returned
    // through errno.
    cvt_r(|| unsafe { libc::kevent(kq.raw(), change, 1, std::ptr::null_mut(), 0, std::ptr::null()) }).map(drop)
}

/// Makes `kq` readable for good: a user event, added and triggered.
fn trigger(kq: &Fd) -> io::Result<()> {
    // SAFETY: an all-zero kevent is a valid value that the fields complete.
    let mut change: libc::kevent = unsafe { mem::zeroed() };
    change.ident = 0;
    change.filter = libc::EVFILT_USER;
    change.flags = libc::EV_ADD;
    register(kq, &change)?;
    change.flags = 0;
    change.fflags = libc::NOTE_TRIGGER;
    register(kq, &change)
}

/// A new kqueue that is readable at once (for a process already gone).
fn ended_queue() -> io::Result<Fd> {
    // SAFETY: kqueue takes no arguments.
    let kq = cvt(unsafe { libc::kqueue() })?;
    // SAFETY: kqueue returned a new descriptor we own.
    let kq = unsafe { Fd::from_raw(kq) };
    kq.set_cloexec()?;
    trigger(&kq)?;
    Ok(kq)
}

/// Whether our child `pid` has ended and waits to be reaped (without
/// reaping it).
fn is_zombie(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid out-value.
    let mut info: libc::siginfo_t = unsafe { mem::zeroed() };
    // SAFETY: info is a valid out-pointer; WNOWAIT leaves the child as it is.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    rc == 0 && info.si_pid == pid as libc::pid_t
}

/// A started child: of this process (waited for through a kqueue), or of
/// a fork server (through the child's life token, its status from the
/// server's status socket).
#[derive(Debug)]
pub(crate) struct ChildHandle {
    pid: u32,
    /// Readable once the child has ended: a kqueue, or a fork server's
    /// child's life token.
    kq: Fd,
    /// A fork child's life token (the read end), to hand to another
    /// process.
    token: Option<Fd>,
    /// Whether the child was reaped (then it is never signalled again);
    /// taken around both.
    reaped: Mutex<bool>,
    /// For a fork server's child: the status socket and the bytes of it
    /// already read.
    status: Option<(Fd, Vec<u8>)>,
}

/// How long to wait for a fork server's report once its child has ended.
const STATUS_WAIT: Duration = Duration::from_secs(10);

impl ChildHandle {
    /// The length of a fork server's exit status record.
    pub(crate) const STATUS_LEN: usize = crate::sys::STATUS_RECORD_LEN;

    /// Opens a handle on `pid`, which must be an unreaped child of ours.
    pub(crate) fn open(pid: u32) -> io::Result<ChildHandle> {
        let kq = match watch_exit(pid) {
            Ok(kq) => {
                // Ended between its start and the registration: the
                // registration may have come after the note.
                if is_zombie(pid) {
                    trigger(&kq)?;
                }
                kq
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => ended_queue()?,
            Err(e) => return Err(e),
        };
        Ok(ChildHandle {
            pid,
            kq,
            token: None,
            reaped: Mutex::new(false),
            status: None,
        })
    }

    /// A handle on a fork server's child, from the life token the server
    /// sent (readable once the child has ended).
    pub(crate) fn remote(pid: u32, token: Fd, status: Fd, already_read: Vec<u8>) -> ChildHandle {
        ChildHandle {
            pid,
            kq: token,
            token: None,
            reaped: Mutex::new(false),
            status: Some((status, already_read)),
        }
    }

    /// The exit status of the fork server's child `pid`, which has ended.
    fn remote_status(pid: u32, status: &Fd, already_read: &[u8]) -> RawStatus {
        let n = Self::STATUS_LEN;
        let mut buf = Vec::with_capacity(n);
        buf.extend_from_slice(&already_read[..already_read.len().min(n)]);
        if buf.len() < n
            && (!matches!(poll_one(status.raw(), libc::POLLIN, Some(STATUS_WAIT)), Ok(true))
                || status.recv_exact_into(&mut buf, n).is_err())
        {
            return RawStatus::Unknown;
        }
        crate::sys::decode_status_record(pid, &buf)
    }

    /// The status a fork server's child's record says (unit tests).
    #[cfg(test)]
    pub(crate) fn status_for_test(&self) -> RawStatus {
        let (status, already_read) = self.status.as_ref().expect("a fork server's child");
        ChildHandle::remote_status(self.pid, status, already_read)
    }

    /// The record a fork server writes for the end of its child `pid`.
    pub(crate) fn encode_status(pid: u32, status: RawStatus) -> [u8; Self::STATUS_LEN] {
        crate::sys::encode_status_record(pid, status)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.kq.raw()
    }

    /// The kqueue, readable once the child has ended.
    pub(crate) fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.kq.borrow()
    }

    /// Every descriptor the handle holds.
    pub(crate) fn raw_fds(&self) -> Vec<i32> {
        std::iter::once(self.kq.raw())
            .chain(self.status.as_ref().map(|(s, _)| s.raw()))
            .collect()
    }

    /// A second descriptor that turns readable when the child ends: a
    /// forked child's life token, which may travel to another process
    /// (the fork server sends it to its owner); otherwise a duplicate of
    /// the kqueue, which serves this process only (a kqueue cannot be
    /// passed on).
    pub(crate) fn pidfd_copy(&self) -> io::Result<Fd> {
        self.token.as_ref().unwrap_or(&self.kq).try_clone()
    }

    /// Waits until the child has exited; `false` on timeout. Does not reap.
    pub(crate) fn poll_exit(&self, timeout: Option<Duration>) -> io::Result<bool> {
        poll_one(self.kq.raw(), libc::POLLIN, timeout)
    }

    /// Reaps the child if it has exited.
    pub(crate) fn try_reap(&self) -> io::Result<Option<RawStatus>> {
        if let Some((status, already_read)) = &self.status {
            if !poll_one(self.kq.raw(), libc::POLLIN, Some(Duration::ZERO))? {
                return Ok(None);
            }
            return Ok(Some(ChildHandle::remote_status(self.pid, status, already_read)));
        }
        let mut reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if *reaped {
            return Ok(Some(RawStatus::Unknown));
        }
        let mut status = 0;
        // SAFETY: status is a valid out-pointer; the pid is our unreaped
        // child.
        let res = cvt_r(|| unsafe { libc::waitpid(self.pid as libc::pid_t, &mut status, libc::WNOHANG) });
        let got = match res {
            Ok(0) => return Ok(None),
            Ok(_) if libc::WIFEXITED(status) => RawStatus::Exited(libc::WEXITSTATUS(status)),
            Ok(_) if libc::WIFSIGNALED(status) => RawStatus::Signaled(libc::WTERMSIG(status)),
            Ok(_) => RawStatus::Unknown,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => RawStatus::Unknown,
            Err(e) => return Err(e),
        };
        *reaped = true;
        Ok(Some(got))
    }

    /// Sends `signal`; a child that already exited is not an error, and a
    /// reaped one is never signalled.
    ///
    /// A fork server's child is signalled only while its life token says
    /// it runs; the server reaps it once it has ended, so a signal could
    /// reach another process only if the child ended, was reaped and its
    /// pid was taken by a new process between that look and the `kill`
    /// (macOS hands out pids in turn, so a pid comes back only after the
    /// whole range went round).
    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        let reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if *reaped || (self.status.is_some() && poll_one(self.kq.raw(), libc::POLLIN, Some(Duration::ZERO))?) {
            return Ok(());
        }
        // SAFETY: kill on our unreaped child (the lock keeps it unreaped
        // across the call).
        match cvt(unsafe { libc::kill(self.pid as libc::pid_t, signal) }) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A forked child's life token, made before the fork (see
/// `../token.rs`): the parent keeps the read end in the child's handle, to
/// hand on ([`ChildHandle::pidfd_copy`]).
pub(crate) struct ForkToken(LifeToken);

impl ForkToken {
    pub(crate) fn new() -> io::Result<ForkToken> {
        LifeToken::new().map(ForkToken)
    }

    /// In the child, right after the fork: only stores.
    pub(crate) fn in_child(self) {
        self.0.in_child();
    }

    /// In the parent: the child's handle, with the read end.
    pub(crate) fn in_parent(self, mut handle: ChildHandle) -> ChildHandle {
        handle.token = Some(self.0.into_parent());
        handle
    }
}

/// Another process whose end can be awaited: a kqueue watch (the parent)
/// or a life token received from it.
#[derive(Debug)]
pub(crate) struct ParentWatch {
    fd: Fd,
}

impl ParentWatch {
    /// Watches the process whose life token `token` is (received from it).
    pub(crate) fn from_pidfd(token: Fd) -> ParentWatch {
        ParentWatch { fd: token }
    }

    /// A life token of this very process, to hand to another one.
    pub(crate) fn of_self() -> io::Result<Fd> {
        token_of_self()
    }

    /// Watches `pid`, which must be this process's parent: fails if the
    /// parent is already gone (and `pid` could name another process).
    pub(crate) fn open_parent(pid: u32) -> io::Result<ParentWatch> {
        let gone = || io::Error::new(io::ErrorKind::NotFound, "the parent process has exited");
        let fd = match watch_exit(pid) {
            Ok(kq) => kq,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(gone()),
            Err(e) => return Err(e),
        };
        if getppid() != pid {
            return Err(gone());
        }
        Ok(ParentWatch { fd })
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.raw()
    }

    /// Waits for the process to end; `true` once it has.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        poll_one(self.fd.raw(), libc::POLLIN, timeout)
    }
}

/// A fork server's child's link to its owner (its fields serve Linux's
/// parent-death signal; here a thread watches the owner instead).
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
pub(crate) struct ServerChild {
    pub(crate) owner_pidfd: i32,
    pub(crate) sock: i32,
}

/// macOS has no parent-death signal (`PR_SET_PDEATHSIG`): always an
/// `Unsupported` error, so that the caller watches the parent from a
/// thread ([`ParentWatch::open_parent`]'s kqueue).
pub(crate) fn arm_parent_death(_real_parent: u32, _server_child: Option<ServerChild>) -> io::Result<bool> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "macOS has no parent-death signal: a thread watches the parent",
    ))
}
