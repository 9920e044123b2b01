//! A barrier's default timeout (Python's `Barrier(parties, timeout=t)`):
//! it travels with the barrier and a plain `wait()` uses it; under every
//! start method.

use std::time::Duration;

use multiproc::{Barrier, ErrorKind, StartMethod};

use crate::support::{DEADLINE, start};

/// A plain `wait()` in the child; reports the default timeout the child's
/// handle carries and how its wait ended.
fn plain_wait(b: Barrier) -> (Option<Duration>, std::result::Result<usize, ErrorKind>) {
    (b.timeout(), b.wait().map_err(|e| e.kind()))
}

/// Python's `Barrier(3, timeout=t)`: the default travels with the barrier,
/// a plain `wait()` uses it, and its expiry breaks the barrier for every
/// waiter (`BrokenBarrierError`), here a child and the parent.
fn barrier_default_timeout_breaks_plain_wait(m: StartMethod) {
    let t = Duration::from_millis(300);
    let b = Barrier::with_timeout(3, t).unwrap();
    assert_eq!(b.timeout(), Some(t));
    let mut p = start(m, plain_wait, b.clone());
    // The third party never comes: whichever of the two waits expires
    // first breaks the barrier, and the other is told.
    let mine = b.wait().unwrap_err();
    assert_eq!(mine.kind(), ErrorKind::BrokenBarrier, "{mine}");
    let (theirs_timeout, theirs) = p.join_timeout(DEADLINE).unwrap();
    assert_eq!(theirs_timeout, Some(t));
    assert_eq!(theirs, Err(ErrorKind::BrokenBarrier));
    assert!(b.is_broken());
    // Broken until a reset; then it passes again, with plain waits.
    b.reset().unwrap();
    let b2 = Barrier::with_timeout(2, DEADLINE).unwrap();
    let mut p = start(m, plain_wait, b2.clone());
    let mine = b2.wait().unwrap();
    let (_, theirs) = p.join_timeout(DEADLINE).unwrap();
    assert_eq!(mine + theirs.unwrap(), 1);
}

per_method!(barrier_default_timeout_breaks_plain_wait);

#[test]
fn barrier_without_default_timeout_has_none() {
    let b = Barrier::new(1).unwrap();
    assert_eq!(b.timeout(), None);
    assert_eq!(b.wait().unwrap(), 0);
    // An explicit timeout still wins over the default.
    let b = Barrier::with_timeout(2, DEADLINE).unwrap();
    let e = b.wait_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenBarrier);
}
