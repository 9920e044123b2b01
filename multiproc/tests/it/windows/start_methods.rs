//! What Windows has instead of fork: spawn only, and Python's Windows
//! conventions for how a terminated child reads.

use multiproc::{self as mp, ErrorKind, ExitStatus, ProcessBuilder, StartMethod};

use crate::support::{DEADLINE, Rendezvous, SIGKILL, ready_then_wait};

fn noop() {}

fn wait_for_the_gate(addr: String) {
    ready_then_wait(&addr);
}

fn parent_facts() -> (u32, bool) {
    let parent = mp::parent_process().expect("a spawned child has a parent");
    (parent.pid(), parent.is_alive())
}

#[test]
fn only_spawn_is_listed_and_parsed() {
    assert_eq!(StartMethod::all(), &[StartMethod::Spawn]);
    assert_eq!(mp::get_all_start_methods(), &[StartMethod::Spawn]);
    assert_eq!("spawn".parse::<StartMethod>().unwrap(), StartMethod::Spawn);
    for name in ["fork", "forkserver"] {
        let e = name.parse::<StartMethod>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("available: spawn"), "{e}");
    }
}

#[test]
fn fork_and_forkserver_are_unsupported_and_say_to_use_spawn() {
    for m in [StartMethod::Fork, StartMethod::ForkServer] {
        let mut p = ProcessBuilder::new().start_method(m).target(noop);
        let e = p.start().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("use StartMethod::Spawn"), "{e}");
        assert!(p.pid().is_none(), "nothing was started");
    }
    let mut p = ProcessBuilder::new().start_method(StartMethod::Spawn).target(noop);
    p.start().unwrap();
    p.join_timeout(DEADLINE).unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn terminate_and_kill_read_as_sigterm_and_sigkill() {
    for (kill, sig) in [(false, 15), (true, SIGKILL)] {
        let rv = Rendezvous::new();
        let mut p = ProcessBuilder::new().target_with(wait_for_the_gate, rv.addr());
        p.start().unwrap();
        let _gate = rv.wait_ready();
        assert!(p.is_alive());
        if kill {
            p.kill().unwrap();
        } else {
            p.terminate().unwrap();
        }
        let e = p.join_timeout(DEADLINE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
        assert_eq!(p.exit_status(), Some(ExitStatus::Signaled(sig)));
        assert_eq!(p.exitcode(), Some(-sig));
        assert!(!p.is_alive());
    }
}

#[test]
fn a_child_sees_its_parent_alive() {
    let mut p = ProcessBuilder::new().target(parent_facts);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), (std::process::id(), true));
}

#[test]
fn the_sentinel_is_the_process_handle() {
    let rv = Rendezvous::new();
    let mut p = ProcessBuilder::new().target_with(wait_for_the_gate, rv.addr());
    p.start().unwrap();
    let gate = rv.wait_ready();
    let sentinel = p.sentinel().expect("started here");
    assert!(
        mp::wait(&[sentinel.into()], Some(std::time::Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    gate.open();
    assert_eq!(mp::wait(&[sentinel.into()], Some(DEADLINE)).unwrap(), [0]);
    p.join_timeout(DEADLINE).unwrap();
}
