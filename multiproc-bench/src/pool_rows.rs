//! Pool rows: `Pool(2).map` of trivial tasks (`x * x`), chunk size 1 and
//! Python's automatic chunk size, per start method, against CPython's
//! `Pool(2).map` in the same run. A sample is one whole `map`; rows show
//! tasks per second.

use std::time::{Duration, Instant};

use multiproc::{Pool, StartMethod};

use crate::{
    cli::Options,
    cpython::{self, ChannelKind, ChannelRow},
    harness::{Bench, Impl, Unit},
    rows::{Outcome, run_benches},
};

/// (name stem, tasks, chunk size; 0: automatic).
const ROWS: [(&str, usize, usize); 2] = [("map_10k_chunk1", 10_000, 1), ("map_100k_auto", 100_000, 0)];

fn square(x: u64) -> u64 {
    x * x
}

fn one_map(pool: &Pool, n: usize, chunk: usize) -> Result<Duration, String> {
    let t = Instant::now();
    let r = if chunk == 0 {
        pool.map(square, 0..n as u64)
    } else {
        pool.map_chunked(square, 0..n as u64, chunk)
    }
    .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if r.len() != n || r[n - 1] != square(n as u64 - 1) {
        return Err("wrong map result".into());
    }
    Ok(took)
}

/// Runs the pool rows `opts` selects.
pub(crate) fn run_all(opts: &Options, out: &mut Outcome) {
    let methods = [
        (StartMethod::Fork, "fork"),
        (StartMethod::Spawn, "spawn"),
        (StartMethod::ForkServer, "forkserver"),
    ];
    let mut specs = Vec::new();
    for (m, mname) in methods {
        let wanted: Vec<_> = ROWS
            .iter()
            .map(|&(stem, n, chunk)| (format!("pool/{stem}/{mname}"), n, chunk))
            .filter(|(name, _, _)| opts.wants(name))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let pool = match Pool::builder().processes(2).start_method(m).build() {
            Ok(p) => p,
            Err(e) => {
                out.failures.push(format!("pool rows under {mname}: {e}"));
                continue;
            }
        };
        for (name, n, chunk) in wanted {
            let desc = if chunk == 0 {
                format!("Pool(2).map of {n} x*x tasks, automatic chunk size")
            } else {
                format!("Pool(2).map of {n} x*x tasks, chunksize {chunk}")
            };
            let counts = opts.counts(20);
            let p = &pool;
            let bench = Bench::new(name.clone(), Impl::Multiproc, desc.clone(), move || {
                one_map(p, n, chunk)
            })
            .per(n as u64, Unit::Msgs);
            run_benches(out, counts, vec![bench]);
            specs.push(ChannelRow {
                name,
                kind: ChannelKind::PoolMap,
                method: mname,
                size: chunk,
                count: n,
                pin: None,
                unit: Unit::Msgs,
                ops: n as u64,
                desc: format!("CPython {mname}: {desc}"),
            });
        }
        drop(pool);
    }
    if specs.is_empty() {
        return;
    }
    let c = opts.counts(20);
    match cpython::channels(&specs, c.warmup.min(3), c.samples) {
        Ok(cpython::Outcome::Rows(rows)) => out.rows.extend(rows),
        Ok(cpython::Outcome::Skipped(why)) => eprintln!("multiproc-bench: CPython pool rows skipped: {why}"),
        Err(e) => out.failures.push(format!("CPython pool rows: {e}")),
    }
}
