//! The executor starts its workers on demand and reuses idle ones
//! (Python >= 3.9's `ProcessPoolExecutor`, issue 14, item 9): a task
//! submitted while no worker is idle starts one, up to `max_workers`;
//! under fork every worker starts at the first submission, as Python's
//! fork context does. A `Pool` starts all its workers at once.

use std::collections::HashSet;

use multiproc::{ErrorKind, Executor, Pool, StartMethod};

use crate::support::{DEADLINE, Rendezvous, ready_then_wait};

fn executor(m: StartMethod, n: usize) -> Executor {
    Executor::from_builder(Pool::builder().processes(n).start_method(m)).unwrap()
}

fn own_pid(_: u32) -> u32 {
    std::process::id()
}

fn held(addr: String) -> u32 {
    ready_then_wait(&addr);
    std::process::id()
}

fn sequential_submissions_start_one_worker(m: StartMethod) {
    let ex = executor(m, 4);
    assert!(ex.pool().pids().is_empty(), "no worker before the first submission");
    let mut seen = HashSet::new();
    for i in 0..3 {
        let mut f = ex.submit(own_pid, i).unwrap();
        seen.insert(f.result(Some(DEADLINE)).unwrap());
    }
    let pids = ex.pool().pids();
    assert!(
        seen.iter().all(|pid| pids.contains(pid)),
        "{seen:?} ran outside {pids:?}"
    );
    if m == StartMethod::Fork {
        // Python's fork context starts them all at the first submission
        // (gh-90622: no fork once its manager thread runs).
        assert_eq!(pids.len(), 4, "{pids:?}");
    } else {
        assert_eq!(pids.len(), 1, "{pids:?}");
        assert_eq!(seen.len(), 1, "{seen:?}");
    }
    // `map` reuses the idle worker as well: its chunks start the others.
    let got: Vec<u32> = ex
        .map(own_pid, 0..8, Some(DEADLINE))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.len(), 8);
    assert!(ex.pool().pids().len() <= 4);
}

fn concurrent_blocked_tasks_use_every_worker(m: StartMethod) {
    let ex = executor(m, 4);
    let rv = Rendezvous::new();
    let futures: Vec<_> = (0..8).map(|_| ex.submit(held, rv.addr()).unwrap()).collect();
    // Four tasks run, one in each worker; the other four wait.
    let first: Vec<_> = (0..4).map(|_| rv.wait_ready()).collect();
    let pids = ex.pool().pids();
    assert_eq!(pids.len(), 4, "{pids:?}");
    let ran = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            futures
                .into_iter()
                .map(|mut f| f.result(Some(DEADLINE)).unwrap())
                .collect::<Vec<u32>>()
        });
        for gate in &first {
            gate.open();
        }
        for _ in 0..4 {
            rv.wait_ready().open();
        }
        waiter.join().unwrap()
    });
    let distinct: HashSet<u32> = ran.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{ran:?}");
    assert!(
        distinct.iter().all(|pid| pids.contains(pid)),
        "{ran:?} ran outside {pids:?}"
    );
    assert_eq!(ex.pool().pids().len(), 4);
}

fn init_fails(_: u32) {
    panic!("the initializer fails");
}

fn failing_initializer_breaks_the_executor_at_its_first_task(m: StartMethod) {
    let b = Pool::builder().processes(2).start_method(m).initializer(init_fails, 0);
    let ex = Executor::from_builder(b).unwrap();
    let e = ex.submit(own_pid, 0).unwrap().result(Some(DEADLINE)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    assert_eq!(e.panic().map(|p| p.message()), Some("the initializer fails"));
    let e = ex.submit(own_pid, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
}

fn a_pool_starts_every_worker_at_once(m: StartMethod) {
    let p = Pool::builder().processes(3).start_method(m).build().unwrap();
    assert_eq!(p.pids().len(), 3);
}

per_method!(
    sequential_submissions_start_one_worker,
    concurrent_blocked_tasks_use_every_worker,
    failing_initializer_breaks_the_executor_at_its_first_task,
    a_pool_starts_every_worker_at_once,
);
