//! Pool workers over TCP (the remote backends' machinery), tested with
//! local launchers: [`Backend::Tcp`](multiproc::Backend::Tcp) (N local
//! processes of this test binary that connect back) and
//! [`Backend::Command`](multiproc::Backend::Command) (a shell script as
//! the launcher, to make peers that misbehave). Remote workers are
//! exec'd copies of the executable, not children of a start method, so
//! these tests run once each (the start method does not apply).

mod failures;
mod fakehosts;
mod handshake;
mod local_only;
mod map;
mod mpi;
mod slurm;
mod teardown;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use multiproc::{Backend, Pool, PoolBuilder};

use crate::support::DEADLINE;

pub(crate) fn square(x: u64) -> u64 {
    x * x
}

pub(crate) fn pid_of(_: u32) -> u32 {
    std::process::id()
}

/// A pool builder over `n` local TCP workers, with test deadlines.
pub(crate) fn tcp(n: usize) -> PoolBuilder {
    Pool::builder()
        .processes(n)
        .backend(Backend::Tcp)
        .connect_timeout(DEADLINE)
}

/// A pool builder whose launcher is `sh -c script EXE args...` (so `$0`
/// is this test binary).
pub(crate) fn script(n: usize, script: &str, args: &[&str]) -> PoolBuilder {
    let mut a = vec!["-c".to_owned(), script.to_owned(), "{exe}".to_owned()];
    a.extend(args.iter().map(|s| (*s).to_owned()));
    Pool::builder()
        .processes(n)
        .backend(Backend::Command {
            program: "sh".into(),
            args: a,
        })
        .connect_timeout(DEADLINE)
}

/// `true` when the lab a test needs is there; else prints why the test
/// is skipped and returns `false`. With `MULTIPROC_REQUIRE_CLUSTER=1`
/// (CI sets it), a missing lab fails the test instead.
pub(crate) fn lab(what: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else { return true };
    if std::env::var_os("MULTIPROC_REQUIRE_CLUSTER").is_some_and(|v| v == "1") {
        panic!("{what}: {why} (MULTIPROC_REQUIRE_CLUSTER=1)");
    }
    eprintln!("skipped: {what}: {why}");
    false
}

/// `program` runs and exits 0.
pub(crate) fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A name unique to this test run.
pub(crate) fn unique(tag: &str) -> String {
    let mut b = [0u8; 4];
    getrandom(&mut b);
    format!("mp-{tag}-{}-{:08x}", std::process::id(), u32::from_le_bytes(b))
}

/// A fresh scratch directory, removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> Scratch {
        let mut b = [0u8; 8];
        getrandom(&mut b);
        let name = format!("mp-cluster-{tag}-{}-{}", std::process::id(), u64::from_le_bytes(b));
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn getrandom(b: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(b))
        .expect("urandom");
}

/// `true` once none of `pids` names a process (reaped and gone), within
/// the deadline.
pub(crate) fn all_gone(pids: &[u32]) -> bool {
    let until = std::time::Instant::now() + DEADLINE;
    while std::time::Instant::now() < until {
        if pids.iter().all(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
