//! A spawned child that dies or stalls before the library's entry point is
//! an error at join, within the bootstrap timeout: never a hang.

use std::time::Duration;

use multiproc::{self as mp, ErrorKind, ExitStatus, ProcessBuilder};

use crate::support::DEADLINE;

/// Runs before the library's entry point (which has the lowest priority) in
/// every process of this test binary. When a test asks for it through
/// `MULTIPROC_TEST_BOOT`, a spawned child stalls or dies here, as a child
/// would whose entry point is missing or whose start-up crashes.
#[ctor::ctor(unsafe)]
#[allow(clippy::disallowed_methods)] // dies the way a broken start-up would
fn sabotage_before_entry() {
    if std::env::var_os("__MULTIPROC_CHILD").is_none() {
        return;
    }
    match std::env::var("MULTIPROC_TEST_BOOT").as_deref() {
        Ok("stall") => loop {
            std::thread::park();
        },
        // SAFETY: _exit ends the process at once.
        Ok("die") => unsafe { libc::_exit(3) },
        _ => {}
    }
}

fn noop() {}

fn sabotaged_start(mode: String) -> (ErrorKind, Option<ExitStatus>, String, bool) {
    // SAFETY: this runs as the target of a fresh, single-threaded process;
    // no other thread reads the environment.
    unsafe { std::env::set_var("MULTIPROC_TEST_BOOT", &mode) };
    let mut p = ProcessBuilder::new()
        .bootstrap_timeout(Duration::from_millis(300))
        .target(noop);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    (e.kind(), e.exit_status(), e.to_string(), p.is_alive())
}

fn run(mode: &str) -> (ErrorKind, Option<ExitStatus>, String, bool) {
    let mut scenario = mp::Process::with_args(sabotaged_start, mode.to_owned());
    scenario.start().unwrap();
    scenario.join_timeout(DEADLINE).unwrap()
}

#[test]
fn a_child_that_never_reaches_the_entry_point_is_killed_and_reported() {
    let (kind, status, message, alive) = run("stall");
    assert_eq!(kind, ErrorKind::Bootstrap, "{message}");
    assert!(message.contains("within 300ms"), "{message}");
    assert_eq!(status, Some(ExitStatus::Signaled(crate::support::SIGKILL)), "{message}");
    assert!(message.contains("entry point"), "{message}");
    assert!(message.contains("init()"), "the message names the remedy: {message}");
    assert!(!alive);
}

#[test]
fn a_child_that_dies_during_bootstrap_is_reported_with_its_status() {
    let (kind, status, message, alive) = run("die");
    assert_eq!(kind, ErrorKind::Bootstrap, "{message}");
    assert_eq!(status, Some(ExitStatus::Exited(3)), "{message}");
    assert!(!alive);
}

#[cfg(unix)]
fn take_bytes(v: Vec<u8>) -> usize {
    v.len()
}

#[cfg(unix)]
fn stalled_child_with_large_arguments(_: ()) -> (ErrorKind, Option<ExitStatus>, String, Option<u32>) {
    // SAFETY: this runs as the target of a fresh, single-threaded process;
    // no other thread reads the environment.
    unsafe { std::env::set_var("MULTIPROC_TEST_BOOT", "stall") };
    let mut p = ProcessBuilder::new()
        .bootstrap_timeout(Duration::from_millis(300))
        .target_with(take_bytes, vec![7u8; 8 << 20]);
    // The arguments stream into the child as it reads them; a child that
    // never reads fails the start itself, within the bootstrap timeout.
    let e = p.start().unwrap_err();
    (e.kind(), e.exit_status(), e.to_string(), p.pid())
}

#[test]
#[cfg(unix)] // Windows: not done yet, see `windows/mod.rs`.
fn a_stalled_child_cannot_block_the_start_that_streams_its_arguments() {
    let mut scenario = mp::Process::with_args(stalled_child_with_large_arguments, ());
    scenario.start().unwrap();
    let (kind, status, message, pid) = scenario.join_timeout(DEADLINE).unwrap();
    assert_eq!(kind, ErrorKind::Bootstrap, "{message}");
    assert_eq!(status, Some(ExitStatus::Signaled(crate::support::SIGKILL)), "{message}");
    assert_eq!(pid, None, "the process may be started again");
}
