//! Pool and executor result handles as `std::future::Future`s, awaited
//! under tokio's current-thread and multi-thread runtimes.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use multiproc::{Callbacks, ErrorKind, Executor, Pool, StartMethod};

fn runtimes() -> [tokio::runtime::Runtime; 2] {
    [
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap(),
    ]
}

fn square(x: u64) -> u64 {
    x * x
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn panics(_: u64) -> u64 {
    panic!("task failed on purpose");
}

fn every_handle_can_be_awaited(m: StartMethod) {
    let pool = Pool::builder().processes(2).start_method(m).build().unwrap();
    let ex = Executor::from_builder(Pool::builder().processes(2).start_method(m)).unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            assert_eq!(pool.apply_async(square, 7).unwrap().await.unwrap(), 49);
            let all = pool.map_async(square, 0..100u64, None).unwrap().await.unwrap();
            assert_eq!(all, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
            assert_eq!(ex.submit(square, 9).unwrap().await.unwrap(), 81);
            let e = pool.apply_async(panics, 0).unwrap().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ChildPanicked);
            let e = ex.submit(panics, 0).unwrap().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ChildPanicked);
        });
    }
    drop(ex);
    pool.close();
    pool.join().unwrap();
}

fn a_dropped_await_loses_nothing(m: StartMethod) {
    let pool = Pool::builder().processes(1).start_method(m).build().unwrap();
    let ex = Executor::from_builder(Pool::builder().processes(1).start_method(m)).unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let mut r = pool.apply_async(nap, 300).unwrap();
            let early = tokio::time::timeout(Duration::from_millis(1), &mut r).await;
            assert!(early.is_err(), "a 300 ms task is not done within 1 ms");
            // The handle is intact: awaited again, or waited for.
            assert_eq!((&mut r).await.unwrap(), 300);
            let mut m = pool.map_async(nap, [200, 1], Some(1)).unwrap();
            assert!(tokio::time::timeout(Duration::from_millis(1), &mut m).await.is_err());
            assert_eq!(m.get().unwrap(), [200, 1]);
            let mut h = ex.submit(nap, 200).unwrap();
            assert!(tokio::time::timeout(Duration::from_millis(1), &mut h).await.is_err());
            assert_eq!(h.await.unwrap(), 200);
        });
    }
    drop(ex);
    pool.close();
    pool.join().unwrap();
}

fn many_tasks_await_one_pool(m: StartMethod) {
    let pool = Arc::new(Pool::builder().processes(2).start_method(m).build().unwrap());
    for rt in runtimes() {
        let sum = rt.block_on(async {
            let tasks: Vec<_> = (0..20u64)
                .map(|i| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let mut s = 0;
                        for j in 0..5 {
                            s += pool.apply_async(square, i * 5 + j).unwrap().await.unwrap();
                        }
                        s
                    })
                })
                .collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, (0..100u64).map(|x| x * x).sum::<u64>());
    }
    pool.close();
    pool.join().unwrap();
}

fn callbacks_run_for_awaited_results(m: StartMethod) {
    let pool = Pool::builder().processes(2).start_method(m).build().unwrap();
    for rt in runtimes() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let cb = Callbacks::new().callback(move |v: &u64| s.lock().unwrap().push(*v));
        let r = pool.apply_async_with(square, 5, cb).unwrap();
        assert_eq!(rt.block_on(r).unwrap(), 25);
        assert_eq!(*seen.lock().unwrap(), [25]);
    }
    pool.close();
    pool.join().unwrap();
}

fn awaiting_a_terminated_task_gives_its_cancellation(m: StartMethod) {
    for rt in runtimes() {
        let pool = Pool::builder().processes(1).start_method(m).build().unwrap();
        let running = pool.apply_async(nap, 60_000).unwrap();
        let queued = pool.apply_async(square, 1).unwrap();
        let awaited = rt.spawn(queued);
        pool.terminate().unwrap();
        assert_eq!(rt.block_on(running).unwrap_err().kind(), ErrorKind::Cancelled);
        let queued = rt.block_on(awaited).unwrap();
        assert_eq!(queued.unwrap_err().kind(), ErrorKind::Cancelled);
        assert_eq!(pool.apply_async(square, 1).unwrap_err().kind(), ErrorKind::InvalidState);
    }
}

per_method!(
    every_handle_can_be_awaited,
    a_dropped_await_loses_nothing,
    many_tasks_await_one_pool,
    callbacks_run_for_awaited_results,
    awaiting_a_terminated_task_gives_its_cancellation,
);

/// The next item of a stream (no stream combinator crate needed).
#[cfg(feature = "async")]
async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
}

#[cfg(feature = "async")]
fn imap_is_a_stream(m: StartMethod) {
    let pool = Pool::builder().processes(2).start_method(m).build().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let mut it = pool.imap(square, 0..50u64).unwrap();
            let mut got = Vec::new();
            while let Some(r) = next(&mut it).await {
                got.push(r.unwrap());
            }
            assert_eq!(got, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
            // Unordered, with a timeout per task: one result per input.
            let mut it = pool
                .tasks(nap)
                .task_timeout(Duration::from_secs(30))
                .imap_unordered([300, 1, 2])
                .unwrap();
            let mut got = Vec::new();
            while let Some(r) = next(&mut it).await {
                got.push(r.unwrap());
            }
            got.sort_unstable();
            assert_eq!(got, [1, 2, 300]);
            // A failed task is its own item; the stream goes on.
            let mut it = pool.imap(panics, [0u64]).unwrap();
            assert_eq!(
                next(&mut it).await.unwrap().unwrap_err().kind(),
                ErrorKind::ChildPanicked
            );
            assert!(next(&mut it).await.is_none());
        });
    }
    pool.close();
    pool.join().unwrap();
}

#[cfg(feature = "async")]
per_method!(imap_is_a_stream);
