//! [`RemoteLauncher`]: runs a backend's launcher with the worker
//! environment and admits the workers that connect back.
//!
//! A thread of its own accepts and admits connections (handshake, hello,
//! build check) as they come, whether or not the pool is being driven,
//! so a batch job that starts while the pool is idle joins at once; the
//! admitted links wait in a channel for [`Launcher::launch`] (which waits
//! for the workers it started) or [`Launcher::joined`] (workers that join
//! later: a batch backend's), and an eventfd wakes the pool's driver.

use std::{
    collections::VecDeque,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::fd::RawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    Options, RemoteLink, STDERR_TAIL, Started,
    backend::{self, Backend, MpiFlavour},
    hello::{self, Hello, Welcome},
    serve,
};
use crate::{
    connection::{Connection, Listener},
    error::{Error, ErrorKind, Result},
    pool::{
        encode::Init,
        scheduler::{Launcher, WorkerLink},
    },
    sys::{self, ChildHandle},
};

/// What admitting a worker needs, shared with the accept thread.
struct Admission {
    listener: Listener,
    init: Option<(i64, i64, Vec<u8>)>,
    maxtasks: Option<u64>,
    heartbeat: Duration,
    exe: PathBuf,
    /// Workers admitted so far (their names count them).
    admitted: AtomicUsize,
    /// The processes started, to match a local worker to its process.
    started: Mutex<Vec<Arc<Started>>>,
}

/// Starts remote workers through a backend and admits them.
pub(crate) struct RemoteLauncher {
    opts: Options,
    adm: Arc<Admission>,
    key: [u8; 32],
    /// Admitted links, or why a connection was refused.
    rx: mpsc::Receiver<std::result::Result<RemoteLink, String>>,
    /// Signalled with every admission or refusal.
    wake: Arc<sys::Fd>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Refusals, for a launch's error.
    refused: Vec<String>,
    /// Batch jobs submitted (to cancel), and their output files.
    jobs: Vec<String>,
    /// The key file and job outputs of a batch backend (removed on drop).
    scratch: Option<PathBuf>,
    /// Workers asked of a batch backend that have not joined yet.
    awaited: usize,
}

impl RemoteLauncher {
    /// Binds the listener and starts the accept thread. The initializer's
    /// arguments must carry no descriptor.
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
        let adm = Arc::new(Admission {
            listener,
            init: init.as_ref().map(|i| (i.tramp, i.target, i.args.clone())),
            maxtasks: maxtasks.map(|m| m as u64),
            heartbeat: opts.heartbeat,
            exe,
            admitted: AtomicUsize::new(0),
            started: Mutex::new(Vec::new()),
        });
        let wake = Arc::new(sys::eventfd().map_err(|e| Error::io("failed to create the pool's join eventfd", e))?);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (adm, wake, stop) = (Arc::clone(&adm), Arc::clone(&wake), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("multiproc-pool-accept".into())
                .spawn(move || accept_loop(&adm, &tx, &wake, &stop))
                .map_err(|e| Error::io("failed to start the pool's accept thread", e))?
        };
        Ok(RemoteLauncher {
            opts,
            adm,
            key,
            rx,
            wake,
            stop,
            thread: Some(thread),
            refused: Vec::new(),
            jobs: Vec::new(),
            scratch: None,
            awaited: 0,
        })
    }

    fn key_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The worker environment (the key itself, unless `key_file`).
    fn environment(&self, cmd: &mut Command, key_file: Option<&Path>) {
        cmd.env(serve::ADDR_VAR, self.adm.listener.address().to_string())
            .env(serve::HEARTBEAT_VAR, self.opts.heartbeat.as_millis().to_string())
            .env_remove(backend::BACKEND_VAR);
        match key_file {
            Some(f) => cmd.env(serve::KEY_FILE_VAR, f).env_remove(serve::KEY_VAR),
            None => cmd.env(serve::KEY_VAR, self.key_hex()).env_remove(serve::KEY_FILE_VAR),
        };
    }

    /// Starts `cmd`, watched; with `capture`, its standard error is copied
    /// to ours and its tail kept.
    fn start(&mut self, mut cmd: Command, what: String, capture: bool) -> Result<Arc<Started>> {
        self.environment(&mut cmd, None);
        cmd.stdin(Stdio::null());
        if capture {
            cmd.stderr(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("failed to start the pool's {what}"), e))?;
        let handle = match ChildHandle::open(child.id()) {
            Ok(h) => h,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::io(format!("failed to watch the pool's {what}"), e));
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
        lock(&self.adm.started).push(Arc::clone(&s));
        Ok(s)
    }

    /// Runs the backend's launcher for `n` workers: the processes to watch
    /// while they connect.
    fn run_launcher(&mut self, n: usize) -> Result<Vec<Arc<Started>>> {
        let exe = self.adm.exe.clone();
        match self.opts.backend.clone() {
            Backend::Local => Err(Error::new(ErrorKind::InvalidState, "the local backend has no launcher")),
            Backend::Tcp => (0..n)
                .map(|k| {
                    let mut cmd = Command::new(&exe);
                    cmd.env(serve::RANK_VAR, k.to_string());
                    self.start(cmd, format!("worker process {}", exe.display()), false)
                })
                .collect(),
            Backend::SlurmStep { args } => {
                let mut cmd = Command::new("srun");
                cmd.arg(format!("--ntasks={n}"))
                    .arg("--kill-on-bad-exit=0")
                    .args(&args)
                    .arg(&exe);
                self.start(cmd, format!("launcher srun --ntasks={n}"), true)
                    .map(|s| vec![s])
            }
            Backend::SlurmBatch { args } => {
                self.submit_batch(n, &args)?;
                Ok(Vec::new())
            }
            Backend::Mpi {
                flavour,
                hostfile,
                args,
            } => {
                let vars = [serve::ADDR_VAR, serve::KEY_VAR, serve::HEARTBEAT_VAR];
                let (program, mut cmd) = match flavour {
                    MpiFlavour::OpenMpi => {
                        let mut c = Command::new("mpirun");
                        c.arg("-np").arg(n.to_string());
                        if let Some(h) = &hostfile {
                            c.arg("--hostfile").arg(h);
                        }
                        for v in vars {
                            c.arg("-x").arg(v);
                        }
                        ("mpirun", c)
                    }
                    MpiFlavour::Mpich => {
                        let mut c = Command::new("mpiexec.hydra");
                        c.arg("-n").arg(n.to_string());
                        if let Some(h) = &hostfile {
                            c.arg("-f").arg(h);
                        }
                        c.arg("-genvlist").arg(vars.join(","));
                        ("mpiexec.hydra", c)
                    }
                };
                cmd.args(&args).arg(&exe);
                self.start(cmd, format!("launcher {program} -n {n}"), true)
                    .map(|s| vec![s])
            }
            Backend::Command { program, args } => {
                let shown = exe.display().to_string();
                let args: Vec<String> = args
                    .iter()
                    .map(|a| a.replace("{n}", &n.to_string()).replace("{exe}", &shown))
                    .collect();
                let mut cmd = Command::new(&program);
                cmd.args(&args).env("MULTIPROC_WORKERS", n.to_string());
                self.start(cmd, format!("launcher {}", program.display()), true)
                    .map(|s| vec![s])
            }
        }
    }

    /// Queues `n` one-worker batch jobs (one array).
    fn submit_batch(&mut self, n: usize, args: &[String]) -> Result<()> {
        let dir = match &self.scratch {
            Some(d) => d.clone(),
            None => {
                let d = batch_dir()?;
                let key = d.join("key");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode_0600()
                    .open(&key)
                    .map_err(|e| Error::io(format!("failed to write the pool's key file {}", key.display()), e))?;
                f.write_all(self.key_hex().as_bytes())
                    .map_err(|e| Error::io("failed to write the pool's key file", e))?;
                self.scratch = Some(d.clone());
                d
            }
        };
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--array=0-{}", n - 1))
            .arg("--ntasks=1")
            .arg("--job-name=multiproc-pool")
            .arg(format!("--output={}/job-%A_%a.out", dir.display()))
            .args(args)
            .arg("--wrap")
            .arg(format!("exec {}", shell_quote(&self.adm.exe.display().to_string())));
        self.environment(&mut cmd, Some(&dir.join("key")));
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("failed to run sbatch", e))?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Bootstrap,
                format!(
                    "sbatch failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let id = String::from_utf8_lossy(&out.stdout);
        let id = id.trim().split(';').next().unwrap_or_default().to_owned();
        if id.is_empty() {
            return Err(Error::new(ErrorKind::Bootstrap, "sbatch printed no job id"));
        }
        self.jobs.push(id);
        self.awaited += n;
        Ok(())
    }

    /// `true` while some batch job of this pool is queued or running.
    fn jobs_alive(&self) -> bool {
        if self.jobs.is_empty() {
            return false;
        }
        match Command::new("squeue")
            .args(["-h", "-o", "%i", "-j", &self.jobs.join(",")])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => !out.stdout.trim_ascii().is_empty(),
            // squeue refuses ids it no longer knows: they are over.
            Ok(_) => false,
            Err(_) => true,
        }
    }

    /// The first batch job output, for an error.
    fn job_output(&self) -> String {
        let Some(dir) = &self.scratch else { return String::new() };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return String::new();
        };
        let mut text = String::new();
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("job-") {
                if let Ok(t) = std::fs::read_to_string(e.path()) {
                    text = t
                        .chars()
                        .rev()
                        .take(STDERR_TAIL)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    if !text.trim().is_empty() {
                        break;
                    }
                }
            }
        }
        text.trim().to_owned()
    }

    fn cancel_jobs(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let _ = Command::new("scancel")
            .args(&self.jobs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.jobs.clear();
        self.awaited = 0;
    }

    /// Logs a refused connection.
    fn refuse(&mut self, why: String) {
        eprintln!(
            "multiproc: pool listener at {}: refused a worker: {why}",
            self.adm.listener.address()
        );
        if self.refused.len() < 16 {
            self.refused.push(why);
        }
    }

    /// The error of a launch that did not bring its workers.
    fn launch_error(&self, kind: ErrorKind, what: String) -> Error {
        let mut msg = what;
        if !self.refused.is_empty() {
            msg.push_str(&format!("; refused: {}", self.refused.join("; ")));
        }
        Error::new(kind, msg)
    }

    /// Waits for `n` workers of the launch `procs` (a batch launch: for
    /// the first one).
    fn accept(&mut self, n: usize, procs: &[Arc<Started>]) -> (Vec<RemoteLink>, Option<Error>) {
        let until = sys::deadline_after(self.opts.connect_timeout);
        let batch = matches!(self.opts.backend, Backend::SlurmBatch { .. });
        let want = if batch { 1 } else { n };
        let mut links: Vec<RemoteLink> = Vec::with_capacity(n);
        let mut exited_at: Option<Instant> = None;
        let mut next_check = Instant::now();
        while links.len() < want {
            let now = Instant::now();
            if now >= until {
                let e = self.launch_error(
                    ErrorKind::Timeout,
                    format!(
                        "only {} of {want} pool workers connected to {} within {:?}",
                        links.len(),
                        self.adm.listener.address(),
                        self.opts.connect_timeout
                    ),
                );
                return (links, Some(e));
            }
            // A launcher that exited: a last look at what it started.
            if exited_at.is_none() {
                let tcp = matches!(self.opts.backend, Backend::Tcp);
                let gone = procs
                    .iter()
                    .any(|p| p.status().is_some() && !(tcp && links.iter().any(|l| l.pid == p.pid())));
                let jobs_over = batch && now >= next_check && {
                    next_check = now + Duration::from_millis(500);
                    !self.jobs_alive()
                };
                if gone || jobs_over {
                    exited_at = Some(now);
                }
            }
            if exited_at.is_some_and(|at| now >= at + Duration::from_millis(200)) {
                let e = if batch {
                    let out = self.job_output();
                    let out = if out.is_empty() {
                        String::new()
                    } else {
                        format!("; a job's output: {out}")
                    };
                    self.launch_error(
                        ErrorKind::Bootstrap,
                        format!("the pool's batch jobs ended before any worker joined{out}"),
                    )
                } else {
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
                    self.launch_error(
                        ErrorKind::Bootstrap,
                        format!(
                            "the pool's {} (pid {}) exited ({status}) before {} of {n} workers connected{tail}",
                            p.what,
                            p.pid(),
                            n - links.len()
                        ),
                    )
                };
                return (links, Some(e));
            }
            let slice = until.saturating_duration_since(now).min(Duration::from_millis(50));
            match self.rx.recv_timeout(slice) {
                Ok(Ok(link)) => {
                    self.awaited = self.awaited.saturating_sub(1);
                    links.push(link);
                }
                Ok(Err(why)) => self.refuse(why),
                Err(_) => {}
            }
        }
        sys::eventfd_drain(&self.wake);
        (links, None)
    }

    /// Ends what the launcher started: batch jobs cancelled, processes
    /// ended (see [`super::end`]).
    fn end_all(&mut self) {
        self.cancel_jobs();
        let started = std::mem::take(&mut *lock(&self.adm.started));
        super::end(&started);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The accept thread: admits connections until `stop`.
fn accept_loop(
    adm: &Admission,
    tx: &mpsc::Sender<std::result::Result<RemoteLink, String>>,
    wake: &sys::Fd,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let r = match adm.listener.accept_timeout(Duration::from_millis(100)) {
            Ok(conn) => admit(adm, conn),
            Err(e) if e.is_timeout() && e.to_string().starts_with("no connection") => continue,
            Err(e) => Err(e.to_string()),
        };
        if tx.send(r).is_err() {
            return;
        }
        sys::eventfd_signal(wake);
    }
}

/// Takes an authenticated connection's hello and answers it.
fn admit(adm: &Admission, conn: Connection) -> std::result::Result<RemoteLink, String> {
    let peer = adm
        .listener
        .last_accepted()
        .map_or_else(|| "?".to_owned(), |a| a.to_string());
    let bytes = conn
        .recv_bytes_timeout(super::HELLO_TIMEOUT)
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
            adm.exe.display()
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
        init: adm.init.clone(),
        maxtasks: adm.maxtasks,
    };
    let b = hello::encode(&welcome).map_err(|e| e.to_string())?;
    conn.send_bytes(&b).map_err(|e| format!("{who}: {e}"))?;
    let local = (hello.host == hello::host_name())
        .then(|| lock(&adm.started).iter().find(|s| s.pid() == hello.pid).cloned())
        .flatten();
    let k = adm.admitted.fetch_add(1, Ordering::Relaxed) + 1;
    Ok(RemoteLink {
        conn,
        name: format!("PoolWorker-{k} on {}", hello.host),
        pid: hello.pid,
        local,
        heartbeat: adm.heartbeat,
        last_heard: Instant::now(),
        held: VecDeque::new(),
        ended: None,
        killed: AtomicBool::new(false),
    })
}

/// A fresh directory of mode 0700 for a batch pool's key file and job
/// outputs: under `MULTIPROC_KEY_DIR`, else `$HOME/.multiproc` (a
/// filesystem the nodes share, on a cluster).
fn batch_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("MULTIPROC_KEY_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".multiproc")))
        .ok_or_else(|| Error::new(ErrorKind::InvalidState, "neither MULTIPROC_KEY_DIR nor HOME is set"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)
        .map_err(|e| Error::io(format!("failed to create {}", base.display()), e))?;
    let mut r = [0u8; 8];
    sys::random_bytes(&mut r).map_err(|e| Error::io("failed to name the pool's key directory", e))?;
    let dir = base.join(format!("pool-{}-{:016x}", sys::getpid(), u64::from_le_bytes(r)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(format!("failed to create {}", dir.display()), e))?;
    Ok(dir)
}

/// `s` quoted for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
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
        .and_then(|mut a| a.find(SocketAddr::is_ipv4).or_else(|| a.next()))
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
        if matches!(self.opts.backend, Backend::SlurmBatch { .. }) && self.adm.admitted.load(Ordering::Relaxed) > 0 {
            // A replacement job joins when it starts: the pool does not
            // wait for it (its scheduler takes it from `joined`).
            return (Vec::new(), None);
        }
        let (links, failed) = self.accept(n, &procs);
        if failed.is_some() {
            // What this launch started goes now: its workers are told to
            // leave, and its processes then exit or are stopped.
            for l in &links {
                let _ = l.kill();
            }
            self.cancel_jobs();
            super::end(&procs);
        }
        lock(&self.adm.started).retain(|s| s.status().is_none());
        (links, failed)
    }

    fn all_at_once(&self) -> bool {
        false
    }

    fn remote(&self) -> bool {
        true
    }

    fn joined(&mut self) -> Vec<RemoteLink> {
        sys::eventfd_drain(&self.wake);
        let mut out = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            match r {
                Ok(link) => {
                    self.awaited = self.awaited.saturating_sub(1);
                    out.push(link);
                }
                Err(why) => self.refuse(why),
            }
        }
        out
    }

    fn join_fd(&self) -> Option<RawFd> {
        Some(self.wake.raw())
    }

    fn expecting(&self) -> bool {
        self.awaited > 0
    }

    fn stop(&mut self) {
        self.end_all();
    }
}

impl Drop for RemoteLauncher {
    /// Ends every process it started (see [`super::end`]) and cancels its
    /// batch jobs; it is dropped after the pool's links, whose
    /// connections are closed by then.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.end_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(d) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
