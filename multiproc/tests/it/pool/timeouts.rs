//! Task timeouts: a task past its timeout is killed and its worker
//! replaced; results still to come can be waited for.

use std::time::Duration;

use multiproc::{ErrorKind, StartMethod};

use crate::support::{DEADLINE, Rendezvous};

use super::{forever, pool, square, wait_for_gate};

fn task_timeout_kills_and_replaces(m: StartMethod) {
    let p = pool(m, 2).task_timeout(Duration::from_millis(300)).build().unwrap();
    let mut r = p.apply_async(forever, 0).unwrap();
    let e = r.get_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TaskTimeout, "{e}");
    assert!(!e.is_timeout(), "not a wait that could be retried");
    assert_eq!(p.map(square, 0..10u64).unwrap().len(), 10);
    assert_eq!(p.pids().len(), 2);
}

fn timeouts_leave_results_to_wait_for(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    // Python's `imap(...).next(timeout)`: a late result is a timeout, and
    // the iteration goes on.
    let rv = Rendezvous::new();
    let mut it = p.imap(wait_for_gate, [rv.addr()]).unwrap();
    assert_eq!(
        it.next_timeout(Duration::from_millis(50)).unwrap().unwrap_err().kind(),
        ErrorKind::Timeout
    );
    rv.wait_ready().open();
    assert!(it.next_timeout(DEADLINE).unwrap().unwrap());
    assert!(it.next_timeout(DEADLINE).is_none());
    // `MapResult::wait`.
    let mut r = p.map_async(wait_for_gate, [rv.addr()], None).unwrap();
    assert!(!r.wait(Some(Duration::from_millis(50))).unwrap());
    assert!(!r.ready());
    assert_eq!(r.get_timeout(Duration::ZERO).unwrap_err().kind(), ErrorKind::Timeout);
    rv.wait_ready().open();
    assert!(r.wait(Some(DEADLINE)).unwrap());
    assert_eq!(r.successful(), Some(true));
    assert_eq!(r.get().unwrap(), [true]);
    // A chunk size of 0 is refused.
    assert_eq!(
        p.map_chunked(square, 0..3u64, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        p.imap_chunked(square, 0..3u64, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        p.map_async(square, 0..3u64, Some(0)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

per_method!(task_timeout_kills_and_replaces, timeouts_leave_results_to_wait_for);
