//! `Pool::imap` and its kinds: lazy, ordered or not, chunked; what an
//! `imap` says once the pool is closed and joined.

use std::{
    sync::Arc,
    sync::atomic::{AtomicUsize, Ordering},
};

use multiproc::{ErrorKind, StartMethod};

use crate::support::DEADLINE;

use super::{executor, pool, square};

fn imap_is_lazy(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let pulled_count = Arc::new(AtomicUsize::new(0));
    let counter = pulled_count.clone();
    let input = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let mut it = p.imap(square, input).unwrap();
    for i in 0..100u64 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
        let pulled = pulled_count.load(Ordering::SeqCst);
        assert!(
            pulled <= i as usize + 1 + 4 * 2,
            "input read too far ahead: {pulled} at {i}"
        );
    }
    drop(it);
    let mut got: Vec<u64> = p
        .imap_unordered(square, 0..500u64)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..500u64).map(square).collect::<Vec<_>>());
    let chunked: Vec<u64> = p
        .imap_chunked(square, 0..50u64, 8)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(chunked, (0..50u64).map(square).collect::<Vec<_>>());
    let mut unordered: Vec<(usize, u64)> = Vec::new();
    let mut it = p.imap_unordered_chunked(square, 0..50u64, 7).unwrap();
    while let Some((i, r)) = it.next_indexed() {
        unordered.push((i, r.unwrap()));
    }
    unordered.sort_unstable();
    assert_eq!(
        unordered,
        (0..50u64).map(|x| (x as usize, square(x))).collect::<Vec<_>>()
    );
    assert_eq!(
        p.imap_unordered_chunked(square, 0..3u64, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(p.imap(square, Vec::<u64>::new()).unwrap().count(), 0);
}

/// Python: `it = pool.imap(f, xs); pool.close(); pool.join()` then
/// `list(it)` gives every result, as its task thread had read the whole
/// input. Here `imap` reads its input as results are taken (a documented
/// difference): after `join` the unread part cannot run, and the
/// iteration says so once, clearly, and ends; what went out before
/// `close` still comes.
fn imap_after_close_and_join_says_why_it_stops(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let mut it = p.imap(square, 0..50u64).unwrap();
    assert_eq!(it.next_timeout(DEADLINE).map(|r| r.unwrap()), Some(0));
    p.close();
    p.join().unwrap();
    let got: Vec<_> = std::iter::from_fn(|| it.next_timeout(DEADLINE)).collect();
    let (ok, err): (Vec<_>, Vec<_>) = got.into_iter().partition(Result::is_ok);
    let ok: Vec<u64> = ok.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        ok,
        (1..=ok.len() as u64).map(square).collect::<Vec<_>>(),
        "the queued ones, in order"
    );
    assert!(ok.len() < 49, "the input was read lazily");
    assert_eq!(err.len(), 1);
    let e = err.into_iter().next().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.to_string().contains("joined before this imap"), "{e}");
}

/// A huge imap chunk size does not overflow the read-ahead bound.
fn imap_huge_chunksize(m: StartMethod) {
    let ex = executor(m, 2);
    let got: Vec<u64> = ex
        .pool()
        .imap_chunked(square, 0..3u64, usize::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, [0, 1, 4]);
}

per_method!(
    imap_is_lazy,
    imap_after_close_and_join_says_why_it_stops,
    imap_huge_chunksize,
);
