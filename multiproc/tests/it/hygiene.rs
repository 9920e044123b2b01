//! Nothing left behind: descriptors, zombies, orphans; daemons die with
//! their parent; the exit routine waits for children.

use std::time::Duration;

use multiproc::{ProcessBuilder, StartMethod};

use crate::support::{DEADLINE, PidWatch, Rendezvous, block_forever, notify, open_fds, ready_then_wait};

fn builder(m: StartMethod) -> ProcessBuilder {
    ProcessBuilder::new().start_method(m)
}

fn fds_of_child() -> Vec<(i32, String)> {
    open_fds()
}

fn gated(addr: String) {
    ready_then_wait(&addr)
}

fn children_inherit_no_descriptors(m: StartMethod) {
    // A descriptor without close-on-exec, and a running sibling whose
    // library descriptors (socket, pidfd) exist in this process.
    let mut raw = [0; 2];
    // SAFETY: pipe fills the two-int array.
    assert_eq!(unsafe { libc::pipe(raw.as_mut_ptr()) }, 0);
    let rv = Rendezvous::new();
    let before = open_fds();
    let mut sibling = builder(m).target_with(gated, rv.addr());
    sibling.start().unwrap();
    let gate = rv.wait_ready();
    let sibling_fds: Vec<String> = open_fds()
        .into_iter()
        .filter(|f| !before.contains(f))
        .map(|f| f.1)
        .collect();
    assert!(sibling_fds.iter().any(|t| t.contains("pidfd")), "{sibling_fds:?}");

    let mut p = builder(m).target(fds_of_child);
    p.start().unwrap();
    let fds = p.join_timeout(DEADLINE).unwrap();
    gate.open();
    sibling.join_timeout(DEADLINE).unwrap();

    assert_eq!(fds[0], (0, "/dev/null".to_owned()), "stdin is /dev/null: {fds:?}");
    let count = |kind: &str| fds.iter().filter(|f| f.1.starts_with(kind)).count();
    match m {
        StartMethod::Spawn => {
            let numbers: Vec<i32> = fds.iter().map(|f| f.0).collect();
            assert_eq!(
                numbers,
                [0, 1, 2, 3],
                "a spawned child has stdio and its socket only: {fds:?}"
            );
        }
        StartMethod::ForkServer => {
            // Stdio, its socket, and the pidfd of its parent that the fork
            // server passed on: nothing of the server's or the siblings'.
            assert_eq!(fds.len(), 5, "{fds:?}");
            assert_eq!((count("socket:"), count("anon_inode:[pidfd]")), (1, 1), "{fds:?}");
        }
        // A fork child inherits what the parent had open, as fork does;
        // only the library's descriptors are closed.
        _ => {
            for f in &fds {
                assert!(
                    !sibling_fds.contains(&f.1),
                    "the sibling's {f:?} leaked into the child: {fds:?}"
                );
            }
            let own = fds
                .iter()
                .filter(|f| f.1.starts_with("socket:") && !before.iter().any(|b| b.1 == f.1));
            assert_eq!(own.count(), 1, "one socket of its own: {fds:?}");
            assert!(fds.iter().any(|f| f.0 == raw[0]), "{fds:?}");
        }
    }
    // SAFETY: closing the pipe's read end, opened above and ours.
    unsafe { libc::close(raw[0]) };
    // SAFETY: as above, the write end.
    unsafe { libc::close(raw[1]) };
}

fn start_daemon_grandchild(args: (String, StartMethod)) {
    let (addr, m) = args;
    let mut d = builder(m).daemon(true).target(block_forever_unit);
    d.start().unwrap();
    notify(&addr, &d.pid().unwrap().to_string());
    block_forever()
}

fn block_forever_unit() {
    block_forever()
}

fn daemon_dies_when_its_parent_is_killed(m: StartMethod) {
    daemon_of_middle_dies_with_it(m, start_daemon_grandchild);
}

/// Starts a middle process running `middle_target`, which reports the pid
/// of a daemon it started; SIGKILLs the middle and checks that the daemon
/// was alive until then and ends with it.
fn daemon_of_middle_dies_with_it(m: StartMethod, middle_target: fn((String, StartMethod))) {
    let rv = Rendezvous::new();
    let mut middle = builder(m).target_with(middle_target, (rv.addr(), m));
    middle.start().unwrap();
    let daemon_pid: u32 = rv.recv().parse().unwrap();
    let daemon = PidWatch::open(daemon_pid);
    assert!(!daemon.ended_within(Duration::ZERO));
    middle.kill().unwrap();
    middle.join_timeout(DEADLINE).unwrap_err();
    assert!(
        daemon.ended_within(DEADLINE),
        "the daemon outlived its SIGKILLed parent"
    );
}

fn daemon_and_worker(args: (String, StartMethod)) {
    let (addr, m) = args;
    let mut d = builder(m).daemon(true).target(block_forever_unit);
    d.start().unwrap();
    let worker_rv = Rendezvous::new();
    let mut w = builder(m).target_with(gated, worker_rv.addr());
    w.start().unwrap();
    let worker_gate = worker_rv.wait_ready();
    // Report both pids, then wait until the parent test has its watches
    // open before returning (the exit routine ends the daemon at once).
    let own = Rendezvous::new();
    notify(
        &addr,
        &format!("{} {} {}", d.pid().unwrap(), w.pid().unwrap(), own.addr()),
    );
    assert_eq!(own.recv(), "go");
    // Drop both handles: the exit routine still knows the children. The
    // worker waits for a "go" that never comes (it is killed by the test).
    drop((d, w));
    std::mem::forget((worker_gate, worker_rv));
}

fn exit_routine_joins_workers_and_terminates_daemons(m: StartMethod) {
    let rv = Rendezvous::new();
    let mut middle = builder(m).target_with(daemon_and_worker, (rv.addr(), m));
    middle.start().unwrap();
    let msg = rv.recv();
    let parts: Vec<&str> = msg.split(' ').collect();
    let (daemon_pid, worker_pid): (u32, u32) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
    let (daemon, worker) = (PidWatch::open(daemon_pid), PidWatch::open(worker_pid));
    notify(parts[2], "go");
    // The middle returns its value, terminates its daemon and then waits
    // for its worker, as Python's exit routine does.
    assert!(daemon.ended_within(DEADLINE), "the exit routine did not end the daemon");
    let e = middle.join_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(e.is_timeout(), "the middle exited without waiting for its worker: {e}");
    assert!(!worker.ended_within(Duration::ZERO));
    middle.kill().unwrap();
    // The middle had delivered its result before it was killed in its exit
    // routine: join still returns it, and the status tells the rest.
    middle.join_timeout(DEADLINE).unwrap();
    assert_eq!(middle.exitcode(), Some(-libc::SIGKILL));
    // A non-daemonic child outlives its parent's death, as in Python.
    assert!(
        !worker.ended_within(Duration::ZERO),
        "a non-daemon child survives its parent's death"
    );
    // SAFETY: kill(2) of the orphaned worker, which this test created.
    unsafe { libc::kill(worker_pid as i32, libc::SIGKILL) };
    assert!(worker.ended_within(DEADLINE));
}

/// A daemon's target: reports its own address, answers one "ping", then
/// blocks. (Its receive is interrupted once, by the death signal its
/// starting thread's exit sends: `Rendezvous::recv` retries.)
fn echo_once_then_block(addr: String) {
    let own = Rendezvous::new();
    notify(&addr, &format!("ready {}", own.addr()));
    assert_eq!(own.recv(), "ping");
    notify(&addr, "pong");
    block_forever()
}

/// The middle: a short-lived thread starts the daemon, waits until it runs
/// its target (so its death signal is armed) and exits; after the thread
/// is gone, a round trip shows the daemon alive.
fn start_daemon_from_a_thread(args: (String, StartMethod)) {
    let (addr, m) = args;
    let daemon_rv = Rendezvous::new();
    let starter = std::thread::spawn(move || {
        let b = builder(m).daemon(true);
        let b = if m == StartMethod::Fork {
            // Under fork the daemon must be forked by this thread (the case
            // where its parent is a thread that exits), and this process
            // runs two threads now, where fork needs the opt-in.
            // SAFETY: the other thread is blocked in `join` and holds no
            // lock; the daemon's target only allocates (glibc's allocator is
            // fork-safe) and uses sockets.
            unsafe { b.allow_fork_with_threads() }
        } else {
            b
        };
        let mut d = b.target_with(echo_once_then_block, daemon_rv.addr());
        d.start().unwrap();
        let ready = daemon_rv.recv();
        let daemon_own = ready.strip_prefix("ready ").expect("a ready message").to_owned();
        (d.pid().unwrap(), daemon_own, daemon_rv)
    });
    let (daemon_pid, daemon_own, daemon_rv) = starter.join().unwrap();
    // `join` returns when the thread's stack is free, a little before the
    // kernel re-parents the thread's children (and sends their death
    // signal); the thread leaves /proc only after that.
    wait_until(|| thread_count(std::process::id()) == 1);
    // The daemon handled (or died of) its death signal before it can
    // answer: the signal was pending before the ping was sent.
    notify(&daemon_own, "ping");
    assert_eq!(
        daemon_rv.recv(),
        "pong",
        "the daemon answers after its starting thread exited"
    );
    notify(&addr, &daemon_pid.to_string());
    block_forever()
}

fn daemon_survives_the_exit_of_the_thread_that_started_it(m: StartMethod) {
    // The middle checks the daemon answers after the thread exited; then
    // it still dies with its parent process.
    daemon_of_middle_dies_with_it(m, start_daemon_from_a_thread);
}

fn daemon_runs_no_extra_thread(m: StartMethod) {
    let rv = Rendezvous::new();
    let mut d = builder(m).daemon(true).target_with(gated, rv.addr());
    d.start().unwrap();
    // The target runs: the child's set-up is over.
    let gate = rv.wait_ready();
    let threads = thread_count(d.pid().unwrap());
    gate.open();
    d.join_timeout(DEADLINE).unwrap();
    assert_eq!(threads, 1, "a daemon whose target blocks runs one thread");
}

/// Threads of process `pid`, from `/proc/<pid>/task`.
fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("list the threads")
        .count()
}

/// Polls `done` until it holds, failing the test after [`DEADLINE`].
fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met before the deadline"
        );
        // Not a synchronisation: the conditions polled here (a process's
        // thread count, its end) have no event to wait on; the pause only
        // lets the other process run before the next look.
        std::thread::sleep(Duration::from_millis(1));
    }
}

per_method!(
    children_inherit_no_descriptors,
    daemon_dies_when_its_parent_is_killed,
    daemon_survives_the_exit_of_the_thread_that_started_it,
    daemon_runs_no_extra_thread,
    exit_routine_joins_workers_and_terminates_daemons
);

fn daemon_then_return(m: StartMethod) -> u32 {
    let mut d = builder(m).daemon(true).target(block_forever_unit);
    d.start().unwrap();
    d.pid().unwrap()
}

fn daemons_are_terminated_at_normal_exit(m: StartMethod) {
    let mut middle = builder(m).target_with(daemon_then_return, m);
    middle.start().unwrap();
    let daemon_pid = middle.join_timeout(DEADLINE).unwrap();
    assert_eq!(middle.exitcode(), Some(0));
    // The middle's exit routine terminated and reaped its daemon before the
    // middle itself ended.
    assert!(
        !std::path::Path::new(&format!("/proc/{daemon_pid}")).exists(),
        "daemon {daemon_pid} still exists"
    );
}

fn dropped_handles_are_reaped(m: StartMethod) {
    let rv = Rendezvous::new();
    let mut p = builder(m).target_with(gated, rv.addr());
    p.start().unwrap();
    let pid = p.pid().unwrap();
    let gate = rv.wait_ready();
    let watch = PidWatch::open(pid);
    drop(p); // never blocks: the child is still running
    gate.open();
    assert!(watch.ended_within(DEADLINE));
    // Ended: a zombie until this process reaps it, which active_children
    // does (another test's start may have done it already).
    assert!(!multiproc::active_children().iter().any(|c| c.pid() == pid));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "zombie {pid} left behind"
    );
}

fn wait_for_parent_death(addr: String) {
    let parent = multiproc::parent_process().unwrap();
    notify(&addr, "waiting");
    let gone = parent.join_timeout(DEADLINE).unwrap();
    notify(
        &addr,
        if gone && !parent.is_alive() {
            "parent gone"
        } else {
            "timed out"
        },
    );
}

fn middle_with_watcher(args: (String, StartMethod)) {
    let (addr, m) = args;
    let mut c = builder(m).target_with(wait_for_parent_death, addr);
    c.start().unwrap();
    block_forever()
}

fn a_child_can_wait_for_its_parents_death(m: StartMethod) {
    let rv = Rendezvous::new();
    let mut middle = builder(m).target_with(middle_with_watcher, (rv.addr(), m));
    middle.start().unwrap();
    assert_eq!(rv.recv(), "waiting");
    middle.kill().unwrap();
    assert_eq!(rv.recv(), "parent gone");
    middle.join_timeout(DEADLINE).unwrap_err();
}

per_method!(
    daemons_are_terminated_at_normal_exit,
    dropped_handles_are_reaped,
    a_child_can_wait_for_its_parents_death
);
