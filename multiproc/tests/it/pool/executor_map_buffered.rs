//! The executor's `map_buffered`: lazy and bounded, refilled before it
//! waits, and what it does after a shutdown.

use std::time::Duration;

use multiproc::{ErrorKind, StartMethod};

use crate::support::{DEADLINE, Rendezvous};

use super::{executor, held_or_not, square};

/// `map_buffered` (Python 3.14's `buffersize`): the first tasks go out
/// with the call, the input is read only as results are taken, and its
/// timeout ends the iteration.
fn map_buffered_is_lazy_and_bounded(m: StartMethod) {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let ex = executor(m, 2);
    let rv = Rendezvous::new();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let addr = rv.addr();
    // An endless input; its first item is held at a gate.
    let input = (0u64..).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        (i == 0).then(|| addr.clone())
    });
    let mut it = ex.map_buffered(held_or_not, input, None, 4).unwrap();
    // Submitted by the call itself: the held task reports without any
    // `next`.
    let gate = rv.wait_ready();
    assert_eq!(pulled.load(Ordering::SeqCst), 4, "exactly the buffer was read");
    gate.open();
    let first: Vec<bool> = it.by_ref().take(10).map(Result::unwrap).collect();
    assert!(first[0]);
    assert!(first[1..].iter().all(|&b| !b));
    let read = pulled.load(Ordering::SeqCst);
    assert!(read <= 10 + 4, "read {read} items for 10 results with a buffer of 4");
    drop(it);

    // A fresh executor: the dropped iteration's tasks may still hold the
    // workers.
    let ex = executor(m, 2);
    let mut held = ex
        .map_buffered(
            held_or_not,
            [Some(rv.addr()), None, None],
            Some(Duration::from_millis(100)),
            2,
        )
        .unwrap();
    let gate = rv.wait_ready();
    assert_eq!(held.next().unwrap().unwrap_err().kind(), ErrorKind::Timeout);
    assert!(held.next().is_none(), "the map's own timeout ends it");
    gate.open();
    assert_eq!(
        ex.map_buffered(square, 0..3u64, None, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

/// As Python 3.14's: each `next` submits the next task before it waits,
/// so with a buffer of 1 two tasks overlap.
fn map_buffered_refills_before_it_waits(m: StartMethod) {
    let ex = executor(m, 2);
    let (rv0, rv1) = (Rendezvous::new(), Rendezvous::new());
    let items = [Some(rv0.addr()), Some(rv1.addr())];
    let mut it = ex.map_buffered(held_or_not, items, Some(DEADLINE), 1).unwrap();
    rv0.wait_ready().open();
    assert!(it.next().unwrap().unwrap());
    // No further call: task 1 was submitted (and sent) by the first `next`.
    let gate1 = rv1.wait_ready();
    gate1.open();
    assert!(it.next().unwrap().unwrap());
    assert!(it.next().is_none());
}

/// After `shutdown`, `map_buffered` over an endless input stops at the
/// next task it would submit (Python's `RuntimeError`).
fn map_buffered_stops_after_shutdown(m: StartMethod) {
    let ex = executor(m, 2);
    let mut it = ex.map_buffered(square, 0u64.., Some(DEADLINE), 4).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    ex.shutdown(false, false).unwrap();
    let end = it.next().map(|r| r.map_err(|e| e.kind()));
    assert_eq!(end, Some(Err(ErrorKind::InvalidState)));
    assert!(it.next().is_none());
}

/// `map_buffered` whose whole input went out before `shutdown`: its
/// results still come out (Python reads no further item, submits nothing).
fn map_buffered_after_shutdown_keeps_what_was_submitted(m: StartMethod) {
    let ex = executor(m, 2);
    let it = ex.map_buffered(square, [1u64, 2], Some(DEADLINE), 2).unwrap();
    ex.shutdown(true, false).unwrap();
    let got: Vec<_> = it.map(|r| r.map_err(|e| e.kind())).collect();
    assert_eq!(got, [Ok(1), Ok(4)]);
    // The same after terminate, for results that had arrived.
    let ex = executor(m, 2);
    let mut it = ex.map_buffered(square, [1u64, 2], Some(DEADLINE), 2).unwrap();
    let mut f = ex.submit(square, 3).unwrap();
    assert_eq!(f.result(Some(DEADLINE)).unwrap(), 9);
    ex.shutdown(true, false).unwrap();
    ex.kill_workers().unwrap();
    assert_eq!(it.next().map(|r| r.map_err(|e| e.kind())), Some(Ok(1)));
    assert_eq!(it.next().map(|r| r.map_err(|e| e.kind())), Some(Ok(4)));
    assert!(it.next().is_none());
}

per_method!(
    map_buffered_is_lazy_and_bounded,
    map_buffered_refills_before_it_waits,
    map_buffered_stops_after_shutdown,
    map_buffered_after_shutdown_keeps_what_was_submitted,
);
