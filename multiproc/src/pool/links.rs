//! The pool's links and launchers, local or remote, as one type each
//! (the pool's state names one scheduler type).

use std::time::{Duration, Instant};

#[cfg(unix)]
use super::remote::{RemoteLauncher, RemoteLink};
use super::{
    link::{ProcessLauncher, ProcessLink},
    scheduler::{Chunk, Launcher, Recv, Slot, WORKER_DEADLINE, WorkerLink},
};
use crate::{
    connection::wait,
    error::{Error, Result},
    process::ExitStatus,
    sys::RawFd,
};

/// A local or a remote worker's link.
pub(crate) enum AnyLink {
    Local(ProcessLink),
    /// Remote workers need Unix sockets and signals (not ported to Windows).
    #[cfg(unix)]
    Remote(RemoteLink),
}

macro_rules! each {
    ($self:expr, $l:ident => $e:expr) => {
        match $self {
            AnyLink::Local($l) => $e,
            #[cfg(unix)]
            AnyLink::Remote($l) => $e,
        }
    };
}

impl WorkerLink for AnyLink {
    fn send(&mut self, chunks: &[&Chunk]) -> std::result::Result<(), usize> {
        each!(self, l => l.send(chunks))
    }
    fn try_recv(&mut self) -> Recv {
        each!(self, l => l.try_recv())
    }
    fn buffered(&self) -> bool {
        each!(self, l => l.buffered())
    }
    fn wait_fds(&self) -> [RawFd; 2] {
        each!(self, l => l.wait_fds())
    }
    fn exit_status(&self) -> Option<ExitStatus> {
        each!(self, l => l.exit_status())
    }
    fn kill(&self) -> Result<()> {
        each!(self, l => l.kill())
    }
    fn terminate(&self) -> Result<()> {
        each!(self, l => l.terminate())
    }
    fn join_until(&mut self, until: Instant) -> bool {
        each!(self, l => l.join_until(until))
    }
    fn close(&self, receiving: bool) {
        each!(self, l => l.close(receiving))
    }
    fn pid(&self) -> Option<u32> {
        each!(self, l => l.pid())
    }
    fn named(&self, e: Error) -> Error {
        each!(self, l => l.named(e))
    }
    fn heartbeat_due(&self) -> Option<Instant> {
        each!(self, l => l.heartbeat_due())
    }
    fn cause(&self) -> Option<String> {
        each!(self, l => l.cause())
    }
}

/// A local or a remote launcher.
pub(crate) enum AnyLauncher {
    Local(ProcessLauncher),
    #[cfg(unix)]
    Remote(Box<RemoteLauncher>),
}

impl Launcher for AnyLauncher {
    type Link = AnyLink;

    fn launch(&mut self, n: usize) -> (Vec<AnyLink>, Option<Error>) {
        match self {
            AnyLauncher::Local(l) => {
                let (links, e) = l.launch(n);
                (links.into_iter().map(AnyLink::Local).collect(), e)
            }
            #[cfg(unix)]
            AnyLauncher::Remote(l) => {
                let (links, e) = l.launch(n);
                (links.into_iter().map(AnyLink::Remote).collect(), e)
            }
        }
    }

    fn all_at_once(&self) -> bool {
        match self {
            AnyLauncher::Local(l) => l.all_at_once(),
            #[cfg(unix)]
            AnyLauncher::Remote(l) => l.all_at_once(),
        }
    }

    fn remote(&self) -> bool {
        #[cfg(unix)]
        return matches!(self, AnyLauncher::Remote(_));
        #[cfg(not(unix))]
        false
    }

    fn joined(&mut self) -> Vec<AnyLink> {
        match self {
            AnyLauncher::Local(_) => Vec::new(),
            #[cfg(unix)]
            AnyLauncher::Remote(l) => l.joined().into_iter().map(AnyLink::Remote).collect(),
        }
    }

    fn join_fd(&self) -> Option<RawFd> {
        match self {
            AnyLauncher::Local(_) => None,
            #[cfg(unix)]
            AnyLauncher::Remote(l) => l.join_fd(),
        }
    }

    fn expecting(&self) -> bool {
        match self {
            AnyLauncher::Local(_) => false,
            #[cfg(unix)]
            AnyLauncher::Remote(l) => l.expecting(),
        }
    }

    fn stop(&mut self) {
        #[cfg(unix)]
        if let AnyLauncher::Remote(l) = self {
            l.stop();
        }
    }
}

/// Waits (bounded) for the initializer's outcome of `slot`'s worker, for
/// a pool being built.
pub(super) fn await_ready(slot: &mut Slot<AnyLink>) -> Result<()> {
    let first = match &mut slot.link {
        AnyLink::Local(l) => {
            let ready = wait(&[(&l.conn).into(), (&l.proc).into()], Some(WORKER_DEADLINE))?;
            if ready.is_empty() {
                None
            } else if ready.contains(&0) || l.conn.poll(Some(Duration::ZERO))? {
                Some(l.conn.recv_bytes().ok())
            } else {
                Some(None)
            }
        }
        #[cfg(unix)]
        AnyLink::Remote(l) => {
            let until = super::scheduler::deadline_after(WORKER_DEADLINE);
            loop {
                match l.try_recv() {
                    Recv::Message(m) => break Some(Some(m)),
                    Recv::Ended => break Some(None),
                    Recv::Empty => {}
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break None;
                }
                l.wait_readable(left);
            }
        }
    };
    match first {
        None => {
            slot.kill_and_reap();
            Err(slot.init_timeout())
        }
        Some(Some(bytes)) => slot.init_outcome(&bytes),
        Some(None) => Err(slot.ended_early()),
    }
}
