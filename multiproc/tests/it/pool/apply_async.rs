//! `apply_async` and waiting on its results: waits from several threads,
//! results nobody keeps, submissions that do not queue behind a busy
//! worker.

use std::{path::PathBuf, sync::Arc, time::Instant};

use multiproc::{ErrorKind, StartMethod};

use crate::support::{DEADLINE, Rendezvous};

use super::{forever, held, marker, own_pid, pool, square, touch};

fn waits_from_threads_do_not_block_each_other(m: StartMethod) {
    let p = Arc::new(pool(m, 2).build().unwrap());
    let stuck = p.apply_async(forever, 0).unwrap();
    let waiter = std::thread::spawn(move || stuck.get().map_err(|e| e.kind()));
    // While that thread waits (for ever) on the stuck task, this one is
    // served by the other worker, many times.
    for i in 0..50u64 {
        assert_eq!(p.apply(square, i).unwrap(), i * i);
        assert_eq!(p.map(square, 0..10u64).unwrap().len(), 10);
    }
    // `ready` polls without anyone driving the pool.
    let r = p.apply_async(square, 7).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while !r.ready() {
        assert!(Instant::now() < deadline, "ready() never became true");
        std::thread::yield_now();
    }
    assert_eq!(r.successful(), Some(true));
    p.terminate().unwrap();
    assert_eq!(waiter.join().unwrap(), Err(ErrorKind::Cancelled));
}

fn separate_submissions_do_not_queue_behind_a_busy_worker(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    // A map's first chunks go to different workers.
    let pids = p.map_chunked(own_pid, [0u32, 1], 1).unwrap();
    assert_ne!(pids[0], pids[1], "both chunks went to one worker");
    // One worker is stuck: the other serves every later submission
    // (none waits behind the stuck task).
    let _stuck = p.apply_async(forever, 0).unwrap();
    for i in 0..20u64 {
        let mut r = p.apply_async(square, i).unwrap();
        assert_eq!(r.get_timeout(DEADLINE).unwrap(), i * i);
    }
    let mut r = p.map_async(square, 0..8u64, Some(1)).unwrap();
    assert_eq!(r.get_timeout(DEADLINE).unwrap().len(), 8);
}

/// Python: `AsyncResult` objects need not be kept; `close(); join()`
/// runs every queued task (fire-and-forget `apply_async`/`map_async`).
fn dropped_async_results_still_run(m: StartMethod) {
    let p = pool(m, 1).build().unwrap();
    let rv = Rendezvous::new();
    let mut blocker = p.apply_async(held, rv.addr()).unwrap();
    let gate = rv.wait_ready();
    let paths: Vec<PathBuf> = (0..4).map(|i| marker("apply", m, i)).collect();
    for path in &paths[..2] {
        drop(p.apply_async(touch, path.display().to_string()).unwrap());
    }
    drop(
        p.map_async(touch, paths[2..].iter().map(|p| p.display().to_string()), Some(1))
            .unwrap(),
    );
    gate.open();
    assert!(blocker.get_timeout(DEADLINE).unwrap());
    p.close();
    p.join().unwrap();
    let ran: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
    assert_eq!(
        ran, [true; 4],
        "tasks whose AsyncResult/MapResult was dropped never ran"
    );
}

per_method!(
    waits_from_threads_do_not_block_each_other,
    separate_submissions_do_not_queue_behind_a_busy_worker,
    dropped_async_results_still_run,
);
