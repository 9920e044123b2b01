//! A process's exit routine gives all its daemons one grace period
//! together, then kills the rest: daemons that ignore SIGTERM (or cannot
//! be signalled) cost one period, not one each.

use std::time::{Duration, Instant};

use multiproc::{ProcessBuilder, StartMethod};

use crate::support::{DEADLINE, PidWatch, Rendezvous, notify};

/// Ignores SIGTERM, says so, and waits to be killed.
#[allow(unsafe_code)]
fn stubborn_daemon(addr: String) {
    // SAFETY: setting a signal's disposition to SIG_IGN has no
    // preconditions.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    notify(&addr, &std::process::id().to_string());
    crate::support::block_forever();
}

/// Starts three stubborn daemons under `m`, waits until each ignores
/// SIGTERM, and returns their pids: its exit routine then has to end them.
fn parent_of_stubborn_daemons(m: StartMethod) -> Vec<u32> {
    let rv = Rendezvous::new();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let mut d = ProcessBuilder::new()
            .daemon(true)
            .start_method(m)
            .target_with(stubborn_daemon, rv.addr());
        d.start().unwrap();
        pids.push(rv.recv().parse().unwrap());
    }
    pids
}

fn stubborn_daemons_share_one_grace_period(m: StartMethod) {
    let mut p = ProcessBuilder::new().target_with(parent_of_stubborn_daemons, m);
    let started = Instant::now();
    p.start().unwrap();
    let pids = p.join_timeout(DEADLINE).unwrap();
    let took = started.elapsed();
    // One 5 s grace for all three, then SIGKILL: well under the 15 s that
    // one grace each would take.
    assert!(took < Duration::from_secs(12), "the parent took {took:?} to exit");
    for pid in pids {
        if let Some(w) = PidWatch::try_open(pid) {
            assert!(w.ended_within(DEADLINE), "daemon {pid} outlived its parent");
        }
    }
}

per_method!(stubborn_daemons_share_one_grace_period);
