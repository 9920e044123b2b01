//! `Lock` across processes and threads: mutual exclusion, a holder killed
//! or a thread exiting with it, who may release it, and dropping a held
//! lock.

use std::{
    thread,
    time::{Duration, Instant},
};

use multiproc::{Condition, ErrorKind, Event, Lock, Queue, RLock, StartMethod};

use crate::support::{DEADLINE, block_forever, start};

use super::kill;

fn contend((lock, log): (Lock, Queue<String>)) {
    // The parent holds it: a try fails, a short timed wait times out.
    assert!(lock.try_acquire().unwrap_err().is_timeout());
    assert!(
        lock.acquire_timeout(Duration::from_millis(20))
            .unwrap_err()
            .is_timeout()
    );
    log.put("child saw it held".into()).unwrap();
    let _g = lock.acquire_timeout(DEADLINE).unwrap();
    log.put("child holds it".into()).unwrap();
}

/// SYNC-01: the lock excludes across processes; the child gets it only
/// after the parent's release.
fn lock_excludes_across_processes(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let log: Queue<String> = Queue::new().unwrap();
    let g = lock.acquire().unwrap();
    let mut p = start(m, contend, (lock.clone(), log.clone()));
    assert_eq!(log.get_timeout(DEADLINE).unwrap(), "child saw it held");
    log.put("parent releases".into()).unwrap();
    drop(g);
    p.join_timeout(DEADLINE).unwrap();
    assert_eq!(log.get_timeout(DEADLINE).unwrap(), "parent releases");
    assert_eq!(log.get_timeout(DEADLINE).unwrap(), "child holds it");
    assert!(!lock.is_locked());
}

fn hold_lock_forever((lock, held): (Lock, Event)) {
    let _g = lock.acquire().unwrap();
    held.set();
    block_forever()
}

/// A holder killed while holding the lock: the next acquirer is told, and
/// the lock then works normally.
fn lock_holder_killed(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let p = start(m, hold_lock_forever, (lock.clone(), held.clone()));
    assert!(held.wait_timeout(DEADLINE));
    assert!(lock.try_acquire().unwrap_err().is_timeout());
    kill(p);
    let t = Instant::now();
    let e = lock.acquire_timeout(DEADLINE).unwrap_err();
    assert!(e.is_owner_died(), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::OwnerDied);
    let g = e.recover().unwrap();
    assert!(t.elapsed() < DEADLINE);
    assert!(lock.is_held_by_me());
    drop(g);
    drop(lock.acquire().expect("a recovered lock is healthy"));
}

fn release_foreign((lock, tried): (Lock, Event)) -> (ErrorKind, ErrorKind) {
    let not_owner = lock.release().unwrap_err().kind();
    tried.set();
    let g = lock.acquire_timeout(DEADLINE).unwrap();
    drop(g);
    (not_owner, lock.release().unwrap_err().kind())
}

/// Python lets another process release a Lock; here only the holder may
/// (documented), and an unlocked lock's release is an error (SYNC-01).
fn lock_release_rules(m: StartMethod) {
    let lock = Lock::new().unwrap();
    lock.acquire_unguarded(None).unwrap();
    // This thread holds it: a blocking acquire is an error, not a deadlock.
    let e = lock.acquire().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    let tried = Event::new().unwrap();
    let mut p = start(m, release_foreign, (lock.clone(), tried.clone()));
    // The child's release fails while we hold it; then it waits for it.
    assert!(tried.wait_timeout(DEADLINE));
    assert!(lock.is_held_by_me());
    lock.release().unwrap();
    let (foreign, unlocked) = p.join_timeout(DEADLINE).unwrap();
    assert_eq!(foreign, ErrorKind::InvalidState);
    assert_eq!(unlocked, ErrorKind::InvalidState);
    let e = lock.release().unwrap_err();
    assert!(e.to_string().contains("released too many times"), "{e}");
}

/// Drops the last handle of locks that this thread still holds (without
/// a guard, or through a leaked guard), then locks and unlocks others: the
/// held locks sit on glibc's robust list of this thread, which must never
/// point at unmapped memory (nor at new objects mapped where the dropped
/// ones were).
fn drop_held_then_lock_others(_: ()) -> u32 {
    let older = Lock::new().unwrap();
    let g0 = older.acquire().unwrap();
    let l = Lock::new().unwrap();
    l.acquire_unguarded(None).unwrap();
    drop(l);
    let r = RLock::new().unwrap();
    r.acquire_unguarded(None).unwrap();
    std::mem::forget(r.acquire().unwrap());
    drop(r);
    let c = Condition::new().unwrap();
    std::mem::forget(c.acquire().unwrap());
    drop(c);
    // Releasing the older lock walks the robust list past the newer,
    // dropped ones.
    drop(g0);
    let fresh: Vec<Lock> = (0..64).map(|_| Lock::new().unwrap()).collect();
    for f in &fresh {
        drop(f.acquire().unwrap());
    }
    let held: Vec<RLock> = (0..8).map(|_| RLock::new().unwrap()).collect();
    for h in &held {
        std::mem::forget(h.acquire().unwrap());
    }
    let again = Lock::new().unwrap();
    drop(again.acquire().unwrap());
    for h in &held {
        h.release().unwrap();
    }
    7
}

/// C-1: dropping a lock that this process still holds does not unmap it
/// under glibc's robust list (the child would crash).
fn drop_held_lock_is_safe(m: StartMethod) {
    let mut p = start(m, drop_held_then_lock_others, ());
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 7);
}

/// A thread that exits holding a lock is reported like a dead process.
#[test]
fn thread_exiting_with_the_lock() {
    let lock = Lock::new().unwrap();
    let l = lock.clone();
    thread::spawn(move || std::mem::forget(l.acquire().unwrap()))
        .join()
        .unwrap();
    let e = lock.acquire_timeout(DEADLINE).unwrap_err();
    assert!(e.is_owner_died());
    assert!(lock.is_held_by_me());
    // Dropping the error drops the guard it carries.
    drop(e);
    assert!(!lock.is_locked());
}

/// Many threads incrementing a counter under the lock never overlap.
#[test]
fn lock_excludes_threads() {
    let lock = Lock::new().unwrap();
    let inside = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                for _ in 0..2000 {
                    let _g = lock.acquire().unwrap();
                    assert_eq!(inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                    inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
}

per_method!(
    lock_excludes_across_processes,
    lock_holder_killed,
    lock_release_rules,
    drop_held_lock_is_safe,
);
