//! Queue, SimpleQueue, JoinableQueue and wait() across processes, under
//! every start method.

use std::time::Duration;

use multiproc::{self as mp, Connection, JoinableQueue, Queue, SimpleQueue, StartMethod};
use serde::Serialize;

use crate::support::{DEADLINE, start};

fn put_range((q, from, to): (Queue<u32>, u32, u32)) {
    for i in from..to {
        q.put(i).unwrap();
    }
}

/// CPython QUE-03: the parent's items, then the child's, in order.
fn items_from_parent_and_child_in_order(m: StartMethod) {
    let q: Queue<u32> = Queue::new().unwrap();
    for i in 0..10 {
        q.put(i).unwrap();
    }
    let mut p = start(m, put_range, (q.clone(), 10, 20));
    p.join_timeout(DEADLINE).unwrap();
    assert_eq!(q.len(), 20);
    let got: Vec<u32> = (0..20).map(|_| q.get_timeout(DEADLINE).unwrap()).collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert!(q.try_get().unwrap_err().is_empty());
}

fn put_then_abort(q: Queue<u32>) {
    for i in 0..1000 {
        q.put(i).unwrap();
    }
    // No flush, no exit handlers: the items are already in the queue.
    std::process::abort();
}

/// CPython loses items put just before the process ends; here a put that
/// returned has delivered its item.
fn items_survive_their_producer_aborting(m: StartMethod) {
    let q: Queue<u32> = Queue::new().unwrap();
    let mut p = start(m, put_then_abort, q.clone());
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), mp::ErrorKind::ChildKilled, "{e}");
    assert_eq!(q.len(), 1000);
    let got: Vec<u32> = (0..1000).map(|_| q.try_get().unwrap()).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
}

fn worker((jobs, results): (JoinableQueue<Option<u32>>, SimpleQueue<u32>)) -> u32 {
    let mut done = 0;
    while let Some(x) = jobs.get_timeout(DEADLINE).unwrap() {
        results.put(x * x).unwrap();
        jobs.task_done().unwrap();
        done += 1;
    }
    jobs.task_done().unwrap();
    done
}

/// CPython QUE-05: workers take jobs and mark them done; join returns when
/// every job is done.
fn joinable_queue_with_workers(m: StartMethod) {
    let jobs: JoinableQueue<Option<u32>> = JoinableQueue::new().unwrap();
    let results: SimpleQueue<u32> = SimpleQueue::new().unwrap();
    let mut workers: Vec<_> = (0..3)
        .map(|_| start(m, worker, (jobs.clone(), results.clone())))
        .collect();
    for i in 0..20 {
        jobs.put(Some(i)).unwrap();
    }
    jobs.join_timeout(DEADLINE).unwrap();
    let mut squares: Vec<u32> = (0..20).map(|_| results.get_timeout(DEADLINE).unwrap()).collect();
    squares.sort_unstable();
    assert_eq!(squares, (0..20).map(|i| i * i).collect::<Vec<_>>());
    for _ in &workers {
        jobs.put(None).unwrap();
    }
    let total: u32 = workers.iter_mut().map(|w| w.join_timeout(DEADLINE).unwrap()).sum();
    assert_eq!(total, 20);
    jobs.join_timeout(DEADLINE).unwrap();
    assert!(jobs.task_done().is_err(), "one task_done too many is an error");
}

fn hammer(q: Queue<Vec<u8>>) {
    let item = vec![7u8; 3000];
    loop {
        q.put(item.clone()).unwrap();
        let got = q.get().unwrap();
        assert_eq!(got.len(), 3000);
    }
}

/// A process killed at a random point while using the queue leaves it
/// consistent for the others (CPython's queue can deadlock or corrupt).
fn queue_survives_a_user_killed_mid_operation(m: StartMethod) {
    let q: Queue<Vec<u8>> = Queue::new().unwrap();
    for round in 0..5 {
        let mut p = start(m, hammer, q.clone());
        // Let it run until it has done some work (the queue is not empty
        // at some instant), then kill it wherever it is.
        let deadline = std::time::Instant::now() + DEADLINE;
        while q.is_empty() && std::time::Instant::now() < deadline {
            std::hint::spin_loop();
        }
        p.kill().unwrap();
        assert!(p.join_timeout(DEADLINE).is_err());
        // Whatever it left, every item is whole, and the queue works.
        while let Ok(item) = q.get_timeout(Duration::from_millis(50)) {
            assert_eq!(item, vec![7u8; 3000], "round {round}");
        }
        q.put(vec![round as u8]).unwrap();
        assert_eq!(q.get_timeout(DEADLINE).unwrap(), vec![round as u8]);
        assert_eq!(q.len(), 0);
    }
}

fn wait_for_go_then_put((go, q): (Connection, Queue<String>)) {
    let _: () = go.recv_timeout(DEADLINE).unwrap();
    q.put("done".into()).unwrap();
}

/// wait() over a connection, a queue and a process sentinel together.
fn wait_sees_connections_queues_and_processes(m: StartMethod) {
    let (go, go_child) = mp::pipe(true).unwrap();
    let (a, b) = mp::pipe(true).unwrap();
    let q: Queue<String> = Queue::new().unwrap();
    let mut p = start(m, wait_for_go_then_put, (go_child, q.clone()));
    let ready = mp::wait(
        &[(&b).into(), (&p).into(), (&q).into()],
        Some(Duration::from_millis(50)),
    )
    .unwrap();
    assert!(ready.is_empty(), "{ready:?}");
    a.send(1u8).unwrap();
    let ready = mp::wait(&[(&b).into(), (&p).into(), (&q).into()], Some(DEADLINE)).unwrap();
    assert_eq!(ready, [0]);
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    go.send(()).unwrap();
    // The item comes first, then the end of the process.
    let ready = mp::wait(&[(&b).into(), (&q).into()], Some(DEADLINE)).unwrap();
    assert_eq!(ready, [1]);
    let ready = mp::wait(&[(&p).into()], Some(DEADLINE)).unwrap();
    assert_eq!(ready, [0]);
    p.join_timeout(DEADLINE).unwrap();
    assert_eq!(q.get_timeout(DEADLINE).unwrap(), "done");
}

fn put_one_connection((q, reply): (Queue<Connection>, String)) {
    let (mine, theirs) = mp::pipe(true).unwrap();
    q.put(theirs).unwrap();
    mine.send(reply).unwrap();
}

fn queues_carry_connections_between_processes(m: StartMethod) {
    let q: Queue<Connection> = Queue::new().unwrap();
    let mut p = start(m, put_one_connection, (q.clone(), "over the queue".to_string()));
    let conn = q.get_timeout(DEADLINE).unwrap();
    assert_eq!(conn.recv_timeout::<String>(DEADLINE).unwrap(), "over the queue");
    p.join_timeout(DEADLINE).unwrap();
    assert!(conn.recv_timeout::<String>(DEADLINE).unwrap_err().is_disconnected());
}

fn fill_bounded(q: Queue<u32>) {
    for i in 0..10 {
        q.put(i).unwrap();
    }
}

fn bounded_queue_blocks_the_producer(m: StartMethod) {
    let q: Queue<u32> = Queue::bounded(2).unwrap();
    let mut p = start(m, fill_bounded, q.clone());
    let mut got = Vec::new();
    while got.len() < 10 {
        got.push(q.get_timeout(DEADLINE).unwrap());
        assert!(q.len() <= 2);
    }
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    p.join_timeout(DEADLINE).unwrap();
}

per_method!(
    items_from_parent_and_child_in_order,
    items_survive_their_producer_aborting,
    joinable_queue_with_workers,
    queue_survives_a_user_killed_mid_operation,
    wait_sees_connections_queues_and_processes,
    queues_carry_connections_between_processes,
    bounded_queue_blocks_the_producer,
);

#[test]
fn unserializable_items_fail_at_put_and_come_back() {
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Bad(u8);
    impl Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }
    let q: Queue<Bad> = Queue::new().unwrap();
    let e = q.put(Bad(3)).unwrap_err();
    assert_eq!(e.kind(), mp::ErrorKind::Serialize);
    assert_eq!(e.into_inner(), Bad(3));
    assert!(q.is_empty());
}

#[test]
fn wait_times_out_empty_and_reports_everything_ready() {
    let (a, b) = mp::pipe(true).unwrap();
    let q1: Queue<u8> = Queue::new().unwrap();
    let q2: Queue<u8> = Queue::new().unwrap();
    let t = std::time::Instant::now();
    assert!(
        mp::wait(&[(&q1).into(), (&q2).into()], Some(Duration::from_millis(30)))
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert!(
        mp::wait(&[(&q1).into()], Some(Duration::from_millis(10)))
            .unwrap()
            .is_empty()
    );
    q2.put(1).unwrap();
    drop(a);
    // The pipe's end of file shows only once no other copy of `a` is
    // open: a child another test is starting meanwhile may hold one until
    // it execs. Each is waited for alone first; readiness then stays.
    assert_eq!(mp::wait(&[(&b).into()], Some(DEADLINE)).unwrap(), [0]);
    assert_eq!(mp::wait(&[(&q2).into()], Some(DEADLINE)).unwrap(), [0]);
    assert_eq!(
        mp::wait(&[(&q1).into(), (&b).into(), (&q2).into()], None).unwrap(),
        [1, 2]
    );
}
