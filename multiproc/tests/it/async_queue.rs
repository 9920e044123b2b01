//! The queues' `put_async`/`get_async` under tokio's two runtimes, per
//! start method: a get woken by a child's put, a put waiting for room that
//! a child's get makes, dropped futures that take or put nothing, and the
//! `SimpleQueue` and `JoinableQueue` forms.
#![cfg(feature = "async")]

use std::{pin::pin, time::Duration};

use multiproc::{self as mp, JoinableQueue, Queue, SimpleQueue, StartMethod};

use crate::{
    async_support::{current_thread, multi_thread, poll_once},
    support::{DEADLINE, Gate, Rendezvous, ready_then_wait},
};

fn start<A, R>(m: StartMethod, f: fn(A) -> R, args: A) -> mp::Process<R>
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut p = mp::ProcessBuilder::new().start_method(m).target_with(f, args);
    p.start().expect("start");
    p
}

fn put_when_told((q, addr): (Queue<String>, String)) {
    ready_then_wait(&addr);
    q.put("from the child".to_string()).expect("put");
}

async fn get_woken_by_a_put(q: Queue<String>, gate: Gate) {
    // Dropped while the queue is empty: takes nothing, and the watch it
    // held ends with it.
    {
        let mut get = pin!(q.get_async());
        assert!(poll_once(get.as_mut()).is_pending());
    }
    let getter = tokio::spawn({
        let q = q.clone();
        async move { q.get_async().await }
    });
    gate.open();
    let item = tokio::time::timeout(DEADLINE, getter)
        .await
        .expect("the put woke the get")
        .expect("task")
        .expect("get");
    assert_eq!(item, "from the child");
    assert!(q.is_empty());
}

fn get_async_is_woken_by_a_childs_put(m: StartMethod) {
    let (qa, qb) = (Queue::new().expect("queue"), Queue::new().expect("queue"));
    let (rv_a, rv_b) = (Rendezvous::new(), Rendezvous::new());
    let mut pa = start(m, put_when_told, (qa.clone(), rv_a.addr()));
    let mut pb = start(m, put_when_told, (qb.clone(), rv_b.addr()));
    let (gate_a, gate_b) = (rv_a.wait_ready(), rv_b.wait_ready());
    current_thread(get_woken_by_a_put(qa, gate_a));
    multi_thread(get_woken_by_a_put(qb, gate_b));
    pa.join_timeout(DEADLINE).expect("child a");
    pb.join_timeout(DEADLINE).expect("child b");
}

/// Takes two items when told, returning them.
fn get_two_when_told((q, addr): (Queue<u32>, String)) -> (u32, u32) {
    ready_then_wait(&addr);
    let first = q.get_timeout(DEADLINE).expect("first");
    let second = q.get_timeout(DEADLINE).expect("second");
    (first, second)
}

async fn put_waits_for_room(q: Queue<u32>, gate: Gate) {
    q.put(1).expect("fill the queue");
    // Dropped while the queue is full: puts nothing.
    {
        let mut put = pin!(q.put_async(99));
        assert!(poll_once(put.as_mut()).is_pending());
    }
    let early = tokio::time::timeout(Duration::from_millis(20), q.put_async(98)).await;
    assert!(early.is_err(), "a put went into a full queue");
    assert_eq!(q.len(), 1);
    gate.open();
    tokio::time::timeout(DEADLINE, q.put_async(2))
        .await
        .expect("the child's get made room")
        .expect("put");
}

fn put_async_waits_for_room_a_child_makes(m: StartMethod) {
    let (qa, qb) = (Queue::bounded(1).expect("queue"), Queue::bounded(1).expect("queue"));
    let (rv_a, rv_b) = (Rendezvous::new(), Rendezvous::new());
    let mut pa = start(m, get_two_when_told, (qa.clone(), rv_a.addr()));
    let mut pb = start(m, get_two_when_told, (qb.clone(), rv_b.addr()));
    let (gate_a, gate_b) = (rv_a.wait_ready(), rv_b.wait_ready());
    current_thread(put_waits_for_room(qa, gate_a));
    multi_thread(put_waits_for_room(qb, gate_b));
    assert_eq!(pa.join_timeout(DEADLINE).expect("child a"), (1, 2));
    assert_eq!(pb.join_timeout(DEADLINE).expect("child b"), (1, 2));
}

/// A producer child and an async consumer over a small bounded queue: every
/// item arrives once, in order, with puts waiting for room on both sides.
fn produce((q, n): (SimpleQueue<u32>, u32)) {
    for i in 0..n {
        q.put(i).expect("put");
    }
}

const ITEMS: u32 = 500;

async fn consume(q: SimpleQueue<u32>) {
    for i in 0..ITEMS {
        let got = tokio::time::timeout(DEADLINE, q.get_async())
            .await
            .expect("an item in time")
            .expect("get");
        assert_eq!(got, i);
    }
}

fn simple_queue_consumer_gets_every_item_in_order(m: StartMethod) {
    let (qa, qb) = (SimpleQueue::new().expect("queue"), SimpleQueue::new().expect("queue"));
    let mut pa = start(m, produce, (qa.clone(), ITEMS));
    let mut pb = start(m, produce, (qb.clone(), ITEMS));
    current_thread(consume(qa));
    multi_thread(consume(qb));
    pa.join_timeout(DEADLINE).expect("child a");
    pb.join_timeout(DEADLINE).expect("child b");
}

/// Takes every item, marks each done, returns their sum.
fn work(q: JoinableQueue<u32>) -> u32 {
    let mut sum = 0;
    loop {
        let i = q.get_timeout(DEADLINE).expect("get");
        q.task_done().expect("task_done");
        if i == 0 {
            return sum;
        }
        sum += i;
    }
}

async fn feed(q: JoinableQueue<u32>) {
    for i in (0..=20).rev() {
        q.put_async(i).await.expect("put");
    }
    tokio::task::spawn_blocking(move || q.join_timeout(DEADLINE))
        .await
        .expect("task")
        .expect("every task done");
}

fn joinable_queue_puts_count_tasks(m: StartMethod) {
    let (qa, qb) = (
        JoinableQueue::bounded(3).expect("queue"),
        JoinableQueue::bounded(3).expect("queue"),
    );
    let mut pa = start(m, work, qa.clone());
    let mut pb = start(m, work, qb.clone());
    current_thread(feed(qa));
    multi_thread(feed(qb));
    assert_eq!(pa.join_timeout(DEADLINE).expect("child a"), 210);
    assert_eq!(pb.join_timeout(DEADLINE).expect("child b"), 210);
}

fn close_when_told((q, addr): (Queue<u32>, String)) {
    ready_then_wait(&addr);
    q.put(5).expect("put");
    q.close_for_all().expect("close for all");
}

async fn get_until_the_end(q: Queue<u32>, gate: Gate) {
    let getter = tokio::spawn({
        let q = q.clone();
        async move {
            let mut got = Vec::new();
            loop {
                match q.get_async().await {
                    Ok(i) => got.push(i),
                    Err(e) if e.is_disconnected() => return got,
                    Err(e) => panic!("get: {e}"),
                }
            }
        }
    });
    gate.open();
    let got = tokio::time::timeout(DEADLINE, getter)
        .await
        .expect("the end woke the get")
        .expect("task");
    assert_eq!(got, [5]);
    assert!(q.put_async(6).await.expect_err("a put after the end").is_disconnected());
}

/// A queue closed for all by a child ends a waiting `get_async` once the
/// items are drained, and refuses a `put_async`.
fn get_async_sees_a_queue_closed_by_a_child(m: StartMethod) {
    let (qa, qb) = (Queue::new().expect("queue"), Queue::new().expect("queue"));
    let (rv_a, rv_b) = (Rendezvous::new(), Rendezvous::new());
    let mut pa = start(m, close_when_told, (qa.clone(), rv_a.addr()));
    let mut pb = start(m, close_when_told, (qb.clone(), rv_b.addr()));
    let (gate_a, gate_b) = (rv_a.wait_ready(), rv_b.wait_ready());
    current_thread(get_until_the_end(qa, gate_a));
    multi_thread(get_until_the_end(qb, gate_b));
    pa.join_timeout(DEADLINE).expect("child a");
    pb.join_timeout(DEADLINE).expect("child b");
}

per_method!(
    get_async_sees_a_queue_closed_by_a_child,
    get_async_is_woken_by_a_childs_put,
    put_async_waits_for_room_a_child_makes,
    simple_queue_consumer_gets_every_item_in_order,
    joinable_queue_puts_count_tasks,
);
