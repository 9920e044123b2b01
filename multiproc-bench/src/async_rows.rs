//! Awaiting pool results (issue 16, item 2), per start method:
//!
//! | Row | What |
//! | --- | --- |
//! | `pool/apply_async_10k_await/<m>` | `Pool(2)`: 10 000 `apply_async(x * x)` submitted, then each result awaited in turn (a minimal thread-parking executor) |
//! | `pool/apply_async_10k_get/<m>` | the same with the blocking `get` loop: the baseline (target: await ≤ 1.2 × get) |
//!
//! The two rows of a start method are sampled interleaved.

use std::{
    future::Future,
    sync::Arc,
    task::{Context, Poll, Wake, Waker},
    thread::Thread,
    time::{Duration, Instant},
};

use multiproc::Pool;

use crate::{
    cli::Options,
    harness::{Bench, Impl, Unit},
    rows::{METHODS, Outcome, run_benches},
};

fn square(x: u64) -> u64 {
    x * x
}

/// Wakes the thread that blocks on a future.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `f` to its end on this thread (no runtime).
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Submits `n` tasks, then takes their results by awaiting (`awaited`) or
/// by `get`.
fn apply_async_n(pool: &Pool, n: u64, awaited: bool) -> Result<Duration, String> {
    let t = Instant::now();
    let pending = (0..n)
        .map(|x| pool.apply_async(square, x))
        .collect::<multiproc::Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    let mut sum = 0u64;
    if awaited {
        block_on(async {
            for r in pending {
                sum = sum.wrapping_add(r.await?);
            }
            Ok::<(), multiproc::Error>(())
        })
        .map_err(|e| e.to_string())?;
    } else {
        for r in pending {
            sum = sum.wrapping_add(r.get().map_err(|e| e.to_string())?);
        }
    }
    let took = t.elapsed();
    let want = (0..n).map(square).fold(0u64, u64::wrapping_add);
    if sum != want {
        return Err(format!("wrong sum of squares: {sum}, not {want}"));
    }
    Ok(took)
}

pub(crate) fn run_all(opts: &Options, out: &mut Outcome) {
    let n: u64 = if opts.quick { 1_000 } else { 10_000 };
    let quick = if opts.quick { " (--quick: 1000, not 10k)" } else { "" };
    for (m, mname) in METHODS {
        let awaited = format!("pool/apply_async_10k_await/{mname}");
        let got = format!("pool/apply_async_10k_get/{mname}");
        if !opts.wants(&awaited) && !opts.wants(&got) {
            continue;
        }
        let pool = match Pool::builder().processes(2).start_method(m).build() {
            Ok(p) => p,
            Err(e) => {
                out.failures.push(format!("async rows under {mname}: {e}"));
                continue;
            }
        };
        let p = &pool;
        let benches = vec![
            Bench::new(
                awaited,
                Impl::Multiproc,
                format!("Pool(2) under {mname}: {n} apply_async(x*x){quick}, each result awaited"),
                move || apply_async_n(p, n, true),
            )
            .per(n, Unit::Msgs),
            Bench::new(
                got,
                Impl::Multiproc,
                format!("Pool(2) under {mname}: {n} apply_async(x*x){quick}, each result by get (baseline)"),
                move || apply_async_n(p, n, false),
            )
            .per(n, Unit::Msgs),
        ];
        run_benches(out, opts.counts(20), benches);
        drop(pool);
    }
}
