//! Value, Array, RawValue and RawArray across processes, under every
//! start method: children's writes, the lock under contention, a holder
//! killed while holding it, and mismatches on receipt.

use std::time::Duration;

use multiproc::{self as mp, AcquireError, Array, RawArray, RawValue, StartMethod, Value};

use crate::support::{self, DEADLINE, Rendezvous, start};

type Shared = (
    Value<i32>,
    Value<i64>,
    RawValue<f64>,
    RawValue<i16>,
    Array<u32>,
    RawArray<u32>,
);

fn modify((vi, vq, rd, rh, arr, raw): Shared) {
    vi.store(24234).unwrap();
    *vq.lock().unwrap() = 1 << 34;
    rd.store(-4.25);
    rh.store(234);
    // In-place prefix sums under the lock.
    let mut g = arr.lock().unwrap();
    for i in 1..g.len() {
        g[i] += g[i - 1];
    }
    drop(g);
    for i in 1..raw.len() {
        raw.set(i, raw.get(i).unwrap() + raw.get(i - 1).unwrap()).unwrap();
    }
}

/// CPython SHV-01 and SHV-03: the child's writes are seen by the parent.
fn child_writes_parent_reads(m: StartMethod) {
    let seq = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831];
    let args: Shared = (
        Value::new(4343).unwrap(),
        Value::new(1 << 33).unwrap(),
        RawValue::new(3.625).unwrap(),
        RawValue::new(-232).unwrap(),
        Array::from_slice(&seq).unwrap(),
        RawArray::from_slice(&seq).unwrap(),
    );
    let mut p = start(m, modify, args.clone());
    p.join_timeout(DEADLINE).unwrap();
    let (vi, vq, rd, rh, arr, raw) = args;
    assert_eq!(vi.load().unwrap(), 24234);
    assert_eq!(vq.load().unwrap(), 1 << 34);
    assert_eq!(rd.load(), -4.25);
    assert_eq!(rh.load(), 234);
    let sums: Vec<u32> = seq
        .iter()
        .scan(0, |acc, &x| {
            *acc += x;
            Some(*acc)
        })
        .collect();
    assert_eq!(arr.to_vec().unwrap(), sums);
    assert_eq!(raw.to_vec(), sums);
}

fn increment(v: Value<u64>) {
    for _ in 0..10_000 {
        *v.lock().unwrap() += 1;
    }
}

/// Two children add 10,000 each under the lock: no update is lost.
fn counter_under_lock(m: StartMethod) {
    let v = Value::new(0u64).unwrap();
    let mut a = start(m, increment, v.clone());
    let mut b = start(m, increment, v.clone());
    a.join_timeout(DEADLINE).unwrap();
    b.join_timeout(DEADLINE).unwrap();
    assert_eq!(v.load().unwrap(), 20_000);
}

fn hold_and_block((v, addr): (Array<u32>, String)) {
    let mut g = v.lock().unwrap();
    g[0] = 7;
    support::notify(&addr, "locked");
    support::block_forever()
}

/// A holder killed while holding the lock: the next locker gets the guard
/// with `OwnerDied`, and the lock works normally afterwards.
fn holder_killed_owner_died(m: StartMethod) {
    let arr = Array::<u32>::new(4).unwrap();
    let rv = Rendezvous::new();
    let mut p = start(m, hold_and_block, (arr.clone(), rv.addr()));
    assert_eq!(rv.recv(), "locked");
    assert!(matches!(arr.try_lock(), Err(AcquireError::Timeout)));
    p.kill().unwrap();
    let _ = p.join_timeout(DEADLINE).unwrap_err();
    match arr.lock_timeout(DEADLINE) {
        Err(AcquireError::OwnerDied(mut g)) => {
            assert_eq!(g[0], 7);
            g[1] = 1;
        }
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| g.to_vec())),
    }
    let g = arr.lock_timeout(DEADLINE).unwrap();
    assert_eq!(&g[..2], &[7, 1]);
}

/// Leaks guards of values and arrays, drops the values, then locks and
/// unlocks others: the leaked locks stay on glibc's robust list of this
/// thread, so their memory must stay mapped.
fn drop_locked_then_lock_others(_: ()) -> u32 {
    let older = Value::new(1u64).unwrap();
    let g0 = older.lock().unwrap();
    let v = Value::new(2u32).unwrap();
    std::mem::forget(v.lock().unwrap());
    drop(v);
    let a = Array::from_slice(&[1u8, 2, 3]).unwrap();
    std::mem::forget(a.lock().unwrap());
    drop(a);
    // Releasing the older lock walks the robust list past the newer,
    // dropped ones.
    drop(g0);
    let fresh: Vec<Value<u32>> = (0..64).map(|i| Value::new(i).unwrap()).collect();
    for f in &fresh {
        *f.lock().unwrap() += 1;
    }
    let again = Array::<u16>::new(4).unwrap();
    again.lock().unwrap()[0] = 9;
    7
}

/// C-1: dropping a value whose lock this process holds (a leaked guard)
/// does not unmap the lock under glibc's robust list (the child would
/// crash).
fn drop_locked_value_is_safe(m: StartMethod) {
    let mut p = start(m, drop_locked_then_lock_others, ());
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 7);
}

per_method!(
    child_writes_parent_reads,
    counter_under_lock,
    holder_killed_owner_died,
    drop_locked_value_is_safe
);

/// Out-of-range indexes: `None`, an error, or a panic for `[]`.
#[test]
fn out_of_range_indexes_give_none_an_error_or_a_panic() {
    let raw = RawArray::<u8>::new(3).unwrap();
    assert_eq!(raw.get(3), None);
    let e = raw.set(3, 1).unwrap_err();
    assert_eq!(e.kind(), mp::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("index 3 is out of range"), "{e}");
    assert_eq!(
        raw.copy_from_slice(&[1, 2]).unwrap_err().kind(),
        mp::ErrorKind::InvalidInput
    );
    let arr = Array::<u8>::new(3).unwrap();
    let g = arr.lock().unwrap();
    assert_eq!(g.get(3), None);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g[3]));
    assert!(caught.is_err());
}

/// Relocking from the holding thread is an error, not a deadlock.
#[test]
fn relock_is_an_error() {
    let v = Value::new(1u8).unwrap();
    let _g = v.lock().unwrap();
    match v.lock() {
        Err(AcquireError::Failed(e)) => assert_eq!(e.kind(), mp::ErrorKind::InvalidState),
        other => panic!("expected an error, got {:?}", other.map(|g| *g)),
    }
    assert!(matches!(
        v.lock_timeout(Duration::from_millis(1)),
        Err(AcquireError::Failed(_))
    ));
}

/// A value received as another type or size is refused with a clear
/// message.
#[test]
fn mismatch_on_receipt() {
    let (tx, rx) = mp::pipe(true).unwrap();
    tx.send(Array::<u32>::new(10).unwrap()).unwrap();
    let e = rx.recv::<Array<u64>>().unwrap_err();
    assert!(e.to_string().contains("size mismatch"), "{e}");

    tx.send(Value::new(1u32).unwrap()).unwrap();
    let e = rx.recv::<Value<f32>>().unwrap_err();
    assert!(e.to_string().contains("type mismatch"), "{e}");

    tx.send(RawValue::new(1u32).unwrap()).unwrap();
    let e = rx.recv::<Value<u32>>().unwrap_err();
    assert!(e.to_string().contains("locked value"), "{e}");

    tx.send(Array::<u32>::from_slice(&[5, 6]).unwrap()).unwrap();
    let ok = rx.recv::<Array<u32>>().unwrap();
    assert_eq!(ok.to_vec().unwrap(), [5, 6]);
}
