//! [`PoolBuilder`](crate::PoolBuilder): a pool's configuration, and starting its workers.

use std::{
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use serde::{Serialize, de::DeserializeOwned};

use super::Pool;
use crate::pool::{
    driver::{Shared, State},
    encode::{Init, encode_with_fds},
    link::ProcessLauncher,
    links::{self, AnyLauncher},
    remote::backend::Backend,
    scheduler::{Rules, Scheduler},
};
use crate::{
    codec::CodecError,
    error::{Error, ErrorKind, Result},
    start::StartMethod,
    sys, target,
};

/// Builds a [`Pool`](crate::Pool); see [`Pool::builder`](crate::Pool::builder).
#[derive(Debug, Default)]
pub struct PoolBuilder {
    pub(in crate::pool) processes: Option<usize>,
    pub(in crate::pool) init: Option<Result<Init>>,
    pub(in crate::pool) maxtasks: Option<usize>,
    pub(in crate::pool) method: Option<StartMethod>,
    pub(in crate::pool) task_timeout: Option<Duration>,
    pub(in crate::pool) progress: bool,
    /// Start the workers on demand (an executor's pool).
    pub(in crate::pool) on_demand: bool,
    /// Where the workers' standard output and error go.
    pub(in crate::pool) output: crate::ChildOutput,
    /// Where the workers run; `None`: from the environment.
    pub(in crate::pool) backend: Option<Backend>,
    pub(in crate::pool) heartbeat: Option<Duration>,
    pub(in crate::pool) attempts: Option<u32>,
    pub(in crate::pool) listen: Option<std::net::SocketAddr>,
    pub(in crate::pool) connect_timeout: Option<Duration>,
    pub(in crate::pool) handshake_timeout: Option<Duration>,
}

impl PoolBuilder {
    /// Where the workers' standard output and error go (default: inherited);
    /// see [`ProcessBuilder::output`](crate::ProcessBuilder::output).
    /// With [`ChildOutput::Prefix`](crate::ChildOutput::Prefix) each line
    /// is prefixed with its worker's name (`[PoolWorker-2] `).
    pub fn output(mut self, output: crate::ChildOutput) -> PoolBuilder {
        self.output = output;
        self
    }

    /// The number of workers (default: [`process_cpu_count`](crate::process_cpu_count)).
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// A function each worker runs once, before any task, on `args`
    /// (Python's `initializer` and `initargs`). The arguments may carry
    /// library objects (a [`Lock`](crate::Lock), a [`Value`](crate::Value),
    /// a [`Queue`](crate::Queue), a [`Connection`](crate::Connection)...), under every start
    /// method; the pool keeps them, encoded with duplicates of their
    /// descriptors, for the workers that replace others.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use std::sync::OnceLock;
    /// use multiproc::{Lock, Pool, Value};
    ///
    /// static SHARED: OnceLock<(Lock, Value<u64>)> = OnceLock::new();
    ///
    /// fn init(shared: (Lock, Value<u64>)) {
    ///     let _ = SHARED.set(shared);
    /// }
    ///
    /// fn bump(_: u32) {
    ///     let (lock, total) = SHARED.get().expect("initialized");
    ///     let _held = lock.acquire().unwrap();
    ///     total.store(total.load().unwrap() + 1).unwrap();
    /// }
    ///
    /// let (lock, total) = (Lock::new()?, Value::new(0u64)?);
    /// let pool = Pool::builder()
    ///     .processes(2)
    ///     .initializer(init, (lock, total.clone()))
    ///     .build()?;
    /// pool.map(bump, 0..100)?;
    /// assert_eq!(total.load()?, 100);
    /// # Ok(()) }
    /// ```
    pub fn initializer<A: Serialize + DeserializeOwned + 'static>(mut self, f: fn(A), args: A) -> PoolBuilder {
        self.init = Some(match target::offsets_of(f) {
            None => Err(Error::new(
                ErrorKind::Unsupported,
                "the initializer lies outside the main executable",
            )),
            Some((tramp, target)) => {
                let mut a = Vec::new();
                encode_with_fds(&args, &mut a)
                    .map(|fds| Init {
                        tramp,
                        target,
                        args: a,
                        fds,
                    })
                    .map_err(|CodecError(e)| {
                        Error::new(
                            ErrorKind::Serialize,
                            format!("failed to serialize the initializer's arguments: {e}"),
                        )
                    })
            }
        });
        self
    }

    /// Replace a worker after it has run `n` chunks (Python's
    /// `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: usize) -> PoolBuilder {
        self.maxtasks = Some(n);
        self
    }

    /// The start method of the workers (default: the process-wide default).
    pub fn start_method(mut self, method: StartMethod) -> PoolBuilder {
        self.method = Some(method);
        self
    }

    /// Kill and replace a worker whose task runs longer than `timeout`; the
    /// task fails with [`ErrorKind::TaskTimeout`](crate::ErrorKind::TaskTimeout). For a chunk of `n` tasks the
    /// limit is `n × timeout`.
    pub fn task_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.task_timeout = Some(timeout);
        self
    }

    /// Show a progress bar on standard error for every `map`, `imap`,
    /// `imap_unordered`, `starmap` (and [`Executor::map`](crate::Executor::map))
    /// of this pool, unless a call says otherwise. For one call, prefer
    /// [`Tasks::progress`](crate::Tasks::progress). Nothing is drawn when
    /// standard error is not a terminal; [`MapResult::progress`](crate::MapResult::progress)
    /// and [`Imap::progress`](crate::Imap::progress) read it. Needs the
    /// `progress` feature.
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(mut self, on: bool) -> PoolBuilder {
        self.progress = on;
        self
    }

    /// Where the workers run (default: [`Backend::from_env`], which is
    /// [`Backend::Local`] unless `MULTIPROC_BACKEND` says otherwise).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use multiproc::{Backend, Pool};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// // Two local processes that connect back over TCP, as workers on
    /// // other hosts do.
    /// let pool = Pool::builder().processes(2).backend(Backend::Tcp).build()?;
    /// assert_eq!(pool.map(square, 0..4u64)?, [0, 1, 4, 9]);
    /// # Ok(()) }
    /// ```
    pub fn backend(mut self, backend: Backend) -> PoolBuilder {
        self.backend = Some(backend);
        self
    }

    /// For a remote backend: a worker not heard from for `timeout` (it
    /// sends a heartbeat three times per period, even while a task runs)
    /// is lost: its connection is shut down and its task retried elsewhere
    /// (see [`attempts`](Self::attempts)). Default 5 s.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.heartbeat = Some(timeout);
        self
    }

    /// For a remote backend: how many times in all a task runs when its
    /// worker is lost under it (killed, its node lost, its heartbeat
    /// missed) before it fails with an error naming the worker's host and
    /// the cause. Default 3. (A task that panics or times out is never
    /// retried; local pools run a task once.)
    pub fn attempts(mut self, n: u32) -> PoolBuilder {
        self.attempts = Some(n);
        self
    }

    /// For a remote backend: the address the pool listens on for its
    /// workers (port 0 picks a free one). Default: `MULTIPROC_LISTEN`,
    /// else loopback for [`Backend::Tcp`] and the address this host's name
    /// resolves to for the others.
    pub fn listen_address(mut self, address: std::net::SocketAddr) -> PoolBuilder {
        self.listen = Some(address);
        self
    }

    /// For a remote backend: how long starting workers may take until all
    /// are connected (default 60 s; a launcher that exits before fails
    /// `build` at once).
    pub fn connect_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.connect_timeout = Some(timeout);
        self
    }

    /// For a remote backend: how long a connection may take to prove the
    /// pool's key (default 10 s). A connection that stalls holds only its
    /// own handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// Starts the workers and waits until each has run its initializer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for zero processes or a zero
    /// `maxtasksperchild`; [`ErrorKind::Serialize`](crate::ErrorKind::Serialize) or
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) for an initializer that cannot be sent;
    /// the initializer's error if it fails in a worker
    /// ([`ErrorKind::ChildPanicked`](crate::ErrorKind::ChildPanicked) with its panic,
    /// [`ErrorKind::Deserialize`](crate::ErrorKind::Deserialize) for its arguments), or
    /// [`ErrorKind::Bootstrap`](crate::ErrorKind::Bootstrap) for a worker that ended before it reported,
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) for one that took over a minute; the start
    /// errors of [`Process::start`](crate::Process::start); without a process count, the error of
    /// [`process_cpu_count`](crate::process_cpu_count).
    pub fn build(self) -> Result<Pool> {
        let size = match self.processes {
            Some(n) => n,
            None => crate::process_cpu_count()?,
        };
        if size == 0 || self.maxtasks == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a pool needs at least one process, and maxtasksperchild at least one task",
            ));
        }
        let init = match self.init {
            None => None,
            Some(Ok(i)) => Some(i),
            Some(Err(e)) => return Err(e),
        };
        let backend = match self.backend {
            Some(b) => b,
            None => Backend::from_env()?,
        };
        let remote = backend.is_remote();
        // Remote workers start together, through their launcher.
        let on_demand = self.on_demand && !remote;
        let rules = Rules {
            maxtasks: self.maxtasks,
            task_timeout: self.task_timeout,
            on_demand,
            has_init: init.is_some(),
            attempts: if remote { self.attempts.unwrap_or(3) } else { 1 },
        };
        let (wake, notify) = State::wake_fd()?;
        let launcher = if remote {
            #[cfg(not(unix))]
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the {backend:?} pool backend is not available on this platform yet (remote workers need Unix)"
                ),
            ));
            #[cfg(unix)]
            {
                let listen = match self.listen {
                    Some(a) => Some(a),
                    None => super::super::remote::backend::listen_from_env()?,
                };
                AnyLauncher::Remote(Box::new(super::super::remote::RemoteLauncher::new(
                    super::super::remote::Options {
                        backend,
                        heartbeat: self.heartbeat.unwrap_or(super::super::remote::DEFAULT_HEARTBEAT),
                        connect_timeout: self.connect_timeout.unwrap_or(Duration::from_secs(60)),
                        listen,
                        handshake_timeout: self.handshake_timeout.unwrap_or(Duration::from_secs(10)),
                    },
                    init,
                    self.maxtasks,
                )?))
            }
        } else {
            let mut launcher = ProcessLauncher::new(init, self.maxtasks, self.method);
            launcher.output = self.output;
            AnyLauncher::Local(launcher)
        };
        let mut sched = Scheduler::new(launcher, size, rules, notify);
        // An executor's workers start on demand, with its first tasks.
        let (starting, failed) = sched.launch(if on_demand { 0 } else { size });
        if let Some(e) = failed {
            sched.workers = starting;
            let _ = sched.kill_all();
            return Err(e);
        }
        // Workers with an initializer report it before the pool is
        // returned (its failure is `build`'s error); the others are given
        // work at once and report in the first round.
        let mut first_err = None;
        for mut w in starting {
            match (first_err.is_none() && !w.eager).then(|| links::await_ready(&mut w)) {
                Some(Ok(())) => sched.workers.push(w),
                Some(Err(e)) => {
                    first_err = Some(e);
                    sched.workers.push(w);
                }
                None => sched.workers.push(w),
            }
        }
        if let Some(e) = first_err {
            let _ = sched.kill_all();
            return Err(e);
        }
        Ok(Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new(sched, wake, self.progress)),
                callback_done: Condvar::new(),
                owner: sys::getpid(),
                size,
            }),
        })
    }
}
