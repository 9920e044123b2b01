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
pub(crate) mod serve;

use std::{
    collections::VecDeque,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::fd::{AsRawFd, RawFd},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use self::{
    backend::Backend,
    hello::{Hello, Welcome},
};
use super::{
    encode::Init,
    scheduler::{Chunk, Launcher, Recv, WorkerLink},
};
use crate::{
    RecvTimeoutError,
    connection::{Connection, Listener},
    error::{Error, ErrorKind, Result},
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
const LAUNCHER_GRACE: Duration = Duration::from_secs(3);
/// The bytes of a launcher's standard error kept for an error message.
const STDERR_TAIL: usize = 4096;

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
struct Started {
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

/// Starts remote workers through a backend and admits them.
pub(crate) struct RemoteLauncher {
    opts: Options,
    listener: Listener,
    key: [u8; 32],
    init: Option<Init>,
    maxtasks: Option<usize>,
    /// Every process started (workers of the TCP backend, launchers).
    started: Vec<Arc<Started>>,
    /// Workers admitted so far (their names count them).
    admitted: usize,
    /// Connections refused, for the launch's error.
    refused: Vec<String>,
    exe: PathBuf,
}

impl RemoteLauncher {
    /// Binds the listener. The initializer's arguments must carry no
    /// descriptor.
    pub(crate) fn new(opts: Options, init: Option<Init>, maxtasks: Option<usize>) -> Result<RemoteLauncher> {
        if init.as_ref().is_some_and(|i| !i.fds.is_empty()) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the initializer's arguments hold a local-only object (a Queue, a lock, SharedMemory, a \
                 descriptor or a Connection made by pipe), which cannot reach a worker on another host",
            ));
        }
        let listen = match opts.listen {
            Some(a) => a,
            None => SocketAddr::new(default_ip(&opts.backend), 0),
        };
        let mut key = [0u8; 32];
        sys::random_bytes(&mut key).map_err(|e| Error::io("failed to make the pool's key", e))?;
        let listener = Listener::builder()
            .address(listen)
            .authkey(&key)
            .auth_timeout(opts.handshake_timeout)
            .bind()?;
        let exe = std::fs::read_link("/proc/self/exe").map_err(|e| Error::io("failed to find this executable", e))?;
        Ok(RemoteLauncher {
            opts,
            listener,
            key,
            init,
            maxtasks,
            started: Vec::new(),
            admitted: 0,
            refused: Vec::new(),
            exe,
        })
    }

    /// The worker environment.
    fn environment(&self, cmd: &mut Command) {
        let hex: String = self.key.iter().map(|b| format!("{b:02x}")).collect();
        cmd.env(serve::ADDR_VAR, self.listener.address().to_string())
            .env(serve::KEY_VAR, hex)
            .env(serve::HEARTBEAT_VAR, self.opts.heartbeat.as_millis().to_string())
            .env_remove(backend::BACKEND_VAR);
    }

    /// Starts `cmd`, watched; with `capture`, its standard error is copied
    /// to ours and its tail kept.
    fn start(&mut self, mut cmd: Command, what: String, capture: bool) -> Result<Arc<Started>> {
        self.environment(&mut cmd);
        cmd.stdin(Stdio::null());
        if capture {
            cmd.stderr(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("failed to start the pool's launcher {what}"), e))?;
        let handle = match ChildHandle::open(child.id()) {
            Ok(h) => h,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::io(format!("failed to watch the pool's launcher {what}"), e));
            }
        };
        let stderr = child.stderr.take().map(|mut pipe| {
            let tail = Arc::new(Mutex::new(VecDeque::new()));
            let keep = Arc::clone(&tail);
            let _ = std::thread::Builder::new()
                .name("multiproc-launcher-stderr".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = pipe.read(&mut buf) {
                        let _ = std::io::stderr().write_all(&buf[..n]);
                        let mut t = keep.lock().unwrap_or_else(|e| e.into_inner());
                        t.extend(&buf[..n]);
                        let over = t.len().saturating_sub(STDERR_TAIL);
                        t.drain(..over);
                    }
                });
            tail
        });
        // The handle reaps it; `child` is dropped without a wait.
        drop(child);
        let s = Arc::new(Started {
            handle,
            what,
            status: Mutex::new(None),
            stderr,
        });
        self.started.push(Arc::clone(&s));
        Ok(s)
    }

    /// Runs the backend's launcher for `n` workers: the processes watched
    /// while they connect.
    fn run_launcher(&mut self, n: usize) -> Result<Vec<Arc<Started>>> {
        match self.opts.backend.clone() {
            Backend::Local => Err(Error::new(ErrorKind::InvalidState, "the local backend has no launcher")),
            Backend::Tcp => (0..n)
                .map(|k| {
                    let mut cmd = Command::new(&self.exe);
                    cmd.env(serve::RANK_VAR, (self.admitted + k).to_string());
                    self.start(cmd, format!("worker process {}", self.exe.display()), false)
                })
                .collect(),
            Backend::SlurmStep { args } => {
                let mut cmd = Command::new("srun");
                cmd.arg(format!("--ntasks={n}"))
                    .arg("--kill-on-bad-exit=0")
                    .args(&args)
                    .arg(&self.exe);
                self.start(cmd, format!("srun --ntasks={n}"), true).map(|s| vec![s])
            }
            Backend::Command { program, args } => {
                let exe = self.exe.display().to_string();
                let args: Vec<String> = args
                    .iter()
                    .map(|a| a.replace("{n}", &n.to_string()).replace("{exe}", &exe))
                    .collect();
                let mut cmd = Command::new(&program);
                cmd.args(&args).env("MULTIPROC_WORKERS", n.to_string());
                self.start(cmd, format!("launcher {}", program.display()), true)
                    .map(|s| vec![s])
            }
        }
    }

    /// Logs a refused connection.
    fn refuse(&mut self, why: String) {
        eprintln!(
            "multiproc: pool listener at {}: refused a worker: {why}",
            self.listener.address()
        );
        if self.refused.len() < 16 {
            self.refused.push(why);
        }
    }

    /// Takes an authenticated connection's hello and answers it.
    fn admit(&mut self, conn: Connection) -> std::result::Result<RemoteLink, String> {
        let peer = self
            .listener
            .last_accepted()
            .map_or_else(|| "?".to_owned(), |a| a.to_string());
        let bytes = conn
            .recv_bytes_timeout(HELLO_TIMEOUT)
            .map_err(|e| format!("{peer} sent no hello after the handshake: {e}"))?;
        let hello: Hello = hello::decode(&bytes, "hello").map_err(|e| format!("{peer}: {e}"))?;
        let ours = hello::identity();
        let who = format!("the worker on {} (pid {}, {})", hello.host, hello.pid, hello.exe);
        let refusal = if hello.version != hello::VERSION {
            Some(format!(
                "{who} speaks protocol {}, this pool {}",
                hello.version,
                hello::VERSION
            ))
        } else if hello.build != ours {
            Some(format!(
                "{who} is another build ({}) than this program ({}, {}): a stale or different binary; copy this \
                 executable to the nodes (or use a shared filesystem)",
                hello::show(&hello.build),
                hello::show(&ours),
                self.exe.display()
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            if let Ok(b) = hello::encode(&Welcome::Refused(why.clone())) {
                let _ = conn.send_bytes(&b);
            }
            return Err(why);
        }
        let welcome = Welcome::Accepted {
            init: self.init.as_ref().map(|i| (i.tramp, i.target, i.args.clone())),
            maxtasks: self.maxtasks.map(|m| m as u64),
        };
        let b = hello::encode(&welcome).map_err(|e| e.to_string())?;
        conn.send_bytes(&b).map_err(|e| format!("{who}: {e}"))?;
        let local = self
            .started
            .iter()
            .find(|s| s.pid() == hello.pid && hello.host == hello::host_name())
            .cloned();
        self.admitted += 1;
        Ok(RemoteLink {
            conn,
            name: format!("PoolWorker-{} on {}", self.admitted, hello.host),
            pid: hello.pid,
            local,
            heartbeat: self.opts.heartbeat,
            last_heard: Instant::now(),
            held: VecDeque::new(),
            ended: None,
            killed: AtomicBool::new(false),
        })
    }

    /// The error of a launch that did not bring its workers.
    fn launch_error(&self, kind: ErrorKind, what: String) -> Error {
        let mut msg = what;
        if !self.refused.is_empty() {
            msg.push_str(&format!("; refused: {}", self.refused.join("; ")));
        }
        Error::new(kind, msg)
    }

    /// Accepts `n` workers of the launch `procs`.
    fn accept(&mut self, n: usize, procs: &[Arc<Started>]) -> (Vec<RemoteLink>, Option<Error>) {
        let until = sys::deadline_after(self.opts.connect_timeout);
        let mut links = Vec::with_capacity(n);
        let mut exited_at: Option<Instant> = None;
        while links.len() < n {
            let now = Instant::now();
            if now >= until {
                let e = self.launch_error(
                    ErrorKind::Timeout,
                    format!(
                        "only {} of {n} pool workers connected to {} within {:?}",
                        links.len(),
                        self.listener.address(),
                        self.opts.connect_timeout
                    ),
                );
                return (links, Some(e));
            }
            // A launcher that exited: a last look at what it started.
            if exited_at.is_none() && procs.iter().any(|p| p.status().is_some()) {
                let tcp = matches!(self.opts.backend, Backend::Tcp);
                let admitted: Vec<u32> = links.iter().map(|l: &RemoteLink| l.pid).collect();
                let gone = procs
                    .iter()
                    .any(|p| p.status().is_some() && !(tcp && admitted.contains(&p.pid())));
                if gone {
                    exited_at = Some(now);
                }
            }
            if exited_at.is_some_and(|at| now >= at + Duration::from_millis(200)) {
                let p = procs
                    .iter()
                    .find(|p| p.status().is_some())
                    .cloned()
                    .expect("an exited process");
                let status = p.status().map_or_else(|| "?".to_owned(), |s| s.to_string());
                let tail = p.stderr_tail();
                let tail = if tail.is_empty() {
                    String::new()
                } else {
                    format!("; its standard error: {tail}")
                };
                let e = self.launch_error(
                    ErrorKind::Bootstrap,
                    format!(
                        "the pool's {} (pid {}) exited ({status}) before {} of {n} workers connected{tail}",
                        p.what,
                        p.pid(),
                        n - links.len()
                    ),
                );
                return (links, Some(e));
            }
            let slice = until.saturating_duration_since(now).min(Duration::from_millis(50));
            match self.listener.accept_timeout(slice) {
                Ok(conn) => match self.admit(conn) {
                    Ok(link) => links.push(link),
                    Err(why) => self.refuse(why),
                },
                Err(e) if e.is_timeout() && e.to_string().starts_with("no connection") => {}
                Err(e) => self.refuse(e.to_string()),
            }
        }
        (links, None)
    }
}

/// The address to listen on when none is given: loopback for local
/// backends, else the address this host's name resolves to.
fn default_ip(backend: &Backend) -> IpAddr {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if matches!(backend, Backend::Tcp | Backend::Local) {
        return loopback;
    }
    use std::net::ToSocketAddrs;
    (hello::host_name().as_str(), 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(|a| a.is_ipv4()).or_else(|| a.next()))
        .map_or(loopback, |a| a.ip())
}

impl Launcher for RemoteLauncher {
    type Link = RemoteLink;

    fn launch(&mut self, n: usize) -> (Vec<RemoteLink>, Option<Error>) {
        if n == 0 {
            return (Vec::new(), None);
        }
        let procs = match self.run_launcher(n) {
            Ok(p) => p,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let (links, failed) = self.accept(n, &procs);
        if failed.is_some() {
            // What this launch started goes now: its workers are told to
            // leave, and its processes then exit or are stopped.
            for l in &links {
                let _ = l.kill();
            }
            end(&procs);
        }
        self.started.retain(|s| s.status().is_none());
        (links, failed)
    }

    fn all_at_once(&self) -> bool {
        false
    }

    fn remote(&self) -> bool {
        true
    }
}

/// Ends `procs`, reaped: those whose workers have left exit by
/// themselves within a grace (a worker leaves at once when its connection
/// is shut down); the others get `SIGTERM`, then `SIGKILL`.
fn end(procs: &[Arc<Started>]) {
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

impl Drop for RemoteLauncher {
    /// Ends every process it started (see [`end`]); it is dropped after
    /// the pool's links, whose connections are closed by then.
    fn drop(&mut self) {
        end(&self.started);
    }
}

impl RemoteLink {
    /// Waits until `timeout` for something to read.
    pub(super) fn wait_readable(&self, timeout: Duration) {
        let _ = self.conn.poll(Some(timeout));
    }
}
