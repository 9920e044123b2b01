//! Awaited puts on a full bounded queue (issue 16, item 2), beside the
//! blocking ones in the same interleaved group.
//!
//! | row | what |
//! |---|---|
//! | `queue/put_full_await/<m>` (`multiproc_blocking`) | `Queue::bounded(1)`: N blocking `put(i)` while a `<m>` child `get`s them as they come; time per put |
//! | `queue/put_full_await/<m>` (`multiproc`) | the same with `put_async(i).await`, the batch inside one `block_on` of a tokio current-thread runtime |
//!
//! With a bound of 1 nearly every put finds the queue full and waits for
//! the child's `get` to make room, so the row is the cost of that wake-up:
//! a futex for the blocking put; for the awaited one, whatever tells the
//! reactor that room was made (the queue's room eventfd, or, before it,
//! a timer that looked again after 0.5 ms to 10 ms).
//!
//! The children start before the first await (the reactor's thread makes
//! `fork` refuse to start children): [`start`] runs before any awaited
//! row, [`run_all`] after them.

use std::time::{Duration, Instant};

use multiproc::{Process, ProcessBuilder, Queue};

use crate::{
    cli::Options,
    harness::{Bench, Impl, Unit},
    rows::{METHODS, Outcome, run_benches},
};

/// The end-of-work item.
const QUIT: u64 = u64::MAX;

/// Puts per sample.
fn puts(opts: &Options) -> u64 {
    if opts.quick { 100 } else { 2_000 }
}

fn name(m: &str) -> String {
    format!("queue/put_full_await/{m}")
}

/// Child: takes every item until [`QUIT`]; returns how many.
fn drain(q: Queue<u64>) -> u64 {
    let mut n = 0;
    loop {
        match q.get() {
            Ok(QUIT) | Err(_) => return n,
            Ok(_) => n += 1,
        }
    }
}

/// A bounded queue and the child that drains it; told to stop and joined
/// on drop.
pub(crate) struct Drained {
    q: Queue<u64>,
    child: Process<u64>,
}

impl Drained {
    fn start(method: multiproc::StartMethod) -> Result<Drained, String> {
        let q = Queue::bounded(1).map_err(|e| format!("Queue::bounded failed: {e}"))?;
        let mut child = ProcessBuilder::new().start_method(method).target_with(drain, q.clone());
        child.start().map_err(|e| format!("start failed: {e}"))?;
        Ok(Drained { q, child })
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        let _ = self.q.put_timeout(QUIT, Duration::from_secs(10));
        if self.child.join_timeout(Duration::from_secs(10)).is_err() {
            let _ = self.child.kill();
            let _ = self.child.join_timeout(Duration::from_secs(10));
        }
    }
}

/// The children of the rows `opts` selects: (method name, blocking
/// peer, awaited peer).
pub(crate) type Peers = Vec<(&'static str, Drained, Drained)>;

/// Starts the children (before any await).
pub(crate) fn start(opts: &Options, out: &mut Outcome) -> Peers {
    let mut peers = Vec::new();
    for (method, m) in METHODS {
        if !opts.wants(&name(m)) {
            continue;
        }
        match (Drained::start(method), Drained::start(method)) {
            (Ok(a), Ok(b)) => peers.push((m, a, b)),
            (Err(e), _) | (_, Err(e)) => out.failures.push(format!("{}: {e}", name(m))),
        }
    }
    peers
}

fn blocking_puts(q: &Queue<u64>, n: u64) -> Result<Duration, String> {
    let t = Instant::now();
    for i in 0..n {
        q.put(i).map_err(|e| format!("put failed: {e}"))?;
    }
    Ok(t.elapsed())
}

fn awaited_puts(rt: &tokio::runtime::Runtime, q: &Queue<u64>, n: u64) -> Result<Duration, String> {
    let t = Instant::now();
    rt.block_on(async {
        for i in 0..n {
            q.put_async(i).await.map_err(|e| format!("put_async failed: {e}"))?;
        }
        Ok::<(), String>(())
    })?;
    Ok(t.elapsed())
}

/// Runs the rows of the children [`start`] started.
pub(crate) fn run_all(opts: &Options, out: &mut Outcome, peers: Peers) {
    if peers.is_empty() {
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            out.failures
                .push(format!("queue/put_full_await: no tokio runtime: {e}"));
            return;
        }
    };
    let n = puts(opts);
    let rt = &rt;
    let mut benches = Vec::new();
    for (m, blocking, awaited) in &peers {
        benches.push(
            Bench::new(
                name(m),
                Impl::OwnBlocking,
                format!("Queue::bounded(1): {n} blocking put(i) while a {m} child gets them; time per put"),
                move || blocking_puts(&blocking.q, n),
            )
            .per(n, Unit::Time),
        );
        benches.push(
            Bench::new(
                name(m),
                Impl::Multiproc,
                "the same awaited: put_async(i).await on a tokio current-thread runtime; time per put".to_owned(),
                move || awaited_puts(rt, &awaited.q, n),
            )
            .per(n, Unit::Time),
        );
    }
    run_benches(out, opts.counts(15), benches);
    drop(peers);
}
