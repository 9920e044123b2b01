//! The remote worker role: a process of this executable started by a
//! launcher with the worker environment. It never runs `main`: the entry
//! point sends it here, it connects back to the pool, proves the key,
//! says who it is, and serves tasks until the pool closes its connection.

use std::{io::Write, net::SocketAddr, os::fd::AsFd, sync::Arc, time::Duration};

use super::hello::{self, Hello, VERSION, Welcome};
use crate::{
    connection::{Client, Connection},
    error::{Error, ErrorKind, Result},
    pool::{encode::Init, worker},
    sys,
};

/// Where the pool listens (`ip:port`).
pub(crate) const ADDR_VAR: &str = "MULTIPROC_WORKER_ADDR";
/// The pool's key, as 64 hexadecimal digits.
pub(crate) const KEY_VAR: &str = "MULTIPROC_WORKER_KEY";
/// A file (mode 0600) holding the key, instead of [`KEY_VAR`].
pub(crate) const KEY_FILE_VAR: &str = "MULTIPROC_WORKER_KEY_FILE";
/// The heartbeat timeout in milliseconds: the worker sends a heartbeat
/// three times per period, and gives up on a pool silent that long.
pub(crate) const HEARTBEAT_VAR: &str = "MULTIPROC_WORKER_HEARTBEAT_MS";
/// The worker's rank when the launcher does not number its tasks.
pub(crate) const RANK_VAR: &str = "MULTIPROC_WORKER_RANK";

/// The variables a worker consumes (removed from its environment, so that
/// its own children and pools do not see them).
const VARS: [&str; 6] = [
    ADDR_VAR,
    KEY_VAR,
    KEY_FILE_VAR,
    HEARTBEAT_VAR,
    RANK_VAR,
    super::backend::BACKEND_VAR,
];

/// `true` when this process was started as a remote pool worker.
pub(crate) fn is_remote_worker() -> bool {
    std::env::var_os(ADDR_VAR).is_some()
}

/// The worker role; never returns. `from_constructor`: the process still
/// has one thread, so the worker's variables can leave its environment.
pub(crate) fn enter(from_constructor: bool) -> ! {
    let vars: Vec<Option<String>> = VARS.iter().map(|v| std::env::var(v).ok()).collect();
    if from_constructor {
        for v in VARS {
            // SAFETY: a constructor runs before `main`, while the process
            // has a single thread; nothing reads the environment
            // concurrently.
            #[allow(unsafe_code)]
            unsafe {
                std::env::remove_var(v)
            };
        }
    }
    sys::ignore_sigpipe();
    let addr = vars[0].clone().unwrap_or_default();
    let code = match run(&vars) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc: pool worker (pid {}) for {addr}: {e}", sys::getpid());
            1
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::exit_now(code)
}

fn bad(what: String) -> Error {
    Error::new(ErrorKind::InvalidInput, what)
}

/// The key from the environment or the key file.
fn key(hex: Option<&str>, file: Option<&str>) -> Result<Vec<u8>> {
    let text = match (hex, file) {
        (Some(h), _) => h.to_owned(),
        (None, Some(path)) => {
            use std::os::unix::fs::MetadataExt;
            let meta =
                std::fs::metadata(path).map_err(|e| Error::io(format!("failed to read the key file {path}"), e))?;
            if meta.mode() & 0o077 != 0 {
                return Err(bad(format!(
                    "the key file {path} may be read by others (mode {:o}); it must be 0600",
                    meta.mode() & 0o777
                )));
            }
            std::fs::read_to_string(path).map_err(|e| Error::io(format!("failed to read the key file {path}"), e))?
        }
        (None, None) => return Err(bad(format!("neither {KEY_VAR} nor {KEY_FILE_VAR} is set"))),
    };
    parse_key(text.trim()).ok_or_else(|| bad("the pool's key is not 64 hexadecimal digits".into()))
}

pub(super) fn parse_key(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn run(vars: &[Option<String>]) -> Result<()> {
    let addr: SocketAddr = vars[0]
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|_| bad(format!("{ADDR_VAR} is not an ip:port address")))?;
    let key = key(vars[1].as_deref(), vars[2].as_deref())?;
    let heartbeat = vars[3]
        .as_deref()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(super::DEFAULT_HEARTBEAT, Duration::from_millis);
    let conn = Client::builder()
        .authkey(&key)
        .timeout(heartbeat.max(Duration::from_secs(10)))
        .connect(addr)?;
    // A cut network ends the worker's reads with an error (its pool is
    // gone), instead of leaving it waiting.
    let _ = sys::set_tcp_liveness(conn.as_fd(), heartbeat);
    let rank = [
        RANK_VAR,
        "SLURM_PROCID",
        "OMPI_COMM_WORLD_RANK",
        "PMI_RANK",
        "PMIX_RANK",
    ]
    .iter()
    .zip(std::iter::once(vars[4].clone()).chain(std::iter::repeat(None)))
    .find_map(|(name, given)| given.or_else(|| std::env::var(name).ok()))
    .and_then(|r| r.parse().ok());
    let me = Hello {
        version: VERSION,
        build: hello::identity(),
        exe: crate::process::executable::own_path(),
        host: hello::host_name(),
        pid: sys::getpid(),
        rank,
    };
    conn.send_bytes(&hello::encode(&me)?)
        .map_err(|e| Error::new(ErrorKind::Disconnected, format!("the pool closed the connection: {e}")))?;
    let answer = conn
        .recv_bytes_timeout(super::HELLO_TIMEOUT)
        .map_err(|e| Error::new(ErrorKind::Disconnected, format!("the pool did not answer: {e}")))?;
    let (init, maxtasks) = match hello::decode::<Welcome>(&answer, "welcome")? {
        Welcome::Refused(why) => return Err(Error::new(ErrorKind::Bootstrap, format!("refused by the pool: {why}"))),
        Welcome::Accepted { init, maxtasks } => (init, maxtasks),
    };
    let init = init.map(|(tramp, target, args)| Init {
        tramp,
        target,
        args,
        fds: Default::default(),
    });
    let conn = Arc::new(conn);
    beat(&conn, heartbeat);
    worker::serve(&conn, init, maxtasks.and_then(|m| usize::try_from(m).ok()));
    Ok(())
}

/// Sends a heartbeat (an empty message) three times per `period`, from a
/// thread of its own; ends the process as soon as the pool shuts its end
/// of the connection down or a heartbeat cannot be sent (the pool killed
/// or dropped this worker, or is gone), even while a task runs.
fn beat(conn: &Arc<Connection>, period: Duration) {
    let conn = Arc::clone(conn);
    let every = (period / 3).max(Duration::from_millis(20));
    let _ = std::thread::Builder::new()
        .name("multiproc-heartbeat".into())
        .spawn(move || {
            loop {
                match sys::peer_closed(conn.as_fd(), every) {
                    Ok(false) if conn.send_bytes(b"").is_ok() => {}
                    _ => break,
                }
            }
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            sys::exit_now(0)
        });
}
