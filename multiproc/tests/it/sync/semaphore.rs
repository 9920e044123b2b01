//! `Semaphore` and `BoundedSemaphore` across processes: a holder killed,
//! releases by another process, over-release, timeouts while a holder is
//! stopped, holders that come and go.

use std::{
    thread,
    time::{Duration, Instant},
};

use multiproc::{self as mp, BoundedSemaphore, ErrorKind, Event, Semaphore, StartMethod};

use crate::support::{DEADLINE, block_forever, start};

use super::{kill, until};

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
    semaphore_holder_killed,
    semaphore_released_by_another_process,
    bounded_semaphore_over_release,
    semaphore_timeout_with_a_stopped_process,
    semaphore_holders_come_and_go,
    guard_release_when_full,
);
