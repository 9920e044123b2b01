//! Threads a target starts do not keep its process alive: the child leaves
//! when the target returns (Python would wait for non-daemon threads; see
//! docs/python.md, "Threads a target starts end with it").

use multiproc::{ProcessBuilder, StartMethod};

use crate::support::DEADLINE;

/// Starts a thread that never ends, then returns.
fn leaves_a_thread_parked() -> u32 {
    std::thread::spawn(|| {
        loop {
            std::thread::park();
        }
    });
    7
}

fn unjoined_threads_end_with_the_target(m: StartMethod) {
    let mut p = ProcessBuilder::new().start_method(m).target(leaves_a_thread_parked);
    p.start().unwrap();
    assert_eq!(
        p.join_timeout(DEADLINE).unwrap(),
        7,
        "the child exited with its target's value"
    );
    assert_eq!(p.exitcode(), Some(0));
}

per_method!(unjoined_threads_end_with_the_target);
