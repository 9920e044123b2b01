//! An awaited put on a full bounded queue is woken by the get that makes
//! room (or by the queue's end), not by a timer: while the queue stays
//! full the future is polled only by the `QUEUE_SLICE` safety look. Under
//! tokio's two runtimes, per start method.
#![cfg(feature = "async")]

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use multiproc::{QUEUE_SLICE, Queue, SendError, StartMethod};

use crate::{
    async_support::{current_thread, multi_thread},
    support::{DEADLINE, Gate, Rendezvous, ready_then_wait, start},
};

/// How long the queue stays full under an awaiting put: long enough that
/// a put looking again on a timer would be polled dozens of times.
const FULL_FOR: Duration = Duration::from_millis(300);

/// A future that counts its polls.
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

/// The most polls an awaiting put may take over `elapsed`: the first, the
/// wake that ends it, one `QUEUE_SLICE` look per slice, and one spare
/// (the slice's timer and the wake may cross).
fn allowed_polls(elapsed: Duration) -> usize {
    3 + (elapsed.as_nanos() / QUEUE_SLICE.as_nanos()) as usize
}

/// Takes one item when told, returning it; then one more.
fn get_when_told((q, addr): (Queue<u32>, String)) -> (u32, u32) {
    ready_then_wait(&addr);
    let first = q.get_timeout(DEADLINE).expect("first");
    let second = q.get_timeout(DEADLINE).expect("second");
    (first, second)
}

async fn woken_by_the_get(q: Queue<u32>, gate: Gate) {
    q.put(1).expect("fill the queue");
    let polls = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let put = tokio::spawn(Counted {
        inner: Box::pin({
            let q = q.clone();
            async move { q.put_async(2).await }
        }),
        polls: polls.clone(),
    });
    // The put waits on a full queue (a sleep only lets it wait; the
    // assertion below holds however long it really waited).
    tokio::time::sleep(FULL_FOR).await;
    assert_eq!(q.len(), 1, "a put went into a full queue");
    gate.open();
    tokio::time::timeout(DEADLINE, put)
        .await
        .expect("the child's get made room")
        .expect("task")
        .expect("put");
    let (n, elapsed) = (polls.load(Ordering::SeqCst), t.elapsed());
    assert!(
        n <= allowed_polls(elapsed),
        "an awaiting put was polled {n} times in {elapsed:?}: it looks on a timer"
    );
}

fn put_async_is_woken_by_a_childs_get(m: StartMethod) {
    let (qa, qb) = (Queue::bounded(1).expect("queue"), Queue::bounded(1).expect("queue"));
    let (rv_a, rv_b) = (Rendezvous::new(), Rendezvous::new());
    let mut pa = start(m, get_when_told, (qa.clone(), rv_a.addr()));
    let mut pb = start(m, get_when_told, (qb.clone(), rv_b.addr()));
    let (gate_a, gate_b) = (rv_a.wait_ready(), rv_b.wait_ready());
    current_thread(woken_by_the_get(qa, gate_a));
    multi_thread(woken_by_the_get(qb, gate_b));
    assert_eq!(pa.join_timeout(DEADLINE).expect("child a"), (1, 2));
    assert_eq!(pb.join_timeout(DEADLINE).expect("child b"), (1, 2));
}

/// Closes the queue for every process when told.
fn close_when_told((q, addr): (Queue<u32>, String)) {
    ready_then_wait(&addr);
    q.close_for_all().expect("close");
}

async fn woken_by_the_end(q: Queue<u32>, gate: Gate) {
    q.put(1).expect("fill the queue");
    let polls = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let put = tokio::spawn(Counted {
        inner: Box::pin({
            let q = q.clone();
            async move { q.put_async(2).await }
        }),
        polls: polls.clone(),
    });
    tokio::time::sleep(FULL_FOR).await;
    gate.open();
    let r = tokio::time::timeout(DEADLINE, put)
        .await
        .expect("the close woke the put")
        .expect("task");
    assert!(matches!(r, Err(SendError::Disconnected(2))), "{r:?}");
    let (n, elapsed) = (polls.load(Ordering::SeqCst), t.elapsed());
    assert!(
        n <= allowed_polls(elapsed),
        "an awaiting put was polled {n} times in {elapsed:?}: it looks on a timer"
    );
    // The item put before the end is still there.
    assert_eq!(q.get_timeout(DEADLINE).expect("the item before the end"), 1);
}

fn put_async_is_woken_by_a_close_for_all(m: StartMethod) {
    let (qa, qb) = (Queue::bounded(1).expect("queue"), Queue::bounded(1).expect("queue"));
    let (rv_a, rv_b) = (Rendezvous::new(), Rendezvous::new());
    let mut pa = start(m, close_when_told, (qa.clone(), rv_a.addr()));
    let mut pb = start(m, close_when_told, (qb.clone(), rv_b.addr()));
    let (gate_a, gate_b) = (rv_a.wait_ready(), rv_b.wait_ready());
    current_thread(woken_by_the_end(qa, gate_a));
    multi_thread(woken_by_the_end(qb, gate_b));
    pa.join_timeout(DEADLINE).expect("child a");
    pb.join_timeout(DEADLINE).expect("child b");
}

/// Many awaiting putters on one full queue: each get lets one more in,
/// and every one of them ends (none is left asleep by another's look).
fn many_awaiting_putters_all_get_in(m: StartMethod) {
    fn take_all((q, addr, n): (Queue<u32>, String, u32)) -> u32 {
        ready_then_wait(&addr);
        (0..n).map(|_| q.get_timeout(DEADLINE).expect("get")).sum()
    }
    const PUTTERS: u32 = 20;
    let q = Queue::bounded(2).expect("queue");
    let rv = Rendezvous::new();
    let mut p = start(m, take_all, (q.clone(), rv.addr(), PUTTERS + 2));
    let gate = rv.wait_ready();
    q.put(0).expect("fill");
    q.put(0).expect("fill");
    multi_thread(async move {
        let putters: Vec<_> = (1..=PUTTERS)
            .map(|i| {
                let q = q.clone();
                tokio::spawn(async move { q.put_async(i).await })
            })
            .collect();
        gate.open();
        for put in putters {
            tokio::time::timeout(DEADLINE, put)
                .await
                .expect("every putter got in")
                .expect("task")
                .expect("put");
        }
    });
    assert_eq!(p.join_timeout(DEADLINE).expect("child"), (1..=PUTTERS).sum::<u32>());
}

per_method!(
    put_async_is_woken_by_a_childs_get,
    put_async_is_woken_by_a_close_for_all,
    many_awaiting_putters_all_get_in,
);
