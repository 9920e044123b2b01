//! Scaling rows: how the cost per unit of work grows with the amount of
//! work. Every size of one row is measured in the same interleaved group,
//! so the sizes see the same machine; a row's value is its time per unit
//! (per child, per task, per item, per `wait` call), and a flat column
//! across sizes means cost grows with the work and no faster.
//!
//! | row | unit of work | sizes |
//! |---|---|---|
//! | `scale/start_join_<n>/<m>` | one child: `n` children started (a no-op target), then all joined | 10, 100, 1000 |
//! | `scale/pool_map_100k/w<k>` | one task of `Pool(k).map(x * x, 0..100k)`, automatic chunk size, pool built once per size | 2, 8, 32, 64 workers |
//! | `scale/queue_<p>x<c>` | one `u64` item through one `Queue`, `p` producer and `c` consumer processes started before the clock (a barrier) | 1×1, 16×16 |
//! | `scale/wait_<n>` | one `wait(.., Some(0))` over `n` connections, the last one readable | 10, 100, 1000 |
//!
//! `--quick` keeps the smaller sizes only (no 1000-child or 64-worker
//! samples) and fewer items.

use std::time::{Duration, Instant};

use multiproc::{self as mp, Barrier, Pool, ProcessBuilder, Queue, StartMethod};

use crate::{
    cli::Options,
    harness::{Bench, Impl, Unit},
    rows::{METHODS, Outcome, run_benches},
};

/// Longest any sample may wait on a child: a failed row, not a hang.
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs the scaling rows `opts` selects.
pub(crate) fn run_all(opts: &Options, out: &mut Outcome) {
    run_start_join(opts, out);
    run_pool_map(opts, out);
    run_queue(opts, out);
    run_wait(opts, out);
}

fn keep<'a>(opts: &Options, benches: Vec<Bench<'a>>) -> Vec<Bench<'a>> {
    benches.into_iter().filter(|b| opts.wants(&b.name)).collect()
}

fn noop() {}

/// Starts `n` children under `m`, then joins them all.
fn start_join_many(m: StartMethod, n: usize) -> Result<Duration, String> {
    let t = Instant::now();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        let mut p = ProcessBuilder::new().start_method(m).target(noop);
        p.start().map_err(|e| e.to_string())?;
        children.push(p);
    }
    for p in &mut children {
        p.join_timeout(DEADLINE).map_err(|e| e.to_string())?;
    }
    Ok(t.elapsed())
}

fn run_start_join(opts: &Options, out: &mut Outcome) {
    let sizes: &[usize] = if opts.quick { &[10, 100] } else { &[10, 100, 1000] };
    for (m, method) in METHODS {
        let benches = sizes
            .iter()
            .map(|&n| {
                Bench::new(
                    format!("scale/start_join_{n}/{method}"),
                    Impl::Multiproc,
                    format!("{n} children started under {method} (no-op target), then all joined; per child"),
                    move || start_join_many(m, n),
                )
                .per(n as u64, Unit::Time)
            })
            .collect();
        run_benches(out, opts.counts(5), keep(opts, benches));
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn run_pool_map(opts: &Options, out: &mut Outcome) {
    let sizes: &[usize] = if opts.quick { &[2, 8] } else { &[2, 8, 32, 64] };
    let tasks: u64 = if opts.quick { 10_000 } else { 100_000 };
    let benches = sizes
        .iter()
        .map(|&k| {
            let mut pool: Option<Pool> = None;
            Bench::new(
                format!("scale/pool_map_100k/w{k}"),
                Impl::Multiproc,
                format!("Pool({k}).map(x * x, 0..{tasks}), automatic chunk size, pool built once; per task"),
                move || {
                    if pool.is_none() {
                        pool = Some(Pool::new(k).map_err(|e| e.to_string())?);
                    }
                    let pool = pool.as_ref().expect("built above");
                    let t = Instant::now();
                    let r = pool.map(square, 0..tasks).map_err(|e| e.to_string())?;
                    let d = t.elapsed();
                    if r.len() as u64 != tasks {
                        return Err(format!("{} results for {tasks} tasks", r.len()));
                    }
                    Ok(d)
                },
            )
            .per(tasks, Unit::Time)
        })
        .collect();
    run_benches(out, opts.counts(10), keep(opts, benches));
}

/// A producer: waits at the barrier, then puts its share of items.
fn produce((q, start, n): (Queue<Option<u64>>, Barrier, u64)) {
    start.wait().expect("start together");
    for i in 0..n {
        q.put(Some(i)).expect("put an item");
    }
}

/// A consumer: waits at the barrier, then takes items until `None`.
fn consume((q, start): (Queue<Option<u64>>, Barrier)) -> u64 {
    start.wait().expect("start together");
    let mut got = 0;
    while let Some(_item) = q.get().expect("get an item") {
        got += 1;
    }
    got
}

/// `p` producers and `c` consumers move `items` items through one queue;
/// the clock starts when all are started and ends when every consumer
/// has taken its end marker.
fn queue_round(p: usize, c: usize, items: u64) -> Result<Duration, String> {
    let err = |e: mp::Error| e.to_string();
    let q = Queue::<Option<u64>>::new().map_err(err)?;
    let start = Barrier::new(p + c + 1).map_err(err)?;
    let mut producers = Vec::with_capacity(p);
    for _ in 0..p {
        let mut pr = mp::Process::with_args(produce, (q.clone(), start.clone(), items / p as u64));
        pr.start().map_err(err)?;
        producers.push(pr);
    }
    let mut consumers = Vec::with_capacity(c);
    for _ in 0..c {
        let mut co = mp::Process::with_args(consume, (q.clone(), start.clone()));
        co.start().map_err(err)?;
        consumers.push(co);
    }
    start.wait_timeout(DEADLINE).map_err(err)?;
    let t = Instant::now();
    for pr in &mut producers {
        pr.join_timeout(DEADLINE).map_err(err)?;
    }
    for _ in 0..c {
        q.put(None).map_err(|e| e.to_string())?;
    }
    let mut got = 0;
    for co in &mut consumers {
        got += co.join_timeout(DEADLINE).map_err(err)?;
    }
    let d = t.elapsed();
    if got != items / p as u64 * p as u64 {
        return Err(format!("consumers took {got} items of {items}"));
    }
    Ok(d)
}

fn run_queue(opts: &Options, out: &mut Outcome) {
    let items: u64 = if opts.quick { 8_192 } else { 262_144 };
    let benches = [(1, 1), (16, 16)]
        .into_iter()
        .map(|(p, c)| {
            Bench::new(
                format!("scale/queue_{p}x{c}"),
                Impl::Multiproc,
                format!("{items} u64 items through one Queue, {p} producer and {c} consumer processes; per item"),
                move || queue_round(p, c, items),
            )
            .per(items, Unit::Time)
        })
        .collect();
    run_benches(out, opts.counts(5), keep(opts, benches));
}

/// Calls per sample of the `wait` rows.
const WAIT_CALLS: u64 = 200;

fn run_wait(opts: &Options, out: &mut Outcome) {
    let benches = [10usize, 100, 1000]
        .into_iter()
        .map(|n| {
            let mut conns: Option<Vec<(mp::Connection, mp::Connection)>> = None;
            Bench::new(
                format!("scale/wait_{n}"),
                Impl::Multiproc,
                format!("wait(.., Some(0)) over {n} connections, the last one readable; per call"),
                move || {
                    if conns.is_none() {
                        let mut v = Vec::with_capacity(n);
                        for _ in 0..n {
                            v.push(mp::pipe(true).map_err(|e| e.to_string())?);
                        }
                        v[n - 1].1.send_bytes(b"x").map_err(|e| e.to_string())?;
                        conns = Some(v);
                    }
                    let v = conns.as_ref().expect("made above");
                    let objects: Vec<mp::Waitable<'_>> = v.iter().map(|(a, _)| a.into()).collect();
                    let t = Instant::now();
                    for _ in 0..WAIT_CALLS {
                        let ready = mp::wait(&objects, Some(Duration::ZERO)).map_err(|e| e.to_string())?;
                        if ready != [n - 1] {
                            return Err(format!("wait returned {ready:?}, expected [{}]", n - 1));
                        }
                    }
                    Ok(t.elapsed())
                },
            )
            .per(WAIT_CALLS, Unit::Time)
        })
        .collect();
    run_benches(out, opts.counts(20), keep(opts, benches));
}
