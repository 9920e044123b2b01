//! `Barrier` across processes: three parties, a party killed (last or in
//! the middle), abort and reset, timeouts, and the bounds on its parties.

use std::{
    thread,
    time::{Duration, Instant},
};

use multiproc::{Barrier, ErrorKind, StartMethod};

use crate::support::{DEADLINE, block_forever, start};

use super::{kill, until};

fn party(b: Barrier) -> usize {
    b.wait_timeout(DEADLINE).unwrap()
}

/// SYNC-17: three parties in three processes; distinct indexes, one 0.
fn barrier_of_three(m: StartMethod) {
    let b = Barrier::new(3).unwrap();
    for _pass in 0..2 {
        let ps: Vec<_> = (0..2).map(|_| start(m, party, b.clone())).collect();
        let mut got = vec![b.wait_timeout(DEADLINE).unwrap()];
        for mut p in ps {
            got.push(p.join_timeout(DEADLINE).unwrap());
        }
        got.sort();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(b.n_waiting(), 0);
        assert!(!b.is_broken());
    }
}

fn wait_forever(b: Barrier) {
    let _ = b.wait();
    block_forever()
}

/// A party killed while waiting breaks the barrier for the others.
fn barrier_party_killed(m: StartMethod) {
    let b = Barrier::new(3).unwrap();
    let p = start(m, wait_forever, b.clone());
    until(|| b.n_waiting() == 1);
    kill(p);
    let t = Instant::now();
    let e = b.wait_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenBarrier, "{e}");
    assert!(t.elapsed() < DEADLINE / 4, "took {:?}", t.elapsed());
    assert!(b.is_broken());
    assert_eq!(b.wait().unwrap_err().kind(), ErrorKind::BrokenBarrier);
    b.reset().unwrap();
    assert!(!b.is_broken());
}

/// A party killed between live ones is found too: each waiter watches one
/// neighbour, and the watcher of the dead one is alive.
fn barrier_middle_party_killed(m: StartMethod) {
    let b = Barrier::new(5).unwrap();
    let mut first = start(m, wait_kind, b.clone());
    until(|| b.n_waiting() == 1);
    let dead = start(m, wait_forever, b.clone());
    until(|| b.n_waiting() == 2);
    kill(dead);
    let mut third = start(m, wait_kind, b.clone());
    until(|| b.n_waiting() == 3 || b.is_broken());
    let e = b.wait_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenBarrier, "{e}");
    assert_eq!(first.join_timeout(DEADLINE).unwrap(), ErrorKind::BrokenBarrier);
    assert_eq!(third.join_timeout(DEADLINE).unwrap(), ErrorKind::BrokenBarrier);
}

fn wait_kind(b: Barrier) -> ErrorKind {
    b.wait_timeout(DEADLINE).unwrap_err().kind()
}

/// SYNC-21: reset and abort break the current waiters; after a reset the
/// barrier works again.
fn barrier_abort_and_reset(m: StartMethod) {
    let b = Barrier::new(2).unwrap();
    let mut p = start(m, wait_kind, b.clone());
    until(|| b.n_waiting() == 1);
    b.reset().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), ErrorKind::BrokenBarrier);
    assert!(!b.is_broken());
    let mut p = start(m, party, b.clone());
    let mine = b.wait_timeout(DEADLINE).unwrap();
    assert_eq!(mine + p.join_timeout(DEADLINE).unwrap(), 1);
    let mut p = start(m, wait_kind, b.clone());
    until(|| b.n_waiting() == 1);
    b.abort().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), ErrorKind::BrokenBarrier);
    assert!(b.is_broken());
    assert_eq!(b.wait().unwrap_err().kind(), ErrorKind::BrokenBarrier);
}

/// SYNC-23: a party whose wait times out breaks the barrier.
fn barrier_timeout(m: StartMethod) {
    let b = Barrier::new(3).unwrap();
    let mut p = start(m, wait_kind, b.clone());
    until(|| b.n_waiting() == 1);
    let e = b.wait_timeout(Duration::from_millis(20)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenBarrier);
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), ErrorKind::BrokenBarrier);
}

/// SYNC-25: a barrier of one passes at once, twice.
#[test]
fn barrier_of_one() {
    let b = Barrier::new(1).unwrap();
    assert_eq!(b.wait().unwrap(), 0);
    assert_eq!(b.wait().unwrap(), 0);
    assert_eq!(Barrier::new(0).unwrap_err().kind(), ErrorKind::InvalidInput);
}

/// I-1: a barrier of `Barrier::MAX_PARTIES` parties passes (every party
/// but the last takes a slot); one more party is refused.
#[test]
fn barrier_of_max_parties() {
    let n = Barrier::MAX_PARTIES;
    assert_eq!(Barrier::new(n + 1).unwrap_err().kind(), ErrorKind::InvalidInput);
    let b = Barrier::new(n).unwrap();
    let ts: Vec<_> = (0..n)
        .map(|_| {
            let b = b.clone();
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || b.wait_timeout(DEADLINE).unwrap())
                .unwrap()
        })
        .collect();
    let mut idx: Vec<usize> = ts.into_iter().map(|t| t.join().unwrap()).collect();
    idx.sort_unstable();
    assert_eq!(idx, (0..n).collect::<Vec<_>>());
}

per_method!(
    barrier_of_three,
    barrier_party_killed,
    barrier_middle_party_killed,
    barrier_abort_and_reset,
    barrier_timeout,
);
