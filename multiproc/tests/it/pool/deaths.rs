//! Workers that die (killed, aborted, out of memory, at start or idle):
//! only their own task fails and the pool replaces them.

use multiproc::{ErrorKind, ExitStatus, StartMethod};

use crate::support::{DEADLINE, PidWatch};

use super::{killed_at, pool, square};

#[allow(clippy::disallowed_methods)]
fn aborts(x: u32) -> u32 {
    if x == 1 {
        std::process::abort();
    }
    x
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

#[allow(unsafe_code)]
fn sigkill(pid: u32) {
    // SAFETY: sends a signal to one of the pool's workers, the behaviour
    // under test.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
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

per_method!(
    killed_worker_fails_only_its_task,
    idle_worker_death_is_noticed,
    workers_killed_at_start_lose_no_task,
    out_of_memory_fails_only_its_task,
);
