//! One call's options (`Pool::tasks`): a task timeout for that call alone,
//! one result per input from `map_results` and `imap`, and a progress bar
//! per call.

use std::time::Duration;

use multiproc::{ErrorKind, Pool, StartMethod};

fn pool(m: StartMethod) -> Pool {
    Pool::builder().processes(2).start_method(m).build().unwrap()
}

/// 1: never returns; otherwise returns at once.
fn hangs_on_one(x: u64) -> u64 {
    if x == 1 {
        loop {
            std::thread::park();
        }
    }
    x
}

/// Sleeps `ms` milliseconds.
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn kinds(results: Vec<multiproc::Result<u64>>) -> Vec<Result<u64, ErrorKind>> {
    results.into_iter().map(|r| r.map_err(|e| e.kind())).collect()
}

fn a_call_timeout_fails_only_the_overdue_input(m: StartMethod) {
    let p = pool(m);
    let results = p
        .tasks(hangs_on_one)
        .task_timeout(Duration::from_millis(500))
        .map_results([0, 1, 2, 3])
        .unwrap();
    assert_eq!(kinds(results), [Ok(0), Err(ErrorKind::TaskTimeout), Ok(2), Ok(3)]);
    // The pool serves on with a replacement worker.
    assert_eq!(p.map(hangs_on_one, [0, 2]).unwrap(), [0, 2]);
    p.close();
    p.join().unwrap();
}

fn a_call_timeout_leaves_other_calls_untimed(m: StartMethod) {
    let p = pool(m);
    // Longer than the other call's timeout: it must not be killed.
    let long = p.apply_async(nap, 1500).unwrap();
    let timed = p
        .tasks(hangs_on_one)
        .task_timeout(Duration::from_millis(300))
        .map_results([1])
        .unwrap();
    assert_eq!(kinds(timed), [Err(ErrorKind::TaskTimeout)]);
    assert_eq!(long.get().unwrap(), 1500);
    p.close();
    p.join().unwrap();
}

fn imap_with_a_call_timeout_yields_one_result_per_input(m: StartMethod) {
    let p = pool(m);
    let results: Vec<_> = p
        .tasks(hangs_on_one)
        .task_timeout(Duration::from_millis(500))
        .imap([3, 1, 0])
        .unwrap()
        .collect();
    assert_eq!(kinds(results), [Ok(3), Err(ErrorKind::TaskTimeout), Ok(0)]);
    let mut unordered: Vec<_> = kinds(
        p.tasks(hangs_on_one)
            .task_timeout(Duration::from_millis(500))
            .imap_unordered([1, 2])
            .unwrap()
            .collect(),
    );
    unordered.sort_by_key(|r| r.is_err());
    assert_eq!(unordered, [Ok(2), Err(ErrorKind::TaskTimeout)]);
    p.close();
    p.join().unwrap();
}

fn a_call_chunk_size_of_zero_is_refused(m: StartMethod) {
    let p = pool(m);
    let e = p.tasks(hangs_on_one).chunksize(0).map([0]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(p.tasks(hangs_on_one).chunksize(3).map(0..1u64).unwrap(), [0]);
    p.close();
    p.join().unwrap();
}

per_method!(
    a_call_timeout_fails_only_the_overdue_input,
    a_call_timeout_leaves_other_calls_untimed,
    imap_with_a_call_timeout_yields_one_result_per_input,
    a_call_chunk_size_of_zero_is_refused,
);

#[cfg(feature = "progress")]
fn square(x: u64) -> u64 {
    x * x
}

#[cfg(feature = "progress")]
fn panics_on_odd(x: u32) -> u32 {
    assert!(x % 2 == 0, "odd");
    x
}

#[cfg(feature = "progress")]
fn progress_is_per_call(m: StartMethod) {
    let p = pool(m);
    // Without a call asking, no bar.
    assert!(p.map_async(square, 0..3u64, None).unwrap().progress().is_none());
    let r = p
        .tasks(square)
        .progress(true)
        .chunksize(10)
        .map_async(0..1000u64)
        .unwrap();
    assert_eq!(r.progress().unwrap().total(), Some(1000));
    assert!(r.wait(None).unwrap());
    let done = r.progress().unwrap();
    assert_eq!((done.done(), done.is_finished()), (1000, true));
    assert_eq!(r.get().unwrap().len(), 1000);
    // A failed task counts as done too.
    let r = p
        .tasks(panics_on_odd)
        .progress(true)
        .chunksize(1)
        .map_async(0..10u32)
        .unwrap();
    assert!(r.wait(None).unwrap());
    assert_eq!(r.progress().unwrap().done(), 10);
    assert!(r.get().is_err());
    // imap: the length from an exact size hint, none from an endless input.
    let mut it = p.tasks(square).progress(true).imap(0..100u64).unwrap();
    assert_eq!(it.progress().unwrap().total(), Some(100));
    for i in 0..10 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
        assert!(it.progress().unwrap().done() > i);
    }
    assert_eq!(it.by_ref().count(), 90);
    let done = it.progress().unwrap();
    assert_eq!((done.done(), done.is_finished()), (100, true));
    let mut endless = p.tasks(square).progress(true).imap(0u64..).unwrap();
    assert_eq!(endless.progress().unwrap().total(), None);
    assert_eq!(endless.next().unwrap().unwrap(), 0);
    drop(endless);
    // A pool that shows bars by default: a call can turn its bar off.
    let shown = Pool::builder()
        .processes(1)
        .start_method(m)
        .progress(true)
        .build()
        .unwrap();
    assert!(shown.map_async(square, 0..3u64, None).unwrap().progress().is_some());
    let quiet = shown.tasks(square).progress(false).map_async(0..3u64).unwrap();
    assert!(quiet.progress().is_none());
}

#[cfg(feature = "progress")]
per_method!(progress_is_per_call);
