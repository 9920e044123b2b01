//! Python's `set_executable`: children run from another copy of this
//! build, other programs are refused at start; under every start method.

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use multiproc::{self as mp, ErrorKind, StartMethod};

use crate::support::DEADLINE;

/// A directory of its own under the temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("multiproc-{tag}-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("create the temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The child's own executable and a value computed from its argument.
fn whoami(x: u32) -> (PathBuf, u32) {
    (
        std::fs::read_link("/proc/self/exe").expect("read /proc/self/exe"),
        2 * x,
    )
}

fn start_err(m: StartMethod) -> mp::Error {
    let mut p = mp::ProcessBuilder::new().start_method(m).target_with(whoami, 1);
    p.start().expect_err("the start is refused")
}

/// The scenario, as the main program of its own process (the setting is
/// process-wide): run a child from the copy, then try other programs.
fn executable_scenario((m, dir): (StartMethod, PathBuf)) {
    let own = std::fs::read_link("/proc/self/exe").unwrap();
    let copy = dir.join("copy-of-the-test-binary");
    std::fs::copy(&own, &copy).expect("copy the test binary");
    mp::set_executable(&copy);
    assert_eq!(mp::get_executable().as_deref(), Some(copy.as_path()));
    let mut p = mp::ProcessBuilder::new().start_method(m).target_with(whoami, 21);
    p.start().expect("start a child from the copy");
    let (exe, v) = p.join_timeout(DEADLINE).expect("the child's result");
    assert_eq!(v, 42);
    if m == StartMethod::Fork {
        // fork runs no program: the child is this process's copy.
        assert_eq!(exe, own);
    } else {
        assert_eq!(exe, copy);
    }

    // Another program: refused at start, before anything runs.
    mp::set_executable("/bin/true");
    if m == StartMethod::Fork {
        let mut p = mp::ProcessBuilder::new().start_method(m).target_with(whoami, 1);
        p.start().expect("fork ignores the setting");
        assert_eq!(p.join_timeout(DEADLINE).unwrap().0, own);
    } else {
        let e = start_err(m);
        assert_eq!(e.kind(), ErrorKind::Bootstrap, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("/bin/true") && msg.contains(&*own.to_string_lossy()),
            "{msg}"
        );
        assert!(msg.contains("not the same build"), "{msg}");

        // Missing, and not executable: clear errors naming the path.
        let missing = dir.join("missing");
        mp::set_executable(&missing);
        let e = start_err(m);
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
        mp::set_executable(&copy);
        let e = start_err(m);
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(e.to_string().contains("not an executable file"), "{e}");
    }
    assert!(mp::active_children().is_empty(), "nothing is left running");
    mp::reset_executable();
    assert_eq!(mp::get_executable(), None);
}

/// Python's `set_executable`: a copy of this build (another inode) runs
/// spawned and fork-server children; another program, a missing or
/// non-executable path is refused at start with nothing left running;
/// under fork the setting does not apply. The copy is removed afterwards.
fn set_executable_runs_a_copy_of_this_build(m: StartMethod) {
    let dir = TempDir::new("exe");
    let mut p = mp::ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .name("executable-scenario")
        .target_with(executable_scenario, (m, dir.0.clone()));
    p.start().expect("start the scenario");
    if let Err(e) = p.join_timeout(DEADLINE) {
        panic!(
            "scenario under {m} failed: {}",
            e.panic().map_or_else(|| e.to_string(), |p| p.to_string())
        );
    }
    let path = dir.0.clone();
    drop(dir);
    assert!(!path.exists(), "the copy is removed");
}

per_method!(set_executable_runs_a_copy_of_this_build);
