//! The executor (`concurrent.futures.ProcessPoolExecutor`): submitting,
//! its futures and their states, `futures::wait` and `as_completed`, its
//! `map` and its deadline, shutting it down.

use std::{path::PathBuf, sync::mpsc, time::Duration};

use multiproc::{
    ErrorKind, Executor, StartMethod,
    futures::{ReturnWhen, Waited, as_completed, wait},
};

use crate::support::{DEADLINE, Rendezvous};

use super::{executor, forever, held, held_or_not, marker, panics, pool, square, touch};

fn executor_basics(m: StartMethod) {
    let ex = Executor::from_builder(pool(m, 2)).unwrap();
    let mut f = ex.submit(square, 12).unwrap();
    assert_eq!(f.result(Some(DEADLINE)).unwrap(), 144);
    assert_eq!(ex.map(square, 0..1000u64, Some(DEADLINE)).unwrap().count(), 1000);
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
    ex.pool().terminate().unwrap();
    assert_eq!(busy[1].result(None).unwrap_err().kind(), ErrorKind::Cancelled);
    ex.shutdown(true, true).unwrap();
    assert_eq!(ex.submit(square, 1).unwrap_err().kind(), ErrorKind::InvalidState);
}

fn cancelling_wakes_the_waiters(m: StartMethod) {
    let ex = Executor::from_builder(pool(m, 1)).unwrap();
    let _busy = ex.submit(forever, 0).unwrap();
    let mut queued = ex.submit(square, 2).unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        tx.send(()).unwrap();
        queued.result(None).map_err(|e| e.kind())
    });
    rx.recv_timeout(DEADLINE).unwrap();
    ex.shutdown(false, true).unwrap();
    // The only running task never ends: a lost wake-up would hang here.
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || done_tx.send(waiter.join().unwrap()).unwrap());
    assert_eq!(done_rx.recv_timeout(DEADLINE).unwrap(), Err(ErrorKind::Cancelled));
    ex.pool().terminate().unwrap();
}

fn executor_drop_waits_like_python(m: StartMethod) {
    let mut f = {
        let ex = Executor::from_builder(pool(m, 2)).unwrap();
        let f = ex.submit(square, 3).unwrap();
        ex.shutdown(false, false).unwrap();
        f
    };
    assert_eq!(f.result(Some(DEADLINE)).unwrap(), 9);
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

/// Python's `divmod`, which panics on a zero divisor.
fn divmod((a, b): (u32, u32)) -> (u32, u32) {
    (a / b, a % b)
}

fn executor_map_yields_every_result_in_order(m: StartMethod) {
    let ex = executor(m, 2);
    // Python's test_map_exception: the results before the failure come
    // out, then the failure (here the iteration goes on past it).
    let got: Vec<_> = ex
        .map(divmod, [(1, 2), (1, 3), (1, 0), (1, 5)], Some(DEADLINE))
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Ok((0, 1)), Ok((0, 1)), Err(ErrorKind::ChildPanicked), Ok((0, 1))]);
    let want: Vec<u64> = (0..300).map(square).collect();
    for chunksize in [1, 6, 40, 50, 300, 1000] {
        let it = ex.map_chunked(square, 0..300u64, Some(DEADLINE), chunksize).unwrap();
        assert_eq!(it.size_hint(), (0, Some(300)));
        assert_eq!(
            it.collect::<multiproc::Result<Vec<_>>>().unwrap(),
            want,
            "chunksize {chunksize}"
        );
    }
    let e = ex.map_chunked(square, 0..3u64, None, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // An iterator dropped early cancels the rest; the executor goes on.
    let mut it = ex.map_chunked(square, 0..10_000u64, None, 1).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    drop(it);
    let abs: Vec<i32> = ex.map(i32::abs, -5..5, None).unwrap().map(Result::unwrap).collect();
    assert_eq!(abs, [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]);
    assert_eq!(ex.map(square, Vec::new(), None).unwrap().count(), 0);
    ex.shutdown(true, false).unwrap();
    assert_eq!(
        ex.map(square, 0..3u64, None).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
}

fn executor_map_timeout_counts_from_the_call(m: StartMethod) {
    let ex = executor(m, 2);
    // Both workers up first: the quick tasks then finish well within the
    // timeout, however loaded the machine.
    assert_eq!(ex.map(square, 0..4u64, None).unwrap().count(), 4);
    let rv = Rendezvous::new();
    let items = [None, None, Some(rv.addr())];
    let mut it = ex.map(held_or_not, items, Some(Duration::from_secs(1))).unwrap();
    assert!(!it.next().unwrap().unwrap());
    assert!(!it.next().unwrap().unwrap());
    // The third task is held until after the deadline.
    assert_eq!(it.next().unwrap().unwrap_err().kind(), ErrorKind::Timeout);
    assert!(it.next().is_none(), "a timeout ends the iteration");
    drop(it);
    rv.wait_ready().open();
    ex.shutdown(true, false).unwrap();
}

fn futures_wait_as_completed_and_states(m: StartMethod) {
    let ex = executor(m, 2);
    let rv = Rendezvous::new();
    let mut fs = vec![ex.submit(held_or_not, Some(rv.addr())).unwrap()];
    let gate = rv.wait_ready();
    assert!(fs[0].running(), "a worker runs it");
    assert!(!fs[0].done());
    fs.push(ex.submit(held_or_not, None).unwrap());
    fs.push(ex.submit(held_or_not, None).unwrap());
    let w = wait(&fs, None, ReturnWhen::FirstCompleted).unwrap();
    assert!(!w.done.is_empty() && !w.done.contains(&0), "{w:?}");
    let w = wait(&fs[1..], Some(DEADLINE), ReturnWhen::AllCompleted).unwrap();
    assert_eq!(
        w,
        Waited {
            done: vec![0, 1],
            not_done: vec![]
        }
    );
    let w = wait(&fs, Some(Duration::from_millis(100)), ReturnWhen::AllCompleted).unwrap();
    assert_eq!(
        w,
        Waited {
            done: vec![1, 2],
            not_done: vec![0]
        },
        "a timeout is no error"
    );
    assert!(!fs[1].running() && fs[1].done());

    // as_completed: the finished ones, then the timeout, with a count.
    let mut seen = Vec::new();
    let mut timed_out = None;
    for r in as_completed(&mut fs, Some(Duration::from_millis(100))).unwrap() {
        match r {
            Ok((i, f)) => {
                assert!(!f.result(None).unwrap());
                seen.push(i);
            }
            Err(e) => timed_out = Some(e),
        }
    }
    seen.sort();
    assert_eq!(seen, [1, 2]);
    let e = timed_out.expect("a timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.to_string().contains("1 (of 3) futures unfinished"), "{e}");

    // FIRST_EXCEPTION returns on a failure, not on a success.
    let mut failing = vec![fs.remove(0), ex.submit(panics, None).unwrap()];
    let w = wait(&failing, None, ReturnWhen::FirstException).unwrap();
    assert_eq!(
        w,
        Waited {
            done: vec![1],
            not_done: vec![0]
        }
    );
    let e = failing[1].exception(None).unwrap().expect("it panicked");
    assert_eq!(e.kind(), ErrorKind::ChildPanicked);
    assert!(e.to_string().contains("raised in the task"), "{e}");
    assert_eq!(failing[1].result(None).unwrap_err().kind(), ErrorKind::ChildPanicked);

    gate.open();
    let w = wait(&failing, Some(DEADLINE), ReturnWhen::AllCompleted).unwrap();
    assert_eq!(w.not_done, Vec::<usize>::new());
    assert!(failing[0].exception(Some(DEADLINE)).unwrap().is_none());
    assert!(failing[0].result(None).unwrap(), "the value stays after exception()");
    assert_eq!(failing[0].result(None).unwrap_err().kind(), ErrorKind::InvalidState);

    // FIRST_EXCEPTION without a failure waits for all; a cancelled future
    // is done, and is no exception.
    let blocker = ex.submit(held_or_not, Some(rv.addr())).unwrap();
    let gate = rv.wait_ready();
    let other = ex.submit(held_or_not, Some(rv.addr())).unwrap();
    let gate2 = rv.wait_ready();
    let queued = vec![
        ex.submit(held_or_not, None).unwrap(),
        ex.submit(held_or_not, None).unwrap(),
    ];
    assert!(queued[0].cancel());
    let w = wait(&queued, Some(Duration::from_millis(100)), ReturnWhen::FirstException).unwrap();
    assert_eq!(
        w,
        Waited {
            done: vec![0],
            not_done: vec![1]
        }
    );
    gate.open();
    gate2.open();
    let w = wait(&queued, Some(DEADLINE), ReturnWhen::FirstException).unwrap();
    assert_eq!(w.done, [0, 1]);
    drop((blocker, other));

    // Futures of two executors cannot be waited on together; none is
    // nothing to wait for.
    let ex2 = executor(m, 1);
    let mixed = vec![
        ex.submit(held_or_not, None).unwrap(),
        ex2.submit(held_or_not, None).unwrap(),
    ];
    assert_eq!(
        wait(&mixed, None, ReturnWhen::AllCompleted).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        wait::<bool>(&[], None, ReturnWhen::AllCompleted).unwrap(),
        Waited::default()
    );
    assert_eq!(as_completed::<bool>(&mut [], None).unwrap().count(), 0);
}

/// Tells the test it has run, then returns 7.
fn report_then_seven(addr: String) -> u64 {
    crate::support::notify(&addr, "done");
    7
}

/// Spins (no sleep) until `f` is true, failing after `limit`.
fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: still not seen after {limit:?}");
        std::thread::yield_now();
    }
}

/// A deadline already passed still looks once at the workers: Python's
/// polling idiom `wait(fs, timeout=0)` sees a finished future, and
/// `next(timeout=0)` sends the task and then yields its result.
fn zero_timeouts_poll(m: StartMethod) {
    let ex = executor(m, 1);
    let rv = Rendezvous::new();
    let fs = vec![ex.submit(report_then_seven, rv.addr()).unwrap()];
    assert_eq!(rv.recv(), "done", "the task ran");
    eventually(DEADLINE, "wait(timeout=0) sees the finished future", || {
        !wait(&fs, Some(Duration::ZERO), ReturnWhen::FirstCompleted)
            .unwrap()
            .done
            .is_empty()
    });
    let mut it = ex.pool().imap(square, [3u64]).unwrap();
    let mut got = None;
    eventually(DEADLINE, "imap next_timeout(0) yields the result", || {
        match it.next_timeout(Duration::ZERO) {
            Some(Err(e)) if e.is_timeout() => false,
            other => {
                got = other.map(|r| r.unwrap());
                true
            }
        }
    });
    assert_eq!(got, Some(9));
}

/// A result that was done by the deadline is returned even when nobody
/// read it before the deadline passed.
fn executor_map_returns_results_done_before_the_deadline(m: StartMethod) {
    let ex = executor(m, 1);
    assert_eq!(ex.map(square, [1u64], None).unwrap().count(), 1, "the worker is up");
    let rv = Rendezvous::new();
    // Both tasks go to the one worker at once; when the second reports
    // ready, the first's result has been sent.
    let items = [None, Some(rv.addr())];
    let mut it = ex.map_chunked(held_or_not, items, Some(Duration::ZERO), 1).unwrap();
    let gate = rv.wait_ready();
    assert!(!it.next().unwrap().unwrap(), "the result, not a timeout");
    gate.open();
}

/// A future keeps its state once `result()` has taken the outcome:
/// `exception()` is `None` for a value, `cancelled()` stays true, and
/// `FIRST_EXCEPTION` counts a failure already taken.
fn taken_results_keep_the_future_state(m: StartMethod) {
    let ex = executor(m, 1);
    let mut ok = ex.submit(square, 3).unwrap();
    assert_eq!(ok.result(Some(DEADLINE)).unwrap(), 9);
    assert!(ok.exception(Some(DEADLINE)).unwrap().is_none());
    assert_eq!(ok.result(None).unwrap_err().kind(), ErrorKind::InvalidState);

    let rv = Rendezvous::new();
    let blocker = ex.submit(held_or_not, Some(rv.addr())).unwrap();
    let gate = rv.wait_ready();
    let mut c = ex.submit(square, 1).unwrap();
    assert!(c.cancel());
    assert!(c.cancel(), "cancelling again still says cancelled");
    assert_eq!(c.result(None).unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(c.cancelled(), "a cancelled future stays cancelled");
    gate.open();
    drop(blocker);

    let mut bad = ex.submit(panics, None).unwrap();
    assert_eq!(bad.result(Some(DEADLINE)).unwrap_err().kind(), ErrorKind::ChildPanicked);
    assert_eq!(bad.exception(None).unwrap().unwrap().kind(), ErrorKind::ChildPanicked);
    let held = ex.submit(held_or_not, Some(rv.addr())).unwrap();
    let gate = rv.wait_ready();
    let fs = vec![bad, held];
    let w = wait(&fs, Some(DEADLINE), ReturnWhen::FirstException).unwrap();
    gate.open();
    assert_eq!(
        w,
        Waited {
            done: vec![0],
            not_done: vec![1]
        }
    );
}

/// A timeout cancels the tasks not sent yet, as Python's `map` does.
fn executor_map_timeout_cancels_the_rest(m: StartMethod) {
    let ex = executor(m, 1);
    let rv = Rendezvous::new();
    let mut items = vec![Some(rv.addr())];
    items.extend((0..100).map(|_| None));
    let mut it = ex
        .map_chunked(held_or_not, items, Some(Duration::from_millis(100)), 1)
        .unwrap();
    let gate = rv.wait_ready();
    assert_eq!(it.next().unwrap().unwrap_err().kind(), ErrorKind::Timeout);
    assert!(it.next().is_none());
    gate.open();
    // The worker is free again at once: only the held task and the few
    // sent behind it ran.
    let mut f = ex.submit(square, 5).unwrap();
    assert_eq!(f.result(Some(DEADLINE)).unwrap(), 25);
    drop(it);
}

/// Two threads iterate their own `MapIter` on one executor while a third
/// submits and waits.
fn threads_share_an_executor(m: StartMethod) {
    let ex = std::sync::Arc::new(executor(m, 3));
    let mut hs = Vec::new();
    for k in 0..2u64 {
        let ex = ex.clone();
        hs.push(std::thread::spawn(move || {
            for round in 0..5u64 {
                let base = 1000 * k + 100 * round;
                let got: Vec<u64> = ex
                    .map_chunked(square, base..base + 50, Some(DEADLINE), 1 + round as usize)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(got, (base..base + 50).map(square).collect::<Vec<_>>());
            }
        }));
    }
    let ex3 = ex.clone();
    hs.push(std::thread::spawn(move || {
        for i in 0..30u64 {
            let fs = vec![ex3.submit(square, i).unwrap(), ex3.submit(square, i + 1).unwrap()];
            let w = wait(&fs, Some(DEADLINE), ReturnWhen::AllCompleted).unwrap();
            assert_eq!(w.done, [0, 1]);
        }
    }));
    for h in hs {
        h.join().unwrap();
    }
}

per_method!(
    executor_basics,
    cancelling_wakes_the_waiters,
    executor_drop_waits_like_python,
    dropped_futures_still_run,
    cancelled_future_exception_is_an_error,
    executor_map_yields_every_result_in_order,
    executor_map_timeout_counts_from_the_call,
    futures_wait_as_completed_and_states,
    zero_timeouts_poll,
    executor_map_returns_results_done_before_the_deadline,
    taken_results_keep_the_future_state,
    executor_map_timeout_cancels_the_rest,
    threads_share_an_executor,
);
