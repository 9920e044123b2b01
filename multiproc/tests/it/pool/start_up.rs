//! Start-up: workers still starting block no submission, and start-up
//! time is not counted as task time.

use std::{
    sync::{Arc, mpsc},
    time::Duration,
};

use multiproc::{ErrorKind, StartMethod};

use crate::support::{BOOT_GATE, DEADLINE, Rendezvous};

use super::{checksum, pool, square};

/// Sets [`BOOT_GATE`] for the workers this scenario process starts from
/// now on (it is single-threaded: `run_isolated`).
#[allow(unsafe_code)]
fn hold_back_workers(rv: &Rendezvous) {
    // SAFETY: the scenario process runs no other thread.
    unsafe { std::env::set_var(BOOT_GATE, rv.addr()) };
}

fn starting_workers_block_no_submission(_: StartMethod) {
    // A worker still starting (held at its gate) is given small work at
    // once, but a large argument waits for it in the pending queue: the
    // pool's lock is never held by a send it cannot read.
    let rv = Rendezvous::new();
    hold_back_workers(&rv);
    let p = Arc::new(pool(StartMethod::Spawn, 1).build().unwrap());
    let gate = rv.wait_ready();
    // Each submission returns while the worker is held: nothing waits for
    // it under the lock (the large one is submitted first, so that it
    // would be the one sent to the idle, starting worker).
    let submit = |big: bool| {
        let p = p.clone();
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            let r = if big {
                p.apply_async(checksum, vec![1u8; 4 << 20])
            } else {
                p.apply_async(checksum, vec![1u8; 10])
            };
            tx.send(()).unwrap();
            r.map(|mut r| r.get_timeout(DEADLINE))
        });
        (t, rx.recv_timeout(DEADLINE))
    };
    let (big, big_submitted) = submit(true);
    let (small, small_submitted) = submit(false);
    gate.open();
    big_submitted.expect("a large submission waited for a starting worker");
    small_submitted.expect("a submission waited for a starting worker");
    assert_eq!(small.join().unwrap().unwrap().unwrap(), (10, 10));
    assert_eq!(big.join().unwrap().unwrap().unwrap(), (4 << 20, 4 << 20));
}

fn start_up_is_not_task_time(_: StartMethod) {
    // A task given to a worker that is still starting is timed from the
    // worker's first message, not from when it was sent.
    let rv = Rendezvous::new();
    hold_back_workers(&rv);
    let p = pool(StartMethod::Spawn, 1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut r = p.map_async(square, 0..10u64, Some(1)).unwrap();
    let gate = rv.wait_ready();
    // The tasks wait longer than their timeout for the worker to start.
    assert_eq!(
        r.get_timeout(Duration::from_millis(400)).unwrap_err().kind(),
        ErrorKind::Timeout,
        "nothing can finish while the worker is held"
    );
    gate.open();
    assert_eq!(
        r.get_timeout(DEADLINE).unwrap(),
        (0..10).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(p.apply(square, 5).unwrap(), 25);
}

#[test]
fn starting_workers_block_no_submission_spawn() {
    crate::support::run_isolated(starting_workers_block_no_submission, StartMethod::Spawn);
}

#[test]
fn start_up_is_not_task_time_spawn() {
    crate::support::run_isolated(start_up_is_not_task_time, StartMethod::Spawn);
}
