//! Map, imap, apply and the executor over workers connected by TCP.

use multiproc::{Backend, Executor, Pool};

use super::{pid_of, square, tcp};
use crate::support::DEADLINE;

#[test]
fn map_over_tcp_workers() {
    let pool = tcp(3).build().unwrap();
    let want: Vec<u64> = (0..2000u64).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..2000u64).unwrap(), want);
    assert_eq!(pool.tasks(square).chunksize(1).map(0..300u64).unwrap(), want[..300]);
    let got: Vec<u64> = pool.imap(square, 0..100u64).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, want[..100]);
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    let mut r = pool.apply_async(square, 5).unwrap();
    assert_eq!(r.get_timeout(DEADLINE).unwrap(), 25);
    // The tasks ran in other processes: the pool's workers.
    let pids = pool.map(pid_of, 0..64u32).unwrap();
    assert!(pids.iter().all(|&p| p != std::process::id()));
    let mut workers = pool.pids();
    workers.sort_unstable();
    assert_eq!(workers.len(), 3);
    assert!(
        pids.iter().all(|p| workers.binary_search(p).is_ok()),
        "{pids:?} vs {workers:?}"
    );
    pool.close();
    pool.join().unwrap();
}

fn big(v: Vec<u8>) -> usize {
    v.iter().map(|&b| usize::from(b)).sum()
}

#[test]
fn large_arguments_cross_tcp() {
    let pool = tcp(2).build().unwrap();
    let args: Vec<Vec<u8>> = (0..4u8).map(|k| vec![k; 1 << 20]).collect();
    let want: Vec<usize> = (0..4usize).map(|k| k << 20).collect();
    assert_eq!(pool.map(big, args).unwrap(), want);
}

fn init_flag(v: u64) {
    INIT.set(v).unwrap();
}

static INIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

fn read_flag(_: u32) -> u64 {
    *INIT.get().unwrap()
}

#[test]
fn initializer_runs_in_tcp_workers() {
    let pool = tcp(2).initializer(init_flag, 41).build().unwrap();
    assert_eq!(pool.map(read_flag, 0..8u32).unwrap(), vec![41; 8]);
}

#[test]
fn executor_over_tcp_workers() {
    let ex = Executor::from_builder(Pool::builder().processes(2).backend(Backend::Tcp)).unwrap();
    let mut h = ex.submit(square, 9).unwrap();
    assert_eq!(h.result(Some(DEADLINE)).unwrap(), 81);
    let got: Vec<u64> = ex
        .map(square, 0..10u64, Some(DEADLINE))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
    ex.shutdown(true, false).unwrap();
}
