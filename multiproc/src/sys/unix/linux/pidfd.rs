//! Process handles built on pidfds: waiting, reaping and signalling without
//! pid-reuse races and without inherited sentinel pipes that a grandchild
//! could keep open.

use std::{io, time::Duration};

use super::{Fd, cvt, cvt_r, poll_one};
use crate::sys::RawStatus;

fn pidfd_open(pid: u32) -> io::Result<Fd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let raw = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    // SAFETY: the descriptor is new and ours; pidfds are always close-on-exec.
    Ok(unsafe { Fd::from_raw(raw as i32) })
}

/// A started child: a child of this process, or a child a fork server
/// started for this process (whose exit status the server reports on a
/// status socket, since only the server can reap it).
#[derive(Debug)]
pub(crate) struct ChildHandle {
    pid: u32,
    pidfd: Fd,
    /// For a fork server's child: the socket the server writes its exit
    /// status to ([`STATUS_LEN`](Self::STATUS_LEN) bytes: kind, value,
    /// pid), and the bytes of it already read.
    status: Option<(Fd, Vec<u8>)>,
}

/// How long to wait for a fork server's report once its child has ended:
/// the server reaps at once; a server that died sends EOF.
const STATUS_WAIT: Duration = Duration::from_secs(10);

impl ChildHandle {
    /// The length of a fork server's exit status record.
    pub(crate) const STATUS_LEN: usize = crate::sys::STATUS_RECORD_LEN;

    /// Opens a handle on `pid`, which must be an unreaped child of ours.
    pub(crate) fn open(pid: u32) -> io::Result<ChildHandle> {
        Ok(ChildHandle {
            pid,
            pidfd: pidfd_open(pid)?,
            status: None,
        })
    }

    /// A handle on a fork server's child, from the pidfd the server sent.
    pub(crate) fn remote(pid: u32, pidfd: Fd, status: Fd, already_read: Vec<u8>) -> ChildHandle {
        ChildHandle {
            pid,
            pidfd,
            status: Some((status, already_read)),
        }
    }

    /// The exit status of the fork server's child `pid`, which has ended.
    /// A record that names another pid answers nothing asked: the status
    /// is then unknown, never another child's.
    fn remote_status(pid: u32, status: &Fd, already_read: &[u8]) -> RawStatus {
        let n = Self::STATUS_LEN;
        let mut buf = Vec::with_capacity(n);
        buf.extend_from_slice(&already_read[..already_read.len().min(n)]);
        if buf.len() < n
            && (!matches!(poll_one(status.raw(), libc::POLLIN, Some(STATUS_WAIT)), Ok(true))
                || status.recv_exact_into(&mut buf, n).is_err())
        {
            // The server died (EOF) or never answered: the status is lost.
            return RawStatus::Unknown;
        }
        crate::sys::decode_status_record(pid, &buf)
    }

    /// The status a fork server's child's record says, without waiting for
    /// the child (unit tests of the protocol).
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
        self.pidfd.raw()
    }

    /// The pidfd, readable once the child has ended.
    pub(crate) fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.borrow()
    }

    /// Every descriptor the handle holds (pidfd, and a fork server's status
    /// socket).
    pub(crate) fn raw_fds(&self) -> Vec<i32> {
        std::iter::once(self.pidfd.raw())
            .chain(self.status.as_ref().map(|(s, _)| s.raw()))
            .collect()
    }

    /// A second descriptor for the child's pidfd, to send to another process.
    pub(crate) fn pidfd_copy(&self) -> io::Result<Fd> {
        self.pidfd.try_clone()
    }

    /// Waits until the child has exited; `false` on timeout. Does not reap.
    pub(crate) fn poll_exit(&self, timeout: Option<Duration>) -> io::Result<bool> {
        poll_one(self.pidfd.raw(), libc::POLLIN, timeout)
    }

    /// Reaps the child if it has exited (for a fork server's child: reads
    /// the status the server reports once the child has ended).
    pub(crate) fn try_reap(&self) -> io::Result<Option<RawStatus>> {
        if let Some((status, already_read)) = &self.status {
            if !poll_one(self.pidfd.raw(), libc::POLLIN, Some(Duration::ZERO))? {
                return Ok(None);
            }
            return Ok(Some(ChildHandle::remote_status(self.pid, status, already_read)));
        }
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
        // SAFETY: waitid filled `info` for a child event (or left it
        // zeroed), so its union holds the child fields.
        let pid = unsafe { info.si_pid() };
        // SAFETY: as above.
        let status = unsafe { info.si_status() };
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

/// Nothing: a fork child's pidfd is what travels to other processes.
pub(crate) struct ForkToken;

impl ForkToken {
    pub(crate) fn new() -> io::Result<ForkToken> {
        Ok(ForkToken)
    }
    pub(crate) fn in_child(self) {}
    pub(crate) fn in_parent(self, handle: ChildHandle) -> ChildHandle {
        handle
    }
}

/// A handle on another process (this process's parent) whose end can be
/// awaited.
#[derive(Debug)]
pub(crate) struct ParentWatch {
    pidfd: Fd,
}

impl ParentWatch {
    /// Watches the process `pidfd` refers to (received from that process).
    pub(crate) fn from_pidfd(pidfd: Fd) -> ParentWatch {
        ParentWatch { pidfd }
    }

    /// A pidfd of this very process, to hand to another one.
    pub(crate) fn of_self() -> io::Result<Fd> {
        pidfd_open(super::getpid())
    }

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
