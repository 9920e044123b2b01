//! `maxtasksperchild`: workers are replaced after so many tasks, also
//! with a shutdown pending.

use multiproc::{Executor, Pool, StartMethod};

use crate::support::DEADLINE;

use super::{own_pid, pool, square};

fn maxtasksperchild_replaces_workers(m: StartMethod) {
    let p = pool(m, 2).maxtasksperchild(2).build().unwrap();
    let pids = p.map_chunked(own_pid, 0..20u32, 1).unwrap();
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 10, "each worker ran at most 2 tasks: {pids:?}");
    for d in &distinct {
        assert!(pids.iter().filter(|p| *p == d).count() <= 2);
    }
    assert_eq!(
        p.map(square, 0..1000u64).unwrap(),
        (0..1000u64).map(square).collect::<Vec<_>>()
    );
}

/// Python's gh-115634 cases: workers retiring after `max_tasks_per_child`
/// while `shutdown` waits: every result arrives, nothing deadlocks.
fn max_tasks_per_child_with_shutdown(m: StartMethod) {
    for (workers, per_child, tasks) in [(3, 1, 6u64), (1, 2, 6), (2, 2, 8)] {
        let ex = Executor::from_builder(
            Pool::builder()
                .processes(workers)
                .maxtasksperchild(per_child)
                .start_method(m),
        )
        .unwrap();
        let mut fs: Vec<_> = (0..tasks).map(|x| ex.submit(square, x).unwrap()).collect();
        ex.shutdown(true, false).unwrap();
        let got: Vec<u64> = fs.iter_mut().map(|f| f.result(Some(DEADLINE)).unwrap()).collect();
        assert_eq!(
            got,
            (0..tasks).map(square).collect::<Vec<_>>(),
            "{workers} workers, {per_child} per child"
        );
    }
}

per_method!(maxtasksperchild_replaces_workers, max_tasks_per_child_with_shutdown);
