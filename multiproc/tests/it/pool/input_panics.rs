//! An input iterator that panics: the panic reaches the caller, the pool
//! stays usable, and what was read before the panic is not lost (Python's
//! `imap` yields the results before a failing input, then raises).

use std::{
    panic::{self, AssertUnwindSafe},
    sync::Arc,
    sync::atomic::Ordering,
};

use multiproc::{Executor, Pool, StartMethod};

use super::{pool, square};

/// 0, 1, 2, then a panic (Python's "exception from the input iterable").
fn panicking_input() -> impl Iterator<Item = u64> {
    (0..10).map(|i| if i == 3 { panic!("the input broke") } else { i })
}

fn input_panics_leave_the_pool_usable(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.map(square, panicking_input())));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<&str>(),
        Some(&"the input broke"),
        "the input's panic reaches the caller unchanged"
    );
    let mut it = p.imap(square, panicking_input()).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| it.by_ref().count()));
    assert!(caught.is_err());
    drop(it);
    assert_eq!(p.map(square, 0..3u64).unwrap(), [0, 1, 4]);
    assert_eq!(
        p.imap(square, 0..3u64).unwrap().map(Result::unwrap).collect::<Vec<_>>(),
        [0, 1, 4]
    );
    p.close();
    p.join().unwrap();
}

/// An input that panics once, caught around `next`: what was read before
/// the panic is still queued and its results come out, before the panic;
/// then the iteration ends (Python's `imap`).
fn imap_input_panic_loses_no_queued_item(m: StartMethod) {
    use std::sync::atomic::AtomicBool;
    let p = pool(m, 2).build().unwrap();
    let once = Arc::new(AtomicBool::new(false));
    let input = (0u64..6).inspect(move |&i| {
        if i == 2 && !once.swap(true, Ordering::SeqCst) {
            panic!("the input broke once")
        }
    });
    let mut it = p.imap(square, input).unwrap();
    let first: Vec<_> = it.by_ref().take(2).map(|r| r.map_err(|e| e.to_string())).collect();
    assert_eq!(first, [Ok(0), Ok(1)]);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| it.next()));
    assert!(caught.is_err());
    assert!(it.next().is_none());
}

/// The same for `imap_chunked`: the part of a chunk read before the
/// panic is queued, and its results come before the panic.
fn imap_chunked_input_panic_keeps_the_partial_chunk(m: StartMethod) {
    use std::sync::atomic::AtomicBool;
    let p = pool(m, 2).build().unwrap();
    let once = Arc::new(AtomicBool::new(false));
    let input = (0u64..8).inspect(move |&i| {
        if i == 4 && !once.swap(true, Ordering::SeqCst) {
            panic!("the input broke once")
        }
    });
    let mut it = p.imap_chunked(square, input, 3).unwrap();
    let got: Vec<_> = it.by_ref().take(4).map(|r| r.map_err(|e| e.to_string())).collect();
    // The chunk [0, 1, 2] and the part [3] read before the panic.
    assert_eq!(got, [Ok(0), Ok(1), Ok(4), Ok(9)]);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| it.next()));
    assert!(caught.is_err());
    assert!(it.next().is_none());
}

/// `0..` whose item `at` panics.
fn breaks_at(at: u64) -> impl Iterator<Item = u64> {
    (0u64..10).inspect(move |&i| {
        if i == at {
            panic!("the input broke at {i}");
        }
    })
}

/// Each step of an iteration: a result, or the panic's message.
fn steps(mut next: impl FnMut() -> Option<multiproc::Result<u64>>) -> Vec<Result<u64, String>> {
    let mut out = Vec::new();
    loop {
        match panic::catch_unwind(AssertUnwindSafe(&mut next)) {
            Ok(None) => return out,
            Ok(Some(r)) => out.push(r.map_err(|e| e.to_string())),
            Err(p) => {
                let text = p
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "a panic without a message".into());
                out.push(Err(text));
            }
        }
        assert!(out.len() <= 20, "the iteration does not end: {out:?}");
    }
}

fn broken() -> Result<u64, String> {
    Err("the input broke at 3".into())
}

fn imap_yields_the_results_before_a_failing_input(m: StartMethod) {
    let p = Pool::builder().processes(2).start_method(m).build().unwrap();
    let mut it = p.imap(square, breaks_at(3)).unwrap();
    assert_eq!(steps(|| it.next()), [Ok(0), Ok(1), Ok(4), broken()]);
    // Chunks of 2: the whole chunk [0, 1] and the part [2] read before the
    // panic.
    let mut it = p.imap_chunked(square, breaks_at(3), 2).unwrap();
    assert_eq!(steps(|| it.next()), [Ok(0), Ok(1), Ok(4), broken()]);
    // The pool serves on.
    assert_eq!(p.apply(square, 5).unwrap(), 25);
}

fn map_buffered_yields_the_results_before_a_failing_input(m: StartMethod) {
    let ex = Executor::from_builder(Pool::builder().processes(2).start_method(m)).unwrap();
    // The first three tasks are submitted by the call, the panic comes
    // with the next read.
    let mut it = ex.map_buffered(square, breaks_at(3), None, 3).unwrap();
    assert_eq!(steps(|| it.next()), [Ok(0), Ok(1), Ok(4), broken()]);
    // A panic while the call fills the buffer comes after the results too.
    let mut it = ex.map_buffered(square, breaks_at(3), None, 8).unwrap();
    assert_eq!(steps(|| it.next()), [Ok(0), Ok(1), Ok(4), broken()]);
}

per_method!(
    input_panics_leave_the_pool_usable,
    imap_input_panic_loses_no_queued_item,
    imap_chunked_input_panic_keeps_the_partial_chunk,
    imap_yields_the_results_before_a_failing_input,
    map_buffered_yields_the_results_before_a_failing_input,
);
