// A forked child that runs the ring in a loop until killed: `fork_child`
// is unsafe, and says why below.
#![allow(unsafe_code)]

use std::{
    collections::HashSet,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use std::sync::atomic::Ordering::SeqCst;

use super::{lock::DIE_AT, recovery::RECOVERIES, *};

/// Views of the shared state that only tests need.
impl ShmRing {
    /// Takes the lock and never releases it; called from a thread that then
    /// exits, to make the next locker see `EOWNERDEAD`.
    fn leak_lock_for_test(&self) {
        let mut g = self.lock(None).unwrap_or_else(|e| panic!("lock: {e}"));
        drop(g.map.take());
        std::mem::forget(g);
    }

    /// The active state: `(capacity, head, tail, count, unfinished)`.
    fn state_for_test(&self) -> (u64, u64, u64, u64, u64) {
        let g = self.lock(None).unwrap_or_else(|e| panic!("lock: {e}"));
        (g.st.capacity, g.st.head, g.st.tail, g.st.count, g.st.unfinished)
    }

    /// The waiter counters: put, get, done.
    fn waiters_for_test(&self) -> [u32; 3] {
        let h = self.hdr();
        [
            h.put_waiters.load(SeqCst),
            h.get_waiters.load(SeqCst),
            h.done_waiters.load(SeqCst),
        ]
    }

    /// Writes `tail` into the active slot without the lock, as a wild
    /// write would.
    fn scribble_tail_for_test(&self, tail: u64) {
        let h = self.hdr();
        h.slots[h.active.load(SeqCst) as usize & 1].tail.store(tail, SeqCst);
    }
}

/// A generous deadline for operations that must succeed.
fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(30))
}

/// Pushes one record with no callback.
fn put(r: &ShmRing, bytes: &[u8]) {
    r.push(&[bytes], soon(), &mut |_| Ok(()))
        .unwrap_or_else(|e| panic!("push: {e}"));
}

/// Pops one record with no callback.
fn get(r: &ShmRing) -> Vec<u8> {
    r.pop(soon(), &mut |_, _| Ok(()), &|| false)
        .unwrap_or_else(|e| panic!("pop: {e}"))
}

/// A second handle on the same ring with its own mappings, as another
/// process would build it.
fn other_handle(r: &ShmRing) -> ShmRing {
    let [c, d] = r.fds();
    ShmRing::from_fds(c.try_clone().unwrap(), d.try_clone().unwrap()).unwrap()
}

/// Deterministic content for record `i` of `len` bytes.
fn pattern(i: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

/// Spins (yielding) until `cond` holds; panics after 30 s.
fn until(mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < end, "condition not reached in time");
        thread::yield_now();
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ShmRing>();
}

#[test]
fn fifo_order_and_len() {
    let r = ShmRing::new(0, None).unwrap();
    assert_eq!(r.len(), 0);
    assert_eq!(r.max_count(), None);
    for i in 0..100u64 {
        put(&r, &i.to_le_bytes());
        assert_eq!(r.len(), i + 1);
    }
    for i in 0..100u64 {
        assert_eq!(get(&r), i.to_le_bytes());
        assert_eq!(r.len(), 99 - i);
    }
}

#[test]
fn parts_are_concatenated() {
    let r = ShmRing::new(0, None).unwrap();
    r.push(&[b"ab", b"", b"cde"], soon(), &mut |_| Ok(())).unwrap();
    assert_eq!(get(&r), b"abcde");
}

#[test]
fn empty_and_one_byte_records() {
    let r = ShmRing::new(0, None).unwrap();
    put(&r, b"");
    put(&r, b"x");
    put(&r, b"");
    assert_eq!(r.len(), 3);
    assert_eq!(get(&r), b"");
    assert_eq!(get(&r), b"x");
    assert_eq!(get(&r), b"");
    assert_eq!(r.state_for_test(), (4096, 0, 0, 0, 3));
}

#[test]
fn records_that_end_at_or_straddle_the_wrap_point() {
    let r = ShmRing::new(4096, None).unwrap();
    let a = pattern(1, 2040); // 2048 bytes in the ring: [0, 2048)
    let b = pattern(2, 1016); // [2048, 3072)
    let c = pattern(3, 1016); // [3072, 4096): ends exactly at the end
    let d = pattern(4, 1000); // [4096, 5104): starts exactly at position 0
    put(&r, &a);
    put(&r, &b);
    assert_eq!(get(&r), a);
    put(&r, &c);
    put(&r, &d);
    assert_eq!(r.state_for_test(), (4096, 2048, 5104, 3, 4));
    assert_eq!(get(&r), b);
    assert_eq!(get(&r), c);
    assert_eq!(get(&r), d);
    assert_eq!(r.state_for_test().1, 0, "an empty ring restarts at 0");

    // A payload split across the end: header at 3016, payload 3024..4096 + 0..928.
    let k1 = pattern(5, 2992); // [0, 3000)
    let k2 = pattern(6, 8); // [3000, 3016)
    let split = pattern(7, 2000); // [3016, 5024)
    put(&r, &k1);
    put(&r, &k2);
    assert_eq!(get(&r), k1);
    put(&r, &split);
    assert_eq!(r.state_for_test(), (4096, 3000, 5024, 2, 7));
    assert_eq!(get(&r), k2);
    assert_eq!(get(&r), split);
}

#[test]
fn a_record_larger_than_the_ring_grows_it() {
    let r = ShmRing::new(4096, None).unwrap();
    let big = pattern(1, 10_000);
    put(&r, &big);
    assert_eq!(r.state_for_test().0, 16384);
    assert_eq!(get(&r), big);
    let huge = pattern(2, 1 << 20);
    put(&r, &huge);
    assert_eq!(get(&r), huge);
}

#[test]
fn growth_keeps_a_wrapped_ring_in_order() {
    let r = ShmRing::new(4096, None).unwrap();
    let other = other_handle(&r);
    put(&r, &pattern(0, 3000));
    put(&r, &pattern(1, 500));
    assert_eq!(get(&r), pattern(0, 3000));
    put(&r, &pattern(2, 2000)); // wraps
    put(&r, &pattern(3, 3000)); // does not fit: grows with a wrapped prefix
    assert_eq!(r.state_for_test().0, 8192);
    // The other handle still has its 4 KiB mapping: it remaps.
    assert_eq!(get(&other), pattern(1, 500));
    assert_eq!(get(&other), pattern(2, 2000));
    assert_eq!(get(&r), pattern(3, 3000));
}

/// Length of record `i` in the growth test: mostly small, with a large
/// one every 500 records, each larger than the last.
fn growth_len(i: u64) -> usize {
    if i % 500 == 499 {
        20_000 << (i / 500)
    } else {
        (i as usize * 37) % 5000
    }
}

#[test]
fn concurrent_reader_during_repeated_growth() {
    let r = ShmRing::new(4096, None).unwrap();
    let reader = other_handle(&r);
    const N: u64 = 3000;
    let t = thread::spawn(move || {
        for i in 0..N {
            let v = reader.pop(soon(), &mut |_, _| Ok(()), &|| false).unwrap();
            assert_eq!(v, pattern(i, growth_len(i)), "record {i}");
        }
    });
    for i in 0..N {
        put(&r, &pattern(i, growth_len(i)));
    }
    t.join().unwrap();
    assert_eq!(r.len(), 0);
    assert!(r.state_for_test().0 >= 1 << 20);
}

#[test]
fn many_growths_while_another_handle_reads() {
    let r = ShmRing::new(4096, None).unwrap();
    let reader = other_handle(&r);
    const N: u64 = 400;
    let t = thread::spawn(move || {
        for i in 0..N {
            let v = reader.pop(soon(), &mut |_, _| Ok(()), &|| false).unwrap();
            assert_eq!(v, pattern(i, 100 + i as usize * 1000), "record {i}");
        }
    });
    for i in 0..N {
        put(&r, &pattern(i, 100 + i as usize * 1000));
    }
    t.join().unwrap();
    assert!(r.state_for_test().0 >= 512 * 1024, "the ring grew several times");
}

#[test]
fn bounded_push_times_out_then_succeeds_after_a_pop() {
    let r = Arc::new(ShmRing::new(0, Some(2)).unwrap());
    assert_eq!(r.max_count(), Some(2));
    put(&r, b"a");
    put(&r, b"b");
    let start = Instant::now();
    let res = r.push(&[b"c"], Some(start + Duration::from_millis(20)), &mut |_| Ok(()));
    assert!(matches!(res, Err(RingError::Timeout)), "{res:?}");
    assert!(start.elapsed() >= Duration::from_millis(20));
    let res = r.push(&[b"c"], Some(Instant::now()), &mut |_| Ok(()));
    assert!(matches!(res, Err(RingError::Timeout)), "{res:?}");
    assert_eq!(r.len(), 2);

    let r2 = r.clone();
    let t = thread::spawn(move || put(&r2, b"c"));
    until(|| r.waiters_for_test()[1] == 1);
    assert_eq!(get(&r), b"a");
    t.join().unwrap();
    assert_eq!(get(&r), b"b");
    assert_eq!(get(&r), b"c");
}

#[test]
fn pop_times_out_on_empty_and_wakes_on_push() {
    let r = Arc::new(ShmRing::new(0, None).unwrap());
    let res = r.pop(Some(Instant::now()), &mut |_, _| Ok(()), &|| false);
    assert!(matches!(res, Err(RingError::Timeout)), "{res:?}");
    let start = Instant::now();
    let res = r.pop(Some(start + Duration::from_millis(20)), &mut |_, _| Ok(()), &|| false);
    assert!(matches!(res, Err(RingError::Timeout)), "{res:?}");
    assert!(start.elapsed() >= Duration::from_millis(20));

    let r2 = r.clone();
    let t = thread::spawn(move || get(&r2));
    until(|| r.waiters_for_test()[0] == 1);
    put(&r, b"wake");
    assert_eq!(t.join().unwrap(), b"wake");
}

#[test]
fn task_done_and_join() {
    let r = Arc::new(ShmRing::new(0, None).unwrap());
    r.join(Some(Instant::now())).unwrap();
    assert!(matches!(r.task_done(), Err(RingError::TooManyTaskDone)));
    put(&r, b"1");
    put(&r, b"2");
    let res = r.join(Some(Instant::now() + Duration::from_millis(10)));
    assert!(matches!(res, Err(RingError::Timeout)), "{res:?}");
    get(&r);
    get(&r);
    r.task_done().unwrap();
    let r2 = r.clone();
    let t = thread::spawn(move || r2.join(soon()));
    until(|| r.waiters_for_test()[2] == 1);
    r.task_done().unwrap();
    t.join().unwrap().unwrap();
    assert!(matches!(r.task_done(), Err(RingError::TooManyTaskDone)));
    assert_eq!(r.state_for_test().4, 0);
}

#[test]
fn a_dead_lock_owner_is_recovered() {
    let r = Arc::new(ShmRing::new(0, None).unwrap());
    put(&r, b"before");
    let r2 = r.clone();
    thread::spawn(move || r2.leak_lock_for_test()).join().unwrap();
    // The next locker sees EOWNERDEAD, validates, and goes on.
    let start = Instant::now();
    r.push(&[b"after"], Some(start + Duration::from_secs(5)), &mut |_| Ok(()))
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(get(&r), b"before");
    assert_eq!(get(&r), b"after");

    // Also through another handle, and with a pop as the first locker.
    let other = other_handle(&r);
    put(&r, b"x");
    let r2 = r.clone();
    thread::spawn(move || r2.leak_lock_for_test()).join().unwrap();
    assert_eq!(get(&other), b"x");
    assert_eq!(r.len(), 0);
}

#[test]
fn a_sleeper_recovers_a_dead_owner() {
    // A popper is asleep; the lock's owner dies without waking it. Within
    // a slice it relocks, recovers and still gets a record pushed later.
    let r = Arc::new(ShmRing::new(0, None).unwrap());
    let r2 = r.clone();
    let t = thread::spawn(move || get(&r2));
    until(|| r.waiters_for_test()[0] == 1);
    let r3 = r.clone();
    thread::spawn(move || r3.leak_lock_for_test()).join().unwrap();
    put(&r, b"late");
    assert_eq!(t.join().unwrap(), b"late");
}

#[test]
fn a_watcher_recovers_a_dead_owner() {
    let r = ShmRing::new(0, None).unwrap();
    let seen = r.put_seq();
    thread::scope(|s| {
        s.spawn(|| r.leak_lock_for_test()).join().unwrap();
    });
    // Recovery bumps the put word, so a watcher reports a change within a slice.
    assert!(r.wait_put_seq_change(seen, Some(Instant::now() + Duration::from_secs(10))));
    put(&r, b"ok");
    assert_eq!(get(&r), b"ok");
}

/// Runs `op` on `r` in a thread that dies at fail point `point`, keeping
/// the lock as a process killed there would.
fn die_at(r: &ShmRing, point: &'static str, op: impl FnOnce(&ShmRing) + Send) {
    thread::scope(|s| {
        let res = s
            .spawn(|| {
                DIE_AT.with(|d| d.set(Some(point)));
                op(r);
            })
            .join();
        assert!(res.is_err(), "the thread did not reach {point}");
    });
}

#[test]
fn a_push_that_dies_before_its_flip_commits_nothing() {
    for point in ["push:written", "commit:slot"] {
        let r = ShmRing::new(0, None).unwrap();
        let other = other_handle(&r);
        put(&r, b"kept");
        die_at(&r, point, |r| put(r, b"lost"));
        assert_eq!(get(&other), b"kept", "{point}");
        assert!(matches!(
            other.pop(Some(Instant::now()), &mut |_, _| Ok(()), &|| false),
            Err(RingError::Timeout)
        ));
        assert_eq!(r.state_for_test(), (4096, 0, 0, 0, 1), "{point}");
        put(&r, b"next");
        assert_eq!(get(&other), b"next");
    }
}

#[test]
fn a_push_that_dies_after_its_flip_is_committed() {
    let r = ShmRing::new(0, None).unwrap();
    let other = other_handle(&r);
    die_at(&r, "commit:flipped", |r| put(r, b"made it"));
    // The count copy is stale until someone recovers the lock.
    assert_eq!(r.len(), 0);
    assert_eq!(r.state_for_test().3, 1);
    assert_eq!(r.len(), 1);
    assert_eq!(get(&other), b"made it");
}

#[test]
fn a_pop_that_dies_before_its_flip_leaves_the_record() {
    for point in ["pop:read", "commit:slot"] {
        let r = ShmRing::new(0, None).unwrap();
        put(&r, b"a");
        put(&r, b"b");
        die_at(&r, point, |r| {
            get(r);
        });
        assert_eq!(r.len(), 2, "{point}");
        assert_eq!(get(&r), b"a");
        assert_eq!(get(&r), b"b");
    }
    let r = ShmRing::new(0, None).unwrap();
    put(&r, b"a");
    put(&r, b"b");
    die_at(&r, "commit:flipped", |r| {
        get(r);
    });
    assert_eq!(get(&r), b"b");
    assert_eq!(r.len(), 0);
}

#[test]
fn a_growth_that_dies_midway_leaves_the_old_ring() {
    for point in ["grow:copied", "commit:slot"] {
        let r = ShmRing::new(4096, None).unwrap();
        let other = other_handle(&r);
        put(&r, &pattern(0, 3000));
        put(&r, &pattern(1, 500));
        assert_eq!(get(&r), pattern(0, 3000));
        put(&r, &pattern(2, 2000)); // wraps
        // The growth extends the file and copies the wrapped prefix, then dies.
        die_at(&r, point, |r| put(r, &pattern(3, 3000)));
        assert_eq!(r.state_for_test().0, 4096, "{point}");
        assert_eq!(sys::memfile_size(&r.data_fd).unwrap(), 8192);
        assert_eq!(get(&other), pattern(1, 500));
        put(&other, &pattern(4, 3000)); // grows again, over the dead attempt
        put(&r, &pattern(5, 7000));
        assert_eq!(get(&r), pattern(2, 2000));
        assert_eq!(get(&other), pattern(4, 3000));
        assert_eq!(get(&r), pattern(5, 7000));
        assert_eq!(r.len(), 0);
    }
    // After the flip the growth stands.
    let r = ShmRing::new(4096, None).unwrap();
    put(&r, &pattern(0, 3000));
    put(&r, &pattern(1, 500));
    assert_eq!(get(&r), pattern(0, 3000));
    put(&r, &pattern(2, 2000));
    die_at(&r, "commit:flipped", |r| put(r, &pattern(3, 3000)));
    // The flip was the growth's; the push itself never committed.
    assert_eq!(r.state_for_test(), (8192, 3008, 5528, 2, 3));
    assert_eq!(get(&r), pattern(1, 500));
    assert_eq!(get(&r), pattern(2, 2000));
}

#[test]
fn corruption_found_after_a_death_breaks_the_ring_for_everyone() {
    let r = ShmRing::new(0, None).unwrap();
    let other = other_handle(&r);
    put(&r, b"abc");
    thread::scope(|s| {
        s.spawn(|| r.leak_lock_for_test()).join().unwrap();
    });
    // A wild write: the tail no longer ends a record.
    r.scribble_tail_for_test(8);
    let res = r.pop(soon(), &mut |_, _| Ok(()), &|| false);
    assert!(
        matches!(&res, Err(RingError::Broken(m)) if m.contains("inconsistent")),
        "{res:?}"
    );
    let res = other.push(&[b"x"], soon(), &mut |_| Ok(()));
    assert!(matches!(res, Err(RingError::Broken(_))), "{res:?}");
    assert!(other.wait_put_seq_change(other.put_seq(), None));
}

#[test]
fn corrupt_state_is_an_error_not_a_wild_access() {
    let r = ShmRing::new(0, None).unwrap();
    put(&r, b"abc");
    r.scribble_tail_for_test(1 << 40);
    let res = r.pop(soon(), &mut |_, _| Ok(()), &|| false);
    assert!(matches!(res, Err(RingError::Broken(_))), "{res:?}");
}

#[test]
fn failing_before_commit_commits_nothing() {
    let r = ShmRing::new(0, None).unwrap();
    let res = r.push(&[b"no"], soon(), &mut |_| Err(io::Error::other("side channel failed")));
    assert!(
        matches!(&res, Err(RingError::Io(e)) if e.to_string() == "side channel failed"),
        "{res:?}"
    );
    assert_eq!(r.len(), 0);
    assert_eq!(r.state_for_test(), (4096, 0, 0, 0, 0));
    assert!(matches!(
        r.pop(Some(Instant::now()), &mut |_, _| Ok(()), &|| false),
        Err(RingError::Timeout)
    ));
    // A failing push that had to grow the ring leaves it grown and empty.
    let res = r.push(&[&[7; 10_000]], soon(), &mut |_| Err(io::Error::other("no")));
    assert!(res.is_err());
    assert_eq!(r.len(), 0);
    put(&r, b"yes");
    assert_eq!(get(&r), b"yes");
}

#[test]
fn failing_after_read_leaves_the_record() {
    let r = ShmRing::new(0, None).unwrap();
    put(&r, b"first");
    put(&r, b"second");
    let mut seen = Vec::new();
    let res = r.pop(
        soon(),
        &mut |rec, _| {
            seen.push(rec.to_vec());
            Err(io::Error::other("no descriptors"))
        },
        &|| false,
    );
    assert!(matches!(res, Err(RingError::Io(_))), "{res:?}");
    assert_eq!(seen, [b"first".to_vec()]);
    assert_eq!(r.len(), 2);
    assert_eq!(get(&r), b"first");
    assert_eq!(get(&r), b"second");
}

#[test]
fn a_callback_calling_back_into_the_ring_is_an_error() {
    let r = ShmRing::new(0, None).unwrap();
    let res = r.push(
        &[b"x"],
        soon(),
        &mut |_| match r.pop(soon(), &mut |_, _| Ok(()), &|| false) {
            Err(RingError::Io(e)) => Err(e),
            other => panic!("{other:?}"),
        },
    );
    assert!(
        matches!(&res, Err(RingError::Io(e)) if e.to_string().contains("callbacks")),
        "{res:?}"
    );
    put(&r, b"y");
    assert_eq!(get(&r), b"y");
}

#[test]
fn from_fds_rejects_wrong_descriptors() {
    let r = ShmRing::new(0, None).unwrap();
    let data = || r.fds()[1].try_clone().unwrap();
    let small = sys::memfile_create(c"t", 100, Resize::Fixed).unwrap();
    let err = ShmRing::from_fds(small, data()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    let zeroed = sys::memfile_create(c"t", CONTROL_SIZE as u64, Resize::Fixed).unwrap();
    let err = ShmRing::from_fds(zeroed, data()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("not a queue"), "{err}");
    let unsealed = sys::memfile_unsealed_for_test(CONTROL_SIZE as u64).unwrap();
    let err = ShmRing::from_fds(unsealed, data()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    let (sock, _peer) = crate::sys::socketpair().unwrap();
    let err = ShmRing::from_fds(sock, data()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    // A data file swapped for a control file.
    let [c, _] = r.fds();
    let err = ShmRing::from_fds(c.try_clone().unwrap(), c.try_clone().unwrap()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    // The right pair works.
    let ok = other_handle(&r);
    put(&r, b"z");
    assert_eq!(get(&ok), b"z");
}

#[test]
fn a_data_file_smaller_than_the_capacity_is_refused() {
    let r = ShmRing::new(0, None).unwrap();
    put(&r, &[1; 10_000]); // capacity 16 KiB now
    let [c, _] = r.fds();
    let data = sys::memfile_create(c"t", 4096, Resize::GrowOnly).unwrap();
    let other = ShmRing::from_fds(c.try_clone().unwrap(), data).unwrap();
    let res = other.pop(soon(), &mut |_, _| Ok(()), &|| false);
    assert!(matches!(res, Err(RingError::Broken(_))), "{res:?}");
}

#[test]
fn bad_arguments() {
    assert_eq!(
        ShmRing::new(0, Some(0)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert!(ShmRing::new(usize::MAX, None).is_err());
}

#[test]
fn wait_put_seq_change_sees_pushes_and_deadlines() {
    let r = ShmRing::new(0, None).unwrap();
    let seen = r.put_seq();
    assert!(!r.wait_put_seq_change(seen, Some(Instant::now() + Duration::from_millis(10))));
    thread::scope(|s| {
        let t = s.spawn(|| r.wait_put_seq_change(seen, soon()));
        until(|| r.waiters_for_test()[0] == 1);
        put(&r, b"1");
        assert!(t.join().unwrap());
    });
    assert_ne!(r.put_seq(), seen);
    assert!(r.wait_put_seq_change(seen, Some(Instant::now())));
}

#[test]
fn producers_and_consumers_on_several_handles() {
    const PER: u32 = 10_000;
    let r = ShmRing::new(4096, Some(64)).unwrap();
    let handles: Vec<ShmRing> = (0..4).map(|_| other_handle(&r)).collect();
    let (prod, cons) = handles.split_at(2);
    let results: Vec<Vec<(u32, u32)>> = thread::scope(|s| {
        let consumers: Vec<_> = cons
            .iter()
            .map(|h| {
                s.spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        let rec = h.pop(soon(), &mut |_, _| Ok(()), &|| false).unwrap();
                        if rec.is_empty() {
                            return got;
                        }
                        let p = u32::from_le_bytes(rec[0..4].try_into().unwrap());
                        let i = u32::from_le_bytes(rec[4..8].try_into().unwrap());
                        assert_eq!(rec[8..], pattern(u64::from(p) << 32 | u64::from(i), rec.len() - 8));
                        got.push((p, i));
                    }
                })
            })
            .collect();
        let producers: Vec<_> = prod
            .iter()
            .enumerate()
            .map(|(p, h)| {
                s.spawn(move || {
                    for i in 0..PER {
                        let extra = (i as usize * 7919) % 700;
                        let body = pattern(u64::from(p as u32) << 32 | u64::from(i), extra);
                        h.push(
                            &[&(p as u32).to_le_bytes(), &i.to_le_bytes(), &body],
                            soon(),
                            &mut |_| Ok(()),
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in producers {
            t.join().unwrap();
        }
        put(&r, b"");
        put(&r, b"");
        consumers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut all = HashSet::new();
    for got in &results {
        // Each consumer sees each producer's records in order.
        for p in 0..2 {
            let mine: Vec<u32> = got.iter().filter(|(q, _)| *q == p).map(|(_, i)| *i).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]));
        }
        for &rec in got {
            assert!(all.insert(rec), "{rec:?} received twice");
        }
    }
    assert_eq!(all.len(), 2 * PER as usize);
    assert_eq!(r.len(), 0);
}

#[test]
fn killed_processes_leave_a_usable_ring() {
    // A forked child hammers the ring and is killed at a random instant,
    // often holding the lock, mid-copy or mid-growth; each time the parent
    // must find a consistent ring. The child only runs this module's code
    // (pthread, futex, memcpy, glibc's fork-safe malloc) and never returns.
    let r = ShmRing::new(4096, None).unwrap();
    let recovered_before = RECOVERIES.load(SeqCst);
    let mut buf = vec![0u8; 9000];
    for round in 0..60u64 {
        let before = r.put_seq();
        // SAFETY: the child runs only the loop below, which never returns.
        let side = unsafe { crate::sys::fork_child() }.unwrap();
        let child = match side {
            crate::sys::ForkSide::Parent(child) => child,
            crate::sys::ForkSide::Child => {
                let mut i = round << 32;
                loop {
                    let len = (i as usize * 131) % 9000;
                    buf[..len].fill(i as u8);
                    let _ = r.push(&[&i.to_le_bytes(), &buf[..len]], None, &mut |_| Ok(()));
                    if r.len() > 8 {
                        let _ = r.pop(None, &mut |_, _| Ok(()), &|| false);
                    }
                    i += 1;
                }
            }
        };
        // Let the child run a little: until it has pushed a few records.
        let wait = (round % 7) * 3 + 1;
        until(|| r.put_seq().wrapping_sub(before) >= wait as u32);
        child.signal(sys::SIGKILL).unwrap();
        assert!(child.poll_exit(Some(Duration::from_secs(30))).unwrap());
        assert!(child.try_reap().unwrap().is_some());
        // Every record left is whole, then the ring still works.
        while let Ok(rec) = r.pop(Some(Instant::now()), &mut |_, _| Ok(()), &|| false) {
            let i = u64::from_le_bytes(rec[0..8].try_into().unwrap());
            assert_eq!(i >> 32, round);
            assert_eq!(rec.len() - 8, (i as usize * 131) % 9000, "round {round}");
            assert!(rec[8..].iter().all(|&b| b == i as u8), "round {round}");
        }
        put(&r, b"alive");
        assert_eq!(get(&r), b"alive");
        assert_eq!(r.len(), 0);
    }
    eprintln!(
        "{} of 60 kills left the lock to recover",
        RECOVERIES.load(SeqCst) - recovered_before
    );
}

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn throughput_64_byte_records() {
    let r = ShmRing::new(1 << 16, None).unwrap();
    let rec = [0x5a; 64];
    let n = 2_000_000;
    for _ in 0..1000 {
        put(&r, &rec);
        get(&r);
    }
    let start = Instant::now();
    for _ in 0..n {
        r.push(&[&rec], None, &mut |_| Ok(())).unwrap();
        r.pop(None, &mut |_, _| Ok(()), &|| false).unwrap();
    }
    let per = start.elapsed() / n;
    let start = Instant::now();
    for _ in 0..n / 100 {
        for _ in 0..100 {
            r.push(&[&rec], None, &mut |_| Ok(())).unwrap();
        }
        for _ in 0..100 {
            r.pop(None, &mut |_, _| Ok(()), &|| false).unwrap();
        }
    }
    let batched = start.elapsed() / n;
    eprintln!("64-byte push+pop: {per:?} alternating, {batched:?} in batches of 100");
}

#[test]
fn a_closed_ring_refuses_pushes_and_drains_then_ends() {
    let r = ShmRing::new(0, None).unwrap();
    put(&r, b"a");
    put(&r, b"b");
    let other = other_handle(&r);
    other.close().unwrap();
    assert!(r.is_closed());
    let res = r.push(&[b"c"], soon(), &mut |_| Ok(()));
    assert!(matches!(res, Err(RingError::Closed)), "{res:?}");
    assert_eq!(get(&r), b"a");
    assert_eq!(get(&r), b"b");
    let res = r.pop(soon(), &mut |_, _| Ok(()), &|| false);
    assert!(matches!(res, Err(RingError::Closed)), "{res:?}");
    other.close().unwrap();
}

#[test]
fn close_wakes_blocked_pushes_and_pops() {
    let r = ShmRing::new(0, Some(1)).unwrap();
    put(&r, b"full");
    thread::scope(|s| {
        let pusher = s.spawn(|| r.push(&[b"more"], None, &mut |_| Ok(())));
        until(|| r.waiters_for_test()[1] == 1);
        r.close().unwrap();
        assert!(matches!(pusher.join().unwrap(), Err(RingError::Closed)));
    });
    assert_eq!(get(&r), b"full");
    let r = ShmRing::new(0, None).unwrap();
    thread::scope(|s| {
        let popper = s.spawn(|| r.pop(None, &mut |_, _| Ok(()), &|| false));
        until(|| r.waiters_for_test()[0] == 1);
        r.close().unwrap();
        assert!(matches!(popper.join().unwrap(), Err(RingError::Closed)));
    });
}

#[test]
fn a_pop_ends_when_its_caller_says_so_and_the_ring_is_empty() {
    let r = ShmRing::new(0, None).unwrap();
    put(&r, b"last");
    let ended = std::sync::atomic::AtomicBool::new(true);
    let stop = || ended.load(SeqCst);
    assert_eq!(r.pop(soon(), &mut |_, _| Ok(()), &stop).unwrap(), b"last");
    let res = r.pop(soon(), &mut |_, _| Ok(()), &stop);
    assert!(matches!(res, Err(RingError::Closed)), "{res:?}");
    ended.store(false, SeqCst);
    thread::scope(|s| {
        let popper = s.spawn(|| r.pop(None, &mut |_, _| Ok(()), &stop));
        until(|| r.waiters_for_test()[0] == 1);
        ended.store(true, SeqCst);
        r.wake_all();
        assert!(matches!(popper.join().unwrap(), Err(RingError::Closed)));
    });
}
