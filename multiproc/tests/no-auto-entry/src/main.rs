//! Checks the explicit entry point of a program built without `auto-entry`:
//! with `multiproc::init()` first in `main`, children work and never run the
//! rest of `main`; a child whose `init()` is never reached is reported as a
//! bootstrap error within the bootstrap timeout, never a hang.
use std::time::Duration;

use multiproc::{self as mp, ErrorKind};

fn child_pid() -> u32 {
    std::process::id()
}

fn main() {
    if std::env::var_os("NOAUTO_SPAWN_BEFORE_INIT").is_some() {
        // A spawned child running main without init() must not start a
        // child of its own (that one would run main too, without end).
        let mut p = mp::Process::new(child_pid);
        let refused = matches!(p.start(), Err(e) if e.kind() == ErrorKind::Bootstrap);
        std::process::exit(if refused { 42 } else { 43 });
    }
    if std::env::var_os("NOAUTO_STALL_BEFORE_INIT").is_some() {
        // Models a program that forgot `init()`: its main runs on forever.
        loop {
            std::thread::park();
        }
    }
    mp::init();
    // Code here never runs in a child: a child that got here would print
    // this line a second time.
    println!("main runs in pid {}", std::process::id());

    let mut p = mp::Process::new(child_pid);
    p.start().expect("start");
    let pid = p.join().expect("a child of a program calling init() works");
    assert_eq!(Some(pid), p.pid());
    println!("explicit entry: ok (child {pid})");

    // SAFETY: single-threaded here; nothing else reads the environment.
    unsafe { std::env::set_var("NOAUTO_STALL_BEFORE_INIT", "1") };
    let mut p = mp::ProcessBuilder::new().bootstrap_timeout(Duration::from_millis(500)).target(child_pid);
    p.start().expect("start");
    let e = p.join_timeout(Duration::from_secs(60)).expect_err("must not succeed");
    assert_eq!(e.kind(), ErrorKind::Bootstrap, "{e}");
    assert!(!p.is_alive());
    println!("missing entry: reported as {:?}: {e}", e.kind());

    // SAFETY: single-threaded here; nothing else reads the environment.
    unsafe {
        std::env::remove_var("NOAUTO_STALL_BEFORE_INIT");
        std::env::set_var("NOAUTO_SPAWN_BEFORE_INIT", "1");
    }
    let mut p = mp::Process::new(child_pid);
    p.start().expect("start");
    let e = p.join_timeout(Duration::from_secs(60)).expect_err("must not succeed");
    assert_eq!(e.exit_status(), Some(mp::ExitStatus::Exited(42)), "the runaway spawn was not refused: {e}");
    println!("spawn before the entry point: refused, no runaway chain");
}
