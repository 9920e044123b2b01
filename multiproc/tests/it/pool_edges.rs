//! The pool's edges, from a break-it review: panics of the caller's
//! `Serialize`/`Deserialize`, late callbacks of orphaned jobs, and
//! `terminate_workers` racing other threads or called from a callback.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Mutex, mpsc},
};

use multiproc::{Callbacks, ErrorKind, Executor, Pool, StartMethod};

use crate::{
    executor::{Touchy, executor, held_or_not, square, touchy},
    support::{DEADLINE, Rendezvous, open_fds},
};

/// An argument whose `Serialize` panics on 13.
#[derive(Debug, serde::Deserialize)]
struct Prickly(u64);

impl serde::Serialize for Prickly {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert_ne!(self.0, 13, "unlucky argument");
        s.serialize_u64(self.0)
    }
}

fn prickly_square(p: Prickly) -> u64 {
    p.0 * p.0
}

/// A panic of an argument's `Serialize` fails that task alone, with a
/// `Serialize` error; the items around it (in its chunk too) run.
fn serialize_panic_fails_only_its_task(m: StartMethod) {
    let p = Pool::builder().processes(2).start_method(m).build().unwrap();
    let input = [1u64, 2, 13, 4, 5, 6].into_iter().map(Prickly);
    let got: Vec<_> = p
        .imap_chunked(prickly_square, input, 3)
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Ok(1), Ok(4), Err(ErrorKind::Serialize), Ok(16), Ok(25), Ok(36)]);
    let one: Vec<_> = p
        .imap(prickly_square, [Prickly(13), Prickly(3)])
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(one, [Err(ErrorKind::Serialize), Ok(9)]);
    let e = p.apply(prickly_square, Prickly(13)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize);
    assert!(e.to_string().contains("unlucky argument"), "{e}");
    // A result's `Serialize` panicking in the worker, in a batch of a
    // `map` chunk: that task panicked; the worker and the others go on.
    let pids = p.pids();
    let got = p
        .map_async(prickly, [12u64, 13, 14], Some(3))
        .unwrap()
        .get()
        .map(|v| v.into_iter().map(|x| x.0).collect::<Vec<_>>())
        .map_err(|e| (e.kind(), e.to_string()));
    let (kind, text) = got.unwrap_err();
    assert_eq!(kind, ErrorKind::ChildPanicked);
    assert!(text.contains("unlucky argument") || text.contains("panicked"), "{text}");
    let each: Vec<_> = p
        .imap_chunked(prickly, [12u64, 13, 14], 3)
        .unwrap()
        .map(|r| r.map(|x| x.0).map_err(|e| e.kind()))
        .collect();
    assert_eq!(each, [Ok(12), Err(ErrorKind::ChildPanicked), Ok(14)]);
    assert_eq!(p.pids(), pids, "no worker died");
}

/// A `Prickly` result (its `Serialize` panics in the worker on 13).
fn prickly(x: u64) -> Prickly {
    Prickly(x)
}

/// A panic of a result's `Deserialize` is a `Deserialize` error of its
/// task alone, in a batch reply (one chunk's results in one message) too.
fn deserialize_panic_fails_only_its_task(m: StartMethod) {
    let ex = executor(m, 1);
    let got: Vec<_> = ex
        .map_chunked(touchy, [12u64, 13, 14], Some(DEADLINE), 3)
        .unwrap()
        .map(|r| r.map(|t| t.0).map_err(|e| (e.kind(), e.to_string())))
        .collect();
    assert_eq!(got[0], Ok(12));
    let (kind, text) = got[1].clone().unwrap_err();
    assert_eq!(kind, ErrorKind::Deserialize);
    assert!(text.contains("unlucky"), "{text}");
    assert_eq!(got[2], Ok(14));
    // Results that come one per message fail alone.
    let got: Vec<_> = ex
        .map_chunked(touchy, [12u64, 13, 14], Some(DEADLINE), 1)
        .unwrap()
        .map(|r| r.map(|t| t.0).map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Ok(12), Err(ErrorKind::Deserialize), Ok(14)]);
    let mut all = ex.pool().map_async(touchy, [12u64, 13, 14], Some(3)).unwrap();
    assert_eq!(all.get_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::Deserialize);
    let p = ex.pool();
    let got: Vec<_> = p
        .imap(touchy, [13u64, 14])
        .unwrap()
        .map(|r| r.map(|t| t.0).map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Err(ErrorKind::Deserialize), Ok(14)]);
    let e = p.apply(touchy, 13).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deserialize);
    assert!(e.to_string().contains("unlucky"), "{e}");
}

// ---------------------------------------------------------------------
// Codec edges: a first argument, misaligned batch replies, arguments
// decoded in the worker, an imap after terminate.
// ---------------------------------------------------------------------

/// A `Serialize` panic of a `map`'s first argument (encoded once more to
/// judge whether the arguments are large) is a `Serialize` error of its
/// task too, not a panic out of the call.
fn map_with_a_first_argument_whose_serialize_panics(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    // Not first: a codec error of its task (as documented).
    let r = catch_unwind(AssertUnwindSafe(|| {
        p.map(prickly_square, [Prickly(2), Prickly(13)]).map_err(|e| e.kind())
    }));
    assert_eq!(r.ok(), Some(Err(ErrorKind::Serialize)));
    // First: the same, not a panic out of `map`.
    let r = catch_unwind(AssertUnwindSafe(|| {
        p.map(prickly_square, [Prickly(13), Prickly(2)]).map_err(|e| e.kind())
    }));
    assert_eq!(
        r.ok(),
        Some(Err(ErrorKind::Serialize)),
        "Pool::map panicked on the first argument's Serialize"
    );
    let ex = executor(m, 1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        ex.map(prickly_square, [Prickly(13), Prickly(2)], Some(DEADLINE))
            .map(|it| it.map(|r| r.map_err(|e| e.kind())).collect::<Vec<_>>())
            .map_err(|e| e.kind())
    }));
    assert_eq!(
        r.ok(),
        Some(Ok(vec![Err(ErrorKind::Serialize), Ok(4)])),
        "Executor::map panicked on the first argument's Serialize"
    );
}

/// A result whose `Deserialize` reads fewer bytes than its `Serialize`
/// wrote (`skip_deserializing`: a broken round trip, which a single result
/// reports as trailing bytes).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Lossy {
    a: u8,
    #[serde(skip_deserializing)]
    b: u8,
}

fn lossy(x: u8) -> Lossy {
    Lossy { a: x, b: x + 100 }
}

/// A batch reply that does not decode (here: trailing bytes) never yields
/// a value read from the wrong offset.
fn batch_reply_decoded_by_element_never_yields_a_wrong_value(m: StartMethod) {
    let ex = executor(m, 1);
    // One result: a Deserialize error (trailing bytes).
    let e = ex.pool().apply(lossy, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deserialize, "{e}");
    // One batch (one chunk of three), in an executor's map.
    let got: Vec<_> = ex
        .map_chunked(lossy, [1u8, 2, 3], Some(DEADLINE), 3)
        .unwrap()
        .map(|r| r.map(|l| l.a).map_err(|e| e.kind()))
        .collect();
    for (x, r) in [1u8, 2, 3].iter().zip(&got) {
        assert!(
            r.as_ref().is_err() || r.as_ref().ok() == Some(x),
            "task of {x}: a wrong value came back: {got:?}"
        );
    }
    // Each result read from its own bytes fails alone (a byte is left
    // over in each), the same as one result does.
    assert_eq!(got, [Err(ErrorKind::Deserialize); 3]);
}

/// The same through a pool's `map` of one and of several batches.
fn map_of_several_batches_never_yields_wrong_values(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    let one = p.map_chunked(lossy, [1u8, 2, 3, 4], 4).map_err(|e| e.kind());
    assert_eq!(one.err(), Some(ErrorKind::Deserialize));
    let r = p
        .map_chunked(lossy, [1u8, 2, 3, 4], 2)
        .map(|v| v.into_iter().map(|l| l.a).collect::<Vec<_>>());
    assert!(r.is_err(), "map of two batches returned wrong values: {r:?}");
}

/// The task of an argument whose `Deserialize` panics on 13 (in the
/// worker).
fn touchy_arg(t: Touchy) -> u64 {
    t.0
}

/// An argument's `Deserialize` panicking in the worker fails its task
/// alone, one per message or in a batch (a `map` chunk).
fn worker_side_argument_deserialize_panic_fails_only_its_task(m: StartMethod) {
    let ex = executor(m, 1);
    for chunksize in [1, 3] {
        let got: Vec<_> = ex
            .map_chunked(
                touchy_arg,
                [Touchy(12), Touchy(13), Touchy(14)],
                Some(DEADLINE),
                chunksize,
            )
            .unwrap()
            .map(|r| r.map_err(|e| e.kind()))
            .collect();
        assert!(
            got[0] == Ok(12) && got[1].is_err() && got[2] == Ok(14),
            "chunk size {chunksize}: {got:?}"
        );
    }
    let e = ex.pool().map(touchy_arg, [Touchy(12), Touchy(13)]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deserialize, "{e}");
}

/// After `terminate`, an `imap` that reads more input says the pool is
/// closed, not that it was joined.
fn imap_after_terminate_does_not_blame_join(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    let mut it = p.imap(square, 0..1000u64).unwrap();
    assert_eq!(it.next().map(|r| r.map_err(|e| e.kind())), Some(Ok(0)));
    p.terminate().unwrap();
    let mut last = None;
    for r in it.by_ref() {
        if let Err(e) = r {
            if e.kind() == ErrorKind::InvalidState {
                last = Some(e.to_string());
                break;
            }
        }
    }
    let text = last.expect("an InvalidState error once the pool is terminated");
    assert!(!text.contains("joined"), "a terminated pool's imap blames join: {text}");
}

/// A value whose `Serialize` skips `b` when it is `None` (postcard does
/// not support `skip_serializing_if`): a broken round trip, which one
/// value alone reports as an error.
#[derive(Debug, PartialEq, Clone, serde::Serialize, serde::Deserialize)]
struct Skippy {
    a: u8,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    b: Option<u8>,
}

fn skippy(x: u8) -> Skippy {
    if x == 0 {
        Skippy { a: 5, b: None }
    } else {
        Skippy { a: 0, b: Some(0) }
    }
}

fn skippy_back(s: Skippy) -> (u8, Option<u8>) {
    (s.a, s.b)
}

/// A batch (a `map` chunk) of results or of arguments never yields a
/// value other than the one sent (decoded as one `Vec`, these bytes give
/// `[Skippy{5,None}, Skippy{1,None}]`); the value that cannot travel
/// fails alone.
fn batch_never_decodes_a_value_across_elements(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    // Arguments, one chunk of two: the worker's target must not be
    // called with a value that was not sent.
    match p.map_chunked(skippy_back, [skippy(0), skippy(1)], 2) {
        Err(_) => {}
        Ok(v) => assert_eq!(v, [(5, None), (0, Some(0))], "the target got wrong arguments"),
    }
    // Results, one chunk of two.
    match p.map_chunked(skippy, [0u8, 1], 2) {
        Err(_) => {}
        Ok(v) => assert_eq!(v, [skippy(0), skippy(1)], "map returned wrong results"),
    }
    // Each task on its own: the first fails, the second comes through.
    let got: Vec<_> = p
        .imap_chunked(skippy, [0u8, 1], 2)
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Err(ErrorKind::Deserialize), Ok(skippy(1))]);
    let got: Vec<_> = p
        .imap_chunked(skippy_back, [skippy(0), skippy(1)], 2)
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Err(ErrorKind::Deserialize), Ok((0, Some(0)))]);
}

// ---------------------------------------------------------------------
// Late callbacks of an orphaned job.
// ---------------------------------------------------------------------

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

// ---------------------------------------------------------------------
// terminate_workers racing a driver; no leak, no hang.
// ---------------------------------------------------------------------

/// `terminate_workers` while another thread drives (polls the workers
/// without the lock) and a third sleeps on the condition variable: both
/// get `Cancelled`, nothing hangs, and the workers' descriptors are closed.
fn terminate_workers_while_another_thread_drives(m: StartMethod) {
    let before = open_fds().len();
    {
        let ex = executor(m, 2);
        let rv1 = Rendezvous::new();
        let rv2 = Rendezvous::new();
        let mut f1 = ex.submit(held_or_not, Some(rv1.addr())).unwrap();
        let mut f2 = ex.submit(held_or_not, Some(rv2.addr())).unwrap();
        let _g1 = rv1.wait_ready();
        let _g2 = rv2.wait_ready();
        std::thread::scope(|s| {
            let a = s.spawn(move || f1.result(Some(DEADLINE)).map_err(|e| e.kind()));
            let b = s.spawn(move || f2.result(Some(DEADLINE)).map_err(|e| e.kind()));
            // (Whether both are waiting yet is a race; either way they
            // must end with Cancelled.)
            ex.terminate_workers().unwrap();
            assert_eq!(a.join().unwrap(), Err(ErrorKind::Cancelled));
            assert_eq!(b.join().unwrap(), Err(ErrorKind::Cancelled));
        });
        assert_eq!(
            ex.submit(square, 2).map(|_| ()).map_err(|e| e.kind()),
            Err(ErrorKind::InvalidState)
        );
    }
    // Only the fork scenario runs in a process of its own: elsewhere other
    // tests open and close descriptors meanwhile (and the fork server's
    // connection opens on first use).
    if m == StartMethod::Fork {
        let after = open_fds().len();
        assert!(after <= before, "descriptors leaked: {before} before, {after} after");
    }
}

// ---------------------------------------------------------------------
// A callback that calls terminate_workers.
// ---------------------------------------------------------------------

/// A callback that calls `terminate_workers` (re-entrant, the pool lock
/// is free while callbacks run): the other task fails with `Cancelled`,
/// its error callback runs, nothing hangs.
fn callback_that_terminates_the_executor(m: StartMethod) {
    let ex = Arc::new(executor(m, 2));
    let rv = Rendezvous::new();
    let (tx, rx) = mpsc::channel();
    let held = ex
        .submit_with(
            held_or_not,
            Some(rv.addr()),
            Callbacks::new().error_callback(move |e| tx.send(e.kind()).unwrap()),
        )
        .unwrap();
    let _gate = rv.wait_ready();
    let slot: Arc<Mutex<Option<Arc<Executor>>>> = Arc::new(Mutex::new(Some(ex.clone())));
    let s2 = slot.clone();
    let mut quick = ex
        .submit_with(
            held_or_not,
            None,
            Callbacks::new().callback(move |_: &bool| {
                if let Some(ex) = s2.lock().unwrap().take() {
                    ex.terminate_workers().unwrap();
                }
            }),
        )
        .unwrap();
    assert_eq!(quick.result(Some(DEADLINE)).map_err(|e| e.kind()), Ok(false));
    assert_eq!(rx.recv_timeout(DEADLINE), Ok(ErrorKind::Cancelled));
    drop(held);
}

per_method!(
    serialize_panic_fails_only_its_task,
    deserialize_panic_fails_only_its_task,
    map_with_a_first_argument_whose_serialize_panics,
    batch_reply_decoded_by_element_never_yields_a_wrong_value,
    map_of_several_batches_never_yields_wrong_values,
    worker_side_argument_deserialize_panic_fails_only_its_task,
    imap_after_terminate_does_not_blame_join,
    batch_never_decodes_a_value_across_elements,
    late_callback_of_a_dropped_future_still_runs,
    late_callback_panic_comes_out_of_the_driver_once,
    terminate_workers_while_another_thread_drives,
    callback_that_terminates_the_executor,
);
