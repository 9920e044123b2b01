//! The fork server's faults: killed between starts, killed with children in
//! flight, started from a multithreaded parent, outlived by nothing, and
//! unreachable by other processes.

use std::time::Duration;

use multiproc::{self as mp, ErrorKind, ExitStatus, ProcessBuilder, StartMethod};

use crate::support::{DEADLINE, PidWatch, Rendezvous, block_forever, notify, ready_then_wait};

fn fs() -> ProcessBuilder {
    ProcessBuilder::new().start_method(StartMethod::ForkServer)
}

fn answer() -> u32 {
    42
}

fn gated(addr: String) -> u32 {
    ready_then_wait(&addr);
    7
}

fn kill_server() -> u32 {
    let pid = mp::__forkserver_pid().expect("a server runs after a forkserver start");
    let watch = PidWatch::open(pid);
    // SAFETY: kill(2) of this process's own fork server.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(watch.ended_within(DEADLINE));
    pid
}

fn server_killed_between_and_during_starts(_: ()) {
    let mut p = fs().target(answer);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 42);

    // Killed between two starts: the next start launches a new server.
    let first = kill_server();
    let mut p = fs().target(answer);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 42);
    assert_ne!(mp::__forkserver_pid(), Some(first), "a new server");

    // Killed while a child is in flight: the child talks to this process
    // directly, so its result still arrives; only its status is lost.
    let rv = Rendezvous::new();
    let mut p = fs().target_with(gated, rv.addr());
    p.start().unwrap();
    let gate = rv.wait_ready();
    kill_server();
    gate.open();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 7);
    assert_eq!(
        p.exit_status(),
        Some(ExitStatus::Unknown),
        "the server that could report it is gone"
    );
    // And the next start works again.
    let mut p = fs().target(answer);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 42);
}

fn pool_after_a_killed_server(_: ()) {
    let mut p = fs().target(answer);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 42);
    let first = kill_server();
    // The pool sends all its workers' requests before reading any answer:
    // the dead server is replaced once, for all of them.
    let pool = mp::Pool::builder()
        .processes(3)
        .start_method(StartMethod::ForkServer)
        .build()
        .unwrap();
    let pids = pool.pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.windows(2).all(|w| w[0] != w[1]));
    let server = mp::__forkserver_pid().expect("a server runs");
    assert_ne!(server, first, "a new server");
    assert_eq!(
        pool.map(answer_for, 0..30u32).unwrap(),
        (0..30).map(answer_for).collect::<Vec<_>>()
    );
    pool.close();
    pool.join().unwrap();
    assert_eq!(mp::__forkserver_pid(), Some(server), "one server served every worker");
}

fn answer_for(x: u32) -> u32 {
    x + 42
}

#[test]
fn a_pool_starts_after_its_server_was_killed() {
    crate::support::run_isolated(|_| pool_after_a_killed_server(()), StartMethod::Spawn);
}

#[test]
fn a_killed_server_is_replaced_and_never_hangs_its_children() {
    crate::support::run_isolated(|_| server_killed_between_and_during_starts(()), StartMethod::Spawn);
}

#[test]
fn starts_from_a_multithreaded_parent() {
    let threads: Vec<_> = (0..4).map(|_| std::thread::spawn(std::thread::park)).collect();
    let mut children: Vec<_> = (0..8).map(|_| fs().target(answer)).collect();
    for p in &mut children {
        p.start().unwrap();
    }
    for p in &mut children {
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), 42);
    }
    for t in threads {
        t.thread().unpark();
        t.join().unwrap();
    }
}

fn forever() {
    block_forever()
}

fn owner_with_server_and_daemon(addr: String) {
    let mut d = fs().daemon(true).target(forever);
    d.start().unwrap();
    notify(
        &addr,
        &format!("{} {}", mp::__forkserver_pid().unwrap(), d.pid().unwrap()),
    );
    block_forever()
}

#[test]
fn the_server_and_daemons_end_with_their_owner() {
    let rv = Rendezvous::new();
    let mut owner = mp::Process::with_args(owner_with_server_and_daemon, rv.addr());
    owner.start().unwrap();
    let pids: Vec<u32> = rv.recv().split(' ').map(|s| s.parse().unwrap()).collect();
    let (server, daemon) = (PidWatch::open(pids[0]), PidWatch::open(pids[1]));
    assert!(!server.ended_within(Duration::ZERO) && !daemon.ended_within(Duration::ZERO));
    owner.kill().unwrap();
    assert_eq!(owner.join_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::ChildKilled);
    assert!(server.ended_within(DEADLINE), "the fork server outlived its owner");
    assert!(daemon.ended_within(DEADLINE), "the daemon outlived its owner");
}

#[allow(unsafe_code)]
#[allow(clippy::disallowed_methods)] // a fork the library does not know of
fn owner_that_forks_behind_the_library(addr: String) {
    let mut d = fs().daemon(true).target(forever);
    d.start().unwrap();
    // A raw fork keeps a copy of every descriptor, the server's control
    // socket included: the server must not rely on its end closing.
    // SAFETY: the child only blocks in pause() until the test kills it.
    let raw = unsafe { libc::fork() };
    if raw == 0 {
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    }
    notify(
        &addr,
        &format!("{} {} {}", mp::__forkserver_pid().unwrap(), d.pid().unwrap(), raw),
    );
    block_forever()
}

#[test]
fn the_server_ends_with_its_owner_even_if_its_socket_lives_on() {
    let rv = Rendezvous::new();
    let mut owner = mp::Process::with_args(owner_that_forks_behind_the_library, rv.addr());
    owner.start().unwrap();
    let pids: Vec<u32> = rv.recv().split(' ').map(|s| s.parse().unwrap()).collect();
    let (server, daemon, raw) = (
        PidWatch::open(pids[0]),
        PidWatch::open(pids[1]),
        PidWatch::open(pids[2]),
    );
    owner.kill().unwrap();
    assert_eq!(owner.join_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::ChildKilled);
    let ended = (server.ended_within(DEADLINE), daemon.ended_within(DEADLINE));
    // SAFETY: kill(2) of the raw fork child this test made.
    unsafe { libc::kill(pids[2] as i32, libc::SIGKILL) };
    assert!(raw.ended_within(DEADLINE));
    assert_eq!(ended, (true, true), "(server, daemon) ended with their owner");
}

// A daemon outlives its killed fork server and still dies with its
// owner: `forkserver_signals.rs`.

/// The sockets of `pid` and, for each, the flags and path /proc/net/unix
/// lists.
fn unix_sockets_of(pid: u32) -> Vec<(String, String)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            t.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode = cols.get(6)?;
            inodes
                .contains(&inode.to_string())
                .then(|| (cols[3].to_owned(), cols.get(7).unwrap_or(&"").to_string()))
        })
        .collect()
}

fn server_sockets(_: ()) -> Vec<(String, String)> {
    let mut p = fs().target(answer);
    p.start().unwrap();
    p.join_timeout(DEADLINE).unwrap();
    unix_sockets_of(mp::__forkserver_pid().unwrap())
}

#[test]
fn nothing_can_connect_to_the_server() {
    let mut p = mp::Process::with_args(server_sockets, ());
    p.start().unwrap();
    let sockets = p.join_timeout(DEADLINE).unwrap();
    assert!(!sockets.is_empty());
    for (flags, path) in &sockets {
        // __SO_ACCEPTCON (0x10000) marks a listening socket; a path (or
        // an abstract @name) would be reachable by name.
        assert_ne!(flags, "00010000", "the server listens: {sockets:?}");
        assert!(path.is_empty(), "the server has a named socket: {sockets:?}");
    }
}

static PRELOADED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn preload() {
    PRELOADED.store(7, std::sync::atomic::Ordering::Relaxed);
}

fn read_preloaded() -> u32 {
    PRELOADED.load(std::sync::atomic::Ordering::Relaxed)
}

fn preload_scenario(_: ()) {
    mp::set_forkserver_preload(Some(preload)).unwrap();
    mp::ensure_forkserver_running().unwrap();
    let server = mp::__forkserver_pid().expect("started explicitly");
    let mut p = fs().target(read_preloaded);
    p.start().unwrap();
    assert_eq!(
        p.join_timeout(DEADLINE).unwrap(),
        7,
        "the child starts with the server's preloaded state"
    );
    assert_eq!(
        mp::__forkserver_pid(),
        Some(server),
        "the explicit server served the start"
    );
    assert_eq!(read_preloaded(), 0, "the preload ran in the server, not here");
    // Spawned children do not run it.
    let mut p = ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .target(read_preloaded);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 0);
}

#[test]
fn a_preload_runs_once_in_the_server_before_its_children() {
    crate::support::run_isolated(|_| preload_scenario(()), StartMethod::Spawn);
}

#[test]
fn concurrent_starts_from_several_threads() {
    // Requests from several threads reach the server together; each must
    // get its own child and status.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..25 {
                    let mut p = fs().target(answer);
                    p.start().unwrap();
                    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 42);
                    assert_eq!(p.exit_status(), Some(ExitStatus::Exited(0)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
