//! `Connection::{send,recv}_async` under tokio's two runtimes, per start
//! method: round trips with a child, a receive dropped in the middle of a
//! large message (and a send dropped in the middle of one) that lose
//! nothing, and async receives sharing a connection with a blocking one.
#![cfg(feature = "async")]

use std::{collections::BTreeSet, pin::pin, sync::Arc, time::Duration};

use multiproc::{self as mp, Connection, StartMethod};

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

/// Replies `n + 1` to every `n` until the other end goes away.
fn increment(conn: Connection) -> u32 {
    let mut served = 0;
    loop {
        match conn.recv_timeout::<u32>(DEADLINE) {
            Ok(n) => {
                conn.send(n + 1).expect("reply");
                served += 1;
            }
            Err(e) if e.is_disconnected() => return served,
            Err(e) => panic!("increment child: {e}"),
        }
    }
}

const ROUNDS: u32 = 200;

async fn round_trips(conn: Connection, mut child: mp::Process<u32>) {
    for n in 0..ROUNDS {
        conn.send_async(n).await.expect("send");
        assert_eq!(conn.recv_async::<u32>().await.expect("recv"), n + 1);
    }
    drop(conn);
    assert_eq!(child.join_async().await.expect("join"), ROUNDS);
}

fn round_trips_with_a_child(m: StartMethod) {
    let (a, a_child) = mp::pipe(true).expect("pipe");
    let (b, b_child) = mp::pipe(true).expect("pipe");
    let pa = start(m, increment, a_child);
    let pb = start(m, increment, b_child);
    current_thread(round_trips(a, pa));
    multi_thread(round_trips(b, pb));
}

/// Large enough that no socket buffer holds it: it arrives in pieces.
const BIG: usize = 8 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Starts sending a large message with `send_bytes_async`, drops the send
/// after its first poll (part of the message is out), tells the parent,
/// waits for its gate, then sends a small message, which must first
/// finish the large one.
fn send_half_then_more((conn, addr): (Connection, String)) {
    let big = pattern(BIG, 7);
    {
        let mut send = pin!(conn.send_bytes_async(&big));
        assert!(
            poll_once(send.as_mut()).is_pending(),
            "an 8 MiB message cannot fit in a socket buffer"
        );
    }
    ready_then_wait(&addr);
    conn.send_bytes(b"after").expect("send after");
}

/// The parent's side: receives part of the large message, drops the
/// receive, checks that nothing whole is there while the child is held,
/// then receives the large message and the next one whole.
async fn recv_half_then_all(conn: Connection, gate: Gate, blocking_rest: bool) {
    {
        let mut recv = pin!(conn.recv_bytes_async());
        assert!(
            poll_once(recv.as_mut()).is_pending(),
            "the child holds back the end of the message"
        );
    }
    // Dropped again, after waiting a while, still mid-message.
    let early = tokio::time::timeout(Duration::from_millis(20), conn.recv_bytes_async()).await;
    assert!(early.is_err(), "a message arrived while the child was held");
    gate.open();
    let (big, after) = if blocking_rest {
        (conn.recv_bytes().expect("big"), conn.recv_bytes().expect("after"))
    } else {
        (
            conn.recv_bytes_async().await.expect("big"),
            conn.recv_bytes_async().await.expect("after"),
        )
    };
    assert!(big == pattern(BIG, 7), "the large message came back altered");
    assert_eq!(after, b"after");
}

fn dropped_send_and_recv_mid_message_lose_nothing(m: StartMethod) {
    let (rv_a, rv_b) = (Rendezvous::new(), Rendezvous::new());
    let (a, a_child) = mp::pipe(true).expect("pipe");
    let (b, b_child) = mp::pipe(true).expect("pipe");
    let mut pa = start(m, send_half_then_more, (a_child, rv_a.addr()));
    let mut pb = start(m, send_half_then_more, (b_child, rv_b.addr()));
    let (gate_a, gate_b) = (rv_a.wait_ready(), rv_b.wait_ready());
    current_thread(recv_half_then_all(a, gate_a, false));
    multi_thread(recv_half_then_all(b, gate_b, true));
    pa.join_timeout(DEADLINE).expect("child a");
    pb.join_timeout(DEADLINE).expect("child b");
}

/// Waits until the parent has left a large send half done, then receives
/// one large message and then one small, returning their lengths and
/// whether the large one is intact. (Reading before that could drain the
/// socket while the parent's one non-blocking write is still copying, and
/// the whole message would go out at once.)
fn receive_two((conn, addr): (Connection, String)) -> (usize, bool, Vec<u8>) {
    ready_then_wait(&addr);
    let big = conn.recv_bytes_timeout(DEADLINE).expect("big");
    let small = conn.recv_bytes_timeout(DEADLINE).expect("small");
    (big.len(), big == pattern(BIG, 3), small)
}

async fn send_half_then_small(conn: Connection, gate: Gate) {
    let big = pattern(BIG, 3);
    {
        let mut send = pin!(conn.send_async(big));
        assert!(poll_once(send.as_mut()).is_pending());
    }
    gate.open();
    // The next send finishes the dropped one's message first.
    conn.send_bytes_async(b"small").await.expect("send small");
}

fn a_dropped_send_is_finished_by_the_next(m: StartMethod) {
    let (rv_a, rv_b) = (Rendezvous::new(), Rendezvous::new());
    let (a, a_child) = mp::pipe(true).expect("pipe");
    let (b, b_child) = mp::pipe(true).expect("pipe");
    let mut pa = start(m, receive_two, (a_child, rv_a.addr()));
    let mut pb = start(m, receive_two, (b_child, rv_b.addr()));
    let (gate_a, gate_b) = (rv_a.wait_ready(), rv_b.wait_ready());
    current_thread(send_half_then_small(a, gate_a));
    multi_thread(send_half_then_small(b, gate_b));
    for p in [&mut pa, &mut pb] {
        let (len, intact, small) = p.join_timeout(DEADLINE).expect("child");
        assert_eq!((len, intact, small.as_slice()), (BIG, true, &b"small"[..]));
    }
}

/// A dropped send's rest also goes out when the connection is dropped.
fn a_dropped_send_is_finished_when_the_connection_drops(m: StartMethod) {
    fn receive_one((conn, addr): (Connection, String)) -> bool {
        ready_then_wait(&addr);
        conn.recv_bytes_timeout(DEADLINE).expect("big") == pattern(BIG, 5)
    }
    let rv = Rendezvous::new();
    let (a, a_child) = mp::pipe(true).expect("pipe");
    let mut p = start(m, receive_one, (a_child, rv.addr()));
    let gate = rv.wait_ready();
    {
        let big = pattern(BIG, 5);
        let mut send = pin!(a.send_bytes_async(&big));
        assert!(poll_once(send.as_mut()).is_pending());
    }
    gate.open();
    drop(a);
    assert!(p.join_timeout(DEADLINE).expect("child"), "the message arrived altered");
}

const MESSAGES: u32 = 2000;

/// Sends `MESSAGES` small messages as fast as it can, then waits for the
/// parent to say it has them all.
fn flood((conn, addr): (Connection, String)) {
    for i in 0..MESSAGES {
        conn.send(i).expect("send");
    }
    ready_then_wait(&addr);
}

/// Async receives in several tasks and a blocking receive in a thread
/// share one connection: every message reaches exactly one of them and
/// none waits forever (a blocking receive that buffers several messages
/// wakes the async ones).
fn async_and_blocking_receivers_share_a_connection(m: StartMethod) {
    let rv = Rendezvous::new();
    let (conn, child_end) = mp::pipe(true).expect("pipe");
    let mut p = start(m, flood, (child_end, rv.addr()));
    let conn = Arc::new(conn);
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    let blocking = {
        let (conn, tx) = (conn.clone(), tx.clone());
        std::thread::spawn(move || {
            loop {
                match conn.recv_timeout::<u32>(DEADLINE) {
                    Ok(i) => tx.send(i).expect("report"),
                    Err(e) if e.is_disconnected() => return,
                    Err(e) => panic!("blocking receiver: {e}"),
                }
            }
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a multi-thread runtime");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (conn, tx) = (conn.clone(), tx.clone());
            rt.spawn(async move {
                loop {
                    match conn.recv_async::<u32>().await {
                        Ok(i) => tx.send(i).expect("report"),
                        Err(e) if e.is_disconnected() => return,
                        Err(e) => panic!("async receiver: {e}"),
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let mut seen = BTreeSet::new();
    while seen.len() < MESSAGES as usize {
        let i = rx.recv_timeout(DEADLINE).expect("every message within the deadline");
        assert!(seen.insert(i), "message {i} received twice");
    }
    // The child ends: every receiver sees the end of the stream.
    rv.wait_ready().open();
    p.join_timeout(DEADLINE).expect("child");
    blocking.join().expect("blocking receiver");
    rt.block_on(async {
        for t in tasks {
            tokio::time::timeout(DEADLINE, t)
                .await
                .expect("an async receiver saw the end in time")
                .expect("async receiver");
        }
    });
    assert!(rx.try_recv().is_err(), "a message beyond the ones sent");
}

/// Receives a connection, then answers `2 n` on it to the `n` it gets.
fn answer_on_a_passed_connection(conn: Connection) -> u32 {
    let inner: Connection = conn.recv_timeout(DEADLINE).expect("a connection");
    let n: u32 = inner.recv_timeout(DEADLINE).expect("a number");
    inner.send(2 * n).expect("answer");
    n
}

async fn pass_a_connection(conn: Connection, mut child: mp::Process<u32>) {
    let (mine, theirs) = mp::pipe(true).expect("pipe");
    conn.send_async(theirs).await.expect("send a connection");
    mine.send_async(21u32).await.expect("send");
    assert_eq!(mine.recv_async::<u32>().await.expect("the answer"), 42);
    assert_eq!(child.join_async().await.expect("join"), 21);
}

/// An endpoint inside a value sent with `send_async` travels as with
/// `send`: its descriptor goes with the message.
fn send_async_passes_a_connection(m: StartMethod) {
    let (a, a_child) = mp::pipe(true).expect("pipe");
    let (b, b_child) = mp::pipe(true).expect("pipe");
    let pa = start(m, answer_on_a_passed_connection, a_child);
    let pb = start(m, answer_on_a_passed_connection, b_child);
    current_thread(pass_a_connection(a, pa));
    multi_thread(pass_a_connection(b, pb));
}

per_method!(
    send_async_passes_a_connection,
    round_trips_with_a_child,
    dropped_send_and_recv_mid_message_lose_nothing,
    a_dropped_send_is_finished_by_the_next,
    a_dropped_send_is_finished_when_the_connection_drops,
    async_and_blocking_receivers_share_a_connection,
);

/// The threads of this process, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

const PENDING: usize = 300;

/// In a child of its own (so that no other test's threads are counted):
/// many receives pending at once add no thread but the reactor's, then
/// each ends with its message.
fn pending_receives_add_no_thread(_: ()) -> usize {
    let pairs: Vec<_> = (0..PENDING).map(|_| mp::pipe(true).expect("pipe")).collect();
    let before = threads();
    let mut futures: Vec<_> = pairs.iter().map(|(a, _)| Box::pin(a.recv_async::<usize>())).collect();
    for f in &mut futures {
        assert!(poll_once(f.as_mut()).is_pending());
    }
    let during = threads();
    for (i, (_, b)) in pairs.iter().enumerate() {
        b.send(i).expect("send");
    }
    let got = current_thread(async {
        let mut got = Vec::new();
        for f in futures {
            got.push(f.await.expect("recv"));
        }
        got
    });
    assert_eq!(got, (0..PENDING).collect::<Vec<_>>());
    during - before
}

fn many_pending_receives_share_one_reactor_thread(m: StartMethod) {
    let mut p = start(m, pending_receives_add_no_thread, ());
    // The reactor's thread, started by the first registration.
    assert!(
        p.join_timeout(DEADLINE).expect("child") <= 1,
        "pending receives started threads of their own"
    );
}

per_method!(many_pending_receives_share_one_reactor_thread);
