//! A fork-server child's life does not depend on its server's: a signal
//! to the server (SIGINT, SIGTERM, SIGKILL) while children run leaves them
//! running and hearing their owner, a daemonic one still dies with its
//! owner, and later starts work. Fork server only, by nature; each
//! scenario runs as the main program of its own spawned owner, so that
//! killing that owner's server disturbs no other test.

use multiproc::{self as mp, ErrorKind, Event, ProcessBuilder, StartMethod};

use crate::support::{DEADLINE, PidWatch, Rendezvous, block_forever, notify};

fn fs() -> ProcessBuilder {
    ProcessBuilder::new().start_method(StartMethod::ForkServer)
}

fn answer() -> u32 {
    42
}

/// Sends `sig` to this process's fork server; waits for its end if the
/// signal ends it (SIGINT does not: the server ignores it).
fn signal_server(sig: i32) {
    let server = mp::__forkserver_pid().expect("a server runs after a forkserver start");
    let watch = PidWatch::open(server);
    // SAFETY: kill(2) of this process's own fork server.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(server as i32, sig) };
    assert_eq!(rc, 0, "kill({server}, {sig})");
    if sig != libc::SIGINT {
        assert!(watch.ended_within(DEADLINE), "the fork server survived signal {sig}");
    }
}

/// Tells `addr` it runs, then waits for the event and says whether it
/// came.
fn wait_for_event((go, addr): (Event, String)) -> bool {
    notify(&addr, "waiting");
    go.wait_timeout(DEADLINE)
}

/// A plain and a daemonic child wait for an event; the server gets `sig`;
/// a new child starts and exits 0; both waiting children hear the event.
fn in_flight_children_hear_their_owner(sig: i32) {
    let go = Event::new().unwrap();
    let rv = Rendezvous::new();
    let mut children: Vec<_> = [false, true]
        .into_iter()
        .map(|daemon| {
            let mut p = fs().daemon(daemon).target_with(wait_for_event, (go.clone(), rv.addr()));
            p.start().unwrap();
            p
        })
        .collect();
    for _ in &children {
        assert_eq!(rv.recv(), "waiting");
    }
    signal_server(sig);
    let mut q = fs().target(answer);
    q.start().unwrap();
    assert_eq!(q.join_timeout(DEADLINE).unwrap(), 42);
    assert_eq!(q.exit_status(), Some(mp::ExitStatus::Exited(0)));
    go.set();
    for (p, what) in children.iter_mut().zip(["plain", "daemonic"]) {
        assert!(
            p.join_timeout(DEADLINE)
                .unwrap_or_else(|e| panic!("the {what} child after signal {sig} to its server: {e}")),
            "the {what} child never saw the event after signal {sig} to its server"
        );
    }
}

#[test]
fn sigint_to_the_server_spares_its_children() {
    crate::support::run_isolated(
        |_| in_flight_children_hear_their_owner(libc::SIGINT),
        StartMethod::Spawn,
    );
}

#[test]
fn sigterm_to_the_server_spares_its_children() {
    crate::support::run_isolated(
        |_| in_flight_children_hear_their_owner(libc::SIGTERM),
        StartMethod::Spawn,
    );
}

#[test]
fn sigkill_to_the_server_spares_its_children() {
    crate::support::run_isolated(
        |_| in_flight_children_hear_their_owner(libc::SIGKILL),
        StartMethod::Spawn,
    );
}

/// The daemon: says it runs, waits for the event, says it heard it, and
/// blocks until its owner's death ends it.
fn daemon_body((go, addr): (Event, String)) {
    notify(&addr, "waiting");
    assert!(go.wait_timeout(DEADLINE), "the daemon never heard its owner");
    notify(&addr, "heard");
    block_forever()
}

/// The owner: starts a daemon, has its server killed with `sig`, checks
/// that the daemon still hears it, reports the daemon's pid to `addr` and
/// blocks until the test kills it.
fn owner_of_a_daemon((addr, sig): (String, i32)) {
    let go = Event::new().unwrap();
    let own = Rendezvous::new();
    let mut d = fs().daemon(true).target_with(daemon_body, (go.clone(), own.addr()));
    d.start().unwrap();
    // Running its target: its death signal is armed.
    assert_eq!(own.recv(), "waiting");
    signal_server(sig);
    go.set();
    assert_eq!(own.recv(), "heard");
    notify(&addr, &d.pid().unwrap().to_string());
    block_forever()
}

fn daemon_outlives_its_server_and_dies_with_its_owner(sig: i32) {
    let rv = Rendezvous::new();
    let mut owner = mp::Process::with_args(owner_of_a_daemon, (rv.addr(), sig));
    owner.start().unwrap();
    let daemon = PidWatch::open(rv.recv().parse().expect("the daemon's pid"));
    owner.kill().unwrap();
    assert_eq!(owner.join_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::ChildKilled);
    assert!(
        daemon.ended_within(DEADLINE),
        "the daemon outlived its owner after signal {sig} to its server"
    );
}

#[test]
fn a_daemon_outlives_a_sigterm_to_its_server_and_dies_with_its_owner() {
    daemon_outlives_its_server_and_dies_with_its_owner(libc::SIGTERM)
}

#[test]
fn a_daemon_outlives_a_sigkill_to_its_server_and_dies_with_its_owner() {
    daemon_outlives_its_server_and_dies_with_its_owner(libc::SIGKILL)
}
