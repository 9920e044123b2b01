//! The executor fully async: its `map` (and `map_buffered`) as a
//! `futures_core::Stream`, `futures::wait_async`, `as_completed` as a
//! stream, under tokio's current-thread and multi-thread runtimes, per
//! start method: answers as the blocking forms give them, deadlines as
//! timers, nothing lost by a dropped future, no thread per pending result.
#![cfg(feature = "async")]

use std::{future::poll_fn, pin::Pin, time::Duration};

use futures_core::Stream;
use multiproc::{
    ErrorKind, StartMethod,
    futures::{ReturnWhen, as_completed, wait, wait_async},
};

use super::{executor, held, held_or_not, panics, square};
use crate::{
    async_support::{current_thread, poll_once},
    support::{DEADLINE, Rendezvous, start},
};

fn runtimes() -> [tokio::runtime::Runtime; 2] {
    [
        tokio::runtime::Builder::new_current_thread().build().unwrap(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap(),
    ]
}

/// The next item of a stream (no stream combinator crate needed).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn fails(x: u64) -> u64 {
    assert!(x != 3, "task {x} failed on purpose");
    x
}

fn map_is_a_stream(m: StartMethod) {
    let ex = executor(m, 2);
    for rt in runtimes() {
        rt.block_on(async {
            let mut it = ex.map(square, 0..200u64, None).unwrap();
            let mut got = Vec::new();
            while let Some(r) = next(&mut it).await {
                got.push(r.unwrap());
            }
            assert_eq!(got, (0..200u64).map(|x| x * x).collect::<Vec<_>>());
            // A task's error is its own item; the stream goes on after it.
            let mut it = ex.map_chunked(fails, 0..6u64, None, 1).unwrap();
            let mut got = Vec::new();
            while let Some(r) = next(&mut it).await {
                got.push(r.map_err(|e| e.kind()));
            }
            let want: Vec<_> = (0..6u64)
                .map(|x| if x == 3 { Err(ErrorKind::ChildPanicked) } else { Ok(x) })
                .collect();
            assert_eq!(got, want);
            // The lazy map too.
            let mut it = ex.map_buffered(square, 0..20u64, None, 3).unwrap();
            let mut got = Vec::new();
            while let Some(r) = next(&mut it).await {
                got.push(r.unwrap());
            }
            assert_eq!(got, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
        });
    }
}

/// A stream whose deadline passes while its task is held ends with a
/// timeout, by its timer (no result arrives to wake it), then ends.
fn map_stream_deadlines_end_it(m: StartMethod) {
    let ex = executor(m, 1);
    for rt in runtimes() {
        for buffered in [false, true] {
            // The worker is up and idle: the held task goes to it at once.
            assert_eq!(ex.submit(square, 2).unwrap().result(Some(DEADLINE)).unwrap(), 4);
            let rv = Rendezvous::new();
            let timeout = Some(Duration::from_millis(200));
            let mut it: Pin<Box<dyn Stream<Item = multiproc::Result<bool>>>> = if buffered {
                Box::pin(ex.map_buffered(held, [rv.addr()], timeout, 1).unwrap())
            } else {
                Box::pin(ex.map(held, [rv.addr()], timeout).unwrap())
            };
            let gate = rv.wait_ready();
            rt.block_on(async {
                let e = next(&mut it).await.expect("an item").unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
                assert!(next(&mut it).await.is_none());
            });
            gate.open();
        }
    }
}

fn wait_async_answers_as_wait_does(m: StartMethod) {
    let ex = executor(m, 2);
    for rt in runtimes() {
        let rv = Rendezvous::new();
        let mut fs = vec![
            ex.submit(held_or_not, Some(rv.addr())).unwrap(),
            ex.submit(panics, None).unwrap(),
        ];
        let gate = rv.wait_ready();
        rt.block_on(async {
            let w = wait_async(&fs, None, ReturnWhen::FirstCompleted).await.unwrap();
            assert_eq!((w.done, w.not_done), (vec![1], vec![0]));
            let w = wait_async(&fs, None, ReturnWhen::FirstException).await.unwrap();
            assert_eq!((w.done, w.not_done), (vec![1], vec![0]));
            // The held one cannot be done: the timeout's timer ends it.
            let w = wait_async(&fs, Some(Duration::from_millis(100)), ReturnWhen::AllCompleted)
                .await
                .unwrap();
            assert_eq!((w.done, w.not_done), (vec![1], vec![0]));
            // A wait dropped before its answer takes nothing.
            let mut dropped = Box::pin(wait_async(&fs, None, ReturnWhen::AllCompleted));
            assert!(poll_once(dropped.as_mut()).is_pending());
            drop(dropped);
        });
        gate.open();
        rt.block_on(async {
            let w = wait_async(&fs, None, ReturnWhen::AllCompleted).await.unwrap();
            assert_eq!((w.done, w.not_done), (vec![0, 1], vec![]));
            assert!((&mut fs[0]).await.unwrap());
            assert_eq!(
                fs[1].exception(None).unwrap().map(|e| e.kind()),
                Some(ErrorKind::ChildPanicked)
            );
        });
    }
}

fn as_completed_is_a_stream(m: StartMethod) {
    let ex = executor(m, 3);
    for rt in runtimes() {
        let rv = Rendezvous::new();
        let mut fs = vec![
            ex.submit(held_or_not, Some(rv.addr())).unwrap(),
            ex.submit(panics, None).unwrap(),
            ex.submit(held_or_not, None).unwrap(),
        ];
        let gate = rv.wait_ready();
        // Done before the stream's deadline can pass.
        assert_eq!(
            wait(&fs[1..], Some(DEADLINE), ReturnWhen::AllCompleted).unwrap().done,
            [0, 1]
        );
        rt.block_on(async {
            let mut done = as_completed(&mut fs, Some(Duration::from_millis(300))).unwrap();
            let mut first = Vec::new();
            for _ in 0..2 {
                let (i, f) = next(&mut done).await.expect("an item").unwrap();
                first.push((i, f.await.map_err(|e| e.kind())));
            }
            first.sort_by_key(|(i, _)| *i);
            assert_eq!(first, [(1, Err(ErrorKind::ChildPanicked)), (2, Ok(false))]);
            // The held one: the timeout's timer ends the stream.
            let e = next(&mut done).await.expect("an item").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout);
            assert!(e.to_string().contains("1 (of 3)"), "{e}");
            assert!(next(&mut done).await.is_none());
        });
        // Without a timeout, a `next` dropped while nothing is done takes
        // nothing: the held one comes with the next `next`.
        let mut done = as_completed(&mut fs[..1], None).unwrap();
        {
            let mut dropped = Box::pin(next(&mut done));
            assert!(poll_once(dropped.as_mut()).is_pending());
        }
        gate.open();
        rt.block_on(async {
            let (i, f) = next(&mut done).await.expect("an item").unwrap();
            assert_eq!(i, 0);
            assert!(f.await.unwrap());
            assert!(next(&mut done).await.is_none());
        });
    }
}

const PENDING: u64 = 50;

/// In a child of its own (so that no other test's threads are counted):
/// results awaited all at once (as futures, through `wait_async`,
/// `as_completed` and a `map` stream) add the pool's one driver thread,
/// not one per result.
fn pending_results_add_no_thread_per_result(m: StartMethod) -> usize {
    let ex = executor(m, 2);
    let rv = Rendezvous::new();
    let mut held_fs: Vec<_> = (0..2).map(|_| ex.submit(held, rv.addr()).unwrap()).collect();
    let gates = [rv.wait_ready(), rv.wait_ready()];
    let threads_before = threads();
    // Both workers are held: every task below is pending.
    let mut fs: Vec<_> = (0..PENDING).map(|i| ex.submit(square, i).unwrap()).collect();
    let mut it = ex.map(square, 0..PENDING, None).unwrap();
    let mut awaits: Vec<_> = fs.iter_mut().map(Box::pin).collect();
    for f in &mut awaits {
        assert!(poll_once(f.as_mut()).is_pending());
    }
    drop(awaits);
    let mut waiting = Box::pin(wait_async(&fs, None, ReturnWhen::AllCompleted));
    assert!(poll_once(waiting.as_mut()).is_pending());
    drop(waiting);
    let mut taking = Box::pin(next(&mut it));
    assert!(poll_once(taking.as_mut()).is_pending());
    drop(taking);
    let during = threads();
    for g in &gates {
        g.open();
    }
    current_thread(async {
        let mut done = as_completed(&mut fs, None).unwrap();
        let mut sum = 0;
        while let Some(r) = next(&mut done).await {
            sum += r.unwrap().1.await.unwrap();
        }
        assert_eq!(sum, (0..PENDING).map(|x| x * x).sum::<u64>());
        let mut got = Vec::new();
        while let Some(r) = next(&mut it).await {
            got.push(r.unwrap());
        }
        assert_eq!(got, (0..PENDING).map(|x| x * x).collect::<Vec<_>>());
        for f in &mut held_fs {
            assert!(f.await.unwrap());
        }
    });
    during - threads_before
}

fn pending_results_share_one_driver_thread(m: StartMethod) {
    let mut p = start(m, pending_results_add_no_thread_per_result, m);
    assert!(
        p.join_timeout(DEADLINE).expect("child") <= 1,
        "pending results started threads of their own"
    );
}

/// The threads of this process, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

per_method!(
    map_is_a_stream,
    map_stream_deadlines_end_it,
    wait_async_answers_as_wait_does,
    as_completed_is_a_stream,
    pending_results_share_one_driver_thread,
);
