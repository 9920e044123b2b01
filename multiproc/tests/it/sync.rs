//! Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier
//! across processes, under every start method (CPython's SYNC cases where
//! they apply), and what happens when a holder or a party is killed.

use std::{
    thread,
    time::{Duration, Instant},
};

use multiproc::{
    self as mp, AcquireError, Barrier, BoundedSemaphore, Condition, ErrorKind, Event, Lock, Queue, RLock, Semaphore,
    StartMethod,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::support::{DEADLINE, block_forever, open_fds, start};

/// Kills `p` and reaps it.
fn kill<R: Serialize + DeserializeOwned + 'static>(mut p: mp::Process<R>) {
    p.kill().expect("kill");
    let e = p.join_timeout(DEADLINE).err().expect("a killed child has no result");
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
}

/// Waits (bounded by DEADLINE) until `f` holds; for states that have no
/// event to wait on (a barrier's count of waiters).
fn until(mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "condition not reached before the deadline");
        thread::yield_now();
    }
}

// ----- Lock -----

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

// ----- RLock -----

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

// ----- Semaphore -----

fn hold_permit_forever((sem, held): (Semaphore, Event)) {
    let _g = sem.acquire().unwrap();
    held.set();
    block_forever()
}

/// A process killed holding a permit (taken through a guard): a waiter
/// reclaims it and is told.
fn semaphore_holder_killed(m: StartMethod) {
    let sem = Semaphore::new(1).unwrap();
    let held = Event::new().unwrap();
    let p = start(m, hold_permit_forever, (sem.clone(), held.clone()));
    assert!(held.wait_timeout(DEADLINE));
    assert_eq!(sem.get_value(), 0);
    kill(p);
    let e = sem.acquire_timeout(DEADLINE).unwrap_err();
    assert!(e.is_owner_died(), "{e:?}");
    let g = e.recover().unwrap();
    assert_eq!(sem.get_value(), 0);
    drop(g);
    assert_eq!(sem.get_value(), 1);
    drop(sem.try_acquire().unwrap());
}

fn signal((sem, n): (Semaphore, usize)) {
    for _ in 0..n {
        sem.release().unwrap();
    }
}

/// A semaphore as a signal: released by a child, unbounded above.
fn semaphore_released_by_another_process(m: StartMethod) {
    let sem = Semaphore::new(0).unwrap();
    let mut p = start(m, signal, (sem.clone(), 5));
    for _ in 0..5 {
        sem.acquire_unguarded(Some(DEADLINE)).unwrap();
    }
    p.join_timeout(DEADLINE).unwrap();
    assert!(sem.try_acquire().unwrap_err().is_timeout());
    sem.release().unwrap();
    sem.release().unwrap();
    assert_eq!(sem.get_value(), 2);
}

fn take_one(sem: BoundedSemaphore) {
    sem.acquire_unguarded(Some(DEADLINE)).unwrap();
}

/// SYNC-05: a bounded semaphore refuses a release above its initial value.
fn bounded_semaphore_over_release(m: StartMethod) {
    let sem = BoundedSemaphore::new(2).unwrap();
    let mut p = start(m, take_one, sem.clone());
    p.join_timeout(DEADLINE).unwrap();
    assert_eq!(sem.get_value(), 1);
    sem.release().unwrap();
    let e = sem.release().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert_eq!(e.to_string(), "semaphore or lock released too many times");
    assert_eq!(sem.get_value(), 2);
    assert_eq!(sem.bound(), 2);
}

// ----- Event -----

fn set_after((go, ev): (Event, Event)) {
    assert!(go.wait_timeout(DEADLINE));
    ev.set();
}

/// SYNC-15: an event set in a child wakes waiters (threads) in the parent.
fn event_set_in_a_child_wakes_the_parent(m: StartMethod) {
    let ev = Event::new().unwrap();
    let go = Event::new().unwrap();
    assert!(!ev.is_set());
    assert!(!ev.wait_timeout(Duration::ZERO));
    let mut p = start(m, set_after, (go.clone(), ev.clone()));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let ev = ev.clone();
            thread::spawn(move || ev.wait_timeout(DEADLINE))
        })
        .collect();
    go.set();
    assert!(ev.wait_timeout(DEADLINE));
    for w in waiters {
        assert!(w.join().unwrap());
    }
    p.join_timeout(DEADLINE).unwrap();
    assert!(ev.is_set());
    ev.clear();
    assert!(!ev.is_set());
}

// ----- Condition -----

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

// ----- Barrier -----

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

// ----- passing objects around -----

fn grandchild((lock, ev): (Lock, Event)) {
    drop(lock.acquire_timeout(DEADLINE).unwrap());
    ev.set();
}

fn middle((m, q): (StartMethod, Queue<(Lock, Event)>)) {
    let (lock, ev) = q.get_timeout(DEADLINE).unwrap();
    let mut p = start(m, grandchild, (lock, ev));
    p.join_timeout(DEADLINE).unwrap();
}

/// Objects travel through a queue to a child, then to a grandchild.
fn objects_through_a_queue_to_a_grandchild(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let ev = Event::new().unwrap();
    let q: Queue<(Lock, Event)> = Queue::new().unwrap();
    let mut p = start(m, middle, (m, q.clone()));
    let g = lock.acquire().unwrap();
    q.put((lock.clone(), ev.clone())).unwrap();
    assert!(!ev.wait_timeout(Duration::from_millis(10)));
    drop(g);
    assert!(ev.wait_timeout(DEADLINE));
    p.join_timeout(DEADLINE).unwrap();
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

fn churn((sem, started): (Semaphore, Event)) {
    started.set();
    loop {
        drop(sem.acquire().unwrap());
    }
}

/// A child that is killed and reaped however the test ends: a stopped
/// child left behind by a failed assertion would stall the harness's exit.
struct KillOnDrop(mp::Process<()>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.join_timeout(DEADLINE);
    }
}

/// Whether process `pid` is stopped (state `T` in `/proc/<pid>/stat`).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('T')))
        .unwrap_or(false)
}

/// C-2: a timed acquire returns by its deadline (give or take) even when a
/// process that works the semaphore is stopped, possibly while holding its
/// internal lock (several rounds, stopping a churning child at a random
/// point of its loop).
#[allow(unsafe_code)]
fn semaphore_timeout_with_a_stopped_process(m: StartMethod) {
    let sem = Semaphore::new(1).unwrap();
    for _ in 0..10 {
        let started = Event::new().unwrap();
        let p = KillOnDrop(start(m, churn, (sem.clone(), started.clone())));
        assert!(started.wait_timeout(DEADLINE));
        let pid = p.0.pid().unwrap();
        // SAFETY: signalling our own child, which is not reaped yet.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0);
        until(|| is_stopped(pid));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = sem.clone();
        let t = thread::spawn(move || {
            let begun = Instant::now();
            // Ok, Timeout, or OwnerDied: a child killed in an earlier
            // round may have died holding the permit.
            let fine = |e: &mp::AcquireError<_>| e.is_timeout() || e.is_owner_died();
            let r = s.try_acquire().map(drop).err().map(|e| fine(&e));
            let r2 = s
                .acquire_timeout(Duration::from_millis(200))
                .map(drop)
                .err()
                .map(|e| fine(&e));
            tx.send((begun.elapsed(), r, r2)).unwrap();
        });
        let (took, r, r2) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a timed acquire hung behind a stopped process");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        // Ok or Timeout (the stopped child may hold the permit) or
        // OwnerDied (an earlier round's child was killed holding it).
        assert!(matches!(r, None | Some(true)), "{r:?}");
        assert!(matches!(r2, None | Some(true)), "{r2:?}");
        t.join().unwrap();
        let mut p = p;
        p.0.kill().unwrap();
        let e = p.0.join_timeout(DEADLINE).expect_err("a killed child has no result");
        assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    }
    // The children died holding the internal lock or a permit at worst:
    // the semaphore works again.
    let g = match sem.acquire_timeout(DEADLINE) {
        Ok(g) => g,
        Err(e) => e.recover().unwrap(),
    };
    drop(g);
    assert_eq!(sem.get_value(), 1);
}

fn acquire_and_drop(sem: Semaphore) {
    drop(sem.acquire_timeout(DEADLINE).unwrap());
}

/// C-3: permits taken and returned through guards by more processes, one
/// after another, than the holder table has slots.
fn semaphore_holders_come_and_go(m: StartMethod) {
    let sem = Semaphore::new(1).unwrap();
    for _ in 0..600 {
        let mut p = start(m, acquire_and_drop, sem.clone());
        p.join_timeout(DEADLINE).unwrap();
    }
    assert_eq!(sem.get_value(), 1);
    drop(sem.try_acquire().unwrap());
}

fn over_release_while_holding(sem: BoundedSemaphore) {
    let g = sem.acquire_timeout(DEADLINE).unwrap();
    sem.release().unwrap();
    drop(g);
}

/// I-2: a guard dropped when anonymous releases already filled a bounded
/// semaphore ends the holding all the same: after the process exits, no
/// phantom permit of it is reclaimed above the bound.
fn guard_release_when_full(m: StartMethod) {
    let sem = BoundedSemaphore::new(1).unwrap();
    let mut p = start(m, over_release_while_holding, sem.clone());
    p.join_timeout(DEADLINE).unwrap();
    assert_eq!(sem.get_value(), 1);
    let g = sem.try_acquire().unwrap();
    // The deadline passes: dead holders are looked for, none is found.
    let e = sem.acquire_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(sem.get_value(), 0);
    drop(g);
    assert_eq!(sem.get_value(), 1);
}

per_method!(
    lock_excludes_across_processes,
    lock_holder_killed,
    lock_release_rules,
    rlock_holder_killed,
    rlock_recursion_and_ownership,
    semaphore_holder_killed,
    semaphore_released_by_another_process,
    bounded_semaphore_over_release,
    event_set_in_a_child_wakes_the_parent,
    condition_notify_across_processes,
    condition_wait_for,
    barrier_of_three,
    barrier_party_killed,
    barrier_middle_party_killed,
    barrier_abort_and_reset,
    barrier_timeout,
    objects_through_a_queue_to_a_grandchild,
    drop_held_lock_is_safe,
    semaphore_timeout_with_a_stopped_process,
    semaphore_holders_come_and_go,
    guard_release_when_full,
);

// ----- in one process -----

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

/// The body of `no_descriptor_leak`, in a single-threaded child so that
/// no other test's descriptors come and go meanwhile: (before, after).
fn create_and_drop_1000() -> (usize, usize) {
    // Warm up anything created once per process.
    drop(Condition::new().unwrap());
    let before = open_fds().len();
    for _ in 0..1000 {
        let l = Lock::new().unwrap();
        let r = RLock::new().unwrap();
        let s = BoundedSemaphore::new(2).unwrap();
        let e = Event::new().unwrap();
        let c = Condition::with_rlock(r.clone()).unwrap();
        let b = Barrier::new(2).unwrap();
        drop(l.acquire().unwrap());
        drop(s.acquire().unwrap());
        e.set();
        drop((l, r, s, e, c, b));
    }
    (before, open_fds().len())
}

/// Creating and dropping objects leaves no descriptor behind.
#[test]
fn no_descriptor_leak() {
    let mut p = mp::ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .target(create_and_drop_1000);
    p.start().unwrap();
    let (before, after) = p.join_timeout(DEADLINE).unwrap();
    assert!(after <= before, "{before} descriptors before, {after} after");
}
