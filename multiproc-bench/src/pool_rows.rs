//! Pool and executor rows (issue 6), per start method, each next to its
//! baseline in the same run. A sample is one whole call.
//!
//! | row | multiproc | baseline |
//! |---|---|---|
//! | `pool/map_10k_chunk1/<m>`, `pool/map_100k_auto/<m>` | `Pool(2).map` of `x * x` tasks, chunk size 1 or automatic; tasks/s | CPython's `Pool(2).map`, same chunk size |
//! | `executor/map_10k/<m>` | `Executor::map(square, 0..10k, None)`: Python's automatic chunk size (10 000 / 8); tasks/s | CPython's `ProcessPoolExecutor(2).map` (its default chunksize, 1) |
//! | `executor/map_10k_chunk1/<m>` | `executor.pool().map_chunked(square, 0..10k, 1)`: chunk size 1, like CPython's default | the same CPython row |
//! | `pool/lifecycle_map2/<m>` | `Pool(2)` built, `map` of 2 tasks, `close`, `join` | this library's own single `Process` start + join (interleaved); CPython's `Pool(2)` the same way; under fork also the raw floor of the same work (two forks, a 1-byte round trip each, end of stream, `_exit`, two `waitpid`s) and the raw single fork + `_exit` + `waitpid` (`floor_single`), whose ratio is the floor of the row's target |
//! | `pool/map_1mib/<m>` | `Pool(2).map` of 1 MiB `Vec<u8>` arguments (automatic chunk size: 1 for such arguments), each task returns its length and last byte; GB/s | this library's `Pipe` carrying the same bytes one way: `send_bytes` of the same number of distinct, freshly filled 1 MiB buffers, each dropped once sent (as `map` consumes its arguments), to a child that `recv_bytes_into` a reused buffer (interleaved); CPython's `Pool(2).map` of 1 MiB `bytes` |
//! | `pool/map_1mib_bytes/<m>` | the same with the buffers serialised as bytes (`serialize_bytes`, as `serde_bytes::ByteBuf` does): a value the codec encodes (one copy in the parent) and decodes (one copy in the worker) | this library's `Pipe` carrying the same values: `send(&value)` to a child that `recv()`s them (the same two copies); CPython's row of `pool/map_1mib` |
//!
//! `--quick` runs fewer tasks per sample (500 executor tasks, 8 buffers
//! of 1 MiB) and says so in the rows' descriptions.

use std::time::{Duration, Instant};

use multiproc::{Connection, Executor, Pool, StartMethod};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    channels::{self, ConnPeer},
    cli::Options,
    cpython::{self, ChannelKind, ChannelRow},
    floors,
    harness::{Bench, Impl, Unit},
    rows::{self, METHODS, Outcome, run_benches},
};

const MIB: usize = 1 << 20;

/// (name stem, tasks, chunk size; 0: automatic).
const ROWS: [(&str, usize, usize); 2] = [("map_10k_chunk1", 10_000, 1), ("map_100k_auto", 100_000, 0)];

/// Full-run samples of CPython's executor rows: each takes about 2 s here.
const CPYTHON_EXECUTOR_SAMPLES: usize = 7;

/// Runs the pool and executor rows `opts` selects.
pub(crate) fn run_all(opts: &Options, out: &mut Outcome) {
    run_map(opts, out);
    run_executor(opts, out);
    run_lifecycle(opts, out);
    // Last: its arguments grow the heap.
    run_big_args(opts, out);
}

fn square(x: u64) -> u64 {
    x * x
}

/// Runs CPython's rows `specs`, `warmup` untimed and `samples` timed
/// repetitions each.
fn run_cpython(out: &mut Outcome, what: &str, specs: &[ChannelRow], warmup: usize, samples: usize) {
    if specs.is_empty() {
        return;
    }
    eprintln!(
        "multiproc-bench: CPython {what} ({} rows), {warmup} warm-up + {samples} samples each",
        specs.len()
    );
    let t = Instant::now();
    match cpython::channels(specs, warmup, samples) {
        Ok(cpython::Outcome::Rows(rows)) => out.rows.extend(rows),
        Ok(cpython::Outcome::Skipped(why)) => eprintln!("multiproc-bench: CPython {what} rows skipped: {why}"),
        Err(e) => out.failures.push(format!("CPython {what} rows: {e}")),
    }
    eprintln!("multiproc-bench:   done in {:.1} s", t.elapsed().as_secs_f64());
}

/// Whether the row `base` is a baseline of the multiproc row `cand` under
/// another name: the chunk-size-1 executor row against CPython's executor
/// (default chunksize 1), the other 1 MiB rows against `pool/map_1mib`'s
/// baselines.
pub(crate) fn is_baseline(cand: &str, base_name: &str, base_imp: Impl) -> bool {
    let Some((family, method)) = cand.rsplit_once('/') else {
        return false;
    };
    let other = match (family, base_imp) {
        ("executor/map_10k_chunk1", Impl::Cpython) => "executor/map_10k",
        ("pool/map_1mib_bytes", Impl::Cpython) => "pool/map_1mib",
        _ => return false,
    };
    base_name.strip_prefix(other).and_then(|r| r.strip_prefix('/')) == Some(method)
}

/// Builds a pool of 2 workers under `method`.
fn pool_of_2(method: StartMethod) -> multiproc::Result<Pool> {
    Pool::builder().processes(2).start_method(method).build()
}

// --------------------------------------------------------------------------
// Pool.map of trivial tasks
// --------------------------------------------------------------------------

fn one_map(pool: &Pool, n: usize, chunk: usize) -> Result<Duration, String> {
    let t = Instant::now();
    let r = if chunk == 0 {
        pool.map(square, 0..n as u64)
    } else {
        pool.map_chunked(square, 0..n as u64, chunk)
    }
    .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    check_squares(&r, n)?;
    Ok(took)
}

fn check_squares(r: &[u64], n: usize) -> Result<(), String> {
    if r.len() != n || r[n - 1] != square(n as u64 - 1) {
        return Err("wrong map result".into());
    }
    Ok(())
}

/// `Pool(2).map` of `x * x`, chunk size 1 and automatic, against CPython's
/// `Pool(2).map`.
fn run_map(opts: &Options, out: &mut Outcome) {
    let mut specs = Vec::new();
    for (m, mname) in METHODS {
        let wanted: Vec<_> = ROWS
            .iter()
            .map(|&(stem, n, chunk)| (format!("pool/{stem}/{mname}"), n, chunk))
            .filter(|(name, _, _)| opts.wants(name))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let pool = match pool_of_2(m) {
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
    let c = opts.counts(20);
    run_cpython(out, "Pool.map", &specs, c.warmup.min(3), c.samples);
}

// --------------------------------------------------------------------------
// Executor.map
// --------------------------------------------------------------------------

/// `Executor::map` (automatic chunk size) or, with `chunk1`, the
/// executor's pool's `map_chunked(.., 1)`, of `n` tasks.
fn executor_map(ex: &Executor, n: usize, chunk1: bool) -> Result<Duration, String> {
    let t = Instant::now();
    let r = if chunk1 {
        ex.pool().map_chunked(square, 0..n as u64, 1)
    } else {
        ex.map(square, 0..n as u64, None)
            .and_then(|it| it.collect::<multiproc::Result<Vec<_>>>())
    }
    .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    check_squares(&r, n)?;
    Ok(took)
}

/// `Executor(2)` `map` of `x * x`, automatic chunk size and chunk size 1,
/// against CPython's `ProcessPoolExecutor(2).map` (default chunksize 1).
fn run_executor(opts: &Options, out: &mut Outcome) {
    let n: usize = if opts.quick { 500 } else { 10_000 };
    let quick = if opts.quick { " (--quick: 500, not 10k)" } else { "" };
    let mut specs = Vec::new();
    for (m, mname) in METHODS {
        let auto = format!("executor/map_10k/{mname}");
        let chunk1 = format!("executor/map_10k_chunk1/{mname}");
        let (want_auto, want_chunk1) = (opts.wants(&auto), opts.wants(&chunk1));
        if !want_auto && !want_chunk1 {
            continue;
        }
        let ex = match Executor::from_builder(Pool::builder().processes(2).start_method(m)) {
            Ok(ex) => ex,
            Err(e) => {
                out.failures.push(format!("executor rows under {mname}: {e}"));
                continue;
            }
        };
        let mut benches = Vec::new();
        let e = &ex;
        if want_auto {
            benches.push(
                Bench::new(
                    auto.clone(),
                    Impl::Multiproc,
                    format!(
                        "Executor(2) under {mname}: map(x*x, {n} tasks{quick}, None), automatic chunk size ({})",
                        n.div_ceil(8)
                    ),
                    move || executor_map(e, n, false),
                )
                .per(n as u64, Unit::Msgs),
            );
        }
        if want_chunk1 {
            benches.push(
                Bench::new(
                    chunk1,
                    Impl::Multiproc,
                    format!("Executor(2) under {mname}: pool().map_chunked(x*x, {n} tasks{quick}, 1)"),
                    move || executor_map(e, n, true),
                )
                .per(n as u64, Unit::Msgs),
            );
        }
        run_benches(out, opts.counts(20), benches);
        if let Err(e) = ex.shutdown(true, false) {
            out.failures
                .push(format!("executor rows under {mname}: shutdown failed: {e}"));
        }
        specs.push(ChannelRow {
            name: auto,
            kind: ChannelKind::ExecutorMap,
            method: mname,
            size: 0,
            count: n,
            pin: None,
            unit: Unit::Msgs,
            ops: n as u64,
            desc: format!(
                "CPython {mname}: concurrent.futures.ProcessPoolExecutor(2).map(square, range({n})), default chunksize 1{quick}"
            ),
        });
    }
    let samples = match (opts.iters, opts.quick) {
        (Some(n), _) => n,
        (None, true) => 2,
        (None, false) => CPYTHON_EXECUTOR_SAMPLES,
    };
    run_cpython(out, "ProcessPoolExecutor.map", &specs, 1, samples);
}

// --------------------------------------------------------------------------
// A pool's whole life
// --------------------------------------------------------------------------

/// Tasks in the lifecycle rows' `map`.
const LIFECYCLE_TASKS: usize = 2;

/// `Pool(2)` under `method`: build, `map` of 2 tasks, `close`, `join`.
fn lifecycle(method: StartMethod) -> Result<Duration, String> {
    let t = Instant::now();
    let pool = pool_of_2(method).map_err(|e| format!("build failed: {e}"))?;
    let r = pool
        .map(square, 0..LIFECYCLE_TASKS as u64)
        .map_err(|e| format!("map failed: {e}"))?;
    pool.close();
    pool.join().map_err(|e| format!("join failed: {e}"))?;
    let took = t.elapsed();
    drop(pool);
    if r != [0, 1] {
        return Err(format!("map gave {r:?}"));
    }
    Ok(took)
}

/// A pool's whole life against this library's own single start + join,
/// interleaved; CPython's `Pool(2)` the same way for reference.
fn run_lifecycle(opts: &Options, out: &mut Outcome) {
    let mut specs = Vec::new();
    for (m, mname) in METHODS {
        let name = format!("pool/lifecycle_map2/{mname}");
        if !opts.wants(&name) {
            continue;
        }
        let mut benches = vec![
            Bench::new(
                name.clone(),
                Impl::Multiproc,
                format!("Pool::builder().processes(2) under {mname}: build + map(x*x, 0..2) + close + join"),
                move || lifecycle(m),
            ),
            Bench::new(
                name.clone(),
                Impl::OwnProcess,
                format!("Process::new(noop) under {mname}: start + join"),
                move || rows::start_join(m),
            ),
        ];
        if m == StartMethod::Fork {
            // The same work with no library, and the single raw fork, so
            // that the floor's own ratio is in the same run.
            benches.push(Bench::new(
                name.clone(),
                Impl::Floor,
                "raw: 2 forks, a 1-byte round trip each, end of stream, _exit, 2 waitpids",
                floors::fork_two_round_trips,
            ));
            benches.push(Bench::new(
                name.clone(),
                Impl::FloorSingle,
                "raw: fork + _exit(0) + waitpid",
                floors::fork_exit,
            ));
        }
        run_benches(out, opts.counts(60), benches);
        specs.push(ChannelRow {
            name,
            kind: ChannelKind::PoolLifecycle,
            method: mname,
            size: 0,
            count: LIFECYCLE_TASKS,
            pin: None,
            unit: Unit::Time,
            ops: 1,
            desc: format!("CPython {mname}: Pool(2) + map(square, range(2)) + close() + join()"),
        });
    }
    let c = opts.counts(15);
    run_cpython(out, "Pool lifecycle", &specs, 1, c.samples);
}

// --------------------------------------------------------------------------
// Large arguments
// --------------------------------------------------------------------------

/// A byte buffer that serialises as bytes (`serialize_bytes`), as
/// `serde_bytes::ByteBuf` does, so that the codec copies it whole instead
/// of element by element.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte buffer")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MIB));
        while let Some(b) = seq.next_element()? {
            v.push(b);
        }
        Ok(Bytes(v))
    }
}

/// The task of the large-argument rows: the buffer's length and last byte.
fn bytes_tail(b: Bytes) -> (u64, u8) {
    (b.0.len() as u64, b.0.last().copied().unwrap_or(0))
}

/// The same for a plain `Vec<u8>`.
fn vec_tail(b: Vec<u8>) -> (u64, u8) {
    (b.len() as u64, b.last().copied().unwrap_or(0))
}

/// `n` distinct buffers of 1 MiB, buffer `i` filled with `i as u8`.
fn buffers(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i as u8; MIB]).collect()
}

fn check_tails(r: &[(u64, u8)], n: usize) -> Result<(), String> {
    if r.len() != n {
        return Err(format!("{} results for {n} tasks", r.len()));
    }
    match r.iter().enumerate().find(|&(i, &t)| t != (MIB as u64, i as u8)) {
        Some((i, t)) => Err(format!("task {i} gave {t:?}")),
        None => Ok(()),
    }
}

/// How the large-argument rows pass their buffers.
#[derive(Clone, Copy)]
enum Args {
    /// As plain `Vec<u8>`.
    Vec,
    /// As [`Bytes`].
    Bytes,
}

/// One `map` of `n` buffers of 1 MiB, passed as `args` says. Filling the
/// arguments is not timed.
fn map_buffers(pool: &Pool, n: usize, args: Args) -> Result<Duration, String> {
    let bufs = buffers(n);
    let (took, r) = match args {
        Args::Bytes => {
            let bufs: Vec<Bytes> = bufs.into_iter().map(Bytes).collect();
            let t = Instant::now();
            let r = pool.map(bytes_tail, bufs);
            (t.elapsed(), r)
        }
        Args::Vec => {
            let t = Instant::now();
            let r = pool.map(vec_tail, bufs);
            (t.elapsed(), r)
        }
    };
    check_tails(&r.map_err(|e| e.to_string())?, n)?;
    Ok(took)
}

/// Child of the `Bytes` rows' baseline: receives [`Bytes`] values (decoded
/// as a pool worker decodes them) until a 1-byte one; an empty one asks for
/// the byte count so far.
fn bytes_sink((conn, ()): (Connection, ())) -> u64 {
    let mut total = 0u64;
    let mut reps = 0;
    loop {
        match conn.recv::<Bytes>() {
            Ok(b) if b.0.is_empty() => {
                conn.send_bytes(&total.to_le_bytes()).expect("answer the byte count");
                total = 0;
                reps += 1;
            }
            Ok(b) if b.0.len() == 1 => return reps,
            Ok(b) => total += b.0.len() as u64,
            Err(multiproc::RecvError::Disconnected) => return reps,
            Err(e) => panic!("recv failed: {e}"),
        }
    }
}

/// The encoding of `Bytes(vec![b'Q'])`: [`bytes_sink`]'s signal to end.
const BYTES_QUIT: &[u8] = &[1, b'Q'];

/// Sends `n` fresh 1 MiB [`Bytes`] values (then an empty one) to a
/// [`bytes_sink`] child, timed until its byte count comes back.
fn bytes_oneway(peer: &mut ConnPeer, n: usize) -> Result<Duration, String> {
    // `send` takes its value: the buffers are dropped after sending, as the
    // pool drops a sent argument.
    let bufs: Vec<Bytes> = buffers(n).into_iter().map(Bytes).collect();
    let t = Instant::now();
    for b in bufs {
        peer.send(b).map_err(|e| format!("send failed: {e}"))?;
    }
    peer.send(Bytes(Vec::new())).map_err(|e| format!("send failed: {e}"))?;
    let ack = peer.recv_bytes().map_err(|e| format!("no byte count: {e}"))?;
    let took = t.elapsed();
    if ack != ((n * MIB) as u64).to_le_bytes() {
        return Err(format!("the child answered {ack:?}"));
    }
    Ok(took)
}

/// `Pool(2).map` of 1 MiB arguments against this library's Pipe carrying
/// the same bytes (or values), interleaved; CPython's `Pool(2).map` of
/// 1 MiB `bytes` for reference.
fn run_big_args(opts: &Options, out: &mut Outcome) {
    let n: usize = if opts.quick { 8 } else { 32 };
    let quick = if opts.quick { " (--quick)" } else { "" };
    let mut specs = Vec::new();
    for (m, mname) in METHODS {
        let name = format!("pool/map_1mib/{mname}");
        let bytes_name = format!("pool/map_1mib_bytes/{mname}");
        let (want_vec, want_bytes) = (opts.wants(&name), opts.wants(&bytes_name));
        if !want_vec && !want_bytes {
            continue;
        }
        let pool = match pool_of_2(m) {
            Ok(p) => p,
            Err(e) => {
                out.failures.push(format!("pool 1 MiB rows under {mname}: {e}"));
                continue;
            }
        };
        let p = &pool;
        let mut benches: Vec<Bench<'_>> = Vec::new();
        if want_vec {
            benches.push(Bench::new(
                name.clone(),
                Impl::Multiproc,
                format!("Pool(2) under {mname}: map(f, {n}{quick} x 1 MiB Vec<u8>); f returns (len, last byte)"),
                move || map_buffers(p, n, Args::Vec),
            ));
            benches.push(Bench::new(
                name.clone(),
                Impl::OwnPipe,
                format!(
                    "pipe(true); send_bytes of {n} distinct fresh 1 MiB buffers, each dropped once sent, + b\"\" to a {mname} child that recv_bytes_into a reused buffer"
                ),
                channels::lazily(
                    move || ConnPeer::start(m, channels::conn_sink, true, b"Q"),
                    move |peer| {
                        // Made like the pool rows' arguments, outside the
                        // timing, and consumed like them: each is dropped
                        // once sent (`map` takes its arguments).
                        channels::conn_oneway_each(peer, buffers(n))
                    },
                ),
            ));
        }
        if want_bytes {
            benches.push(Bench::new(
                bytes_name.clone(),
                Impl::Multiproc,
                format!(
                    "Pool(2) under {mname}: map(f, {n}{quick} x 1 MiB buffers serialised as bytes); f returns (len, last byte)"
                ),
                move || map_buffers(p, n, Args::Bytes),
            ));
            benches.push(Bench::new(
                bytes_name,
                Impl::OwnPipe,
                format!(
                    "pipe(true); send(&value) of {n} distinct fresh 1 MiB buffers serialised as bytes to a {mname} child that recv()s them"
                ),
                channels::lazily(
                    move || ConnPeer::start(m, bytes_sink, (), BYTES_QUIT),
                    move |peer| bytes_oneway(peer, n),
                ),
            ));
        }
        let benches = benches
            .into_iter()
            .map(|b| b.per(n as u64, Unit::Bytes(MIB as u64)))
            .collect();
        run_benches(out, opts.counts(15), benches);
        drop(pool);
        specs.push(ChannelRow {
            name,
            kind: ChannelKind::PoolMapBytes,
            method: mname,
            size: MIB,
            count: n,
            pin: None,
            unit: Unit::Bytes(MIB as u64),
            ops: n as u64,
            desc: format!(
                "CPython {mname}: Pool(2).map(len, {n}{quick} distinct 1 MiB bytes), automatic chunksize ({})",
                n.div_ceil(8)
            ),
        });
    }
    let c = opts.counts(15);
    run_cpython(out, "Pool.map of 1 MiB bytes", &specs, 1, c.samples);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines() {
        let b = is_baseline;
        assert!(b(
            "executor/map_10k_chunk1/fork",
            "executor/map_10k/fork",
            Impl::Cpython
        ));
        assert!(!b(
            "executor/map_10k_chunk1/fork",
            "executor/map_10k/spawn",
            Impl::Cpython
        ));
        assert!(!b(
            "executor/map_10k_chunk1/fork",
            "executor/map_10k/fork",
            Impl::OwnPipe
        ));
        assert!(!b("executor/map_10k/fork", "executor/map_10k/fork", Impl::Cpython));
        assert!(b("pool/map_1mib_bytes/spawn", "pool/map_1mib/spawn", Impl::Cpython));
        assert!(!b("pool/map_1mib_bytes/spawn", "pool/map_1mib/spawn", Impl::OwnPipe));
        assert!(!b("pool/map_1mib_bytes/spawn", "pool/map_1mib/fork", Impl::Cpython));
        assert!(!b("pool/map_1mib/spawn", "pool/map_1mib/spawn", Impl::Cpython));
    }

    #[test]
    fn bytes_round_trip() {
        let v = Bytes(vec![7; 1000]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, serde_json::to_string(&vec![7u8; 1000]).unwrap());
        let back: Bytes = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, v.0);
        assert_eq!(bytes_tail(v), (1000, 7));
        check_tails(&[(MIB as u64, 0), (MIB as u64, 1)], 2).unwrap();
        assert!(check_tails(&[(MIB as u64, 1)], 1).is_err());
    }
}
