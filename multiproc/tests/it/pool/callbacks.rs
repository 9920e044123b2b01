//! The pool's callbacks: each runs once, with the value or the error;
//! their panics and their waits on their own result are reported; late
//! callbacks of orphaned jobs still run, and their panics come out once.

use std::{
    sync::{Arc, Mutex, mpsc},
    time::Instant,
};

use multiproc::{Callbacks, ErrorKind, Executor, StartMethod};

use crate::support::{DEADLINE, Rendezvous};

use super::{Seen, both, executor, forever, held_or_not, pool, square, task_failures::panics_on_odd, wait_for_gate};

fn callbacks_run_once_with_value_or_error(m: StartMethod) {
    let seen = Seen::default();
    let p = Arc::new(pool(m, 2).build().unwrap());
    // Handles dropped at once: the callbacks still run (by join).
    for x in 0..3u64 {
        drop(p.apply_async_with(square, x, both(&seen, "sq")).unwrap());
    }
    drop(p.apply_async_with(panics_on_odd, 1, both(&seen, "odd")).unwrap());
    // A kept handle still returns its value after the callback saw it.
    let r = p.apply_async_with(square, 5, both(&seen, "kept")).unwrap();
    assert_eq!(r.get().unwrap(), 25);
    assert!(seen.sorted().contains(&"kept ok 25".to_owned()));
    // map: the whole list, or the first error in input order.
    let r = p.map_async_with(square, 0..4u64, Some(1), both(&seen, "map")).unwrap();
    assert_eq!(r.get().unwrap(), [0, 1, 4, 9]);
    let r = p
        .map_async_with(panics_on_odd, [0u32, 2, 3, 5], Some(1), both(&seen, "mapodd"))
        .unwrap();
    assert_eq!(r.get().unwrap_err().panic().unwrap().message(), "odd 3");
    // A callback may use the pool (it runs without the pool's lock).
    let inner = seen.clone();
    let p2 = p.clone();
    let cb = Callbacks::new().callback(move |v: &u64| {
        let again = p2.apply(square, *v).unwrap();
        inner.push(format!("nested {again}"));
    });
    assert_eq!(p.apply_async_with(square, 3, cb).unwrap().get().unwrap(), 9);
    p.close();
    p.join().unwrap();
    assert_eq!(
        seen.sorted(),
        [
            "kept ok 25",
            "map ok [0, 1, 4, 9]",
            "mapodd err ChildPanicked",
            "nested 81",
            "odd err ChildPanicked",
            "sq ok 0",
            "sq ok 1",
            "sq ok 4",
        ]
    );

    // Terminating: the error callbacks of unfinished tasks see Cancelled.
    let seen = Seen::default();
    let p = pool(m, 1).build().unwrap();
    let r = p.apply_async_with(forever, 0, both(&seen, "stuck")).unwrap();
    drop(p.map_async_with(square, 0..3u64, None, both(&seen, "queued")).unwrap());
    p.terminate().unwrap();
    assert_eq!(r.get().unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(seen.sorted(), ["queued err Cancelled", "stuck err Cancelled"]);
    drop(p);

    // Dropping a pool runs them too.
    let seen = Seen::default();
    let p = pool(m, 1).build().unwrap();
    drop(p.apply_async_with(forever, 0, both(&seen, "dropped")).unwrap());
    drop(p);
    assert_eq!(seen.sorted(), ["dropped err Cancelled"]);
}

fn callback_panics_and_self_waits_are_reported(m: StartMethod) {
    let p = Arc::new(pool(m, 1).build().unwrap());
    // The callback's panic comes out of whichever call ran it: the
    // submission (if the result was there already) or the wait.
    let mut kept = None;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cb = Callbacks::new().callback(|_: &u64| panic!("callback bug"));
        let r: &multiproc::AsyncResult<u64> = kept.insert(p.apply_async_with(square, 2, cb).unwrap());
        r.wait(Some(DEADLINE))
    }));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"callback bug"));
    // The pool is consistent afterwards, and the value was kept.
    if let Some(r) = kept {
        assert_eq!(r.get().unwrap(), 4);
    }
    assert_eq!(p.apply(square, 3).unwrap(), 9);

    // A callback waiting for its own result is told so, not deadlocked.
    // The only worker is held behind a gate until the callback's handle is
    // stored, so the callback cannot run before it can find the handle.
    type Slot = Arc<Mutex<Option<multiproc::AsyncResult<u64>>>>;
    let rv = Rendezvous::new();
    let mut held = p.apply_async(wait_for_gate, rv.addr()).unwrap();
    let gate = rv.wait_ready();
    let (tx, rx) = mpsc::channel();
    let slot: Slot = Arc::default();
    let inner = slot.clone();
    let cb = Callbacks::new().callback(move |_: &u64| {
        let own = inner.lock().unwrap().take();
        tx.send(own.map(|own| own.get().map_err(|e| e.kind()))).unwrap();
    });
    let r = p.apply_async_with(square, 4, cb).unwrap();
    *slot.lock().unwrap() = Some(r);
    gate.open();
    assert!(held.get_timeout(DEADLINE).unwrap());
    // The callback ran in one of these calls (or in the get above).
    let deadline = Instant::now() + DEADLINE;
    let told = loop {
        if let Ok(ran) = rx.try_recv() {
            break ran;
        }
        assert!(Instant::now() < deadline, "the callback never ran");
        p.apply(square, 0).unwrap();
    };
    assert_eq!(told, Some(Err(ErrorKind::InvalidState)));
    p.close();
    p.join().unwrap();
}

/// Two held tasks: `other`, for another thread to drive on, and `fut`,
/// whose callback tells `in_rx` it runs, then waits for `go_tx`.
struct HeldCallback {
    other: multiproc::TaskHandle<bool>,
    other_gate: crate::support::Gate,
    fut: multiproc::TaskHandle<bool>,
    fut_gate: crate::support::Gate,
    in_rx: mpsc::Receiver<()>,
    go_tx: mpsc::Sender<()>,
}

fn held_callback(ex: &Executor) -> HeldCallback {
    let (rv, rv2) = (Rendezvous::new(), Rendezvous::new());
    // Held until the late callback is in: the driver drives meanwhile.
    let other = ex.submit(held_or_not, Some(rv.addr())).unwrap();
    let (in_tx, in_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let cb = Callbacks::new().callback(move |_: &bool| {
        in_tx.send(()).unwrap();
        go_rx.recv_timeout(DEADLINE).unwrap();
    });
    // Held too: only the driver can run its callbacks.
    let fut = ex.submit_with(held_or_not, Some(rv2.addr()), cb).unwrap();
    HeldCallback {
        other,
        other_gate: rv.wait_ready(),
        fut,
        fut_gate: rv2.wait_ready(),
        in_rx,
        go_tx,
    }
}

/// A done callback added while the future's callbacks run in another
/// thread, then the future dropped before they end: the late callback
/// still runs (in the running thread).
fn late_callback_of_a_dropped_future_still_runs(m: StartMethod) {
    let ex = executor(m, 2);
    let HeldCallback {
        mut other,
        other_gate,
        mut fut,
        fut_gate,
        in_rx,
        go_tx,
    } = held_callback(&ex);
    let (late_tx, late_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let driver = s.spawn(move || other.result(Some(DEADLINE)).map_err(|e| e.kind()));
        fut_gate.open();
        in_rx.recv_timeout(DEADLINE).unwrap();
        fut.add_done_callback(move |r| late_tx.send(r.is_ok()).unwrap())
            .unwrap();
        drop(fut);
        go_tx.send(()).unwrap();
        other_gate.open();
        assert_eq!(driver.join().unwrap(), Ok(true));
    });
    assert_eq!(late_rx.recv_timeout(DEADLINE), Ok(true));
}

/// A late callback's panic comes out of the call that ran the callbacks
/// (the driver), and does not leak into a later, unrelated call.
fn late_callback_panic_comes_out_of_the_driver_once(m: StartMethod) {
    let ex = executor(m, 2);
    let HeldCallback {
        mut other,
        other_gate,
        mut fut,
        fut_gate,
        in_rx,
        go_tx,
    } = held_callback(&ex);
    std::thread::scope(|s| {
        let ex = &ex;
        let driver = s.spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| other.result(Some(DEADLINE))));
            let msg = r.err().and_then(|p| p.downcast_ref::<&str>().map(|s| s.to_string()));
            // A later call in the same thread sees no panic.
            let later = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ex.submit(square, 3)
                    .unwrap()
                    .result(Some(DEADLINE))
                    .map_err(|e| e.kind())
            }))
            .map_err(|p| p.downcast_ref::<&str>().map(|s| s.to_string()));
            (msg, later)
        });
        fut_gate.open();
        in_rx.recv_timeout(DEADLINE).unwrap();
        fut.add_done_callback(|_| panic!("late panic")).unwrap();
        go_tx.send(()).unwrap();
        other_gate.open();
        let (msg, later) = driver.join().unwrap();
        assert_eq!(msg.as_deref(), Some("late panic"));
        assert_eq!(later, Ok(Ok(9)));
    });
    assert!(fut.result(Some(DEADLINE)).unwrap());
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

per_method!(
    callbacks_run_once_with_value_or_error,
    callback_panics_and_self_waits_are_reported,
    late_callback_of_a_dropped_future_still_runs,
    late_callback_panic_comes_out_of_the_driver_once,
    empty_map_async_calls_back_once,
    map_iter_keeps_results_across_a_callback_panic,
    nested_panics_do_not_leak_into_later_calls,
);
