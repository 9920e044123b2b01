//! `RLock` across processes: recursion and ownership, a holder killed.

use std::{thread, time::Duration};

use multiproc::{AcquireError, ErrorKind, Event, RLock, StartMethod};

use crate::support::{DEADLINE, block_forever, start};

use super::kill;

fn hold_rlock_forever((lock, held): (RLock, Event)) {
    let a = lock.acquire().unwrap();
    let b = lock.acquire().unwrap();
    assert_eq!(lock.depth(), 2);
    held.set();
    let _keep = (a, b);
    block_forever()
}

fn rlock_holder_killed(m: StartMethod) {
    let lock = RLock::new().unwrap();
    let held = Event::new().unwrap();
    let p = start(m, hold_rlock_forever, (lock.clone(), held.clone()));
    assert!(held.wait_timeout(DEADLINE));
    kill(p);
    let g = match lock.acquire_timeout(DEADLINE) {
        Err(AcquireError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    assert_eq!(lock.depth(), 1);
    drop(g);
    assert!(!lock.is_locked());
    let _a = lock.acquire().unwrap();
    let _b = lock.acquire().unwrap();
    assert_eq!(lock.depth(), 2);
}

fn rlock_release_foreign(lock: RLock) -> ErrorKind {
    lock.release().unwrap_err().kind()
}

/// RLock recursion; a release by a thread or process that does not own it
/// is an error.
fn rlock_recursion_and_ownership(m: StartMethod) {
    let lock = RLock::new().unwrap();
    let a = lock.acquire().unwrap();
    let b = lock.try_acquire().unwrap();
    lock.acquire_unguarded(Some(Duration::ZERO)).unwrap();
    assert_eq!(lock.depth(), 3);
    let mut p = start(m, rlock_release_foreign, lock.clone());
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), ErrorKind::InvalidState);
    let other = lock.clone();
    let e = thread::spawn(move || other.release().unwrap_err().to_string())
        .join()
        .unwrap();
    assert!(e.contains("not owned by thread"), "{e}");
    lock.release().unwrap();
    drop(b);
    drop(a);
    assert!(!lock.is_locked());
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::InvalidState);
}

per_method!(rlock_holder_killed, rlock_recursion_and_ownership,);
