//! Synchronisation objects passed through a queue to a grandchild, and
//! none leaving a descriptor behind after a thousand are created and
//! dropped.

use std::time::Duration;

use multiproc::{self as mp, Barrier, BoundedSemaphore, Condition, Event, Lock, Queue, RLock, StartMethod};

use crate::support::{DEADLINE, open_fds, start};

fn grandchild((lock, ev): (Lock, Event)) {
    drop(lock.acquire_timeout(DEADLINE).unwrap());
    ev.set();
}

fn middle((m, q): (StartMethod, Queue<(Lock, Event)>)) {
    let (lock, ev) = q.get_timeout(DEADLINE).unwrap();
    let mut p = start(m, grandchild, (lock, ev));
    p.join_timeout(DEADLINE).unwrap();
}

/// Objects travel through a queue to a child, then to a grandchild.
fn objects_through_a_queue_to_a_grandchild(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let ev = Event::new().unwrap();
    let q: Queue<(Lock, Event)> = Queue::new().unwrap();
    let mut p = start(m, middle, (m, q.clone()));
    let g = lock.acquire().unwrap();
    q.put((lock.clone(), ev.clone())).unwrap();
    assert!(!ev.wait_timeout(Duration::from_millis(10)));
    drop(g);
    assert!(ev.wait_timeout(DEADLINE));
    p.join_timeout(DEADLINE).unwrap();
}

/// The body of `no_descriptor_leak`, in a single-threaded child so that
/// no other test's descriptors come and go meanwhile: (before, after).
fn create_and_drop_1000() -> (usize, usize) {
    // Warm up anything created once per process.
    drop(Condition::new().unwrap());
    let before = open_fds().len();
    for _ in 0..1000 {
        let l = Lock::new().unwrap();
        let r = RLock::new().unwrap();
        let s = BoundedSemaphore::new(2).unwrap();
        let e = Event::new().unwrap();
        let c = Condition::with_rlock(r.clone()).unwrap();
        let b = Barrier::new(2).unwrap();
        drop(l.acquire().unwrap());
        drop(s.acquire().unwrap());
        e.set();
        drop((l, r, s, e, c, b));
    }
    (before, open_fds().len())
}

/// Creating and dropping objects leaves no descriptor behind.
#[test]
fn no_descriptor_leak() {
    let mut p = mp::ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .target(create_and_drop_1000);
    p.start().unwrap();
    let (before, after) = p.join_timeout(DEADLINE).unwrap();
    assert!(after <= before, "{before} descriptors before, {after} after");
}

per_method!(objects_through_a_queue_to_a_grandchild,);
