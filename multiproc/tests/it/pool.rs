//! The process pool and the executor: results, laziness, lifecycle, and
//! the failure cases of issue 6 under every start method.

use std::{
    sync::Arc,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use multiproc::{ErrorKind, Executor, ExitStatus, Pool, PoolBuilder, StartMethod};
use serde::{Serialize, Serializer};

use crate::support::{DEADLINE, PidWatch, block_forever};

fn pool(m: StartMethod, n: usize) -> PoolBuilder {
    Pool::builder().processes(n).start_method(m)
}

fn square(x: u64) -> u64 {
    x * x
}

fn add((a, b): (u32, u32)) -> u32 {
    a + b
}

fn own_pid(_: u32) -> u32 {
    std::process::id()
}

#[allow(unsafe_code)]
fn killed_at(x: u32) -> u32 {
    if x == 7 {
        // SAFETY: the worker kills itself, the behaviour under test.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x
}

#[allow(clippy::disallowed_methods)]
fn aborts(x: u32) -> u32 {
    if x == 1 {
        std::process::abort();
    }
    x
}

const PANIC_LINE: u32 = line!() + 3;
fn panics_on_odd(x: u32) -> u32 {
    if x % 2 == 1 {
        panic!("odd {x}");
    }
    x
}

#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to serialize"))
    }
}

impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unserializable)
    }
}

fn bad_result(x: u32) -> Result<u32, Unserializable> {
    if x == 2 { Err(Unserializable) } else { Ok(x) }
}

fn init_panics(msg: String) {
    panic!("{msg}");
}

fn init_ok(_: u32) {}

fn forever(_: u32) -> u32 {
    block_forever()
}

fn assert_gone(pids: &[u32]) {
    for &pid in pids {
        let watch = PidWatch::try_open(pid);
        if let Some(w) = watch {
            assert!(w.ended_within(DEADLINE), "worker {pid} still runs");
        }
    }
}

fn map_keeps_order(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let expected: Vec<u64> = (0..10_000u64).map(square).collect();
    assert_eq!(p.map_chunked(square, 0..10_000u64, 1).unwrap(), expected);
    assert_eq!(p.map(square, 0..10_000u64).unwrap(), expected);
    assert_eq!(p.map(square, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
    assert_eq!(p.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
    assert_eq!(p.apply(square, 9).unwrap(), 81);
    let mut r = p.apply_async(square, 5).unwrap();
    assert_eq!(r.get_timeout(DEADLINE).unwrap(), 25);
    let mut again = p.apply_async(square, 6).unwrap();
    assert!(again.wait(Some(DEADLINE)).unwrap());
    assert!(again.ready());
    assert_eq!(again.successful(), Some(true));
    assert_eq!(again.get_timeout(DEADLINE).unwrap(), 36);
    assert_eq!(again.get_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::InvalidState);
    let mut many = p.map_async(square, 0..100u64, Some(7)).unwrap();
    assert_eq!(many.get_timeout(DEADLINE).unwrap(), expected[..100]);
    p.close();
    assert_eq!(p.apply_async(square, 1).unwrap_err().kind(), ErrorKind::InvalidState);
    let pids = p.pids();
    p.join().unwrap();
    assert_gone(&pids);
}

fn imap_is_lazy(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let pulled_count = Arc::new(AtomicUsize::new(0));
    let counter = pulled_count.clone();
    let input = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let mut it = p.imap(square, input).unwrap();
    for i in 0..100u64 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
        let pulled = pulled_count.load(Ordering::SeqCst);
        assert!(
            pulled <= i as usize + 1 + 4 * 2,
            "input read too far ahead: {pulled} at {i}"
        );
    }
    drop(it);
    let mut got: Vec<u64> = p
        .imap_unordered(square, 0..500u64)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..500u64).map(square).collect::<Vec<_>>());
    let chunked: Vec<u64> = p
        .imap_chunked(square, 0..50u64, 8)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(chunked, (0..50u64).map(square).collect::<Vec<_>>());
    assert_eq!(p.imap(square, Vec::<u64>::new()).unwrap().count(), 0);
}

fn killed_worker_fails_only_its_task(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let before = p.pids();
    let results: Vec<_> = p.imap(killed_at, 0..20u32).unwrap().collect();
    for (i, r) in results.iter().enumerate() {
        if i == 7 {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
            assert_eq!(e.exit_status(), Some(ExitStatus::Signaled(libc::SIGKILL)));
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u32);
        }
    }
    let e = p.map_chunked(killed_at, 0..20u32, 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    // The pool keeps serving, with its worker count restored.
    assert_eq!(p.map(square, 0..100u64).unwrap().len(), 100);
    let after = p.pids();
    assert_eq!(after.len(), 2);
    assert_ne!(before, after);
    let e = p.apply(aborts, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    assert_eq!(e.exit_status(), Some(ExitStatus::Signaled(libc::SIGABRT)));
    assert_eq!(p.apply(aborts, 2).unwrap(), 2);
}

fn panics_and_codec_failures_stay_per_task(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let results: Vec<_> = p.imap(panics_on_odd, 0..10u32).unwrap().collect();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v as usize, i),
            Err(e) => {
                assert_eq!(i % 2, 1);
                assert_eq!(e.kind(), ErrorKind::ChildPanicked);
                let panic = e.panic().unwrap();
                assert_eq!(panic.message(), format!("odd {i}"));
                let loc = panic.location().unwrap();
                assert_eq!((loc.file.as_str(), loc.line), (file!(), PANIC_LINE));
            }
        }
    }
    let e = p.map(panics_on_odd, 0..10u32).unwrap_err();
    assert_eq!(e.panic().unwrap().message(), "odd 1");
    let results: Vec<_> = p.imap(bad_result, 0..4u32).unwrap().collect();
    assert_eq!(results[2].as_ref().unwrap_err().kind(), ErrorKind::Serialize);
    for i in [0, 1, 3] {
        assert!(matches!(results[i], Ok(Ok(v)) if v == i as u32));
    }
    // The same through map's batches: the batch falls back to one result
    // per task, and only task 2 fails.
    let e = p.map_chunked(bad_result, 0..8u32, 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
    let ok: Vec<_> = p.map_chunked(bad_result, [0u32, 1, 3, 4], 4).unwrap();
    assert!(ok.iter().all(Result::is_ok));
    let r = p.map_async(panics_on_odd, 0..6u32, Some(3)).unwrap();
    assert_eq!(r.get().unwrap_err().panic().unwrap().message(), "odd 1");
    assert_eq!(p.pids().len(), 2);
}

fn failing_initializer_fails_creation(m: StartMethod) {
    let e = pool(m, 2)
        .initializer(init_panics, "no database".to_owned())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    assert_eq!(e.panic().unwrap().message(), "no database");
    let p = pool(m, 2).initializer(init_ok, 1).build().unwrap();
    assert_eq!(p.apply(square, 3).unwrap(), 9);
}

fn maxtasksperchild_replaces_workers(m: StartMethod) {
    let p = pool(m, 2).maxtasksperchild(2).build().unwrap();
    let pids = p.map_chunked(own_pid, 0..20u32, 1).unwrap();
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 10, "each worker ran at most 2 tasks: {pids:?}");
    for d in &distinct {
        assert!(pids.iter().filter(|p| *p == d).count() <= 2);
    }
    assert_eq!(
        p.map(square, 0..1000u64).unwrap(),
        (0..1000u64).map(square).collect::<Vec<_>>()
    );
}

fn task_timeout_kills_and_replaces(m: StartMethod) {
    let p = pool(m, 2).task_timeout(Duration::from_millis(300)).build().unwrap();
    let e = p.apply(forever, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(p.map(square, 0..10u64).unwrap().len(), 10);
    assert_eq!(p.pids().len(), 2);
}

fn terminate_and_drop_leave_no_process(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let r = p.apply_async(forever, 0).unwrap();
    let pids = p.pids();
    p.terminate();
    assert_eq!(r.get().unwrap_err().kind(), ErrorKind::Cancelled);
    p.join().unwrap();
    assert_gone(&pids);

    let p = pool(m, 2).build().unwrap();
    let pending = p.map_async(forever, 0..10u32, Some(1)).unwrap();
    let pids = p.pids();
    assert!(!pending.ready());
    drop(p);
    assert_gone(&pids);
    assert_eq!(pending.get().unwrap_err().kind(), ErrorKind::Cancelled);

    assert_eq!(
        pool(m, 1).build().unwrap().join().unwrap_err().kind(),
        ErrorKind::InvalidState
    );
}

fn executor_basics(m: StartMethod) {
    let ex = Executor::from_builder(pool(m, 2)).unwrap();
    let mut f = ex.submit(square, 12).unwrap();
    assert_eq!(f.result(Some(DEADLINE)).unwrap(), 144);
    assert_eq!(ex.map(square, 0..1000u64, Some(DEADLINE)).unwrap().len(), 1000);
    // Both workers busy: the third task is still queued and can be cancelled.
    let mut busy: Vec<_> = (0..2).map(|_| ex.submit(forever, 0).unwrap()).collect();
    let queued: Vec<_> = (0..4).map(|i| ex.submit(square, i).unwrap()).collect();
    let mut last = queued.into_iter().last().unwrap();
    assert!(last.cancel());
    assert!(last.done());
    assert!(last.cancelled());
    assert_eq!(last.result(None).unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(
        busy[0].result(Some(Duration::from_millis(50))).unwrap_err().kind(),
        ErrorKind::Timeout
    );
    ex.pool().terminate();
    assert_eq!(busy[1].result(None).unwrap_err().kind(), ErrorKind::Cancelled);
    ex.shutdown(true, true).unwrap();
    assert_eq!(ex.submit(square, 1).unwrap_err().kind(), ErrorKind::InvalidState);
}

per_method!(
    map_keeps_order,
    imap_is_lazy,
    killed_worker_fails_only_its_task,
    panics_and_codec_failures_stay_per_task,
    failing_initializer_fails_creation,
    maxtasksperchild_replaces_workers,
    task_timeout_kills_and_replaces,
    terminate_and_drop_leave_no_process,
    executor_basics,
);
