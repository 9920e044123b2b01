//! Panics, exit codes, signals and values that cannot cross: each one a
//! clear error, never a hang.

use std::time::Duration;

use multiproc::{ErrorKind, ExitStatus, Process, ProcessBuilder, StartMethod};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::support::{DEADLINE, Rendezvous, block_forever, notify, ready_then_wait};

fn builder(m: StartMethod) -> ProcessBuilder {
    ProcessBuilder::new().start_method(m)
}

const PANIC_LINE: u32 = line!() + 3;
fn panicking(x: u32) -> u32 {
    if x > 0 {
        panic!("boom {x}");
    }
    x
}

fn panic_is_carried_back(m: StartMethod) {
    let mut p = builder(m).capture_backtrace(true).target_with(panicking, 3);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    assert!(e.is_panic());
    let panic = e.panic().expect("panic details");
    assert_eq!(panic.message(), "boom 3");
    let loc = panic.location().expect("location");
    assert_eq!((loc.file.as_str(), loc.line), (file!(), PANIC_LINE));
    let bt = panic.backtrace().expect("backtrace text");
    assert!(bt.contains("panicking"), "the backtrace names the target: {bt}");
    assert_eq!(
        p.exitcode(),
        Some(1),
        "a panicked target exits with 1, as Python's exceptions do"
    );
    assert_eq!(e.exit_status(), Some(ExitStatus::Exited(1)));
    assert_eq!(e.pid(), p.pid());
    assert!(e.to_string().contains("boom 3"), "{e}");
}

#[allow(clippy::disallowed_methods)] // the behaviour under test
fn exit_with(code: i32) {
    std::process::exit(code)
}

fn exit_codes_follow_python(m: StartMethod) {
    for (code, expected) in [(7, 7), (0, 0), (-1, 255), (256, 0), (300, 44)] {
        let mut p = builder(m).target_with(exit_with, code);
        p.start().unwrap();
        let e = p.join_timeout(DEADLINE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildExited, "exit({code}): {e}");
        assert_eq!(e.exit_status(), Some(ExitStatus::Exited(expected)));
        assert_eq!(p.exitcode(), Some(expected), "exit({code})");
    }
}

fn abort() {
    std::process::abort()
}

fn segfault() {
    // SAFETY: not safe at all — this deliberately writes through a null
    // pointer to crash the child with SIGSEGV.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) }
}

fn crashes_are_signals(m: StartMethod) {
    for (target, sig) in [(abort as fn(), libc::SIGABRT), (segfault as fn(), libc::SIGSEGV)] {
        let mut p = builder(m).target(target);
        p.start().unwrap();
        let e = p.join_timeout(DEADLINE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
        assert_eq!(e.exit_status(), Some(ExitStatus::Signaled(sig)));
        assert_eq!(p.exitcode(), Some(-sig));
    }
}

fn blocked(addr: String) {
    notify(&addr, "up");
    block_forever()
}

fn kill_and_terminate_from_outside(m: StartMethod) {
    for (sig, name) in [(libc::SIGKILL, "SIGKILL"), (libc::SIGTERM, "SIGTERM")] {
        let rv = Rendezvous::new();
        let mut p = builder(m).target_with(blocked, rv.addr());
        p.start().unwrap();
        assert_eq!(rv.recv(), "up");
        if sig == libc::SIGKILL {
            p.kill().unwrap()
        } else {
            p.terminate().unwrap()
        }
        let e = p.join_timeout(DEADLINE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
        assert_eq!(p.exitcode(), Some(-sig));
        assert!(format!("{p:?}").contains(&format!("stopped exitcode=-{name}")), "{p:?}");
        // Signalling a child that has ended does nothing.
        p.kill().unwrap();
    }
}

fn ignores_sigterm(addr: String) {
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    ready_then_wait(&addr);
}

fn terminate_of_a_child_ignoring_sigterm(m: StartMethod) {
    let rv = Rendezvous::new();
    let mut p = builder(m).target_with(ignores_sigterm, rv.addr());
    p.start().unwrap();
    let gate = rv.wait_ready();
    p.terminate().unwrap();
    let e = p.join_timeout(Duration::from_millis(200)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(p.is_alive(), "SIGTERM was ignored");
    gate.open();
    p.join_timeout(DEADLINE).unwrap();
    assert_eq!(p.exitcode(), Some(0), "it finishes normally when let go");
}

fn forever() {
    block_forever()
}

fn hundred_children_terminated_at_once(m: StartMethod) {
    let mut children: Vec<Process<()>> = (0..100).map(|_| builder(m).target(forever)).collect();
    for p in &mut children {
        p.start().unwrap();
    }
    for p in &children {
        p.terminate().unwrap();
    }
    for p in &mut children {
        let e = p.join_timeout(DEADLINE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
        assert_eq!(p.exitcode(), Some(-libc::SIGTERM));
    }
}

/// Serialises into an error.
#[derive(Debug, PartialEq)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unserializable refuses"))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unserializable)
    }
}

/// Serialises fine, never deserialises.
#[derive(Debug, PartialEq)]
struct Undeserializable;

impl Serialize for Undeserializable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Undeserializable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("Undeserializable refuses"))
    }
}

fn take_unserializable(_: Unserializable) {}

fn arguments_that_fail_to_serialize_fail_start(m: StartMethod) {
    let mut p = builder(m).target_with(take_unserializable, Unserializable);
    match m {
        StartMethod::Spawn | StartMethod::ForkServer => {
            let e = p.start().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
            assert!(e.to_string().contains("Unserializable refuses"), "{e}");
            assert_eq!(p.pid(), None, "no child was started");
            assert_eq!(
                p.start().unwrap_err().kind(),
                ErrorKind::Serialize,
                "start may be retried"
            );
        }
        // Fork copies the arguments with the rest of memory: nothing to serialise.
        _ => {
            p.start().unwrap();
            p.join_timeout(DEADLINE).unwrap();
        }
    }
}

fn make_undeserializable() -> Undeserializable {
    Undeserializable
}

fn make_unserializable() -> Unserializable {
    Unserializable
}

fn results_that_cannot_cross(m: StartMethod) {
    let mut p = builder(m).target(make_undeserializable);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deserialize, "{e}");
    assert!(e.to_string().contains("Undeserializable refuses"), "{e}");
    assert_eq!(p.exitcode(), Some(0), "the child itself succeeded");

    let mut p = builder(m).target(make_unserializable);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
    assert!(e.to_string().contains("Unserializable refuses"), "{e}");
    assert_eq!(p.exitcode(), Some(1));
}

fn with_stdout_and_stderr_closed(m: StartMethod) {
    // SAFETY: dup of this process's stdout, restored below; the scenario
    // runs alone in its own process.
    let saved_out = unsafe { libc::dup(1) };
    // SAFETY: as above, for stderr.
    let saved_err = unsafe { libc::dup(2) };
    // SAFETY: stdout was saved above; closing it is the scenario.
    unsafe { libc::close(1) };
    // SAFETY: as above, for stderr.
    unsafe { libc::close(2) };
    let mut p = builder(m).target_with(panicking, 5);
    p.start().unwrap();
    let result = p.join_timeout(DEADLINE);
    // SAFETY: restores stdout from the copy saved above.
    unsafe { libc::dup2(saved_out, 1) };
    // SAFETY: as above, for stderr.
    unsafe { libc::dup2(saved_err, 2) };
    // SAFETY: the saved copy is ours and no longer needed.
    unsafe { libc::close(saved_out) };
    // SAFETY: as above.
    unsafe { libc::close(saved_err) };
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    assert_eq!(e.panic().unwrap().message(), "boom 5");
}

fn closed_standard_streams_in_the_parent(m: StartMethod) {
    // Always isolated: closing this process's stderr would silence the
    // test harness.
    crate::support::run_isolated(with_stdout_and_stderr_closed, m);
}

per_method!(
    closed_standard_streams_in_the_parent,
    panic_is_carried_back,
    exit_codes_follow_python,
    crashes_are_signals,
    kill_and_terminate_from_outside,
    terminate_of_a_child_ignoring_sigterm,
    hundred_children_terminated_at_once,
    arguments_that_fail_to_serialize_fail_start,
    results_that_cannot_cross,
);

#[test]
fn a_capturing_closure_cannot_run_under_spawn() {
    let captured = [1, 2, 3];
    let mut p = ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .closure(move || captured.len());
    let e = p.start().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("fork"), "the message names the remedy: {e}");
}

extern "C" fn ignore_usr1(_: libc::c_int) {}

fn interrupt_parent() -> u32 {
    let parent = multiproc::parent_process().unwrap().pid() as libc::pid_t;
    // SAFETY: kill(2) of this process's parent with a signal it handles.
    unsafe { libc::kill(parent, libc::SIGUSR1) };
    7
}

fn join_survives_signals(m: StartMethod) {
    // A handled signal interrupts the parent's wait (EINTR): join must
    // retry rather than fail or lose the result.
    let handler = ignore_usr1 as extern "C" fn(libc::c_int);
    // SAFETY: installs a handler that does nothing; the scenario runs alone
    // in its own process.
    unsafe { libc::signal(libc::SIGUSR1, handler as libc::sighandler_t) };
    for _ in 0..20 {
        let mut p = builder(m).target(interrupt_parent);
        p.start().unwrap();
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), 7);
    }
}

fn signals_interrupting_join(m: StartMethod) {
    // Always isolated: the handler is process-wide.
    crate::support::run_isolated(join_survives_signals, m);
}

fn panic_to_a_redirected_stderr(path: String) {
    let file = std::fs::File::create(&path).unwrap();
    // SAFETY: dup2 of a file we own onto this process's stderr.
    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 2) };
    panic!("written to {path}");
}

fn panic_message_reaches_stderr(m: StartMethod) {
    let path = std::env::temp_dir().join(format!("multiproc-stderr-{}-{m}.txt", std::process::id()));
    let path = path.to_str().unwrap().to_owned();
    let mut p = builder(m).target_with(panic_to_a_redirected_stderr, path.clone());
    p.start().unwrap();
    assert!(p.join_timeout(DEADLINE).unwrap_err().is_panic());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    // The child's panic report is on its stderr before it exits, with the
    // source location.
    assert!(text.contains("written to"), "{text}");
    assert!(text.contains("faults.rs"), "{text}");
}

per_method!(signals_interrupting_join, panic_message_reaches_stderr);
