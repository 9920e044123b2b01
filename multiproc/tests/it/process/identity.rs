//! Who is who: current_process, parent_process, names, daemons, children of
//! children, active_children, and the fork start method's rules.

use multiproc::{self as mp, ErrorKind, ProcessBuilder, StartMethod};

use crate::support::{DEADLINE, Rendezvous, ready_then_wait};

fn builder(m: StartMethod) -> ProcessBuilder {
    ProcessBuilder::new().start_method(m)
}

#[test]
fn main_process_identity() {
    let me = mp::current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), std::process::id());
    assert!(!me.is_daemon());
    assert!(me.is_alive());
    assert_eq!(me.start_method(), None);
    assert_eq!(me.authkey().len(), 32);
    assert!(me.authkey().iter().any(|&b| b != 0), "the key is random");
    assert!(!format!("{me:?}").contains("authkey"), "the key is never printed");
    assert!(mp::parent_process().is_none());
    assert!(mp::cpu_count().unwrap() >= 1);
    assert_eq!(StartMethod::all()[0], StartMethod::default());
    assert_eq!("fork".parse::<StartMethod>().unwrap(), StartMethod::Fork);
    let e = "thread".parse::<StartMethod>().unwrap_err();
    assert!(e.to_string().contains("cannot find start method"), "{e}");
}

type Facts = (String, u32, String, bool, bool, [u8; 32], String);

fn child_facts(grandchild: bool) -> Facts {
    let me = mp::current_process();
    let parent = mp::parent_process().expect("a child has a parent");
    let nested = if grandchild {
        let mut g = mp::ProcessBuilder::new().target_with(child_facts, false);
        g.start().unwrap();
        g.join_timeout(DEADLINE).unwrap().0
    } else {
        String::new()
    };
    (
        me.name().to_owned(),
        parent.pid(),
        parent.name().to_owned(),
        parent.is_alive(),
        parent.join_timeout(std::time::Duration::ZERO).unwrap(),
        *me.authkey(),
        nested,
    )
}

fn parent_and_child_identity(m: StartMethod) {
    let mut p = builder(m).target_with(child_facts, true);
    let name = p.name().to_owned();
    p.start().unwrap();
    let (child_name, parent_pid, parent_name, parent_alive, parent_ended, key, grandchild) =
        p.join_timeout(DEADLINE).unwrap();
    assert_eq!(child_name, name);
    assert!(child_name.starts_with("Process-"), "{child_name}");
    assert_eq!(parent_pid, std::process::id());
    assert_eq!(parent_name, mp::current_process().name());
    assert!(parent_alive);
    assert!(!parent_ended);
    assert_eq!(&key, mp::current_process().authkey(), "children inherit the key");
    assert_eq!(
        grandchild,
        format!("{name}:1"),
        "a child's first child is named Process-N:1"
    );

    let mut named = builder(m).name("worker").target_with(child_facts, false);
    named.start().unwrap();
    assert_eq!(named.join_timeout(DEADLINE).unwrap().0, "worker");
}

fn try_to_have_children() -> ErrorKind {
    let mut p = mp::Process::new(|| ());
    p.start().unwrap_err().kind()
}

fn daemons_cannot_have_children(m: StartMethod) {
    let mut p = builder(m).daemon(true).target(try_to_have_children);
    assert!(p.is_daemon());
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), ErrorKind::InvalidState);
    assert_eq!(p.exitcode(), Some(0), "the daemon itself exits normally");
}

fn gated(addr: String) {
    ready_then_wait(&addr)
}

fn active_children_lists_running_children(m: StartMethod) {
    let rv = Rendezvous::new();
    // Tests run in parallel in this process: a name of its own.
    let name = format!("listed-{m}");
    let mut p = builder(m).name(name.clone()).target_with(gated, rv.addr());
    assert!(!mp::active_children().iter().any(|c| c.name() == name));
    p.start().unwrap();
    let gate = rv.wait_ready();
    let listed: Vec<_> = mp::active_children().into_iter().filter(|c| c.name() == name).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(Some(listed[0].pid()), p.pid());
    assert!(!listed[0].is_daemon());
    gate.open();
    p.join_timeout(DEADLINE).unwrap();
    assert!(!mp::active_children().iter().any(|c| c.name() == name));
}

per_method!(
    parent_and_child_identity,
    daemons_cannot_have_children,
    active_children_lists_running_children
);

#[test]
fn fork_is_refused_in_a_multithreaded_parent() {
    // The test harness runs tests on threads: this process has several.
    let keep = std::thread::spawn(std::thread::park);
    let mut p = ProcessBuilder::new().start_method(StartMethod::Fork).target(|| ());
    let e = p.start().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ForkWithThreads, "{e}");
    assert!(e.to_string().contains("spawn"), "the message names the remedy: {e}");
    assert_eq!(p.pid(), None);
    keep.thread().unpark();
    keep.join().unwrap();
}

fn fork_with_threads(opt_in: bool) -> (ErrorKind, u32) {
    let helper = std::thread::spawn(std::thread::park);
    let builder = ProcessBuilder::new().start_method(StartMethod::Fork);
    let builder = if opt_in {
        // SAFETY: the target below only returns a number: it takes no lock
        // the helper thread could hold.
        unsafe { builder.allow_fork_with_threads() }
    } else {
        builder
    };
    let mut p = builder.target(|| 7u32);
    let out = match p.start() {
        Ok(()) => (ErrorKind::Io, p.join_timeout(DEADLINE).unwrap()),
        Err(e) => (e.kind(), 0),
    };
    helper.thread().unpark();
    helper.join().unwrap();
    out
}

#[test]
fn fork_with_threads_needs_the_unsafe_opt_in() {
    // Run where the thread count is known: a fresh single-threaded child
    // that then starts one helper thread.
    let mut refused = mp::Process::with_args(fork_with_threads, false);
    refused.start().unwrap();
    assert_eq!(refused.join_timeout(DEADLINE).unwrap(), (ErrorKind::ForkWithThreads, 0));
    let mut allowed = mp::Process::with_args(fork_with_threads, true);
    allowed.start().unwrap();
    assert_eq!(allowed.join_timeout(DEADLINE).unwrap().1, 7);
}

fn closure_under_fork(m: StartMethod) {
    assert_eq!(m, StartMethod::Fork);
    let captured = [String::from("a"), String::from("bc")];
    let total = 10;
    let mut p = mp::Process::from_closure(move || captured.iter().map(String::len).sum::<usize>() + total);
    assert_eq!(p.start_method(), StartMethod::Fork, "a closure defaults to fork");
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 13);
}

#[test]
fn capturing_closures_run_under_fork() {
    crate::support::run_isolated(closure_under_fork, StartMethod::Fork);
}

fn foreign_handle(m: StartMethod) {
    assert_eq!(m, StartMethod::Fork);
    let rv = Rendezvous::new();
    let mut sibling = mp::Process::with_args(gated, rv.addr());
    sibling.start().unwrap();
    let gate = rv.wait_ready();
    let watch = crate::support::PidWatch::open(sibling.pid().unwrap());
    // The fork child gets a copy of the sibling's handle: it is not that
    // process's parent and must not wait for it or start it.
    let mut copy = mp::Process::from_closure(move || {
        let joined = sibling.join_timeout(std::time::Duration::ZERO).unwrap_err();
        let killed = sibling.kill().unwrap_err();
        (
            joined.kind(),
            killed.kind(),
            joined.to_string(),
            sibling.is_alive(),
            sibling.exitcode(),
        )
    });
    copy.start().unwrap();
    let (joined, killed, message, alive, exitcode) = copy.join_timeout(DEADLINE).unwrap();
    assert_eq!(joined, ErrorKind::InvalidState, "{message}");
    assert!(message.contains("child process"), "{message}");
    assert_eq!(killed, ErrorKind::InvalidState, "a copy must never signal");
    assert!(!alive);
    assert_eq!(exitcode, None);
    assert!(
        !watch.ended_within(std::time::Duration::ZERO),
        "the copy's kill reached the real sibling"
    );
    gate.open();
    assert!(watch.ended_within(DEADLINE));
}

#[test]
fn a_handle_copied_into_a_fork_child_refuses_to_join() {
    crate::support::run_isolated(foreign_handle, StartMethod::Fork);
}
