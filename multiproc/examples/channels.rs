//! Processes that talk: a Pipe, a JoinableQueue feeding workers, wait(),
//! and a connection handed to a child through a queue.
//!
//! Python original (the same program in `multiprocessing`):
//!
//! ```python
//! from multiprocessing import Process, Pipe, JoinableQueue, SimpleQueue
//! from multiprocessing.connection import wait
//!
//! def echo(conn):
//!     while True:
//!         try:
//!             conn.send(conn.recv().upper())
//!         except EOFError:
//!             return
//!
//! def worker(jobs, results):
//!     while (n := jobs.get()) is not None:
//!         results.put((n, n * n))
//!         jobs.task_done()
//!     jobs.task_done()
//!
//! if __name__ == "__main__":
//!     ours, theirs = Pipe()
//!     p = Process(target=echo, args=(theirs,)); p.start(); theirs.close()
//!     ours.send("bonjour"); print("1. echo:", ours.recv())
//!     jobs, results = JoinableQueue(), SimpleQueue()
//!     workers = [Process(target=worker, args=(jobs, results)) for _ in range(2)]
//!     ...
//! ```
//!
//! Run it with `cargo run -p multiproc --example channels`.
use std::time::Duration;

use multiproc::{self as mp, Connection, JoinableQueue, Queue, SimpleQueue};

const DEADLINE: Duration = Duration::from_secs(30);

/// Sends back every text it receives, upper-cased, until the other end
/// closes.
fn echo(conn: Connection) {
    while let Ok(text) = conn.recv::<String>() {
        conn.send(text.to_uppercase()).expect("send the echo");
    }
}

/// Squares the numbers it takes from `jobs` until it takes `None`.
fn worker((jobs, results): (JoinableQueue<Option<u64>>, SimpleQueue<(u64, u64)>)) {
    while let Some(n) = jobs.get().expect("take a job") {
        results.put((n, n * n)).expect("put a result");
        jobs.task_done().expect("mark the job done");
    }
    jobs.task_done().expect("mark the stop job done");
}

/// Takes a connection from the queue and greets through it.
fn greeter(inbox: Queue<Connection>) {
    let conn = inbox.get_timeout(DEADLINE).expect("a connection arrives");
    conn.send(format!("hello from process {}", std::process::id()))
        .expect("greet");
}

fn main() -> mp::Result<()> {
    // 1. A duplex pipe to an echo process; dropping our end ends it.
    let (ours, theirs) = mp::pipe(true)?;
    let mut echoer = mp::Process::with_args(echo, theirs);
    echoer.start()?;
    ours.send("bonjour".to_string())?;
    println!("1. echo: {}", ours.recv_timeout::<String>(DEADLINE)?);
    drop(ours);
    echoer.join_timeout(DEADLINE)?;
    println!(
        "2. the echo process ended when the pipe closed: exitcode {:?}",
        echoer.exitcode()
    );

    // 3. Two workers take jobs from a joinable queue.
    let jobs = JoinableQueue::new()?;
    let results = SimpleQueue::new()?;
    let mut workers: Vec<_> = (0..2)
        .map(|_| mp::Process::with_args(worker, (jobs.clone(), results.clone())))
        .collect();
    for w in &mut workers {
        w.start()?;
    }
    for n in 1..=10 {
        jobs.put(Some(n))?;
    }
    jobs.join_timeout(DEADLINE)?;
    let mut squares: Vec<(u64, u64)> = (0..10)
        .map(|_| results.get_timeout(DEADLINE))
        .collect::<Result<_, _>>()?;
    squares.sort_unstable();
    let squares: Vec<u64> = squares.into_iter().map(|(_, sq)| sq).collect();
    println!("3. all jobs done, squares: {squares:?}");
    for _ in &workers {
        jobs.put(None)?;
    }
    for w in &mut workers {
        w.join_timeout(DEADLINE)?;
    }

    // 4. wait() watches connections, queues and processes together.
    let inbox = Queue::new()?;
    let mut greeter_process = mp::Process::with_args(greeter, inbox.clone());
    greeter_process.start()?;
    let (here, there) = mp::pipe(true)?;
    inbox.put(there)?; // a connection travels through the queue
    let ready = mp::wait(&[(&here).into(), (&greeter_process).into()], Some(DEADLINE))?;
    println!(
        "4. wait() says the connection is ready first: {}",
        ready.first() == Some(&0)
    );
    let greeting: String = here.recv_timeout(DEADLINE)?;
    println!(
        "5. {}",
        greeting.replace(&greeter_process.pid().unwrap_or(0).to_string(), "<child>")
    );
    greeter_process.join_timeout(DEADLINE)?;
    println!("6. every process joined; queue empty: {}", inbox.is_empty());
    Ok(())
}
