//! Conformance of the pool and the executor with CPython 3.11's
//! `multiprocessing.Pool` / `concurrent.futures.ProcessPoolExecutor`:
//! behaviours a conformance sweep found missing, and the documented
//! differences it found, pinned.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use multiproc::{Callbacks, ErrorKind, Executor, Pool, PoolBuilder, StartMethod};

use crate::support::{DEADLINE, Rendezvous, ready_then_wait};

fn pool(m: StartMethod, n: usize) -> PoolBuilder {
    Pool::builder().processes(n).start_method(m)
}

fn square(x: u64) -> u64 {
    x * x
}

/// Holds its worker until the test opens the gate.
fn held(addr: String) -> bool {
    ready_then_wait(&addr);
    true
}

/// A task with a side effect only: creates the file at `path`.
fn touch(path: String) -> bool {
    std::fs::write(&path, b"").is_ok()
}

fn marker(tag: &str, m: StartMethod, i: usize) -> PathBuf {
    let p = std::env::temp_dir().join(format!("multiproc-conf-{tag}-{}-{m:?}-{i}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Python (`MapResult.__init__`, chunksize 0 for an empty input) never
/// calls the callback of an empty `map_async`; here it is called once,
/// with no results, as for any other finished map (a documented
/// difference).
fn empty_map_async_calls_back_once(m: StartMethod) {
    let p = pool(m, 1).build().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let cb = Callbacks::new().callback(move |v: &[u64]| c.lock().unwrap().push(v.len()));
    let mut r = p.map_async_with(square, Vec::<u64>::new(), None, cb).unwrap();
    assert_eq!(r.get_timeout(DEADLINE).unwrap(), Vec::<u64>::new());
    assert_eq!(*calls.lock().unwrap(), [0]);
}

/// Python: `AsyncResult` objects need not be kept; `close(); join()`
/// runs every queued task (fire-and-forget `apply_async`/`map_async`).
fn dropped_async_results_still_run(m: StartMethod) {
    let p = pool(m, 1).build().unwrap();
    let rv = Rendezvous::new();
    let mut blocker = p.apply_async(held, rv.addr()).unwrap();
    let gate = rv.wait_ready();
    let paths: Vec<PathBuf> = (0..4).map(|i| marker("apply", m, i)).collect();
    for path in &paths[..2] {
        drop(p.apply_async(touch, path.display().to_string()).unwrap());
    }
    drop(
        p.map_async(touch, paths[2..].iter().map(|p| p.display().to_string()), Some(1))
            .unwrap(),
    );
    gate.open();
    assert!(blocker.get_timeout(DEADLINE).unwrap());
    p.close();
    p.join().unwrap();
    let ran: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
    assert_eq!(
        ran, [true; 4],
        "tasks whose AsyncResult/MapResult was dropped never ran"
    );
}

/// Python: `ex.submit(f)` without keeping the future, then
/// `shutdown(wait=True)` (or leaving `with`): the task runs.
fn dropped_futures_still_run(m: StartMethod) {
    let ex = Executor::from_builder(pool(m, 1)).unwrap();
    let rv = Rendezvous::new();
    let mut blocker = ex.submit(held, rv.addr()).unwrap();
    let gate = rv.wait_ready();
    let paths: Vec<PathBuf> = (0..3).map(|i| marker("submit", m, i)).collect();
    for path in &paths {
        drop(ex.submit(touch, path.display().to_string()).unwrap());
    }
    gate.open();
    assert!(blocker.result(Some(DEADLINE)).unwrap());
    ex.shutdown(true, false).unwrap();
    let ran: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
    assert_eq!(ran, [true; 3], "submitted tasks whose Future was dropped never ran");
}

/// Python: `it = pool.imap(f, xs); pool.close(); pool.join()` then
/// `list(it)` gives every result, as its task thread had read the whole
/// input. Here `imap` reads its input as results are taken (a documented
/// difference): after `join` the unread part cannot run, and the
/// iteration says so once, clearly, and ends; what went out before
/// `close` still comes.
fn imap_after_close_and_join_says_why_it_stops(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let mut it = p.imap(square, 0..50u64).unwrap();
    assert_eq!(it.next_timeout(DEADLINE).map(|r| r.unwrap()), Some(0));
    p.close();
    p.join().unwrap();
    let got: Vec<_> = std::iter::from_fn(|| it.next_timeout(DEADLINE)).collect();
    let (ok, err): (Vec<_>, Vec<_>) = got.into_iter().partition(Result::is_ok);
    let ok: Vec<u64> = ok.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        ok,
        (1..=ok.len() as u64).map(square).collect::<Vec<_>>(),
        "the queued ones, in order"
    );
    assert!(ok.len() < 49, "the input was read lazily");
    assert_eq!(err.len(), 1);
    let e = err.into_iter().next().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.to_string().contains("joined before this imap"), "{e}");
}

/// Python: `Future.exception()` of a cancelled future raises
/// `CancelledError`; it is not the task's exception.
fn cancelled_future_exception_is_an_error(m: StartMethod) {
    let ex = Executor::from_builder(pool(m, 1)).unwrap();
    let rv = Rendezvous::new();
    let mut blocker = ex.submit(held, rv.addr()).unwrap();
    let gate = rv.wait_ready();
    let mut queued = ex.submit(square, 3).unwrap();
    assert!(queued.cancel());
    let got = queued.exception(Some(DEADLINE)).map(|e| e.map(|e| e.kind()));
    gate.open();
    assert!(blocker.result(Some(DEADLINE)).unwrap());
    match got {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Cancelled),
        Ok(other) => panic!("exception() of a cancelled future returned Ok({other:?}); Python raises CancelledError"),
    }
}

/// Python: `terminate()` / `kill_workers()` kill the workers, but a task
/// that had already finished keeps its result (CPython's result handler
/// or manager thread read it as soon as it was sent). Here task 0's
/// result is in the pool's socket (its worker went on to task 1) but
/// nobody had polled yet: terminating loses it.
fn finished_results_survive_terminate(m: StartMethod) {
    let ex = Executor::from_builder(pool(m, 1)).unwrap();
    assert_eq!(ex.map(square, [1u64], None).unwrap().count(), 1, "the worker is up");
    let (rv0, rv1) = (Rendezvous::new(), Rendezvous::new());
    // Both chunks of one map go to the one worker at once; task 0 is held
    // until the submission has returned (so no harvest can see its
    // result), and the worker answers it before it starts task 1.
    let mut it = ex.map_chunked(held, [rv0.addr(), rv1.addr()], None, 1).unwrap();
    rv0.wait_ready().open();
    let _gate1 = rv1.wait_ready();
    ex.kill_workers().unwrap();
    let first = it.next().unwrap().map_err(|e| e.kind());
    assert_eq!(first, Ok(true), "task 0 had finished before the workers were killed");
    assert_eq!(it.next().unwrap().unwrap_err().kind(), ErrorKind::Cancelled);
}

per_method!(
    finished_results_survive_terminate,
    empty_map_async_calls_back_once,
    dropped_async_results_still_run,
    dropped_futures_still_run,
    imap_after_close_and_join_says_why_it_stops,
    cancelled_future_exception_is_an_error,
);
