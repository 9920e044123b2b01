//! `Process::join_async` under tokio's current-thread and multi-thread
//! runtimes, per start method: results, failures, and a dropped join that
//! loses nothing.
#![cfg(feature = "async")]

use std::time::Duration;

use multiproc::{self as mp, ErrorKind, StartMethod};

use crate::{
    async_support::{current_thread, multi_thread},
    support::{DEADLINE, Rendezvous, ready_then_wait},
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

fn square(x: u64) -> u64 {
    x * x
}

fn fail(why: String) -> u64 {
    panic!("{why}")
}

fn gated(addr: String) -> u64 {
    ready_then_wait(&addr);
    7
}

async fn join_both(mut ok: mp::Process<u64>, mut bad: mp::Process<u64>) {
    assert_eq!(ok.join_async().await.expect("join"), 81);
    // Again: the same outcome, as for `join`.
    assert_eq!(ok.join_async().await.expect("join again"), 81);
    let e = bad.join_async().await.expect_err("a panic");
    assert_eq!(e.kind(), ErrorKind::ChildPanicked);
    assert_eq!(e.panic().expect("the remote panic").message(), "no luck");
}

fn join_async_returns_results_and_failures(m: StartMethod) {
    // Every child first: the reactor's thread makes a fork refused.
    let a = (start(m, square, 9), start(m, fail, "no luck".to_string()));
    let b = (start(m, square, 9), start(m, fail, "no luck".to_string()));
    current_thread(join_both(a.0, a.1));
    multi_thread(join_both(b.0, b.1));
}

async fn drop_then_join(mut p: mp::Process<u64>, gate: crate::support::Gate) {
    // The child waits for the gate: the join cannot end before it opens.
    let early = tokio::time::timeout(Duration::from_millis(20), p.join_async()).await;
    assert!(early.is_err(), "the join ended while the child was held");
    assert!(p.is_alive());
    gate.open();
    let r = tokio::time::timeout(DEADLINE, p.join_async())
        .await
        .expect("joined in time");
    assert_eq!(r.expect("the result"), 7);
}

fn a_dropped_join_loses_nothing(m: StartMethod) {
    let (rv_a, rv_b) = (Rendezvous::new(), Rendezvous::new());
    let a = start(m, gated, rv_a.addr());
    let b = start(m, gated, rv_b.addr());
    let (gate_a, gate_b) = (rv_a.wait_ready(), rv_b.wait_ready());
    current_thread(drop_then_join(a, gate_a));
    multi_thread(drop_then_join(b, gate_b));
}

/// Many joins pending at once in one task set: each ends with its child.
fn many_joins_wait_together(m: StartMethod) {
    let children: Vec<_> = (0..8u64).map(|i| start(m, square, i)).collect();
    let results = multi_thread(async move {
        let tasks: Vec<_> = children
            .into_iter()
            .map(|mut p| tokio::spawn(async move { p.join_async().await.expect("join") }))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    assert_eq!(results, (0..8u64).map(square).collect::<Vec<_>>());
}

per_method!(
    join_async_returns_results_and_failures,
    a_dropped_join_loses_nothing,
    many_joins_wait_together,
);
