//! The process pool and the executor: results, laziness, lifecycle, and
//! the failure cases of issue 6 under every start method.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use multiproc::{Callbacks, ErrorKind, Executor, ExitStatus, Pool, PoolBuilder, StartMethod};
use serde::{Serialize, Serializer};

use crate::support::{BOOT_GATE, DEADLINE, PidWatch, Rendezvous, block_forever, ready_then_wait};

fn pool(m: StartMethod, n: usize) -> PoolBuilder {
    Pool::builder().processes(n).start_method(m)
}

fn square(x: u64) -> u64 {
    x * x
}

fn add((a, b): (u32, u32)) -> u32 {
    a + b
}

fn own_pid(_: u32) -> u32 {
    std::process::id()
}

#[allow(unsafe_code)]
fn killed_at(x: u32) -> u32 {
    if x == 7 {
        // SAFETY: the worker kills itself, the behaviour under test.
        unsafe { libc::kill(std::process::id() as libc::pid_t, libc::SIGKILL) };
    }
    x
}

#[allow(clippy::disallowed_methods)]
fn aborts(x: u32) -> u32 {
    if x == 1 {
        std::process::abort();
    }
    x
}

const PANIC_LINE: u32 = line!() + 3;
fn panics_on_odd(x: u32) -> u32 {
    if x % 2 == 1 {
        panic!("odd {x}");
    }
    x
}

#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to serialize"))
    }
}

impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unserializable)
    }
}

fn bad_result(x: u32) -> Result<u32, Unserializable> {
    if x == 2 { Err(Unserializable) } else { Ok(x) }
}

fn init_panics(msg: String) {
    panic!("{msg}");
}

fn init_ok(_: u32) {}

fn forever(_: u32) -> u32 {
    block_forever()
}

fn assert_gone(pids: &[u32]) {
    for &pid in pids {
        let watch = PidWatch::try_open(pid);
        if let Some(w) = watch {
            assert!(w.ended_within(DEADLINE), "worker {pid} still runs");
        }
    }
}

fn map_keeps_order(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let expected: Vec<u64> = (0..10_000u64).map(square).collect();
    assert_eq!(p.map_chunked(square, 0..10_000u64, 1).unwrap(), expected);
    assert_eq!(p.map(square, 0..10_000u64).unwrap(), expected);
    assert_eq!(p.map(square, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
    assert_eq!(p.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
    assert_eq!(p.apply(square, 9).unwrap(), 81);
    let mut r = p.apply_async(square, 5).unwrap();
    assert_eq!(r.get_timeout(DEADLINE).unwrap(), 25);
    let mut again = p.apply_async(square, 6).unwrap();
    assert!(again.wait(Some(DEADLINE)).unwrap());
    assert!(again.ready());
    assert_eq!(again.successful(), Some(true));
    assert_eq!(again.get_timeout(DEADLINE).unwrap(), 36);
    assert_eq!(again.get_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::InvalidState);
    let mut many = p.map_async(square, 0..100u64, Some(7)).unwrap();
    assert_eq!(many.get_timeout(DEADLINE).unwrap(), expected[..100]);
    p.close();
    assert_eq!(p.apply_async(square, 1).unwrap_err().kind(), ErrorKind::InvalidState);
    let pids = p.pids();
    p.join().unwrap();
    assert_gone(&pids);
}

fn imap_is_lazy(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let pulled_count = Arc::new(AtomicUsize::new(0));
    let counter = pulled_count.clone();
    let input = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let mut it = p.imap(square, input).unwrap();
    for i in 0..100u64 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
        let pulled = pulled_count.load(Ordering::SeqCst);
        assert!(
            pulled <= i as usize + 1 + 4 * 2,
            "input read too far ahead: {pulled} at {i}"
        );
    }
    drop(it);
    let mut got: Vec<u64> = p
        .imap_unordered(square, 0..500u64)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..500u64).map(square).collect::<Vec<_>>());
    let chunked: Vec<u64> = p
        .imap_chunked(square, 0..50u64, 8)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(chunked, (0..50u64).map(square).collect::<Vec<_>>());
    let mut unordered: Vec<(usize, u64)> = Vec::new();
    let mut it = p.imap_unordered_chunked(square, 0..50u64, 7).unwrap();
    while let Some((i, r)) = it.next_indexed() {
        unordered.push((i, r.unwrap()));
    }
    unordered.sort_unstable();
    assert_eq!(
        unordered,
        (0..50u64).map(|x| (x as usize, square(x))).collect::<Vec<_>>()
    );
    assert_eq!(
        p.imap_unordered_chunked(square, 0..3u64, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(p.imap(square, Vec::<u64>::new()).unwrap().count(), 0);
}

fn killed_worker_fails_only_its_task(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let before = p.pids();
    let results: Vec<_> = p.imap(killed_at, 0..20u32).unwrap().collect();
    for (i, r) in results.iter().enumerate() {
        if i == 7 {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
            assert_eq!(e.exit_status(), Some(ExitStatus::Signaled(libc::SIGKILL)));
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u32);
        }
    }
    let e = p.map_chunked(killed_at, 0..20u32, 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    // The pool keeps serving, with its worker count restored.
    assert_eq!(p.map(square, 0..100u64).unwrap().len(), 100);
    let after = p.pids();
    assert_eq!(after.len(), 2);
    assert_ne!(before, after);
    let e = p.apply(aborts, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    assert_eq!(e.exit_status(), Some(ExitStatus::Signaled(libc::SIGABRT)));
    assert_eq!(p.apply(aborts, 2).unwrap(), 2);
}

fn panics_and_codec_failures_stay_per_task(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let results: Vec<_> = p.imap(panics_on_odd, 0..10u32).unwrap().collect();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v as usize, i),
            Err(e) => {
                assert_eq!(i % 2, 1);
                assert_eq!(e.kind(), ErrorKind::ChildPanicked);
                let panic = e.panic().unwrap();
                assert_eq!(panic.message(), format!("odd {i}"));
                let loc = panic.location().unwrap();
                assert_eq!((loc.file.as_str(), loc.line), (file!(), PANIC_LINE));
            }
        }
    }
    let e = p.map(panics_on_odd, 0..10u32).unwrap_err();
    assert_eq!(e.panic().unwrap().message(), "odd 1");
    let results: Vec<_> = p.imap(bad_result, 0..4u32).unwrap().collect();
    assert_eq!(results[2].as_ref().unwrap_err().kind(), ErrorKind::Serialize);
    for i in [0, 1, 3] {
        assert!(matches!(results[i], Ok(Ok(v)) if v == i as u32));
    }
    // The same through map's batches: the batch falls back to one result
    // per task, and only task 2 fails.
    let e = p.map_chunked(bad_result, 0..8u32, 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
    let ok: Vec<_> = p.map_chunked(bad_result, [0u32, 1, 3, 4], 4).unwrap();
    assert!(ok.iter().all(Result::is_ok));
    let r = p.map_async(panics_on_odd, 0..6u32, Some(3)).unwrap();
    assert_eq!(r.get().unwrap_err().panic().unwrap().message(), "odd 1");
    assert_eq!(p.pids().len(), 2);
}

fn failing_initializer_fails_creation(m: StartMethod) {
    let e = pool(m, 2)
        .initializer(init_panics, "no database".to_owned())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    assert_eq!(e.panic().unwrap().message(), "no database");
    let p = pool(m, 2).initializer(init_ok, 1).build().unwrap();
    assert_eq!(p.apply(square, 3).unwrap(), 9);
}

fn maxtasksperchild_replaces_workers(m: StartMethod) {
    let p = pool(m, 2).maxtasksperchild(2).build().unwrap();
    let pids = p.map_chunked(own_pid, 0..20u32, 1).unwrap();
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 10, "each worker ran at most 2 tasks: {pids:?}");
    for d in &distinct {
        assert!(pids.iter().filter(|p| *p == d).count() <= 2);
    }
    assert_eq!(
        p.map(square, 0..1000u64).unwrap(),
        (0..1000u64).map(square).collect::<Vec<_>>()
    );
}

fn task_timeout_kills_and_replaces(m: StartMethod) {
    let p = pool(m, 2).task_timeout(Duration::from_millis(300)).build().unwrap();
    let mut r = p.apply_async(forever, 0).unwrap();
    let e = r.get_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TaskTimeout, "{e}");
    assert!(!e.is_timeout(), "not a wait that could be retried");
    assert_eq!(p.map(square, 0..10u64).unwrap().len(), 10);
    assert_eq!(p.pids().len(), 2);
}

fn terminate_and_drop_leave_no_process(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let r = p.apply_async(forever, 0).unwrap();
    let pids = p.pids();
    p.terminate().unwrap();
    assert_eq!(r.get().unwrap_err().kind(), ErrorKind::Cancelled);
    p.join().unwrap();
    assert_gone(&pids);

    let p = pool(m, 2).build().unwrap();
    let pending = p.map_async(forever, 0..10u32, Some(1)).unwrap();
    let pids = p.pids();
    assert!(!pending.ready());
    drop(p);
    assert_gone(&pids);
    assert_eq!(pending.get().unwrap_err().kind(), ErrorKind::Cancelled);

    assert_eq!(
        pool(m, 1).build().unwrap().join().unwrap_err().kind(),
        ErrorKind::InvalidState
    );
}

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

/// Records what the callbacks saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn sorted(&self) -> Vec<String> {
        let mut v = self.0.lock().unwrap().clone();
        v.sort();
        v
    }
}

fn both<T: ?Sized + std::fmt::Debug>(seen: &Seen, tag: &'static str) -> Callbacks<T> {
    let (a, b) = (seen.clone(), seen.clone());
    Callbacks::new()
        .callback(move |v: &T| a.push(format!("{tag} ok {v:?}")))
        .error_callback(move |e| b.push(format!("{tag} err {:?}", e.kind())))
}

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

/// Reports ready to the rendezvous `addr`, then waits (bounded) for its
/// "go".
fn wait_for_gate(addr: String) -> bool {
    ready_then_wait(&addr);
    true
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

fn waits_from_threads_do_not_block_each_other(m: StartMethod) {
    let p = Arc::new(pool(m, 2).build().unwrap());
    let stuck = p.apply_async(forever, 0).unwrap();
    let waiter = std::thread::spawn(move || stuck.get().map_err(|e| e.kind()));
    // While that thread waits (for ever) on the stuck task, this one is
    // served by the other worker, many times.
    for i in 0..50u64 {
        assert_eq!(p.apply(square, i).unwrap(), i * i);
        assert_eq!(p.map(square, 0..10u64).unwrap().len(), 10);
    }
    // `ready` polls without anyone driving the pool.
    let r = p.apply_async(square, 7).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while !r.ready() {
        assert!(Instant::now() < deadline, "ready() never became true");
        std::thread::yield_now();
    }
    assert_eq!(r.successful(), Some(true));
    p.terminate().unwrap();
    assert_eq!(waiter.join().unwrap(), Err(ErrorKind::Cancelled));
}

fn init_fails_if_marker_exists(path: String) {
    if std::path::Path::new(&path).exists() {
        panic!("the replacement's initializer fails");
    }
}

fn failing_replacement_breaks_the_pool(m: StartMethod) {
    let marker = std::env::temp_dir().join(format!("multiproc-init-marker-{}-{m:?}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let p = pool(m, 1)
        .initializer(init_fails_if_marker_exists, marker.display().to_string())
        .build()
        .unwrap();
    let pids = p.pids();
    std::fs::write(&marker, b"").unwrap();
    let killed = p.apply_async(killed_at, 7).unwrap();
    let behind = p.apply_async(square, 3).unwrap();
    let e = killed.get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    let e = behind.get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    assert_eq!(e.panic().unwrap().message(), "the replacement's initializer fails");
    let e = p.apply_async(square, 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    // No respawn loop: no worker is left.
    assert!(p.pids().is_empty());
    assert_gone(&pids);
    std::fs::remove_file(&marker).unwrap();
    p.close();
    p.join().unwrap();
}

#[allow(unsafe_code)]
fn sigkill(pid: u32) {
    // SAFETY: sends a signal to one of the pool's workers, the behaviour
    // under test.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

fn separate_submissions_do_not_queue_behind_a_busy_worker(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    // A map's first chunks go to different workers.
    let pids = p.map_chunked(own_pid, [0u32, 1], 1).unwrap();
    assert_ne!(pids[0], pids[1], "both chunks went to one worker");
    // One worker is stuck: the other serves every later submission
    // (none waits behind the stuck task).
    let _stuck = p.apply_async(forever, 0).unwrap();
    for i in 0..20u64 {
        let mut r = p.apply_async(square, i).unwrap();
        assert_eq!(r.get_timeout(DEADLINE).unwrap(), i * i);
    }
    let mut r = p.map_async(square, 0..8u64, Some(1)).unwrap();
    assert_eq!(r.get_timeout(DEADLINE).unwrap().len(), 8);
}

fn idle_worker_death_is_noticed(m: StartMethod) {
    let p = pool(m, 1).build().unwrap();
    assert_eq!(p.apply(square, 3).unwrap(), 9);
    for round in 0..2 {
        let pid = p.pids()[0];
        let watch = PidWatch::open(pid);
        sigkill(pid);
        assert!(watch.ended_within(DEADLINE));
        if round == 0 {
            assert_eq!(p.apply(square, 4).unwrap(), 16);
        } else {
            let got: Vec<u64> = p.imap(square, 0..3u64).unwrap().map(Result::unwrap).collect();
            assert_eq!(got, [0, 1, 4]);
        }
        assert_ne!(p.pids(), [pid]);
    }
    // A replacement killed while it starts (no initializer): replaced
    // again, the pool is not broken.
    let pid = p.pids()[0];
    let watch = PidWatch::open(pid);
    sigkill(pid);
    assert!(watch.ended_within(DEADLINE));
    let r = p.apply_async(square, 6).unwrap();
    sigkill(p.pids()[0]);
    let _ = r.get();
    assert_eq!(p.apply(square, 5).unwrap(), 25);
}

fn workers_killed_at_start_lose_no_task(m: StartMethod) {
    // Without an initializer, `build` does not wait for the workers'
    // first message, and work is sent to them at once. Kill them right
    // away: most often before that message, when their tasks never ran
    // and go to the replacements; a worker already running one fails that
    // one only.
    let p = pool(m, 2).build().unwrap();
    let pids = p.pids();
    let watches: Vec<PidWatch> = pids.iter().map(|&pid| PidWatch::open(pid)).collect();
    let mut results: Vec<_> = (0..20u64).map(|i| p.apply_async(square, i).unwrap()).collect();
    for &pid in &pids {
        sigkill(pid);
    }
    for w in &watches {
        assert!(w.ended_within(DEADLINE));
    }
    let mut failed = 0;
    for (i, r) in (0u64..).zip(results.iter_mut()) {
        match r.get_timeout(DEADLINE) {
            Ok(v) => assert_eq!(v, i * i),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
                failed += 1;
            }
        }
    }
    assert!(
        failed <= pids.len(),
        "{failed} tasks failed for {} killed workers",
        pids.len()
    );
    assert!(p.pids().iter().all(|pid| !pids.contains(pid)));
    assert_eq!(p.apply(square, 7).unwrap(), 49);
}

/// Sets [`BOOT_GATE`] for the workers this scenario process starts from
/// now on (it is single-threaded: `run_isolated`).
#[allow(unsafe_code)]
fn hold_back_workers(rv: &Rendezvous) {
    // SAFETY: the scenario process runs no other thread.
    unsafe { std::env::set_var(BOOT_GATE, rv.addr()) };
}

fn starting_workers_block_no_submission(_: StartMethod) {
    // A worker still starting (held at its gate) is given small work at
    // once, but a large argument waits for it in the pending queue: the
    // pool's lock is never held by a send it cannot read.
    let rv = Rendezvous::new();
    hold_back_workers(&rv);
    let p = Arc::new(pool(StartMethod::Spawn, 1).build().unwrap());
    let gate = rv.wait_ready();
    // Each submission returns while the worker is held: nothing waits for
    // it under the lock (the large one is submitted first, so that it
    // would be the one sent to the idle, starting worker).
    let submit = |big: bool| {
        let p = p.clone();
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            let r = if big {
                p.apply_async(checksum, vec![1u8; 4 << 20])
            } else {
                p.apply_async(checksum, vec![1u8; 10])
            };
            tx.send(()).unwrap();
            r.map(|mut r| r.get_timeout(DEADLINE))
        });
        (t, rx.recv_timeout(DEADLINE))
    };
    let (big, big_submitted) = submit(true);
    let (small, small_submitted) = submit(false);
    gate.open();
    big_submitted.expect("a large submission waited for a starting worker");
    small_submitted.expect("a submission waited for a starting worker");
    assert_eq!(small.join().unwrap().unwrap().unwrap(), (10, 10));
    assert_eq!(big.join().unwrap().unwrap().unwrap(), (4 << 20, 4 << 20));
}

fn start_up_is_not_task_time(_: StartMethod) {
    // A task given to a worker that is still starting is timed from the
    // worker's first message, not from when it was sent.
    let rv = Rendezvous::new();
    hold_back_workers(&rv);
    let p = pool(StartMethod::Spawn, 1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut r = p.map_async(square, 0..10u64, Some(1)).unwrap();
    let gate = rv.wait_ready();
    // The tasks wait longer than their timeout for the worker to start.
    assert_eq!(
        r.get_timeout(Duration::from_millis(400)).unwrap_err().kind(),
        ErrorKind::Timeout,
        "nothing can finish while the worker is held"
    );
    gate.open();
    assert_eq!(
        r.get_timeout(DEADLINE).unwrap(),
        (0..10).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(p.apply(square, 5).unwrap(), 25);
}

#[test]
fn starting_workers_block_no_submission_spawn() {
    crate::support::run_isolated(starting_workers_block_no_submission, StartMethod::Spawn);
}

#[test]
fn start_up_is_not_task_time_spawn() {
    crate::support::run_isolated(start_up_is_not_task_time, StartMethod::Spawn);
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

fn pool_in_a_fork_child(m: StartMethod) {
    let p = Arc::new(pool(m, 1).build().unwrap());
    assert_eq!(p.apply(square, 2).unwrap(), 4);
    let inner = p.clone();
    let mut child = multiproc::Process::from_closure(move || {
        let e = inner.apply(square, 1000).unwrap_err();
        (e.kind() == ErrorKind::InvalidState, e.to_string())
    });
    child.start().unwrap();
    let (refused, message) = child.join_timeout(DEADLINE).unwrap();
    assert!(refused, "{message}");
    // Nor may a result handle drive the parent's workers from there.
    let r = p.apply_async(square, 7).unwrap();
    let mut child = multiproc::Process::from_closure(move || r.get().map_err(|e| e.kind()));
    child.start().unwrap();
    assert_eq!(child.join_timeout(DEADLINE).unwrap(), Err(ErrorKind::InvalidState));
    // The parent's pool is unharmed.
    assert_eq!(p.apply(square, 5).unwrap(), 25);
    if m == StartMethod::Fork {
        // Replacement workers of a fork pool, once the program has
        // threads (fork is refused there): the fork server starts them.
        let p = Arc::new(pool(m, 2).maxtasksperchild(1).build().unwrap());
        let q = p.clone();
        let pids = std::thread::spawn(move || q.map_chunked(own_pid, 0..6u32, 1))
            .join()
            .unwrap()
            .unwrap();
        let mut distinct = pids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 6, "{pids:?}");
    }
}

#[test]
fn pool_in_a_fork_child_spawn() {
    crate::support::run_isolated(pool_in_a_fork_child, StartMethod::Spawn);
}

#[test]
fn pool_in_a_fork_child_fork() {
    crate::support::run_isolated(pool_in_a_fork_child, StartMethod::Fork);
}

#[test]
fn pool_in_a_fork_child_forkserver() {
    crate::support::run_isolated(pool_in_a_fork_child, StartMethod::ForkServer);
}

fn checksum(v: Vec<u8>) -> (usize, u64) {
    (v.len(), v.iter().map(|&b| u64::from(b)).sum())
}

fn large_arguments_round_trip(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let inputs: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8 + 1; 300_000 + i]).collect();
    let expected: Vec<(usize, u64)> = inputs.iter().cloned().map(checksum).collect();
    // Automatic chunk size: each large argument on its own.
    assert_eq!(p.map(checksum, inputs.clone()).unwrap(), expected);
    // Several large arguments in one chunk, and in one batch.
    assert_eq!(p.map_chunked(checksum, inputs.clone(), 4).unwrap(), expected);
    let small: Vec<Vec<u8>> = inputs.iter().map(|v| v[..1000].to_vec()).collect();
    let small_expected: Vec<(usize, u64)> = small.iter().cloned().map(checksum).collect();
    assert_eq!(p.map_chunked(checksum, small, 3).unwrap(), small_expected);
    let got: Vec<(usize, u64)> = p.imap(checksum, inputs).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, expected);
    // One large argument as a message of its own: bytes, a string, any
    // other type.
    let big = vec![7u8; 1 << 20];
    assert_eq!(p.apply(checksum, big.clone()).unwrap(), checksum(big));
    let text = "é".repeat(100_000);
    assert_eq!(p.apply(char_count, text.clone()).unwrap(), 100_000);
    let words: Vec<Vec<u16>> = (0..4).map(|i| vec![i; 200_000]).collect();
    let sums: Vec<u64> = words.iter().map(|w| w.iter().map(|&x| u64::from(x)).sum()).collect();
    assert_eq!(p.map(sum_u16, words).unwrap(), sums);
    // A large argument that refuses to serialize fails its task alone; the
    // large arguments around it arrive whole.
    let mixed: Vec<Option<Vec<u16>>> = vec![Some(vec![1; 100_000]), None, Some(vec![2; 100_000])];
    let got: Vec<_> = p
        .imap(sum_or_refuse, mixed.into_iter().map(Refusing::from))
        .unwrap()
        .collect();
    assert_eq!(got[0].as_ref().unwrap(), &100_000);
    let e = got[1].as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
    assert!(e.to_string().contains("refuses to serialize"), "{e}");
    assert_eq!(got[2].as_ref().unwrap(), &200_000);
}

/// The sum of a large argument; `None` stands for one that refuses to
/// serialize (see [`Refusing`]).
fn sum_or_refuse(v: Refusing) -> u64 {
    v.0.map_or(0, sum_u16)
}

/// `Some` serializes as its vector; `None` refuses to serialize.
#[derive(Debug)]
struct Refusing(Option<Vec<u16>>);

impl From<Option<Vec<u16>>> for Refusing {
    fn from(v: Option<Vec<u16>>) -> Refusing {
        Refusing(v)
    }
}

impl Serialize for Refusing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(v) => v.serialize(s),
            None => Err(serde::ser::Error::custom("refuses to serialize")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Refusing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<u16>::deserialize(d).map(|v| Refusing(Some(v)))
    }
}

fn char_count(s: String) -> usize {
    s.chars().count()
}

fn sum_u16(v: Vec<u16>) -> u64 {
    v.iter().map(|&x| u64::from(x)).sum()
}

/// Runs out of memory under a 1 GiB address-space limit (set in the
/// worker, which dies with it): the allocator aborts, as it would under
/// memory pressure.
#[allow(unsafe_code)]
fn out_of_memory(gib: usize) -> usize {
    let limit = libc::rlimit {
        rlim_cur: 1 << 30,
        rlim_max: 1 << 30,
    };
    // SAFETY: a valid rlimit for this process only.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    let v = vec![1u8; gib << 30];
    v.len()
}

fn out_of_memory_fails_only_its_task(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let e = p.apply(out_of_memory, 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    assert_eq!(e.exit_status(), Some(ExitStatus::Signaled(libc::SIGABRT)));
    assert_eq!(p.map(square, 0..100u64).unwrap().len(), 100);
    assert_eq!(p.pids().len(), 2);
}

fn timeouts_leave_results_to_wait_for(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    // Python's `imap(...).next(timeout)`: a late result is a timeout, and
    // the iteration goes on.
    let rv = Rendezvous::new();
    let mut it = p.imap(wait_for_gate, [rv.addr()]).unwrap();
    assert_eq!(
        it.next_timeout(Duration::from_millis(50)).unwrap().unwrap_err().kind(),
        ErrorKind::Timeout
    );
    rv.wait_ready().open();
    assert!(it.next_timeout(DEADLINE).unwrap().unwrap());
    assert!(it.next_timeout(DEADLINE).is_none());
    // `MapResult::wait`.
    let mut r = p.map_async(wait_for_gate, [rv.addr()], None).unwrap();
    assert!(!r.wait(Some(Duration::from_millis(50))).unwrap());
    assert!(!r.ready());
    assert_eq!(r.get_timeout(Duration::ZERO).unwrap_err().kind(), ErrorKind::Timeout);
    rv.wait_ready().open();
    assert!(r.wait(Some(DEADLINE)).unwrap());
    assert_eq!(r.successful(), Some(true));
    assert_eq!(r.get().unwrap(), [true]);
    // A chunk size of 0 is refused.
    assert_eq!(
        p.map_chunked(square, 0..3u64, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        p.imap_chunked(square, 0..3u64, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        p.map_async(square, 0..3u64, Some(0)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

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

per_method!(
    imap_chunked_input_panic_keeps_the_partial_chunk,
    imap_input_panic_loses_no_queued_item,
    timeouts_leave_results_to_wait_for,
    input_panics_leave_the_pool_usable,
    workers_killed_at_start_lose_no_task,
    cancelling_wakes_the_waiters,
    out_of_memory_fails_only_its_task,
    large_arguments_round_trip,
    separate_submissions_do_not_queue_behind_a_busy_worker,
    idle_worker_death_is_noticed,
    executor_drop_waits_like_python,
    callbacks_run_once_with_value_or_error,
    callback_panics_and_self_waits_are_reported,
    waits_from_threads_do_not_block_each_other,
    failing_replacement_breaks_the_pool,
    map_keeps_order,
    imap_is_lazy,
    killed_worker_fails_only_its_task,
    panics_and_codec_failures_stay_per_task,
    failing_initializer_fails_creation,
    maxtasksperchild_replaces_workers,
    task_timeout_kills_and_replaces,
    terminate_and_drop_leave_no_process,
    executor_basics,
);
