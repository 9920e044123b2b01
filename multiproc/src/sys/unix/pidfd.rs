//! Process handles built on pidfds: waiting, reaping and signalling without
//! pid-reuse races and without inherited sentinel pipes that a grandchild
//! could keep open.

use std::{io, time::Duration};

use super::{Fd, cvt, cvt_r, fd::poll_one};

/// How a child ended, as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawStatus {
    Exited(i32),
    Signaled(i32),
    /// The child was reaped by someone else (for example `SIGCHLD` set to
    /// `SIG_IGN`), so its status is lost.
    Unknown,
}

fn pidfd_open(pid: u32) -> io::Result<Fd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let raw = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    // SAFETY: the descriptor is new and ours; pidfds are always close-on-exec.
    Ok(unsafe { Fd::from_raw(raw as i32) })
}

/// A child of this process.
#[derive(Debug)]
pub(crate) struct ChildHandle {
    pid: u32,
    pidfd: Fd,
}

impl ChildHandle {
    /// Opens a handle on `pid`, which must be an unreaped child of ours.
    pub(crate) fn open(pid: u32) -> io::Result<ChildHandle> {
        Ok(ChildHandle {
            pid,
            pidfd: pidfd_open(pid)?,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.pidfd.raw()
    }

    /// Waits until the child has exited; `false` on timeout. Does not reap.
    pub(crate) fn poll_exit(&self, timeout: Option<Duration>) -> io::Result<bool> {
        poll_one(self.pidfd.raw(), libc::POLLIN, timeout)
    }

    /// Reaps the child if it has exited.
    pub(crate) fn try_reap(&self) -> io::Result<Option<RawStatus>> {
        // SAFETY: an all-zero siginfo_t is a valid out-value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let res = cvt_r(|| {
            // SAFETY: info is a valid out-pointer; the pidfd is open.
            unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    self.pidfd.raw() as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG,
                )
            }
        });
        match res {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(Some(RawStatus::Unknown)),
            Err(e) => return Err(e),
        }
        // SAFETY: waitid filled `info` for a child event (or left it zeroed).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(match info.si_code {
            libc::CLD_EXITED => RawStatus::Exited(status),
            libc::CLD_KILLED | libc::CLD_DUMPED => RawStatus::Signaled(status),
            _ => RawStatus::Unknown,
        }))
    }

    /// Sends `signal`; a child that already exited is not an error.
    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        let res = cvt(
            // SAFETY: pidfd_send_signal with a NULL siginfo and no flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    self.pidfd.raw(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            },
        );
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A handle on another process (this process's parent) whose end can be
/// awaited.
#[derive(Debug)]
pub(crate) struct ParentWatch {
    pidfd: Fd,
}

impl ParentWatch {
    /// Watches `pid`, which must be this process's parent: fails if the
    /// parent is already gone (and `pid` could name another process).
    pub(crate) fn open_parent(pid: u32) -> io::Result<ParentWatch> {
        let pidfd = pidfd_open(pid)?;
        if super::getppid() != pid {
            return Err(io::Error::new(io::ErrorKind::NotFound, "the parent process has exited"));
        }
        Ok(ParentWatch { pidfd })
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.pidfd.raw()
    }

    /// Waits for the process to end; `true` once it has.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        poll_one(self.pidfd.raw(), libc::POLLIN, timeout)
    }
}
