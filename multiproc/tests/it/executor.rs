//! The executor's `map` iterator, its futures, and the `futures` module
//! functions `wait` and `as_completed`, under every start method.

use std::{sync::mpsc, time::Duration};

use multiproc::{
    Callbacks, ErrorKind, Executor, Pool, StartMethod,
    futures::{ReturnWhen, Waited, as_completed, wait},
};

use crate::support::{DEADLINE, Rendezvous, ready_then_wait};

pub(crate) fn executor(m: StartMethod, n: usize) -> Executor {
    Executor::from_builder(Pool::builder().processes(n).start_method(m)).unwrap()
}

/// Python's `divmod`, which panics on a zero divisor.
fn divmod((a, b): (u32, u32)) -> (u32, u32) {
    (a / b, a % b)
}

pub(crate) fn square(x: u64) -> u64 {
    x * x
}

/// `false` at once, or (given a rendezvous address) `true` once the test
/// opens the gate.
pub(crate) fn held_or_not(gate: Option<String>) -> bool {
    match gate {
        Some(addr) => {
            ready_then_wait(&addr);
            true
        }
        None => false,
    }
}

fn panics(_: Option<String>) -> bool {
    panic!("raised in the task")
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

fn submit_with_runs_the_callback(m: StartMethod) {
    let ex = executor(m, 1);
    let (tx, rx) = mpsc::channel();
    let cb = Callbacks::new().callback(move |v: &u64| tx.send(*v).unwrap());
    let mut f = ex.submit_with(square, 9, cb).unwrap();
    assert_eq!(f.result(Some(DEADLINE)).unwrap(), 81);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), 81);
}

per_method!(
    executor_map_yields_every_result_in_order,
    executor_map_timeout_counts_from_the_call,
    futures_wait_as_completed_and_states,
    submit_with_runs_the_callback,
);

// ---------------------------------------------------------------------
// Deadlines that have passed, callbacks in other threads, taken results.
// ---------------------------------------------------------------------

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

/// A callback's panic unwinding out of `MapIter::next` loses none of the
/// results `next` had taken from the job.
fn map_iter_keeps_results_across_a_callback_panic(m: StartMethod) {
    let ex = executor(m, 2);
    let rv = Rendezvous::new();
    // Item 0 is held on one worker; the others finish on the other.
    let items = [Some(rv.addr()), None, None, None];
    let mut it = ex.map_chunked(held_or_not, items, Some(DEADLINE), 1).unwrap();
    let gate = rv.wait_ready();
    // Runs on the free worker; its callback panics in whichever thread
    // drives then: the one in `it.next()`, or, when the task finished
    // before the submission's own look at the workers, the submission.
    let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ex.submit_with(
            square,
            2,
            Callbacks::new().callback(|_: &u64| panic!("callback panics")),
        )
        .unwrap()
    }));
    if submitted.is_ok() {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| it.next()));
        assert!(caught.is_err(), "the callback's panic came out of next()");
    }
    gate.open();
    let rest: Vec<_> = it.map(|r| r.map_err(|e| e.to_string())).collect();
    assert_eq!(rest, [Ok(true), Ok(false), Ok(false), Ok(false)]);
}

/// `wait(FIRST_COMPLETED)` driving the pool notices a future that another
/// thread completes (its done callback returning).
fn wait_first_completed_sees_a_callback_finish_in_another_thread(m: StartMethod) {
    let ex = std::sync::Arc::new(executor(m, 1));
    let rv_a = Rendezvous::new();
    let rv = Rendezvous::new();
    let addr = rv.addr();
    let (in_cb_tx, in_cb_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel();
    // A's callback runs in the helper thread and returns once B has
    // started, which only the main thread's `wait` can make happen.
    let cb = Callbacks::new().callback(move |_: &bool| {
        in_cb_tx.send(()).unwrap();
        gate_tx.send(rv.wait_ready()).unwrap();
    });
    let a = ex.submit_with(held_or_not, Some(rv_a.addr()), cb).unwrap();
    let gate_a = rv_a.wait_ready();
    let helper = {
        let ex = ex.clone();
        // Queued behind A: the helper drives, reads A's result and runs
        // A's callback.
        std::thread::spawn(move || ex.pool().apply(square, 3).unwrap())
    };
    gate_a.open();
    in_cb_rx
        .recv_timeout(DEADLINE)
        .expect("A's callback runs in the helper");
    // Queued behind the helper's task: dispatched by `wait`'s rounds.
    let b = ex.submit(held_or_not, Some(addr)).unwrap();
    let fs = vec![a, b];
    let w = wait(&fs, Some(DEADLINE), ReturnWhen::FirstCompleted).unwrap();
    gate_rx.recv_timeout(DEADLINE).unwrap().open();
    assert_eq!(helper.join().unwrap(), 9);
    assert_eq!(w.done, [0], "A's end was seen before the deadline");
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

/// A done callback that waits on its own future with `futures::wait` or
/// `as_completed` gets an error, as `result()` there does (not a hang).
fn callback_waiting_on_its_own_future_is_an_error(m: StartMethod) {
    use std::sync::{Arc, Mutex};
    let ex = executor(m, 1);
    let slot: Arc<Mutex<Option<multiproc::TaskHandle<u64>>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel();
    let inner = slot.clone();
    let cb = Callbacks::new().callback(move |_: &u64| {
        let mut g = inner.lock().unwrap();
        let own = std::slice::from_mut(g.as_mut().unwrap());
        let waited = wait(own, Some(DEADLINE), ReturnWhen::AllCompleted).map(|_| ());
        let listed = as_completed(own, Some(DEADLINE)).map(|_| ());
        tx.send((waited.map_err(|e| e.kind()), listed.map_err(|e| e.kind())))
            .unwrap();
    });
    let rv = Rendezvous::new();
    let _blocker = ex.submit(held_or_not, Some(rv.addr())).unwrap();
    let gate = rv.wait_ready();
    // Queued behind the blocker: its result cannot arrive before the
    // future is in the slot.
    let f = ex.submit_with(square, 4, cb).unwrap();
    *slot.lock().unwrap() = Some(f);
    gate.open();
    ex.pool().close();
    ex.pool().join().unwrap(); // runs the callback
    let (waited, listed) = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(waited, Err(ErrorKind::InvalidState));
    assert_eq!(listed, Err(ErrorKind::InvalidState));
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

/// A huge imap chunk size does not overflow the read-ahead bound.
fn imap_huge_chunksize(m: StartMethod) {
    let ex = executor(m, 2);
    let got: Vec<u64> = ex
        .pool()
        .imap_chunked(square, 0..3u64, usize::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, [0, 1, 4]);
}

/// Terminating the pool from another thread while one thread iterates a
/// `MapIter` and another is in `as_completed`: both end, nothing hangs.
fn terminate_while_iterating(m: StartMethod) {
    let ex = std::sync::Arc::new(executor(m, 2));
    let rv = Rendezvous::new();
    let it = ex
        .map_chunked(held_or_not, [Some(rv.addr()), None, None], None, 1)
        .unwrap();
    let gate = rv.wait_ready();
    let mut fs = vec![
        ex.submit(held_or_not, None).unwrap(),
        ex.submit(held_or_not, Some(rv.addr())).unwrap(),
    ];
    let (tx, rx) = mpsc::channel();
    let t1 = std::thread::spawn(move || {
        let got: Vec<_> = it.map(|r| r.map_err(|e| e.kind())).collect();
        tx.send(got).unwrap();
    });
    let (tx2, rx2) = mpsc::channel();
    let ex2 = ex.clone();
    let t2 = std::thread::spawn(move || {
        let mut n = 0;
        for r in as_completed(&mut fs, None).unwrap() {
            let (_, f) = r.unwrap();
            let _ = f.result(None);
            n += 1;
        }
        tx2.send(n).unwrap();
        drop(ex2);
    });
    let _gate2 = rv.wait_ready();
    ex.pool().terminate().unwrap();
    let got = rx.recv_timeout(DEADLINE).expect("MapIter ended");
    assert_eq!(got[0], Err(ErrorKind::Cancelled));
    assert_eq!(rx2.recv_timeout(DEADLINE).expect("as_completed ended"), 2);
    t1.join().unwrap();
    t2.join().unwrap();
    drop(gate);
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
    zero_timeouts_poll,
    executor_map_returns_results_done_before_the_deadline,
    map_iter_keeps_results_across_a_callback_panic,
    wait_first_completed_sees_a_callback_finish_in_another_thread,
    taken_results_keep_the_future_state,
    callback_waiting_on_its_own_future_is_an_error,
    executor_map_timeout_cancels_the_rest,
    imap_huge_chunksize,
    terminate_while_iterating,
    threads_share_an_executor,
);

/// `map_buffered` (Python 3.14's `buffersize`): the first tasks go out
/// with the call, the input is read only as results are taken, and its
/// timeout ends the iteration.
fn map_buffered_is_lazy_and_bounded(m: StartMethod) {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let ex = executor(m, 2);
    let rv = Rendezvous::new();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let addr = rv.addr();
    // An endless input; its first item is held at a gate.
    let input = (0u64..).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        (i == 0).then(|| addr.clone())
    });
    let mut it = ex.map_buffered(held_or_not, input, None, 4).unwrap();
    // Submitted by the call itself: the held task reports without any
    // `next`.
    let gate = rv.wait_ready();
    assert_eq!(pulled.load(Ordering::SeqCst), 4, "exactly the buffer was read");
    gate.open();
    let first: Vec<bool> = it.by_ref().take(10).map(Result::unwrap).collect();
    assert!(first[0]);
    assert!(first[1..].iter().all(|&b| !b));
    let read = pulled.load(Ordering::SeqCst);
    assert!(read <= 10 + 4, "read {read} items for 10 results with a buffer of 4");
    drop(it);

    // A fresh executor: the dropped iteration's tasks may still hold the
    // workers.
    let ex = executor(m, 2);
    let mut held = ex
        .map_buffered(
            held_or_not,
            [Some(rv.addr()), None, None],
            Some(Duration::from_millis(100)),
            2,
        )
        .unwrap();
    let gate = rv.wait_ready();
    assert_eq!(held.next().unwrap().unwrap_err().kind(), ErrorKind::Timeout);
    assert!(held.next().is_none(), "the map's own timeout ends it");
    gate.open();
    assert_eq!(
        ex.map_buffered(square, 0..3u64, None, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

per_method!(map_buffered_is_lazy_and_bounded);

/// Python 3.14's `terminate_workers` and `kill_workers`: the workers end at
/// once, unfinished tasks are cancelled, and the executor takes no more.
fn terminate_and_kill_workers(m: StartMethod) {
    for terminate in [true, false] {
        let ex = executor(m, 2);
        let pids = ex.pool().pids();
        let rv = Rendezvous::new();
        let mut held = ex.submit(held_or_not, Some(rv.addr())).unwrap();
        let _gate = rv.wait_ready();
        if terminate {
            ex.terminate_workers().unwrap();
        } else {
            ex.kill_workers().unwrap();
        }
        assert_eq!(held.result(Some(DEADLINE)).unwrap_err().kind(), ErrorKind::Cancelled);
        assert_eq!(ex.submit(square, 1).unwrap_err().kind(), ErrorKind::InvalidState);
        for pid in pids {
            if let Some(w) = crate::support::PidWatch::try_open(pid) {
                assert!(w.ended_within(DEADLINE), "worker {pid} still runs");
            }
        }
        ex.shutdown(true, false).unwrap();
    }
}

per_method!(terminate_and_kill_workers);

/// Python's gh-115634 cases: workers retiring after `max_tasks_per_child`
/// while `shutdown` waits: every result arrives, nothing deadlocks.
fn max_tasks_per_child_with_shutdown(m: StartMethod) {
    for (workers, per_child, tasks) in [(3, 1, 6u64), (1, 2, 6), (2, 2, 8)] {
        let ex = Executor::from_builder(
            Pool::builder()
                .processes(workers)
                .maxtasksperchild(per_child)
                .start_method(m),
        )
        .unwrap();
        let mut fs: Vec<_> = (0..tasks).map(|x| ex.submit(square, x).unwrap()).collect();
        ex.shutdown(true, false).unwrap();
        let got: Vec<u64> = fs.iter_mut().map(|f| f.result(Some(DEADLINE)).unwrap()).collect();
        assert_eq!(
            got,
            (0..tasks).map(square).collect::<Vec<_>>(),
            "{workers} workers, {per_child} per child"
        );
    }
}

per_method!(max_tasks_per_child_with_shutdown);

/// As Python 3.14's: each `next` submits the next task before it waits,
/// so with a buffer of 1 two tasks overlap.
fn map_buffered_refills_before_it_waits(m: StartMethod) {
    let ex = executor(m, 2);
    let (rv0, rv1) = (Rendezvous::new(), Rendezvous::new());
    let items = [Some(rv0.addr()), Some(rv1.addr())];
    let mut it = ex.map_buffered(held_or_not, items, Some(DEADLINE), 1).unwrap();
    rv0.wait_ready().open();
    assert!(it.next().unwrap().unwrap());
    // No further call: task 1 was submitted (and sent) by the first `next`.
    let gate1 = rv1.wait_ready();
    gate1.open();
    assert!(it.next().unwrap().unwrap());
    assert!(it.next().is_none());
}

/// After `shutdown`, `map_buffered` over an endless input stops at the
/// next task it would submit (Python's `RuntimeError`).
fn map_buffered_stops_after_shutdown(m: StartMethod) {
    let ex = executor(m, 2);
    let mut it = ex.map_buffered(square, 0u64.., Some(DEADLINE), 4).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    ex.shutdown(false, false).unwrap();
    let end = it.next().map(|r| r.map_err(|e| e.kind()));
    assert_eq!(end, Some(Err(ErrorKind::InvalidState)));
    assert!(it.next().is_none());
}

/// After `terminate()`, an endless `map_buffered` or `imap` ends.
fn endless_iterations_end_after_terminate(m: StartMethod) {
    let ex = executor(m, 2);
    let mut buffered = ex.map_buffered(square, 0u64.., None, 4).unwrap();
    let mut imap = ex.pool().imap(square, 0u64..).unwrap();
    assert_eq!(buffered.next().unwrap().unwrap(), 0);
    assert_eq!(imap.next().unwrap().unwrap(), 0);
    let pool = ex.pool();
    std::thread::scope(|s| s.spawn(|| pool.terminate()).join().unwrap().unwrap());
    for (name, it) in [
        (
            "map_buffered",
            &mut buffered as &mut dyn Iterator<Item = multiproc::Result<u64>>,
        ),
        ("imap", &mut imap),
    ] {
        let n = it.take(2000).count();
        assert!(n < 2000, "{name}: still yielding after terminate ({n} items)");
    }
}

/// A callback run within another's (the outer one drives the pool) that
/// waits on the outer callback's future gets an error, not a hang.
fn nested_callback_waiting_on_the_outer_future_is_an_error(m: StartMethod) {
    use std::sync::{Arc, Mutex};
    type Slot = Arc<Mutex<Option<multiproc::TaskHandle<bool>>>>;
    let ex = executor(m, 2);
    let (slot_a, slot_b): (Slot, Slot) = (Arc::default(), Arc::default());
    let (tx, rx) = mpsc::channel();
    let rv_b = Rendezvous::new();
    let outer = slot_a.clone();
    let cb_b = Callbacks::new().callback(move |_: &bool| {
        let mut g = outer.lock().unwrap();
        let r = g.as_mut().unwrap().result(Some(DEADLINE));
        tx.send(r.map_err(|e| e.kind())).unwrap();
    });
    let fb = ex.submit_with(held_or_not, Some(rv_b.addr()), cb_b).unwrap();
    let gate_b = rv_b.wait_ready();
    let rv_a = Rendezvous::new();
    let inner = slot_b.clone();
    let cb_a = Callbacks::new().callback(move |_: &bool| {
        gate_b.open();
        // Drives the pool: B's result arrives and B's callback runs here.
        let mut g = inner.lock().unwrap();
        assert!(g.as_mut().unwrap().result(Some(DEADLINE)).unwrap());
    });
    let fa = ex.submit_with(held_or_not, Some(rv_a.addr()), cb_a).unwrap();
    let gate_a = rv_a.wait_ready();
    *slot_a.lock().unwrap() = Some(fa);
    *slot_b.lock().unwrap() = Some(fb);
    gate_a.open();
    ex.pool().close();
    ex.pool().join().unwrap(); // runs A's callback, and B's inside it
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), Err(ErrorKind::InvalidState));
}

per_method!(
    map_buffered_refills_before_it_waits,
    map_buffered_stops_after_shutdown,
    endless_iterations_end_after_terminate,
    nested_callback_waiting_on_the_outer_future_is_an_error,
);

/// Python's `add_done_callback`: before the end (run once the task ends,
/// in order), after it (at once), with errors, cancellations, and after
/// `result()` took the outcome.
fn add_done_callback_runs_once_at_the_end(m: StartMethod) {
    type Seen = mpsc::Sender<(&'static str, std::result::Result<bool, ErrorKind>)>;
    fn record(
        tx: &Seen,
        tag: &'static str,
    ) -> impl FnOnce(std::result::Result<&bool, &multiproc::Error>) + Send + 'static {
        let tx = tx.clone();
        move |r| tx.send((tag, r.copied().map_err(|e| e.kind()))).unwrap()
    }
    let ex = executor(m, 2);
    let (tx, rx) = mpsc::channel();
    let rv = Rendezvous::new();
    // Before the end: both run when the held task ends, in order, after
    // the callback given at submission.
    let mut held = ex
        .submit_with(
            held_or_not,
            Some(rv.addr()),
            Callbacks::new().callback({
                let tx = tx.clone();
                move |v: &bool| tx.send(("given", Ok(*v))).unwrap()
            }),
        )
        .unwrap();
    let gate = rv.wait_ready();
    held.add_done_callback(record(&tx, "first")).unwrap();
    held.add_done_callback(record(&tx, "second")).unwrap();
    assert!(rx.try_recv().is_err(), "nothing ran before the end");
    gate.open();
    assert!(held.result(Some(DEADLINE)).unwrap());
    let got: Vec<_> = (0..3).map(|_| rx.recv_timeout(DEADLINE).unwrap()).collect();
    assert_eq!(got, [("given", Ok(true)), ("first", Ok(true)), ("second", Ok(true))]);
    // After the end: at once, in this thread; the value stays.
    let mut quick = ex.submit(held_or_not, None).unwrap();
    assert!(quick.exception(Some(DEADLINE)).unwrap().is_none());
    quick.add_done_callback(record(&tx, "late")).unwrap();
    assert_eq!(rx.try_recv().unwrap(), ("late", Ok(false)));
    assert!(!quick.result(None).unwrap());
    assert_eq!(
        quick.add_done_callback(record(&tx, "taken")).unwrap_err().kind(),
        ErrorKind::InvalidState,
        "the value is gone"
    );
    // A failure, before and after `result()` took it.
    let mut bad = ex.submit(panics, None).unwrap();
    bad.add_done_callback(record(&tx, "bad")).unwrap();
    assert_eq!(bad.result(Some(DEADLINE)).unwrap_err().kind(), ErrorKind::ChildPanicked);
    assert_eq!(
        rx.recv_timeout(DEADLINE).unwrap(),
        ("bad", Err(ErrorKind::ChildPanicked))
    );
    bad.add_done_callback(record(&tx, "bad again")).unwrap();
    assert_eq!(rx.try_recv().unwrap(), ("bad again", Err(ErrorKind::ChildPanicked)));
    // A cancelled future calls back at once with its cancellation.
    let blockers: Vec<_> = (0..2)
        .map(|_| ex.submit(held_or_not, Some(rv.addr())).unwrap())
        .collect();
    let gates: Vec<_> = (0..2).map(|_| rv.wait_ready()).collect();
    let mut queued = ex.submit(held_or_not, None).unwrap();
    assert!(queued.cancel());
    queued.add_done_callback(record(&tx, "cancelled")).unwrap();
    assert_eq!(rx.try_recv().unwrap(), ("cancelled", Err(ErrorKind::Cancelled)));
    for g in gates {
        g.open();
    }
    drop(blockers);
}

per_method!(add_done_callback_runs_once_at_the_end);

// ---------------------------------------------------------------------
// Third review: panics, cancellations and callbacks at the edges.
// ---------------------------------------------------------------------

/// A callback's panic stashed inside another callback that panics too is
/// not resumed later, in an unrelated call.
fn nested_panics_do_not_leak_into_later_calls(m: StartMethod) {
    use std::sync::{Arc, Mutex};
    let ex = executor(m, 2);
    let inner_slot: Arc<Mutex<Option<multiproc::TaskHandle<bool>>>> = Arc::default();
    let rv_b = Rendezvous::new();
    let cb_b = Callbacks::new().callback(|_: &bool| panic!("inner callback"));
    let fb = ex.submit_with(held_or_not, Some(rv_b.addr()), cb_b).unwrap();
    let gate_b = rv_b.wait_ready();
    let slot = inner_slot.clone();
    let cb_a = Callbacks::new().callback(move |_: &bool| {
        gate_b.open();
        // Drives the pool: B's callback runs (and panics) in here.
        let _ = slot.lock().unwrap().as_mut().unwrap().result(Some(DEADLINE));
        panic!("outer callback");
    });
    let rv_a = Rendezvous::new();
    let mut fa = ex.submit_with(held_or_not, Some(rv_a.addr()), cb_a).unwrap();
    *inner_slot.lock().unwrap() = Some(fb);
    rv_a.wait_ready().open();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fa.result(Some(DEADLINE))));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<&str>(),
        Some(&"outer callback"),
        "the outermost panic comes out"
    );
    // Later calls see no stale panic.
    for x in 0..3u64 {
        assert_eq!(ex.submit(square, x).unwrap().result(Some(DEADLINE)).unwrap(), x * x);
    }
}

/// `map_buffered` whose whole input went out before `shutdown`: its
/// results still come out (Python reads no further item, submits nothing).
fn map_buffered_after_shutdown_keeps_what_was_submitted(m: StartMethod) {
    let ex = executor(m, 2);
    let it = ex.map_buffered(square, [1u64, 2], Some(DEADLINE), 2).unwrap();
    ex.shutdown(true, false).unwrap();
    let got: Vec<_> = it.map(|r| r.map_err(|e| e.kind())).collect();
    assert_eq!(got, [Ok(1), Ok(4)]);
    // The same after terminate, for results that had arrived.
    let ex = executor(m, 2);
    let mut it = ex.map_buffered(square, [1u64, 2], Some(DEADLINE), 2).unwrap();
    let mut f = ex.submit(square, 3).unwrap();
    assert_eq!(f.result(Some(DEADLINE)).unwrap(), 9);
    ex.shutdown(true, false).unwrap();
    ex.kill_workers().unwrap();
    assert_eq!(it.next().map(|r| r.map_err(|e| e.kind())), Some(Ok(1)));
    assert_eq!(it.next().map(|r| r.map_err(|e| e.kind())), Some(Ok(4)));
    assert!(it.next().is_none());
}

/// A cancelled future reads as cancelled while its callbacks run in
/// another thread.
fn cancelled_while_its_callbacks_run(m: StartMethod) {
    let ex = executor(m, 1);
    let rv = Rendezvous::new();
    let blocker = ex.submit(held_or_not, Some(rv.addr())).unwrap();
    let gate = rv.wait_ready();
    let (in_tx, in_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let cb = Callbacks::new().error_callback(move |e| {
        in_tx.send(e.kind()).unwrap();
        go_rx.recv_timeout(DEADLINE).unwrap();
    });
    let queued = ex.submit_with(held_or_not, None, cb).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| queued.cancel());
        assert_eq!(in_rx.recv_timeout(DEADLINE).unwrap(), ErrorKind::Cancelled);
        assert!(queued.cancelled(), "cancelled while its callback runs");
        assert!(queued.cancel(), "cancelling again still says cancelled");
        go_tx.send(()).unwrap();
        assert!(t.join().unwrap());
    });
    assert!(queued.cancelled());
    gate.open();
    drop(blocker);
}

/// A result type whose `Deserialize` panics on 13.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Touchy(pub(crate) u64);

impl<'de> serde::Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Touchy, D::Error> {
        let v = u64::deserialize(d)?;
        assert_ne!(v, 13, "unlucky");
        Ok(Touchy(v))
    }
}

pub(crate) fn touchy(x: u64) -> Touchy {
    Touchy(x)
}

/// A result's deserializer that panics while callbacks decode it: the
/// panic reaches the driving caller, the future fails with
/// `Deserialize`, and nothing stays stuck.
fn deserializer_panic_under_callbacks_fails_only_its_task(m: StartMethod) {
    let ex = executor(m, 2);
    let (tx, rx) = mpsc::channel();
    let cb = Callbacks::new()
        .callback(|_: &Touchy| unreachable!("no value"))
        .error_callback(move |e| tx.send(e.kind()).unwrap());
    // The deserializer's panic comes out of whichever call drives the pool
    // when the result is in: the submission itself (a quick worker), or
    // the wait.
    let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ex.submit_with(touchy, 13, cb).unwrap()));
    if let Ok(mut f) = submitted {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.result(Some(DEADLINE))));
        if let Ok(r) = caught {
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Deserialize);
        } else {
            assert_eq!(f.result(Some(DEADLINE)).unwrap_err().kind(), ErrorKind::Deserialize);
        }
        assert!(f.done());
    }
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), ErrorKind::Deserialize);
    assert_eq!(ex.submit(touchy, 12).unwrap().result(Some(DEADLINE)).unwrap().0, 12);
    // The same for a map's callbacks.
    let (tx, rx) = mpsc::channel();
    let cb = Callbacks::new().error_callback(move |e| tx.send(e.kind()).unwrap());
    let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ex.pool().map_async_with(touchy, [12u64, 13], None, cb).unwrap()
    }));
    if let Ok(mut r) = submitted {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.wait(Some(DEADLINE))));
        assert_eq!(r.get_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::Deserialize);
    }
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), ErrorKind::Deserialize);
    assert_eq!(ex.submit(touchy, 12).unwrap().result(Some(DEADLINE)).unwrap().0, 12);
}

/// `add_done_callback` while another thread runs the future's callbacks
/// returns at once; the new callback runs after them, in that thread.
fn add_done_callback_while_callbacks_run_elsewhere(m: StartMethod) {
    let ex = executor(m, 2);
    let (in_tx, in_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (seen_tx, seen_rx) = mpsc::channel();
    let seen = seen_tx.clone();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ran_in_cb = ran.clone();
    let cb = Callbacks::new().callback(move |_: &bool| {
        in_tx.send(()).unwrap();
        let go = go_rx.recv_timeout(DEADLINE).is_ok();
        seen.send(("given", go, std::thread::current().id())).unwrap();
        ran_in_cb.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    // Held until the other thread drives: this thread must not run the
    // callback (a quick result can arrive during the submission itself).
    let rv = Rendezvous::new();
    let mut fut = ex.submit_with(held_or_not, Some(rv.addr()), cb).unwrap();
    let gate = rv.wait_ready();
    std::thread::scope(|s| {
        let driver = s.spawn(|| {
            // Drives the pool (a task at a time) until the first future's
            // callback has run, here.
            let start = std::time::Instant::now();
            while !ran.load(std::sync::atomic::Ordering::SeqCst) {
                assert!(start.elapsed() < DEADLINE, "the callback never ran");
                let mut other = ex.submit(held_or_not, None).unwrap();
                assert!(!other.result(Some(DEADLINE)).unwrap());
            }
            std::thread::current().id()
        });
        gate.open();
        in_rx.recv_timeout(DEADLINE).unwrap();
        fut.add_done_callback(move |r| {
            seen_tx.send(("late", r.is_ok(), std::thread::current().id())).unwrap();
        })
        .unwrap();
        go_tx.send(()).unwrap();
        let driver = driver.join().unwrap();
        let first = seen_rx.recv_timeout(DEADLINE).unwrap();
        let second = seen_rx.recv_timeout(DEADLINE).unwrap();
        assert_eq!(first, ("given", true, driver), "add_done_callback did not wait");
        assert_eq!(second, ("late", true, driver));
    });
    assert!(fut.result(Some(DEADLINE)).unwrap());
}

static TERM_MARK: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

#[allow(clippy::disallowed_methods)] // `_exit` is what a signal handler may call
extern "C" fn mark_and_exit(_: libc::c_int) {
    if let Some(path) = TERM_MARK.get() {
        // SAFETY: open is async-signal-safe; the path is a C string set
        // before the handler was installed.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600) };
        if fd >= 0 {
            // SAFETY: close is async-signal-safe; fd was just opened.
            unsafe { libc::close(fd) };
        }
        // SAFETY: _exit is async-signal-safe and ends the process without
        // running anything else.
        unsafe { libc::_exit(0) };
    }
}

/// Creates `path` when it gets SIGTERM (then exits); reports, then waits.
fn mark_on_sigterm((path, addr): (String, String)) -> bool {
    let _ = TERM_MARK.set(std::ffi::CString::new(path).unwrap());
    // SAFETY: installs a handler that only calls async-signal-safe
    // functions.
    unsafe {
        libc::signal(libc::SIGTERM, mark_and_exit as *const () as libc::sighandler_t);
    }
    ready_then_wait(&addr);
    true
}

/// `terminate_workers` gives the workers' SIGTERM handlers time to run
/// before it kills what is left (Python sends SIGTERM only).
fn terminate_workers_lets_sigterm_handlers_run(m: StartMethod) {
    let ex = executor(m, 1);
    let rv = Rendezvous::new();
    let path = std::env::temp_dir().join(format!("multiproc-term-{}-{:?}", std::process::id(), m));
    let _ = std::fs::remove_file(&path);
    let mut held = ex
        .submit(mark_on_sigterm, (path.to_str().unwrap().to_owned(), rv.addr()))
        .unwrap();
    let _gate = rv.wait_ready();
    ex.terminate_workers().unwrap();
    assert_eq!(held.result(Some(DEADLINE)).unwrap_err().kind(), ErrorKind::Cancelled);
    let marked = path.exists();
    let _ = std::fs::remove_file(&path);
    assert!(marked, "the worker's SIGTERM handler ran");
}

per_method!(
    nested_panics_do_not_leak_into_later_calls,
    map_buffered_after_shutdown_keeps_what_was_submitted,
    cancelled_while_its_callbacks_run,
    deserializer_panic_under_callbacks_fails_only_its_task,
    add_done_callback_while_callbacks_run_elsewhere,
    terminate_workers_lets_sigterm_handlers_run,
);
