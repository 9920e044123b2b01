//! The executor's `map` iterator, its futures, and the `futures` module
//! functions `wait` and `as_completed`, under every start method.

use std::{sync::mpsc, time::Duration};

use multiproc::{
    Callbacks, ErrorKind, Executor, Pool, StartMethod,
    futures::{ReturnWhen, Waited, as_completed, wait},
};

use crate::support::{DEADLINE, Rendezvous, ready_then_wait};

fn executor(m: StartMethod, n: usize) -> Executor {
    Executor::from_builder(Pool::builder().processes(n).start_method(m)).unwrap()
}

/// Python's `divmod`, which panics on a zero divisor.
fn divmod((a, b): (u32, u32)) -> (u32, u32) {
    (a / b, a % b)
}

fn square(x: u64) -> u64 {
    x * x
}

/// `false` at once, or (given a rendezvous address) `true` once the test
/// opens the gate.
fn held_or_not(gate: Option<String>) -> bool {
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
