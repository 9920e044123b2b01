//! `close`+`join`, `terminate` and `Drop` leave no worker or launcher
//! running.

use super::{all_gone, pid_of, script, square, tcp};
use crate::support::DEADLINE;

const DEADLINE_MS: u64 = DEADLINE.as_millis() as u64;

fn sleeps(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

#[test]
fn close_and_join_end_every_worker() {
    let pool = tcp(2).build().unwrap();
    pool.map(square, 0..10u64).unwrap();
    let pids = pool.pids();
    pool.close();
    pool.join().unwrap();
    assert!(all_gone(&pids), "{pids:?}");
}

#[test]
fn terminate_ends_busy_workers() {
    let pool = tcp(2).build().unwrap();
    let pids = pool.pids();
    // Tasks that would outlive the test: terminate does not wait for them.
    let _busy = pool
        .map_async(sleeps, vec![DEADLINE_MS * 10, DEADLINE_MS * 10], Some(1))
        .unwrap();
    assert_eq!(pool.map(pid_of, 0..0u32).unwrap().len(), 0);
    pool.terminate().unwrap();
    assert!(all_gone(&pids), "{pids:?}");
}

#[test]
fn drop_ends_the_workers_and_the_launcher() {
    // A launcher that outlives nothing: its pid is in the file it writes.
    let scratch = super::Scratch::new("drop");
    let file = scratch.path().join("launcher.pid");
    let file_s = file.to_str().unwrap();
    let pool = script(2, "echo $$ > \"$1\"; \"$0\" & \"$0\" & wait", &[file_s])
        .build()
        .unwrap();
    let busy = pool.map_async(sleeps, vec![DEADLINE_MS * 10], None).unwrap();
    let mut pids = pool.pids();
    pids.push(std::fs::read_to_string(&file).unwrap().trim().parse().unwrap());
    drop(busy);
    drop(pool);
    assert!(all_gone(&pids), "{pids:?}");
}
