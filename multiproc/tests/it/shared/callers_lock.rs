//! Values and arrays sharing a caller's lock (Python's
//! `Value(typecode, v, lock=L)`): exact totals, mutual exclusion across
//! values, and a holder killed inside the shared lock; under every start
//! method.

use multiproc::{self as mp, AcquireError, Array, ErrorKind, Lock, RLock, StartMethod, Value, ValueLock};

use crate::support::{DEADLINE, start};

const ROUNDS: u64 = 300;

/// Increments both values in one critical section of their shared `Lock`;
/// counts the times it found them unequal (the invariant a == b).
fn bump_with_lock((a, b, lock): (Value<u64>, Value<u64>, Lock)) -> u64 {
    // The values carry the very lock passed beside them.
    assert!(matches!(a.get_lock(), Some(ValueLock::Lock(_))));
    let mut broken = 0;
    for _ in 0..ROUNDS {
        let held = lock.acquire().expect("nobody dies holding it");
        let mut ga = a.lock_in(&held).expect("a is under this lock");
        let mut gb = b.lock_in(&held).expect("b is under this lock");
        broken += u64::from(*ga != *gb);
        *ga += 1;
        *gb += 1;
    }
    broken
}

/// Python's `Value('Q', 0, lock=L)` twice with one `Lock`: children update
/// both inside one critical section; totals are exact and the invariant
/// holds whenever the lock is held.
fn values_share_a_callers_lock(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let a = Value::with_lock(0u64, lock.clone()).unwrap();
    let b = Value::with_lock(0u64, lock.clone()).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|_| start(m, bump_with_lock, (a.clone(), b.clone(), lock.clone())))
        .collect();
    let mut broken = bump_with_lock((a.clone(), b.clone(), lock.clone()));
    for mut p in ps {
        broken += p.join_timeout(DEADLINE).expect("the child's count");
    }
    assert_eq!(broken, 0, "a == b under the lock");
    assert_eq!(a.load().unwrap(), 4 * ROUNDS);
    assert_eq!(b.load().unwrap(), 4 * ROUNDS);
    assert!(!lock.is_locked());
}

/// Reports whether `b` was free while the parent holds `a`'s guard, and
/// whether the shared lock is seen held through `b.get_lock()`.
fn probe_b(b: Value<u64>) -> (bool, bool) {
    let free = match b.try_lock() {
        Ok(_) => true,
        Err(AcquireError::Timeout) => false,
        Err(e) => panic!("unexpected {e}"),
    };
    let held = match b.get_lock() {
        Some(ValueLock::RLock(l)) => l.is_locked(),
        other => panic!("b's lock is the caller's RLock, not {other:?}"),
    };
    (free, held)
}

fn bump_with_rlock((a, b, lock): (Array<u64>, Value<u64>, RLock)) -> u64 {
    let mut broken = 0;
    for _ in 0..ROUNDS {
        // Python's `with lock: a[0] += 1; b.value += 1` (an RLock nests).
        let _outer = lock.acquire().expect("nobody dies holding it");
        let mut ga = a.lock().expect("a nests in the RLock");
        let mut gb = b.lock().expect("b nests in the RLock");
        broken += u64::from(ga[0] != *gb);
        ga[0] += 1;
        *gb += 1;
    }
    broken
}

/// An `Array` and a `Value` sharing one `RLock` (Python's default kind):
/// holding one excludes the other's users in other processes, the lock
/// travels with them, and nested updates under the RLock are exact.
fn array_and_value_share_a_callers_rlock(m: StartMethod) {
    let lock = RLock::new().unwrap();
    let a = Array::<u64>::with_lock(4, lock.clone()).unwrap();
    let b = Value::with_lock(0u64, lock.clone()).unwrap();
    {
        let _g = a.lock().unwrap();
        let mut p = start(m, probe_b, b.clone());
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), (false, true));
    }
    let mut p = start(m, probe_b, b.clone());
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), (true, false));
    let ps: Vec<_> = (0..3)
        .map(|_| start(m, bump_with_rlock, (a.clone(), b.clone(), lock.clone())))
        .collect();
    let mut broken = bump_with_rlock((a.clone(), b.clone(), lock.clone()));
    for mut p in ps {
        broken += p.join_timeout(DEADLINE).expect("the child's count");
    }
    assert_eq!(broken, 0);
    assert_eq!(a.to_vec().unwrap(), [4 * ROUNDS, 0, 0, 0]);
    assert_eq!(b.load().unwrap(), 4 * ROUNDS);
}

/// Takes `a`'s guard (the shared lock), says so, and dies holding it.
fn die_holding((a, held): (Value<u64>, mp::Event)) {
    let mut g = a.lock().expect("free");
    *g = 7;
    held.set();
    crate::support::block_forever()
}

/// A holder killed inside the shared lock: the next locker of *another*
/// value under that lock is told (`OwnerDied`, with the guard), and the
/// dead holder's guard on the first value does not block later guards.
fn callers_lock_holder_killed(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let a = Value::with_lock(0u64, lock.clone()).unwrap();
    let b = Value::with_lock(0u64, lock.clone()).unwrap();
    let held = mp::Event::new().unwrap();
    let mut p = start(m, die_holding, (a.clone(), held.clone()));
    assert!(held.wait_timeout(DEADLINE), "the child holds the lock");
    p.kill().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::ChildKilled);
    match b.lock() {
        Err(e @ AcquireError::OwnerDied(_)) => *e.recover().unwrap() += 1,
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    }
    assert_eq!(*a.lock().expect("a is not left borrowed"), 7);
    assert_eq!(b.load().unwrap(), 1);
}

per_method!(
    values_share_a_callers_lock,
    array_and_value_share_a_callers_rlock,
    callers_lock_holder_killed
);

#[test]
fn a_value_under_a_callers_lock_is_never_borrowed_twice() {
    let rlock = RLock::new().unwrap();
    let v = Value::with_lock(1u32, rlock.clone()).unwrap();
    let g = v.lock().unwrap();
    // The RLock would nest: the value refuses a second guard on this thread.
    let e = v.lock().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert_eq!(rlock.depth(), 1, "the refused level was released");
    drop(g);
    assert!(!rlock.is_locked());

    let lock = Lock::new().unwrap();
    let v = Value::with_lock(1u32, lock.clone()).unwrap();
    let held = lock.acquire().unwrap();
    let g = v.lock_in(&held).unwrap();
    assert_eq!(v.lock_in(&held).unwrap_err().kind(), ErrorKind::InvalidState);
    // A Lock does not nest: locking the value again is refused, not a deadlock.
    assert_eq!(v.lock().unwrap_err().kind(), ErrorKind::InvalidState);
    drop(g);
    drop(held);
    // Another lock's guard does not open this value.
    let other = Lock::new().unwrap();
    let held = other.acquire().unwrap();
    assert_eq!(v.lock_in(&held).unwrap_err().kind(), ErrorKind::InvalidInput);
    // A value with a lock of its own has no caller's lock to give.
    assert!(Value::new(0u8).unwrap().get_lock().is_none());
}
