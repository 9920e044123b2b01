//! `wait()` reports every object that is ready after it wakes: a child
//! that puts items and then ends (normally, by abort, by SIGKILL) never
//! has its items missed by the natural loop "wait on the queue and the
//! process; drain the queue if ready; stop once the process is ready and
//! the queue is not".

use multiproc::{self as mp, ErrorKind, Queue, StartMethod};
use serde::{Deserialize, Serialize};

use crate::support::DEADLINE;

/// Items each child puts.
const ITEMS: u32 = 5;
/// Children per start method and way of ending (the issue asks for 1,000
/// per start method in all; 334 each of three endings).
const RUNS_PER_ENDING: u32 = 334;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Ending {
    Return,
    Abort,
    /// The child sends itself SIGKILL right after its puts.
    Kill,
}

fn put_then_end((q, first, ending): (Queue<u32>, u32, Ending)) {
    for i in first..first + ITEMS {
        q.put(i).expect("put");
    }
    match ending {
        Ending::Return => {}
        Ending::Abort => std::process::abort(),
        Ending::Kill => {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(std::process::id() as libc::pid_t, libc::SIGKILL) };
            // SIGKILL is delivered before kill returns to a process
            // signalling itself.
            unreachable!("SIGKILL did not end the process");
        }
    }
}

/// The loop a user writes; returns the items it received.
fn drain_until_ended(q: &Queue<u32>, p: &mp::Process<()>) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        let ready = mp::wait(&[q.into(), p.into()], Some(DEADLINE)).expect("wait");
        assert!(!ready.is_empty(), "wait timed out after {DEADLINE:?}");
        if ready.contains(&0) {
            while let Ok(item) = q.try_get() {
                got.push(item);
            }
        }
        if ready == [1] {
            return got;
        }
    }
}

fn items_put_before_the_end_are_never_missed(m: StartMethod) {
    let q: Queue<u32> = Queue::new().unwrap();
    let mut first = 0;
    for ending in [Ending::Return, Ending::Abort, Ending::Kill] {
        for run in 0..RUNS_PER_ENDING {
            let mut p = mp::ProcessBuilder::new()
                .start_method(m)
                .target_with(put_then_end, (q.clone(), first, ending));
            p.start().expect("start");
            let got = drain_until_ended(&q, &p);
            assert_eq!(
                got,
                (first..first + ITEMS).collect::<Vec<_>>(),
                "{ending:?}, run {run}: items missed by the wait loop"
            );
            match (ending, p.join_timeout(DEADLINE)) {
                (Ending::Return, Ok(())) => {}
                (Ending::Abort | Ending::Kill, Err(e)) if e.kind() == ErrorKind::ChildKilled => {}
                (_, other) => panic!("{ending:?}, run {run}: unexpected end {other:?}"),
            }
            first += ITEMS;
        }
    }
    assert!(q.is_empty());
}

per_method!(items_put_before_the_end_are_never_missed);

/// Every object ready when `wait` wakes is reported, not only the one
/// that woke it: the queue is ready before the connection is, so a wait
/// that returns has to report the queue, whichever of them woke it.
#[test]
fn a_wake_by_one_object_reports_the_others_ready() {
    for round in 0..200 {
        let q: Queue<u8> = Queue::new().unwrap();
        let (a, b) = mp::pipe(true).unwrap();
        let waiter = std::thread::spawn({
            let q = q.clone();
            move || {
                let r = mp::wait(&[(&q).into(), (&b).into()], Some(DEADLINE)).unwrap();
                (r, b)
            }
        });
        q.put(1).unwrap();
        a.send_bytes(b"x").unwrap();
        let (ready, _b) = waiter.join().unwrap();
        assert!(
            ready.contains(&0),
            "round {round}: the queue was not reported: {ready:?}"
        );
    }
}
