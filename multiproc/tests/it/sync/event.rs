//! `Event` across processes: set in a child, it wakes the parent.

use std::{thread, time::Duration};

use multiproc::{Event, StartMethod};

use crate::support::{DEADLINE, start};

fn set_after((go, ev): (Event, Event)) {
    assert!(go.wait_timeout(DEADLINE));
    ev.set();
}

/// SYNC-15: an event set in a child wakes waiters (threads) in the parent.
fn event_set_in_a_child_wakes_the_parent(m: StartMethod) {
    let ev = Event::new().unwrap();
    let go = Event::new().unwrap();
    assert!(!ev.is_set());
    assert!(!ev.wait_timeout(Duration::ZERO));
    let mut p = start(m, set_after, (go.clone(), ev.clone()));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let ev = ev.clone();
            thread::spawn(move || ev.wait_timeout(DEADLINE))
        })
        .collect();
    go.set();
    assert!(ev.wait_timeout(DEADLINE));
    for w in waiters {
        assert!(w.join().unwrap());
    }
    p.join_timeout(DEADLINE).unwrap();
    assert!(ev.is_set());
    ev.clear();
    assert!(!ev.is_set());
}

per_method!(event_set_in_a_child_wakes_the_parent,);
