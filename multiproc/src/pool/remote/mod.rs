//! Pool workers on other hosts: the link to a worker connected over TCP
//! ([`RemoteLink`]), the launcher that starts them through a backend
//! ([`RemoteLauncher`]), and the worker's side ([`serve`]).
//!
//! # Design
//!
//! The pool binds a TCP [`Listener`] with a fresh 32-byte key and runs the
//! backend's launcher (`N` local processes, `srun`, a command) with the
//! worker environment: the listener's address, the key (in the
//! environment, never argv), the heartbeat period. Each worker is this
//! same executable: the entry point sees the environment and enters
//! [`serve::enter`] instead of `main`. It connects, and the listener's
//! handshake (mutual HMAC-SHA256 challenges, concurrent, each with its own
//! deadline: a silent peer, garbage or a wrong key holds only its own
//! slot) runs before any byte is deserialized. Then the worker sends its
//! [`hello::Hello`] (build identity, host, pid, rank) and the pool answers
//! [`hello::Welcome`]: a different build is refused with a message naming
//! both builds. From there the worker runs the local worker loop
//! (`worker::serve`) over the TCP connection, and a thread of its own
//! sends a heartbeat (an empty message) three times per period.
//!
//! The link filters the heartbeats out; a worker not heard from within
//! the period is lost ([`WorkerLink::heartbeat_due`]): the scheduler kills
//! it (its connection is shut down; a local process is also `SIGKILL`ed)
//! and retries its chunk elsewhere, up to the pool's attempts. The
//! launcher's processes are watched while workers connect: one that exits
//! first fails the launch with its status and the tail of its standard
//! error. Dropping the launcher (with the pool) ends them: `SIGTERM`, a
//! grace, `SIGKILL`, reaped.

pub(crate) mod backend;
mod hello;
mod launcher;
pub(crate) mod serve;

pub(crate) use self::launcher::RemoteLauncher;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use self::backend::Backend;
use super::scheduler::{Chunk, Recv, WorkerLink};
use crate::{
    RecvTimeoutError,
    connection::Connection,
    error::{Error, Result},
    process::ExitStatus,
    sys::{self, ChildHandle},
};

/// The default heartbeat timeout.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a worker may take to send its hello once authenticated, and
/// the pool to answer it.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping a launcher waits for it to exit by itself, and then
/// after `SIGTERM` before `SIGKILL`.
pub(super) const LAUNCHER_GRACE: Duration = Duration::from_secs(3);
/// The bytes of a launcher's standard error kept for an error message.
pub(super) const STDERR_TAIL: usize = 4096;

/// A remote pool's settings.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) backend: Backend,
    pub(crate) heartbeat: Duration,
    /// How long a launch may take until all its workers are connected.
    pub(crate) connect_timeout: Duration,
    /// Where to listen (port 0: any); `None`: loopback for local
    /// backends, this host's name's address otherwise.
    pub(crate) listen: Option<SocketAddr>,
    /// How long a connection may take to prove the key.
    pub(crate) handshake_timeout: Duration,
}

/// A worker process this process started (the local backend's workers,
/// a launcher command), watched by its pidfd.
pub(super) struct Started {
    handle: ChildHandle,
    /// What it is, for messages (`srun`, `PoolWorker-3`).
    what: String,
    /// Its exit status, once reaped.
    status: Mutex<Option<ExitStatus>>,
    /// The tail of its standard error, when captured.
    stderr: Option<Arc<Mutex<VecDeque<u8>>>>,
}

impl Started {
    fn pid(&self) -> u32 {
        self.handle.pid()
    }

    /// Its status, reaping it if it has ended.
    fn status(&self) -> Option<ExitStatus> {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_none() {
            if let Ok(Some(raw)) = self.handle.try_reap() {
                *s = Some(ExitStatus::from_raw(raw));
            }
        }
        *s
    }

    fn signal(&self, sig: i32) {
        if self.status().is_none() {
            let _ = self.handle.signal(sig);
        }
    }

    /// Waits until `until` for it to end; `true` once it has.
    fn wait_until(&self, until: Instant) -> bool {
        loop {
            if self.status().is_some() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = self.handle.poll_exit(Some(left));
        }
    }

    fn stderr_tail(&self) -> String {
        self.stderr.as_ref().map_or_else(String::new, |t| {
            let t = t.lock().unwrap_or_else(|e| e.into_inner());
            let (a, b) = t.as_slices();
            String::from_utf8_lossy(&[a, b].concat()).trim().to_owned()
        })
    }
}

/// The parent's end of a worker connected over TCP.
pub(crate) struct RemoteLink {
    conn: Connection,
    /// `PoolWorker-N on HOST`.
    name: String,
    /// Its process id on its host.
    pid: u32,
    /// The process, when this process started it (the TCP backend).
    local: Option<Arc<Started>>,
    heartbeat: Duration,
    last_heard: Instant,
    /// Messages read while waiting for the end ([`WorkerLink::join_until`]).
    held: VecDeque<Vec<u8>>,
    /// The stream is over, and why.
    ended: Option<String>,
    /// The scheduler killed it (its connection is shut down).
    killed: AtomicBool,
}

impl RemoteLink {
    fn read(&mut self, timeout: Duration) -> Recv {
        loop {
            match self.conn.recv_bytes_timeout(timeout) {
                Ok(msg) => {
                    self.last_heard = Instant::now();
                    if msg.is_empty() {
                        // A heartbeat.
                        if timeout.is_zero() {
                            continue;
                        }
                        return Recv::Empty;
                    }
                    return Recv::Message(msg);
                }
                Err(RecvTimeoutError::Timeout) => return Recv::Empty,
                Err(RecvTimeoutError::Disconnected) => {
                    self.ended.get_or_insert_with(|| "its connection ended".to_owned());
                    return Recv::Ended;
                }
                Err(e) => {
                    self.ended.get_or_insert_with(|| format!("its connection failed: {e}"));
                    return Recv::Ended;
                }
            }
        }
    }

    fn silent(&self) -> bool {
        self.last_heard.elapsed() > self.heartbeat
    }
}

impl WorkerLink for RemoteLink {
    fn send(&mut self, chunks: &[&Chunk]) -> std::result::Result<(), usize> {
        let mut msgs: Vec<&[u8]> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        for c in chunks {
            msgs.push(&c.payload);
            if let Some(d) = &c.data {
                msgs.push(d);
            }
            ends.push(msgs.len());
        }
        self.conn
            .send_bytes_batch(&msgs)
            .map_err(|(whole, _)| ends.iter().take_while(|&&e| e <= whole).count())
    }

    fn try_recv(&mut self) -> Recv {
        if let Some(m) = self.held.pop_front() {
            return Recv::Message(m);
        }
        if self.ended.is_some() {
            return Recv::Ended;
        }
        self.read(Duration::ZERO)
    }

    fn buffered(&self) -> bool {
        !self.held.is_empty() || self.conn.ready_now() == Some(true)
    }

    fn wait_fds(&self) -> [RawFd; 2] {
        [
            self.conn.as_raw_fd(),
            self.local.as_ref().map_or(-1, |p| p.handle.raw_fd()),
        ]
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        if let Some(p) = &self.local {
            return p.status();
        }
        (self.ended.is_some() || self.killed.load(Ordering::Relaxed)).then_some(ExitStatus::Unknown)
    }

    fn kill(&self) -> Result<()> {
        self.killed.store(true, Ordering::Relaxed);
        let _ = self.conn.shut_down(false);
        if let Some(p) = &self.local {
            p.signal(libc::SIGKILL);
        }
        Ok(())
    }

    fn terminate(&self) -> Result<()> {
        if let Some(p) = &self.local {
            p.signal(libc::SIGTERM);
        }
        let _ = self.conn.shut_down(false);
        Ok(())
    }

    fn join_until(&mut self, until: Instant) -> bool {
        if let Some(p) = &self.local {
            return p.wait_until(until);
        }
        if self.killed.load(Ordering::Relaxed) {
            // Its launcher ends it; nothing more is waited for here.
            return true;
        }
        while self.ended.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Recv::Message(m) = self.read(left) {
                self.held.push_back(m);
            }
        }
        true
    }

    fn close(&self, receiving: bool) {
        let _ = self.conn.shut_down(receiving);
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn named(&self, e: Error) -> Error {
        e.with_process(&self.name, Some(self.pid))
    }

    fn heartbeat_due(&self) -> Option<Instant> {
        if self.ended.is_some() || self.killed.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.last_heard + self.heartbeat)
    }

    fn cause(&self) -> Option<String> {
        if self.silent() && (self.killed.load(Ordering::Relaxed) || self.ended.is_none()) {
            return Some(format!("no heartbeat within {:?}", self.heartbeat));
        }
        self.ended.clone()
    }
}

/// Ends `procs`, reaped: those whose workers have left exit by
/// themselves within a grace (a worker leaves at once when its connection
/// is shut down); the others get `SIGTERM`, then `SIGKILL`.
pub(super) fn end(procs: &[Arc<Started>]) {
    let until = sys::deadline_after(LAUNCHER_GRACE);
    for s in procs {
        s.wait_until(until);
    }
    for s in procs {
        s.signal(libc::SIGTERM);
    }
    let until = sys::deadline_after(LAUNCHER_GRACE);
    for s in procs {
        if !s.wait_until(until) {
            s.signal(libc::SIGKILL);
        }
    }
    for s in procs {
        s.wait_until(sys::deadline_after(Duration::from_secs(10)));
    }
}

impl RemoteLink {
    /// Waits until `timeout` for something to read.
    pub(super) fn wait_readable(&self, timeout: Duration) {
        let _ = self.conn.poll(Some(timeout));
    }
}
