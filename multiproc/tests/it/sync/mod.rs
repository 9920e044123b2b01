//! Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier
//! across processes, under every start method (CPython's SYNC cases where
//! they apply), and what happens when a holder or a party is killed; one
//! file per primitive.
//!
//! This module holds the helpers several of the files use.

mod barrier;
mod barrier_slow_arrivals;
mod barrier_timeout;
mod condition;
mod event;
mod lock;
mod objects;
mod rlock;
mod semaphore;

use std::{thread, time::Instant};

use multiproc::{self as mp, ErrorKind};
use serde::{Serialize, de::DeserializeOwned};

use crate::support::DEADLINE;

/// Kills `p` and reaps it.
pub(super) fn kill<R: Serialize + DeserializeOwned + 'static>(mut p: mp::Process<R>) {
    p.kill().expect("kill");
    let e = p.join_timeout(DEADLINE).err().expect("a killed child has no result");
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
}

/// Waits (bounded by DEADLINE) until `f` holds; for states that have no
/// event to wait on (a barrier's count of waiters).
pub(super) fn until(mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "condition not reached before the deadline");
        thread::yield_now();
    }
}
