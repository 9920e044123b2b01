//! An ordered lazy map whose input panics yields, in order, every result
//! of the items read before the panic, then the panic, then ends (issue
//! 14, item 6): Python's `imap` yields the results before a failing input
//! and then raises.

use std::panic::{self, AssertUnwindSafe};

use multiproc::{Executor, Pool, StartMethod};

fn square(x: u64) -> u64 {
    x * x
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
    imap_yields_the_results_before_a_failing_input,
    map_buffered_yields_the_results_before_a_failing_input,
);
