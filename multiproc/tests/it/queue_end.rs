//! Queues that end: closed for every process, or left by every producer
//! (dropped or killed); consumers in every process drain what is left and
//! see the end, under every start method.

use std::collections::BTreeSet;

use multiproc::{self as mp, JoinableQueue, Producer, Queue, SimpleQueue, StartMethod};

use crate::support::{DEADLINE, Rendezvous, block_forever, notify, start};

/// Takes items until the queue ends.
fn drain(q: Queue<u32>) -> Vec<u32> {
    q.iter().map(|item| item.unwrap()).collect()
}

/// Checks that `parts` hold every item of `expected` exactly once.
fn assert_partition(parts: &[Vec<u32>], expected: std::ops::Range<u32>) {
    let all: Vec<u32> = parts.iter().flatten().copied().collect();
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "an item was taken twice: {parts:?}");
    assert_eq!(distinct, expected.collect::<BTreeSet<u32>>(), "an item was lost");
}

/// Several consumers in other processes share the items without loss or
/// duplication, and each finishes once the closed queue is drained.
fn consumers_finish_after_close_for_all(m: StartMethod) {
    let q: Queue<u32> = Queue::new().unwrap();
    let mut consumers: Vec<_> = (0..3).map(|_| start(m, drain, q.clone())).collect();
    for i in 0..300 {
        q.put(i).unwrap();
    }
    q.close_for_all().unwrap();
    assert!(q.is_closed_for_all());
    let e = q.put(300).unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    assert_eq!(e.into_inner(), 300, "the value is handed back");
    let parts: Vec<Vec<u32>> = consumers
        .iter_mut()
        .map(|c| c.join_timeout(DEADLINE).unwrap())
        .collect();
    assert_partition(&parts, 0..300);
    assert!(q.try_get().unwrap_err().is_disconnected());
}

fn put_then_close((q, n): (Queue<u32>, u32)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
    q.close_for_all().unwrap();
}

/// A close made in another process ends this process's iteration, after
/// the items put before it, in order.
fn close_from_another_process(m: StartMethod) {
    let q: Queue<u32> = Queue::new().unwrap();
    let mut p = start(m, put_then_close, (q.clone(), 50));
    let got: Vec<u32> = q.iter().map(|item| item.unwrap()).collect();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    p.join_timeout(DEADLINE).unwrap();
    assert!(q.is_closed_for_all());
    assert!(q.put(1).unwrap_err().is_disconnected());
    let e = q.get_timeout(DEADLINE).unwrap_err();
    assert!(e.is_disconnected(), "{e}");
}

fn produce((tx, from, to): (Producer<u32>, u32, u32)) {
    for i in from..to {
        tx.put(i).unwrap();
    }
}

/// When every producer handle is gone (dropped here, ended with their
/// processes there), consumers see the end; no close is called.
fn the_end_comes_when_every_producer_is_gone(m: StartMethod) {
    let (tx, q) = Queue::<u32>::with_producer().unwrap();
    let mut producers: Vec<_> = (0..3)
        .map(|k| start(m, produce, (tx.clone(), k * 100, k * 100 + 100)))
        .collect();
    let mut consumers: Vec<_> = (0..2).map(|_| start(m, drain, q.clone())).collect();
    drop(tx);
    for p in &mut producers {
        p.join_timeout(DEADLINE).unwrap();
    }
    let parts: Vec<Vec<u32>> = consumers
        .iter_mut()
        .map(|c| c.join_timeout(DEADLINE).unwrap())
        .collect();
    assert_partition(&parts, 0..300);
    assert!(!q.is_closed_for_all(), "ended by its producers, not closed");
    assert!(q.try_get().unwrap_err().is_disconnected());
}

fn produce_then_hang((tx, addr): (Producer<u32>, String)) {
    for i in 0..10 {
        tx.put(i).unwrap();
    }
    notify(&addr, "produced");
    block_forever()
}

/// A producer killed with SIGKILL (its handle never dropped) still ends
/// the queue for a consumer blocked in another process.
fn a_killed_producer_ends_the_queue(m: StartMethod) {
    let (tx, q) = Queue::<u32>::with_producer().unwrap();
    let r = Rendezvous::new();
    let producer = start(m, produce_then_hang, (tx.clone(), r.addr()));
    drop(tx);
    let mut consumer = start(m, drain, q.clone());
    assert_eq!(r.recv(), "produced");
    producer.kill().unwrap();
    let got = consumer.join_timeout(DEADLINE).unwrap();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    let mut producer = producer;
    assert_eq!(
        producer.join_timeout(DEADLINE).unwrap_err().kind(),
        mp::ErrorKind::ChildKilled
    );
}

fn announce_then_get((q, addr): (Queue<u32>, String)) -> u32 {
    notify(&addr, "getting");
    q.get().unwrap()
}

/// A consumer killed while it waits in `get` leaves the other consumers
/// and the producer unaffected: they drain everything and end.
fn a_killed_consumer_leaves_the_others_draining(m: StartMethod) {
    let q: Queue<u32> = Queue::new().unwrap();
    let r = Rendezvous::new();
    let mut victim = start(m, announce_then_get, (q.clone(), r.addr()));
    assert_eq!(r.recv(), "getting");
    // Gives the victim a chance to block in `get` (the assertions below
    // hold either way).
    std::thread::sleep(std::time::Duration::from_millis(50));
    victim.kill().unwrap();
    assert_eq!(
        victim.join_timeout(DEADLINE).unwrap_err().kind(),
        mp::ErrorKind::ChildKilled
    );
    let mut consumers: Vec<_> = (0..2).map(|_| start(m, drain, q.clone())).collect();
    for i in 0..200 {
        q.put(i).unwrap();
    }
    q.close_for_all().unwrap();
    let parts: Vec<Vec<u32>> = consumers
        .iter_mut()
        .map(|c| c.join_timeout(DEADLINE).unwrap())
        .collect();
    assert_partition(&parts, 0..200);
}

fn work_until_closed(jobs: JoinableQueue<u32>) -> Vec<u32> {
    let mut done = Vec::new();
    for job in &jobs {
        done.push(job.unwrap());
        jobs.task_done().unwrap();
    }
    done
}

/// A JoinableQueue: workers finish when it is closed and drained; items
/// taken after the close are still marked done, and `join` returns once
/// they all are.
fn joinable_workers_finish_after_close(m: StartMethod) {
    let jobs: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    let mut workers: Vec<_> = (0..2).map(|_| start(m, work_until_closed, jobs.clone())).collect();
    for i in 0..100 {
        jobs.put(i).unwrap();
    }
    jobs.close_for_all().unwrap();
    jobs.join_timeout(DEADLINE).unwrap();
    let parts: Vec<Vec<u32>> = workers.iter_mut().map(|w| w.join_timeout(DEADLINE).unwrap()).collect();
    assert_partition(&parts, 0..100);
    let e = jobs.task_done().unwrap_err();
    assert_eq!(e.kind(), mp::ErrorKind::InvalidState, "{e}");
}

fn drain_simple(q: SimpleQueue<String>) -> Vec<String> {
    q.into_iter().map(|item| item.unwrap()).collect()
}

fn produce_words(tx: Producer<String>) {
    for w in ["a", "b", "c"] {
        tx.put(w.to_owned()).unwrap();
    }
}

/// A SimpleQueue ends with its producers too.
fn simple_queue_ends_with_its_producers(m: StartMethod) {
    let (tx, q) = SimpleQueue::<String>::with_producer().unwrap();
    let mut consumer = start(m, drain_simple, q.clone());
    let mut producer = start(m, produce_words, tx);
    producer.join_timeout(DEADLINE).unwrap();
    assert_eq!(consumer.join_timeout(DEADLINE).unwrap(), ["a", "b", "c"]);
}

per_method!(
    consumers_finish_after_close_for_all,
    close_from_another_process,
    the_end_comes_when_every_producer_is_gone,
    a_killed_producer_ends_the_queue,
    a_killed_consumer_leaves_the_others_draining,
    joinable_workers_finish_after_close,
    simple_queue_ends_with_its_producers,
);
