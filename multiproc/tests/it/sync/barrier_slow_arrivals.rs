//! A barrier whose parties arrive slowly (over several of its 200 ms
//! liveness slices) still passes: the waiting parties' periodic checks
//! must not starve the late arrivals of the barrier's internal lock.

use std::{thread, time::Duration};

use multiproc::Barrier;

use crate::support::DEADLINE;

/// Every one of `Barrier::MAX_PARTIES` threads, started one every 2 ms
/// (about a second from first to last, five slices), gets its arrival
/// index. Under load the starts spread out further, which only adds
/// slices: the test must pass either way.
#[test]
fn a_full_barrier_passes_when_its_parties_arrive_over_several_slices() {
    let n = Barrier::MAX_PARTIES;
    let b = Barrier::new(n).unwrap();
    let ts: Vec<_> = (0..n)
        .map(|_| {
            // Not synchronisation: spreads the arrivals so that the early
            // parties wake up and check on the others before the last
            // ones arrive.
            thread::sleep(Duration::from_millis(2));
            let b = b.clone();
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || b.wait_timeout(DEADLINE))
                .unwrap()
        })
        .collect();
    let mut idx: Vec<usize> = ts
        .into_iter()
        .map(|t| t.join().unwrap().expect("every party passes"))
        .collect();
    idx.sort_unstable();
    assert_eq!(idx, (0..n).collect::<Vec<_>>());
}
