//! Start, join, is_alive, pid, exit codes, misuse, values in and out.

use std::time::Duration;

use multiproc::{self as mp, ErrorKind, ExitStatus, ProcessBuilder, StartMethod};

use crate::support::{DEADLINE, Rendezvous, ready_then_wait};

fn builder(m: StartMethod) -> ProcessBuilder {
    ProcessBuilder::new().start_method(m)
}

fn report() -> (u32, u32, u32, Option<StartMethod>) {
    (
        std::process::id(),
        crate::support::os_parent_id(),
        mp::parent_process().unwrap().pid(),
        mp::current_process().start_method(),
    )
}

fn returns_value_and_child_facts(m: StartMethod) {
    let mut p = builder(m).target(report);
    assert_eq!(p.start_method(), m);
    p.start().unwrap();
    let (pid, ppid, parent, method) = p.join_timeout(DEADLINE).unwrap();
    assert_eq!(Some(pid), p.pid(), "the pid the handle reports is the child's own");
    assert_eq!(parent, std::process::id(), "the child's parent is this process");
    if m != StartMethod::ForkServer {
        // Under the fork server, as in Python, getppid() names the server.
        assert_eq!(ppid, std::process::id());
    }
    assert_eq!(method, Some(m), "the child ran under the requested start method");
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(p.exit_status(), Some(ExitStatus::Exited(0)));
}

fn gated(addr: String) -> u32 {
    ready_then_wait(&addr);
    41 + 1
}

fn alive_while_running_timeout_is_retry_safe(m: StartMethod) {
    let rv = Rendezvous::new();
    let mut p = builder(m).target_with(gated, rv.addr());
    assert!(!p.is_alive(), "not alive before start");
    p.start().unwrap();
    assert!(p.is_alive(), "alive right after start");
    let gate = rv.wait_ready();
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None, "no exit code while running");
    let e = p.join_timeout(Duration::ZERO).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    let e = p.join_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(p.is_alive(), "a timed-out join leaves the child running");
    gate.open();
    assert_eq!(
        p.join_timeout(DEADLINE).unwrap(),
        42,
        "the result survives earlier timeouts"
    );
    assert!(!p.is_alive());
    assert_eq!(p.join().unwrap(), 42, "join can be repeated");
    assert!(p.pid().is_some(), "the handle stays usable after join");
}

fn noop() {}

fn unstarted_process(m: StartMethod) {
    let mut p = builder(m).target(noop);
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    assert!(format!("{p:?}").contains("initial"), "{p:?}");
    assert!(p.name().starts_with("Process-"), "{}", p.name());
    assert_eq!(p.join().unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(
        p.join_timeout(Duration::ZERO).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    assert_eq!(p.terminate().unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(p.kill().unwrap_err().kind(), ErrorKind::InvalidState);
}

fn misuse_is_an_error_not_a_panic(m: StartMethod) {
    let rv = Rendezvous::new();
    let mut p = builder(m).target_with(gated, rv.addr());
    p.start().unwrap();
    let e = p.start().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.to_string().contains("twice"), "{e}");
    let gate = rv.wait_ready();
    let e = p.close().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.to_string().contains("still running"), "{e}");
    gate.open();
    p.join_timeout(DEADLINE).unwrap();
    let pid = p.pid();
    p.close().unwrap();
    p.close().unwrap();
    assert_eq!(p.pid(), pid, "pid survives close");
    assert_eq!(p.exitcode(), Some(0), "exit code survives close");
    assert!(format!("{p:?}").contains("closed"));
    for e in [
        p.join().unwrap_err(),
        p.start().unwrap_err(),
        p.terminate().unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidState);
        assert!(e.to_string().contains("closed"), "{e}");
    }
    // Closing an unstarted process is allowed, and starting it afterwards is not.
    let mut q = builder(m).target(noop);
    q.close().unwrap();
    assert_eq!(q.start().unwrap_err().kind(), ErrorKind::InvalidState);
}

fn echo<T>(v: T) -> T {
    v
}

fn values_cross_both_ways(m: StartMethod) {
    let big: Vec<u8> = (0..(4 << 20) + 3).map(|i| (i * 7) as u8).collect();
    let mut p = builder(m).target_with(echo::<Vec<u8>>, big.clone());
    p.start().unwrap();
    assert_eq!(
        p.join_timeout(DEADLINE).unwrap(),
        big,
        "a 4 MiB buffer crosses intact both ways"
    );

    let text = "héllo ".repeat(20_000);
    let mut p = builder(m).target_with(echo::<String>, text.clone());
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), text);

    type Mixed = (u8, Option<String>, Vec<(i64, f64)>, Vec<Vec<u8>>);
    let mixed: Mixed = (7, Some("x".into()), vec![(-1, 0.5); 10_000], vec![vec![1, 2], vec![]]);
    let mut p = builder(m).target_with(echo::<Mixed>, mixed.clone());
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), mixed);

    let mut p = builder(m).target_with(echo::<()>, ());
    p.start().unwrap();
    p.join_timeout(DEADLINE).unwrap();
}

fn spawn_convenience(m: StartMethod) {
    let _ = m;
    let mut p = mp::spawn(|(a, b): (i32, i32)| a * b, (6, 7)).unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 42);
}

per_method!(
    returns_value_and_child_facts,
    alive_while_running_timeout_is_retry_safe,
    unstarted_process,
    misuse_is_an_error_not_a_panic,
    values_cross_both_ways,
    spawn_convenience,
);
