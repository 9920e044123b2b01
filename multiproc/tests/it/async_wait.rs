//! `wait_async` under tokio's two runtimes, per start method: the async
//! form of the loop "wait on the queue and the process; drain the queue if
//! it is ready; stop once the process is ready and the queue is not" gets
//! every item a child put before it ended.
#![cfg(feature = "async")]

use std::time::Duration;

use multiproc::{self as mp, Connection, Queue, StartMethod};

use crate::{
    async_support::{current_thread, multi_thread},
    support::DEADLINE,
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

const ITEMS: u32 = 50;

/// Waits for the parent's word, then puts the items and sends a message.
fn put_then_end((q, conn): (Queue<u32>, Connection)) {
    conn.recv_timeout::<()>(DEADLINE).expect("the word to start");
    for i in 0..ITEMS {
        q.put(i).expect("put");
    }
    conn.send("done".to_string()).expect("send");
}

async fn drain(q: Queue<u32>, conn: Connection, mut p: mp::Process<()>) {
    let (got, message) = {
        // A process is not `Sync`: the future holds its `Waitable` only.
        let objects = [(&q).into(), (&conn).into(), (&p).into()];
        drain_until_ended(&objects, &q, &conn).await
    };
    assert_eq!(got, (0..ITEMS).collect::<Vec<_>>());
    assert_eq!(message.as_deref(), Some("done"));
    p.join_async().await.expect("join");
}

/// The loop a user writes: the items and the message received.
async fn drain_until_ended(
    objects: &[mp::Waitable<'_>],
    q: &Queue<u32>,
    conn: &Connection,
) -> (Vec<u32>, Option<String>) {
    // Nothing is ready until the child is told to start.
    let none = mp::wait_async(objects, Some(Duration::from_millis(10)))
        .await
        .expect("wait");
    assert!(none.is_empty(), "ready before anything happened: {none:?}");
    conn.send(()).expect("start the child");
    let mut got = Vec::new();
    let mut message = None;
    loop {
        let ready = mp::wait_async(objects, Some(DEADLINE)).await.expect("wait");
        assert!(!ready.is_empty(), "wait_async timed out after {DEADLINE:?}");
        if ready.contains(&0) {
            while let Ok(item) = q.try_get() {
                got.push(item);
            }
        }
        if ready.contains(&1) && message.is_none() {
            message = Some(conn.recv::<String>().expect("message"));
        }
        if ready == [2] || (ready.contains(&2) && !ready.contains(&0) && message.is_some()) {
            break;
        }
    }
    (got, message)
}

fn wait_async_sees_every_item_and_the_end(m: StartMethod) {
    let (qa, qb) = (Queue::new().expect("queue"), Queue::new().expect("queue"));
    let (a, a_child) = mp::pipe(true).expect("pipe");
    let (b, b_child) = mp::pipe(true).expect("pipe");
    let pa = start(m, put_then_end, (qa.clone(), a_child));
    let pb = start(m, put_then_end, (qb.clone(), b_child));
    current_thread(drain(qa, a, pa));
    multi_thread(drain(qb, b, pb));
}

per_method!(wait_async_sees_every_item_and_the_end);
