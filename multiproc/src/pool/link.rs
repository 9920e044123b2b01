//! The link to a local worker process ([`ProcessLink`]) and the launcher
//! that starts them ([`ProcessLauncher`]).

use std::time::{Duration, Instant};

use super::{
    encode::Init,
    scheduler::{Chunk, Launcher, Recv, WorkerLink},
    worker::{self, WorkerArgs},
};
use crate::{
    RecvTimeoutError,
    connection::{Connection, pipe},
    error::{Error, ErrorKind, Result},
    forkserver::{self, Requested},
    process::{ExitStatus, Process, ProcessBuilder},
    start::StartMethod,
    sys::RawFd,
};

/// A worker process started by this process, and its private connection.
pub(crate) struct ProcessLink {
    pub(super) proc: Process<()>,
    pub(super) conn: Connection,
}

impl WorkerLink for ProcessLink {
    /// The messages of chunks without descriptors go together (one system
    /// call for a burst); a chunk with descriptors goes on its own (they
    /// ride on its task message).
    fn send(&mut self, chunks: &[&Chunk]) -> std::result::Result<(), usize> {
        let conn = &self.conn;
        let mut msgs: Vec<&[u8]> = Vec::new();
        // Per chunk in `msgs`: where its messages end.
        let mut ends: Vec<usize> = Vec::new();
        // Chunks sent whole by earlier calls.
        let mut done = 0;
        let flush = |msgs: &mut Vec<&[u8]>, ends: &mut Vec<usize>, done: &mut usize| {
            if !msgs.is_empty() {
                conn.send_bytes_batch(msgs)
                    .map_err(|(whole, _)| *done + ends.iter().take_while(|&&e| e <= whole).count())?;
            }
            *done += ends.len();
            msgs.clear();
            ends.clear();
            Ok(())
        };
        for c in chunks {
            if c.fds.is_empty() {
                // Its message, and its large argument's.
                msgs.push(&c.payload);
                if let Some(d) = &c.data {
                    msgs.push(d);
                }
                ends.push(msgs.len());
                continue;
            }
            flush(&mut msgs, &mut ends, &mut done)?;
            conn.send_bytes_with_fds(&c.payload, &c.fds.raw()).map_err(|_| done)?;
            if let Some(d) = &c.data {
                conn.send_bytes(d).map_err(|_| done)?;
            }
            done += 1;
        }
        flush(&mut msgs, &mut ends, &mut done)
    }

    fn try_recv(&mut self) -> Recv {
        match self.conn.recv_bytes_timeout(Duration::ZERO) {
            Ok(msg) => Recv::Message(msg),
            Err(RecvTimeoutError::Timeout) => Recv::Empty,
            Err(_) => Recv::Ended,
        }
    }

    fn buffered(&self) -> bool {
        self.conn.ready_now() == Some(true)
    }

    fn wait_fds(&self) -> [RawFd; 2] {
        [self.conn.raw_fd(), self.proc.sentinel_fd().unwrap_or(-1)]
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.proc.exit_status()
    }

    fn kill(&self) -> Result<()> {
        self.proc.kill()
    }

    fn terminate(&self) -> Result<()> {
        self.proc.terminate()
    }

    fn join_until(&mut self, until: Instant) -> bool {
        self.proc
            .join_timeout(until.saturating_duration_since(Instant::now()))
            .is_ok()
            || self.proc.exit_status().is_some()
    }

    fn close(&self, receiving: bool) {
        let _ = self.conn.shut_down(receiving);
    }

    fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    fn named(&self, e: Error) -> Error {
        e.with_process(self.proc.name(), self.proc.pid())
    }
}

/// Starts worker processes with the pool's start method, initializer and
/// `maxtasksperchild`.
pub(super) struct ProcessLauncher {
    pub(super) init: Option<Init>,
    pub(super) maxtasks: Option<usize>,
    pub(super) method: Option<StartMethod>,
    /// Where the workers' standard output and error go.
    pub(super) output: crate::ChildOutput,
    /// Workers started so far (their names count them).
    started: usize,
}

impl ProcessLauncher {
    pub(super) fn new(init: Option<Init>, maxtasks: Option<usize>, method: Option<StartMethod>) -> ProcessLauncher {
        ProcessLauncher {
            init,
            maxtasks,
            method,
            output: crate::ChildOutput::Inherit,
            started: 0,
        }
    }

    fn start_requested(&mut self, requested: Option<Requested>) -> Result<ProcessLink> {
        match self.start_with(self.method, requested) {
            // Under `fork`, in a process that has other threads by now
            // (fork is refused there), the fork server starts it instead.
            Err(e) if e.kind() == ErrorKind::ForkWithThreads => self.start_with(Some(StartMethod::ForkServer), None),
            r => r,
        }
    }

    fn start_with(&mut self, method: Option<StartMethod>, requested: Option<Requested>) -> Result<ProcessLink> {
        let (ours, theirs) = pipe(true)?;
        self.started += 1;
        let mut b = ProcessBuilder::new()
            .name(format!("PoolWorker-{}", self.started))
            .daemon(true)
            .output(self.output);
        if let Some(m) = method {
            b = b.start_method(m);
        }
        let mut proc = b.target_with(
            worker::worker_main,
            WorkerArgs {
                conn: theirs,
                init: self.init.as_ref().map(Init::duplicate).transpose()?,
                maxtasks: self.maxtasks,
            },
        );
        match requested {
            Some(r) => proc.start_requested(r)?,
            None => proc.start()?,
        }
        Ok(ProcessLink { proc, conn: ours })
    }
}

impl Launcher for ProcessLauncher {
    type Link = ProcessLink;

    /// Under the fork server, every request is sent before any answer is
    /// read (one round trip to the server for all).
    fn launch(&mut self, n: usize) -> (Vec<ProcessLink>, Option<Error>) {
        let method = self.method.unwrap_or_else(crate::context::get_start_method);
        let mut requests: Vec<Option<Requested>> = (0..n)
            .map(|_| {
                (method == StartMethod::ForkServer && n > 1 && method.check_available().is_ok())
                    .then(|| forkserver::send_request().ok())
                    .flatten()
            })
            .collect();
        let mut started = Vec::with_capacity(n);
        for r in requests.drain(..) {
            match self.start_requested(r) {
                Ok(w) => started.push(w),
                Err(e) => return (started, Some(e)),
            }
        }
        (started, None)
    }

    fn all_at_once(&self) -> bool {
        self.method.unwrap_or_else(crate::context::get_start_method) == StartMethod::Fork
    }
}
