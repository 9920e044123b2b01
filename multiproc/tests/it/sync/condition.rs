//! `Condition` across processes and threads: `notify`, `notify(n)`,
//! `wait_for`.

use std::{thread, time::Duration};

use multiproc::{AcquireError, Condition, ErrorKind, Lock, Queue, Semaphore, StartMethod};

use crate::support::{DEADLINE, start};

use super::until;

fn cond_waiter((cond, sleeping, woken): (Condition, Queue<u32>, Queue<bool>)) {
    let g = cond.acquire().unwrap();
    sleeping.put(std::process::id()).unwrap();
    let notified = g.wait_timeout(DEADLINE).unwrap();
    woken.put(notified).unwrap();
}

/// SYNC-07/09: waiters in children; notify(n) wakes exactly n, in order.
fn condition_notify_across_processes(m: StartMethod) {
    let cond = Condition::new().unwrap();
    let sleeping: Queue<u32> = Queue::new().unwrap();
    let woken: Queue<bool> = Queue::new().unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| start(m, cond_waiter, (cond.clone(), sleeping.clone(), woken.clone())))
        .collect();
    for _ in 0..3 {
        sleeping.get_timeout(DEADLINE).unwrap();
    }
    // Each waiter announced itself holding the lock and released it only
    // by waiting: once we hold it, all three wait.
    {
        let g = cond.acquire().unwrap();
        assert!(woken.is_empty());
        g.notify(2).unwrap();
    }
    assert!(woken.get_timeout(DEADLINE).unwrap());
    assert!(woken.get_timeout(DEADLINE).unwrap());
    {
        let g = cond.acquire().unwrap();
        assert!(woken.is_empty(), "notify(2) woke more than 2");
        g.notify_all().unwrap();
    }
    assert!(woken.get_timeout(DEADLINE).unwrap());
    for p in &mut ps {
        p.join_timeout(DEADLINE).unwrap();
    }
    // Waiting or notifying without the lock is an error.
    assert_eq!(cond.notify(1).unwrap_err().kind(), ErrorKind::InvalidState);
    match cond.wait_timeout(Duration::ZERO) {
        Err(AcquireError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::InvalidState),
        other => panic!("expected an error, got {other:?}"),
    }
    // With the lock: a zero timeout returns false (SYNC-13).
    let g = cond.acquire().unwrap();
    assert!(!g.wait_timeout(Duration::ZERO).unwrap());
    assert!(!g.wait_timeout(Duration::from_millis(10)).unwrap());
}

fn count_up((cond, state): (Condition, Semaphore)) {
    for _ in 0..4 {
        let g = cond.acquire().unwrap();
        state.release().unwrap();
        g.notify_all().unwrap();
    }
}

/// SYNC-11: wait_for a predicate on state changed by a child.
fn condition_wait_for(m: StartMethod) {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let state = Semaphore::new(0).unwrap();
    let g = cond.acquire().unwrap();
    let mut p = start(m, count_up, (cond.clone(), state.clone()));
    assert!(g.wait_for(|| state.get_value() == 4, Some(DEADLINE)).unwrap());
    assert!(
        !g.wait_for(|| state.get_value() == 5, Some(Duration::from_millis(10)))
            .unwrap()
    );
    drop(g);
    p.join_timeout(DEADLINE).unwrap();
}

/// SYNC-09 with threads: six waiters, notify(2), notify(4), notify(3).
#[test]
fn condition_notify_n_threads() {
    let cond = Condition::new().unwrap();
    let woken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sleeping = Semaphore::new(0).unwrap();
    let ts: Vec<_> = (0..6)
        .map(|_| {
            let (cond, woken, sleeping) = (cond.clone(), woken.clone(), sleeping.clone());
            thread::spawn(move || {
                let g = cond.acquire().unwrap();
                sleeping.release().unwrap();
                assert!(g.wait_timeout(DEADLINE).unwrap());
                woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .collect();
    for _ in 0..6 {
        sleeping.acquire_unguarded(Some(DEADLINE)).unwrap();
    }
    let load = || woken.load(std::sync::atomic::Ordering::SeqCst);
    cond.acquire().unwrap().notify(2).unwrap();
    until(|| load() == 2);
    cond.acquire().unwrap().notify(4).unwrap();
    until(|| load() == 6);
    cond.acquire().unwrap().notify(3).unwrap();
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(load(), 6);
}

per_method!(condition_notify_across_processes, condition_wait_for,);
