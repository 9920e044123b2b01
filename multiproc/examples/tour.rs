//! A tour of `multiproc`, one numbered line per step: the seed's model
//! (create, start, join, pids), then a returned value, a panic, an exit
//! code, a timeout, signals, a capturing closure under `fork`, daemons, the
//! fork server, a pipe and a queue, a lock whose holder is killed, a shared
//! counter, a pool that survives a worker's death, a callback and an
//! executor, and the module-level functions.
//!
//! Run it with `cargo run --example tour`. It takes well under a second and
//! waits on nothing but the children themselves: every wait that could block
//! has a deadline.
//!
//! Under the spawn start method (the default) a child is a fresh run of this
//! very binary that calls the target instead of `main`; under fork it is a
//! copy of this process.
use std::{error::Error, fmt, time::Duration};
#[cfg(unix)]
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
};

use multiproc as mp;
use serde::{Deserialize, Serialize};

/// The longest this tour waits for anything; a healthy run never gets close.
const DEADLINE: Duration = Duration::from_secs(10);

/// What a child tells about itself.
fn whoami() -> (String, u32, u32, u32) {
    let parent = mp::parent_process().expect("a child started by multiproc has a parent");
    (
        mp::current_process().name().to_owned(),
        std::process::id(),
        os_parent_id(),
        parent.pid(),
    )
}

/// The parent pid as the system reports it (Python's `os.getppid()`).
#[cfg(unix)]
fn os_parent_id() -> u32 {
    std::os::unix::process::parent_id()
}
/// Windows has no `getppid` in std: the library's record stands in.
#[cfg(not(unix))]
fn os_parent_id() -> u32 {
    mp::parent_process().map_or(0, |p| p.pid())
}

/// A value that crosses the process boundary through serde.
#[derive(Debug, Serialize, Deserialize)]
struct Stats {
    count: usize,
    sum: i64,
    max: Option<i64>,
}

/// Computes [`Stats`] in the child.
fn stats(values: Vec<i64>) -> Stats {
    Stats {
        count: values.len(),
        sum: values.iter().sum(),
        max: values.iter().copied().max(),
    }
}

/// A pool task: `x * x`, except that 3 kills the worker running it.
#[allow(unsafe_code)]
fn square_or_die(x: u64) -> u64 {
    if x == 3 {
        // SAFETY: kill(2) of this very process, as `kill -9` would.
        #[cfg(unix)]
        unsafe {
            libc::kill(std::process::id() as libc::pid_t, libc::SIGKILL)
        };
        #[cfg(not(unix))]
        std::process::abort();
    }
    x * x
}

/// Panics in the child for a negative input.
fn square_root(x: f64) -> f64 {
    if x < 0.0 {
        panic!("cannot take the square root of {x}");
    }
    x.sqrt()
}

/// Leaves the child through `std::process::exit`, without a result.
#[allow(clippy::disallowed_methods)] // the point of the demonstration
fn exit_seven() {
    std::process::exit(7);
}

/// Blocks until a signal ends the process.
fn block_forever() {
    loop {
        std::thread::park();
    }
}

/// Runs in a daemonic child: tries to start a child of its own.
fn try_to_have_children() -> (bool, String) {
    let mut p = mp::Process::new(std::process::id);
    let refused = match p.start() {
        Ok(()) => "started a child (unexpected)".to_owned(),
        Err(e) => format!("{:?} error \"{e}\"", e.kind()),
    };
    (mp::current_process().is_daemon(), refused)
}

/// Echoes every text upper-cased until the pipe closes; returns how many.
fn shout(conn: mp::Connection) -> usize {
    let mut n = 0;
    while let Ok(text) = conn.recv::<String>() {
        conn.send(text.to_uppercase()).expect("send back");
        n += 1;
    }
    n
}

/// Puts three items, then aborts at once: no flush, no exit handlers.
fn put_and_abort(q: mp::Queue<u32>) {
    for i in 1..=3 {
        q.put(i).expect("put");
    }
    std::process::abort();
}

/// Takes the lock, says so, and waits to be killed holding it.
fn hold_the_lock((lock, held): (mp::Lock, mp::Event)) {
    let _guard = lock.acquire().expect("acquire");
    held.set();
    loop {
        std::thread::park();
    }
}

/// Adds one to the shared counter `n` times, under its lock.
fn count((v, n): (mp::Value<u64>, u64)) {
    for _ in 0..n {
        *v.lock().expect("lock") += 1;
    }
}

/// Prints numbered lines.
struct Steps(u32);

impl Steps {
    fn say(&mut self, line: fmt::Arguments<'_>) {
        self.0 += 1;
        println!("{}. {line}", self.0);
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let me = std::process::id();
    let mut steps = Steps(0);

    // The seed's model: create, start, join.
    let mut p = mp::Process::new(whoami);
    steps.say(format_args!(
        "Process::new(whoami) made the handle {:?}; nothing runs yet: pid {:?}, is_alive {}, start method {}",
        p.name(),
        p.pid(),
        p.is_alive(),
        p.start_method(),
    ));
    p.start()?;
    let pid = p.pid().expect("started");
    steps.say(format_args!(
        "start() launched child pid {pid}: a fresh run of this binary that calls whoami instead of main"
    ));
    let (name, child_pid, its_ppid, its_parent) = p.join()?;
    steps.say(format_args!(
        "join() returned whoami's value: name {name:?}, pid {child_pid} (same as p.pid(): {}), \
         getppid {its_ppid} and parent_process().pid {its_parent} (this process is {me}); \
         exitcode {:?}, is_alive {}",
        child_pid == pid,
        p.exitcode(),
        p.is_alive(),
    ));

    // Arguments in, a typed value out.
    let mut p = mp::Process::with_args(stats, vec![3, 1, 4, 1, 5, 9, 2, 6]);
    p.start()?;
    let s = p.join()?;
    steps.say(format_args!(
        "Process::with_args(stats, vec![3, 1, 4, 1, 5, 9, 2, 6]) sent the Vec and got a struct back: {s:?}"
    ));

    // A panic comes back as an error.
    let mut p = mp::Process::with_args(square_root, -4.0);
    p.start()?;
    let e = p.join().expect_err("the target panics");
    let panic = e.panic().expect("a panic error carries the panic");
    let location = panic
        .location()
        .map_or_else(|| "an unknown place".to_owned(), ToString::to_string);
    steps.say(format_args!(
        "a panic in the child came back from join() as an error: kind {:?}, message {:?}, at {location}; \
         exitcode {:?} (the child also printed it on its stderr, as Python prints a traceback)",
        e.kind(),
        panic.message(),
        p.exitcode(),
    ));

    // An exit code.
    let mut p = mp::Process::new(exit_seven);
    p.start()?;
    let e = p.join().expect_err("the child exits without a result");
    steps.say(format_args!(
        "std::process::exit(7) in the child: join() fails with kind {:?}, exit_status {:?}, exitcode {:?}",
        e.kind(),
        e.exit_status(),
        p.exitcode(),
    ));

    // A timeout, then signals. The blocked children are daemonic so that
    // they could not outlive this program even if a step below failed: at
    // exit a process waits for its other children, but terminates daemons.
    let blocked = || mp::ProcessBuilder::new().daemon(true).target(block_forever);
    let mut p = blocked();
    p.start()?;
    let e = p
        .join_timeout(Duration::from_millis(20))
        .expect_err("the child never returns");
    steps.say(format_args!(
        "join_timeout(20 ms) on a child that blocks forever gave up: kind {:?} (is_timeout {}), is_alive {}",
        e.kind(),
        e.is_timeout(),
        p.is_alive(),
    ));
    p.kill()?;
    let e = p.join_timeout(DEADLINE).expect_err("a killed child returns nothing");
    steps.say(format_args!(
        "kill() ended it: join() fails with kind {:?}, killed by {}, exitcode {:?}, is_alive {}",
        e.kind(),
        e.exit_status().expect("set for a killed child"),
        p.exitcode(),
        p.is_alive(),
    ));
    let mut p = blocked();
    p.start()?;
    p.terminate()?;
    let e = p
        .join_timeout(DEADLINE)
        .expect_err("a terminated child returns nothing");
    steps.say(format_args!(
        "terminate() on another such child: kind {:?}, ended by {}, exitcode {:?}",
        e.kind(),
        e.exit_status().expect("set for a killed child"),
        p.exitcode(),
    ));

    // A capturing closure, which only fork can run.
    let words: Vec<String> = "un deux trois".split(' ').map(String::from).collect();
    let separator = String::from(" + ");
    let mut p = mp::Process::from_closure(move || (words.join(&separator), std::process::id()));
    p.start()?;
    let (joined, closure_pid) = p.join()?;
    steps.say(format_args!(
        "Process::from_closure ran a closure capturing a Vec and a String under {} in pid {closure_pid}: {joined:?}",
        p.start_method(),
    ));

    // Daemons.
    let mut p = mp::ProcessBuilder::new().daemon(true).target(try_to_have_children);
    p.start()?;
    let (inside_is_daemon, refused) = p.join()?;
    steps.say(format_args!(
        "a daemonic child (is_daemon {}, and {inside_is_daemon} inside) may not start children: there start() gave {refused}",
        p.is_daemon(),
    ));
    let (grandchild, exitcode) = daemon_family(false)?;
    steps.say(format_args!(
        "a child that returned normally (exitcode {exitcode:?}) terminated its daemonic child {grandchild} on its way out \
         (the socket the daemon held is closed)"
    ));
    let (grandchild, exitcode) = daemon_family(true)?;
    steps.say(format_args!(
        "a child killed by SIGKILL (exitcode {exitcode:?}) could run no exit code, yet its daemonic child {grandchild} \
         died with it (the socket the daemon held is closed)"
    ));

    // The fork server: fork-speed starts from a small server process.
    let mut p = mp::ProcessBuilder::new()
        .start_method(mp::StartMethod::ForkServer)
        .target(whoami);
    p.start()?;
    let (_, pid, ppid, parent) = p.join_timeout(DEADLINE)?;
    steps.say(format_args!(
        "under the fork server, child {pid} was forked by a small server process: its getppid {ppid} names the \
         server, its parent_process().pid {parent} names this process ({})",
        std::process::id(),
    ));

    // Channels: a pipe to a child, and a queue that loses nothing.
    let (ours, theirs) = mp::pipe(true)?;
    let mut p = mp::Process::with_args(shout, theirs);
    p.start()?;
    ours.send("bonjour".to_string())?;
    let answer: String = ours.recv_timeout(DEADLINE)?;
    drop(ours);
    let echoed = p.join_timeout(DEADLINE)?;
    steps.say(format_args!(
        "a Pipe: the child answered {answer:?}; when this end closed, its recv saw the end of the stream and it \
         returned after {echoed} message"
    ));
    let q = mp::Queue::new()?;
    let mut p = mp::Process::with_args(put_and_abort, q.clone());
    p.start()?;
    let ended = p.join_timeout(DEADLINE).map_err(|e| e.kind());
    let items: Vec<u32> = (0..3).map(|_| q.get_timeout(DEADLINE)).collect::<Result<_, _>>()?;
    steps.say(format_args!(
        "a Queue: a child put 3 items and aborted right after ({ended:?}); all arrived: {items:?}"
    ));

    // Shared state: a lock whose holder dies, a counter shared by children.
    let (lock, held) = (mp::Lock::new()?, mp::Event::new()?);
    let mut p = mp::Process::with_args(hold_the_lock, (lock.clone(), held.clone()));
    p.start()?;
    held.wait_timeout(DEADLINE);
    p.kill()?;
    let _ = p.join_timeout(DEADLINE);
    let told = match lock.acquire_timeout(DEADLINE) {
        Err(mp::AcquireError::OwnerDied(guard)) => {
            drop(guard);
            "OwnerDied"
        }
        Ok(_) => "nothing",
        Err(_) => "an error",
    };
    let works = lock.try_acquire().is_ok();
    steps.say(format_args!(
        "a Lock held by a child that was killed: the next acquire was told {told}, and the lock works again: {works}"
    ));
    let v = mp::Value::new(0u64)?;
    let mut kids: Vec<_> = (0..2)
        .map(|_| mp::Process::with_args(count, (v.clone(), 1000)))
        .collect();
    for k in &mut kids {
        k.start()?;
    }
    for k in &mut kids {
        k.join_timeout(DEADLINE)?;
    }
    steps.say(format_args!(
        "a Value incremented 1000 times by each of 2 children under its lock: {}",
        v.load()?
    ));

    // Pools.
    let pool = mp::Pool::new(2)?;
    let pids_before = pool.pids().len();
    let results: Vec<String> = pool
        .imap(square_or_die, 0..6)?
        .map(|r| match r {
            Ok(v) => format!("Ok({v})"),
            Err(e) => format!("Err({:?})", e.kind()),
        })
        .collect();
    steps.say(format_args!(
        "Pool({pids_before}).imap(x*x) over 0..6, where task 3 kills its worker: [{}]; the pool still has {} workers",
        results.join(", "),
        pool.pids().len()
    ));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = seen.clone();
    let callbacks = mp::Callbacks::new().callback(move |v: &u64| *slot.lock().unwrap() = Some(*v));
    let r = pool.apply_async_with(square_or_die, 7, callbacks)?;
    let got = r.get()?;
    let executor = mp::Executor::new(2)?;
    let mut future = executor.submit(square_or_die, 12)?;
    steps.say(format_args!(
        "apply_async_with(x*x, 7): get() = {got}, and its callback saw {:?}; Executor::submit(x*x, 12).result() = {}",
        seen.lock().unwrap(),
        future.result(Some(DEADLINE))?
    ));
    let mut futures: Vec<_> = (4..=6)
        .map(|x| executor.submit(square_or_die, x))
        .collect::<mp::Result<_>>()?;
    let mut completed = Vec::new();
    for done in mp::futures::as_completed(&mut futures, Some(DEADLINE))? {
        let (_index, f) = done?;
        completed.push(f.result(None)?);
    }
    completed.sort_unstable();
    let in_order: Vec<u64> = executor
        .map(square_or_die, 7..10, Some(DEADLINE))?
        .collect::<mp::Result<_>>()?;
    steps.say(format_args!(
        "futures::as_completed over 3 submissions gave {completed:?}; Executor::map(x*x, 7..10) = {in_order:?}"
    ));
    drop(executor);
    pool.close();
    pool.join()?;

    // The module-level functions.
    let methods: Vec<String> = mp::StartMethod::all().iter().map(ToString::to_string).collect();
    steps.say(format_args!(
        "cpu_count() = {}, StartMethod::all() = {methods:?}, current_process().name() = {:?}, \
         active_children() = {:?}: every child was reaped",
        mp::cpu_count()?,
        mp::current_process().name(),
        mp::active_children(),
    ));
    Ok(())
}

/// Starts a child (under fork, with a capturing closure) that starts a
/// daemonic grandchild blocked forever, reports the grandchild's pid on a
/// socket, then returns or, when `kill_child`, blocks until this process
/// kills it with `SIGKILL`. Returns the grandchild's pid and the child's
/// exitcode once the grandchild is gone.
///
/// The grandchild is forked, so it holds a copy of the child's end of the
/// socket until it dies. Reading the socket to its end therefore waits for
/// exactly that: no polling, no sleep.
#[cfg(not(unix))]
fn daemon_family(_kill_child: bool) -> Result<(u32, Option<i32>), Box<dyn Error>> {
    Err("the daemon family forks: Unix only".into())
}

/// See the Unix version.
#[cfg(unix)]
fn daemon_family(kill_child: bool) -> Result<(u32, Option<i32>), Box<dyn Error>> {
    let (ours, theirs) = UnixStream::pair()?;
    ours.set_read_timeout(Some(DEADLINE))?;
    let mut child = mp::Process::from_closure(move || {
        let mut theirs = theirs;
        let mut daemon = mp::ProcessBuilder::new()
            .daemon(true)
            .start_method(mp::StartMethod::Fork)
            .target(block_forever);
        daemon.start().expect("a non-daemonic child may start children");
        writeln!(theirs, "{}", daemon.pid().expect("started")).expect("the parent is reading");
        drop(theirs);
        if kill_child {
            block_forever();
        }
    });
    child.start()?;
    let outcome = (|| -> Result<(u32, Option<i32>), Box<dyn Error>> {
        let mut line = String::new();
        BufReader::new(&ours).read_line(&mut line)?;
        let grandchild = line.trim().parse()?;
        if kill_child {
            child.kill()?;
            let e = child
                .join_timeout(DEADLINE)
                .expect_err("a killed child returns nothing");
            if e.kind() != mp::ErrorKind::ChildKilled {
                return Err(e.into());
            }
        } else {
            child.join_timeout(DEADLINE)?;
        }
        // End of file: every copy of the child's end is closed, the
        // grandchild's included. A timeout here is an error.
        (&ours).read_to_end(&mut Vec::new())?;
        Ok((grandchild, child.exitcode()))
    })();
    if outcome.is_err() {
        // Never leave a non-daemonic child behind: at exit this process
        // would wait for it forever.
        let _ = child.kill();
        let _ = child.join_timeout(DEADLINE);
    }
    outcome
}
