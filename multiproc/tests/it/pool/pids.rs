//! `Pool::pids` names live workers only (issue 14, item 11): a worker
//! whose process has ended is replaced before the pids are read, also
//! when the pool is idle and nobody waits on it.

use multiproc::{Pool, StartMethod};

use crate::support::{DEADLINE, PidWatch};

fn square(x: u64) -> u64 {
    x * x
}

#[allow(unsafe_code)]
fn sigkill(pid: u32) {
    // SAFETY: sends a signal to one of the pool's workers, the behaviour
    // under test.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

fn pids_leave_out_workers_that_ended(m: StartMethod) {
    let p = Pool::builder().processes(2).start_method(m).build().unwrap();
    // Every result is in: the pool is idle, nobody waits on it.
    assert_eq!(p.map(square, 0..20u64).unwrap().len(), 20);
    let pids = p.pids();
    let watches: Vec<PidWatch> = pids.iter().map(|&pid| PidWatch::open(pid)).collect();
    for &pid in &pids {
        sigkill(pid);
    }
    for w in &watches {
        assert!(w.ended_within(DEADLINE));
    }
    let now = p.pids();
    assert!(
        now.iter().all(|pid| !pids.contains(pid)),
        "{now:?} still names {pids:?}"
    );
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(p.apply(square, 7).unwrap(), 49);
}

per_method!(pids_leave_out_workers_that_ended);
