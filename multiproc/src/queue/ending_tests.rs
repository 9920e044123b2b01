//! Queues that end, within one process (the cross-process cases are in
//! the integration tests, `queue_end.rs`).

use std::{thread, time::Duration};

use super::{JoinableQueue, Queue, SimpleQueue};
use crate::{ErrorKind, error::channel::RecvTimeoutError};

#[test]
fn puts_after_close_for_all_hand_the_value_back_as_disconnected() {
    let q: Queue<u32> = Queue::bounded(2).unwrap();
    q.put(1).unwrap();
    q.close_for_all().unwrap();
    q.close_for_all().unwrap();
    assert!(q.is_closed_for_all() && q.has_ended());
    let e = q.put(2).unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    assert_eq!(e.kind(), ErrorKind::Disconnected);
    assert_eq!(e.into_inner(), 2);
    assert!(q.try_put(3).unwrap_err().is_disconnected());
    assert!(q.put_timeout(4, Duration::ZERO).unwrap_err().is_disconnected());
    assert_eq!(q.try_get().unwrap(), 1);
    assert!(q.try_get().unwrap_err().is_disconnected());
    assert!(matches!(
        q.get_timeout(Duration::from_secs(30)),
        Err(RecvTimeoutError::Disconnected)
    ));
}

#[test]
fn close_for_all_wakes_a_blocked_get_and_a_blocked_put() {
    let q: Queue<u32> = Queue::new().unwrap();
    let full: Queue<u32> = Queue::bounded(1).unwrap();
    full.put(0).unwrap();
    thread::scope(|s| {
        let getter = s.spawn(|| q.get());
        let putter = s.spawn(|| full.put(1));
        // Gives both a chance to block (they end either way).
        thread::sleep(Duration::from_millis(20));
        q.close_for_all().unwrap();
        full.close_for_all().unwrap();
        assert!(getter.join().unwrap().unwrap_err().is_disconnected());
        assert!(putter.join().unwrap().unwrap_err().is_disconnected());
    });
}

#[test]
fn iteration_ends_when_the_last_producer_clone_is_dropped() {
    let (tx, q) = Queue::<u32>::with_producer().unwrap();
    let tx2 = tx.clone();
    assert!(!q.has_ended());
    thread::scope(|s| {
        let consumer = s.spawn(|| q.iter().collect::<crate::Result<Vec<u32>>>());
        tx.put(1).unwrap();
        drop(tx);
        tx2.put(2).unwrap();
        assert!(!q.has_ended(), "a clone still produces");
        drop(tx2);
        assert_eq!(consumer.join().unwrap().unwrap(), [1, 2]);
    });
    assert!(q.has_ended() && !q.is_closed_for_all());
    // The queue still takes puts from plain handles, which do not keep it
    // open: a consumer takes them before it reports the end.
    q.put(3).unwrap();
    let rest: Vec<u32> = (&q).into_iter().map(Result::unwrap).collect();
    assert_eq!(rest, [3]);
}

#[test]
fn a_queue_without_producers_never_ends_by_itself() {
    let q: Queue<u32> = Queue::new().unwrap();
    assert!(!q.has_ended());
    assert!(q.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
}

#[test]
fn a_producer_travels_through_a_queue() {
    let (tx, q) = Queue::<u32>::with_producer().unwrap();
    let carrier: Queue<crate::Producer<u32>> = Queue::new().unwrap();
    carrier.put(tx).unwrap();
    assert!(!q.has_ended(), "the producer in transit keeps the queue open");
    let tx = carrier.get().unwrap();
    tx.put(7).unwrap();
    drop(tx);
    assert_eq!(q.iter().map(Result::unwrap).collect::<Vec<_>>(), [7]);
}

#[test]
fn simple_and_joinable_queues_end_too() {
    let (tx, q) = SimpleQueue::<u8>::with_producer().unwrap();
    tx.put(1).unwrap();
    drop(tx);
    assert_eq!(q.iter().map(Result::unwrap).collect::<Vec<_>>(), [1]);
    let q: SimpleQueue<u8> = SimpleQueue::new().unwrap();
    q.put(2).unwrap();
    q.close_for_all().unwrap();
    assert_eq!(q.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [2]);

    let jobs: JoinableQueue<u8> = JoinableQueue::new().unwrap();
    jobs.put(1).unwrap();
    jobs.put(2).unwrap();
    jobs.close_for_all().unwrap();
    let mut n = 0;
    for job in &jobs {
        job.unwrap();
        n += 1;
        jobs.task_done().unwrap();
    }
    assert_eq!(n, 2);
    jobs.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(jobs.task_done().unwrap_err().kind(), ErrorKind::InvalidState);
}
