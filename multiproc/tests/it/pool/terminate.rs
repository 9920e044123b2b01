//! Terminating: `terminate`, `terminate_workers` and dropping leave no
//! process, also while other threads drive or iterate and from a callback;
//! finished results survive; SIGTERM handlers run.

use std::sync::{Arc, Mutex, mpsc};

use multiproc::{Callbacks, ErrorKind, Executor, Pool, StartMethod, futures::as_completed};

use crate::support::{DEADLINE, Rendezvous, open_fds, ready_then_wait};

use super::{assert_gone, executor, forever, held, held_or_not, pool, square};

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
    terminate_and_drop_leave_no_process,
    imap_after_terminate_does_not_blame_join,
    terminate_workers_while_another_thread_drives,
    callback_that_terminates_the_executor,
    finished_results_survive_terminate,
    terminate_while_iterating,
    terminate_and_kill_workers,
    endless_iterations_end_after_terminate,
    terminate_workers_lets_sigterm_handlers_run,
);
