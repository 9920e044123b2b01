//! The executor's futures' done callbacks: run once at the end, also when
//! added while callbacks run elsewhere or when the future is cancelled
//! meanwhile; a callback waiting on its own (or the outer) future is an
//! error.

use std::sync::mpsc;

use multiproc::{
    Callbacks, ErrorKind, StartMethod,
    futures::{ReturnWhen, as_completed, wait},
};

use crate::support::{DEADLINE, Rendezvous};

use super::{executor, held_or_not, panics, square};

fn submit_with_runs_the_callback(m: StartMethod) {
    let ex = executor(m, 1);
    let (tx, rx) = mpsc::channel();
    let cb = Callbacks::new().callback(move |v: &u64| tx.send(*v).unwrap());
    let mut f = ex.submit_with(square, 9, cb).unwrap();
    assert_eq!(f.result(Some(DEADLINE)).unwrap(), 81);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), 81);
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

per_method!(
    submit_with_runs_the_callback,
    wait_first_completed_sees_a_callback_finish_in_another_thread,
    callback_waiting_on_its_own_future_is_an_error,
    nested_callback_waiting_on_the_outer_future_is_an_error,
    add_done_callback_runs_once_at_the_end,
    cancelled_while_its_callbacks_run,
    add_done_callback_while_callbacks_run_elsewhere,
);
