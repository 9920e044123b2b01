//! The rows of a run, in the order they are measured, and multiproc's own
//! benchmarks.
//!
//! Order matters on this machine: fork costs grow with the parent's
//! resident memory, so the small-parent rows come first, before the 16 MiB
//! transfers have grown the heap, and every fork candidate is interleaved
//! with its floor in the same state.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use multiproc::{ProcessBuilder, StartMethod};

use crate::{
    async_pipe_rows, async_queue_rows, async_rows, channels,
    cli::{Counts, Options},
    codec_rows, cpython, floors,
    harness::{self, Bench, Impl, Row},
    peers, pool_rows, scale_rows, shm_rows, sync_rows,
};

const MIB: usize = 1 << 20;

/// The start methods of the pool, codec and scaling rows, in the order
/// measured (fork first: its cost grows with the parent's heap).
pub(crate) const METHODS: [(StartMethod, &str); 3] = [
    (StartMethod::Fork, "fork"),
    (StartMethod::Spawn, "spawn"),
    (StartMethod::ForkServer, "forkserver"),
];
/// The argument size of the transfer rows.
const TRANSFER_BYTES: usize = 16 * MIB;

/// Everything a run measured, and what went wrong.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) rows: Vec<Row>,
    pub(crate) failures: Vec<String>,
}

/// Runs every row `opts` selects.
pub(crate) fn run_all(opts: &Options) -> Outcome {
    let mut out = Outcome::default();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            out.failures.push(format!("cannot find this executable: {e}"));
            return out;
        }
    };
    let exe = exe.as_path();

    // 1. Fork, small parent: before anything else grows the heap.
    group(
        opts,
        &mut out,
        opts.counts(1000),
        start_join_fork_benches("process/start_join/fork"),
    );

    // 2. Spawn (re-exec), small parent.
    let mut spawn = start_join_spawn_benches("process/start_join/spawn", exe);
    spawn.push(Bench::new(
        "process/start_join/spawn",
        Impl::Procspawn,
        "procspawn 1.0.2: spawn((), |()| ()).join()",
        peers::start_join,
    ));
    spawn.push(Bench::new(
        "process/reexec_exit/spawn",
        Impl::Floor,
        "re-exec of this binary, which exits at once: Command::status",
        move || floors::reexec_exit(exe),
    ));
    group(opts, &mut out, opts.counts(300), spawn);

    // 2b. The fork server, against this library's own spawn (its first
    // start, which launches the server, is in the warm-up).
    group(
        opts,
        &mut out,
        opts.counts(300),
        forkserver_benches("process/start_join/forkserver"),
    );

    // 2c. Synchronisation primitives (their own module).
    for (counts, benches) in sync_rows::groups(opts) {
        group(opts, &mut out, counts, benches);
    }

    // 3. CPython, right after the Rust start rows.
    run_cpython(opts, &mut out);

    // 4. Start costs while the parent holds touched heap.
    run_rss(opts, &mut out, 256, [opts.counts(60), opts.counts(200)], exe);
    if opts.quick {
        if opts.wants("process/start_join_rss1024/") {
            eprintln!("multiproc-bench: process/start_join_rss1024/*: skipped under --quick");
        }
    } else {
        run_rss(opts, &mut out, 1024, [opts.counts(20), opts.counts(100)], exe);
    }

    // 5. A 16 MiB argument to a fresh child; last, as it grows the heap.
    let transfer = vec![
        Bench::new(
            "process/transfer_16MiB/spawn",
            Impl::Multiproc,
            "Process::with_args(len, vec![_; 16 MiB]) under spawn: start + join",
            || transfer(StartMethod::Spawn, TRANSFER_BYTES),
        ),
        Bench::new(
            "process/transfer_16MiB/spawn",
            Impl::Floor,
            "re-exec + 16 MiB through a 1 MiB pipe into a Vec in the child + 8 B back + wait",
            move || floors::reexec_transfer(exe, payload(TRANSFER_BYTES)),
        ),
        Bench::new(
            "process/transfer_16MiB/spawn",
            Impl::Procspawn,
            "procspawn 1.0.2: spawn(vec![_; 16 MiB], |v| v.len()).join()",
            || peers::transfer(TRANSFER_BYTES),
        ),
        Bench::new(
            "process/transfer_16MiB/fork",
            Impl::Multiproc,
            "Process::with_args(len, vec![_; 16 MiB]) under fork: start + join",
            || transfer(StartMethod::Fork, TRANSFER_BYTES),
        ),
        Bench::new(
            "process/transfer_16MiB/fork",
            Impl::Floor,
            "fork + _exit(0) + waitpid while a fresh 16 MiB buffer is alive",
            || {
                let data = payload(TRANSFER_BYTES);
                let elapsed = floors::fork_exit();
                drop(std::hint::black_box(data));
                elapsed
            },
        ),
    ];
    group(opts, &mut out, opts.counts(50), transfer);

    // 6. Pipes and queues: children started once per row, so the heap no
    // longer matters.
    channels::run_all(opts, &mut out);

    // 7. Shared memory, 256 MiB (see shm_rows).
    run_shm(opts, &mut out, exe);

    // 8. The process pool (see pool_rows).
    pool_rows::run_all(opts, &mut out);

    // 9. Serde values through a pipe and a pool (see codec_rows).
    codec_rows::run_all(opts, &mut out);

    // 10. How costs grow with the amount of work (see scale_rows).
    scale_rows::run_all(opts, &mut out);

    // The children of the awaited queue rows start while the process is
    // single-threaded (see async_queue_rows).
    let queue_peers = async_queue_rows::start(opts, &mut out);

    // 11. Awaited pool results (see async_rows). Awaiting starts the pool's
    // driver thread, which lingers a moment after the pool is gone; `fork`
    // refuses to start children while it runs, so every fork row comes
    // before, and the awaited pipe rows wait for it to end.
    async_rows::run_all(opts, &mut out);
    wait_single_threaded(Duration::from_secs(5));

    // 12. Awaited pipe round trips (see async_pipe_rows); last, as the reactor's
    // thread makes `fork` refuse to start children from then on.
    async_pipe_rows::run_all(opts, &mut out);

    // 13. Awaited puts on a full queue (see async_queue_rows).
    async_queue_rows::run_all(opts, &mut out, queue_peers);
    out
}

/// Waits (up to `limit`) until this process runs one thread again.
fn wait_single_threaded(limit: Duration) {
    let threads = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Field 20; the command name (field 2) is in parentheses.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(20 - 3))
            .and_then(|f| f.parse::<u32>().ok())
            .unwrap_or(1)
    };
    let until = Instant::now() + limit;
    while threads() > 1 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run_shm(opts: &Options, out: &mut Outcome, exe: &Path) {
    if !opts.wants(shm_rows::FRESH) && !opts.wants(shm_rows::REUSED) {
        return;
    }
    match shm_rows::benches(exe) {
        Ok([fresh, reused]) => {
            group(opts, out, opts.counts(15), fresh);
            group(opts, out, opts.counts(15), reused);
        }
        Err(e) => out.failures.push(format!("shared memory rows: {e}")),
    }
    if opts.wants(shm_rows::FRESH) {
        let c = opts.counts(15);
        eprintln!("multiproc-bench: CPython shared_memory ({} samples)", c.samples);
        match shm_rows::cpython(c.warmup.min(3), c.samples) {
            Ok(Some(row)) => out.rows.push(row),
            Ok(None) => eprintln!("multiproc-bench: CPython shared_memory row skipped: no python3"),
            Err(e) => out.failures.push(format!("CPython shared_memory row: {e}")),
        }
    }
}

/// Runs the benches of `benches` that `opts` selects, interleaved.
fn group(opts: &Options, out: &mut Outcome, counts: Counts, benches: Vec<Bench<'_>>) {
    let benches: Vec<_> = benches.into_iter().filter(|b| opts.wants(&b.name)).collect();
    run_benches(out, counts, benches);
}

/// Runs `benches` interleaved, with progress on stderr.
pub(crate) fn run_benches(out: &mut Outcome, counts: Counts, benches: Vec<Bench<'_>>) {
    if benches.is_empty() {
        return;
    }
    let mut names: Vec<&str> = Vec::new();
    for b in &benches {
        if !names.contains(&b.name.as_str()) {
            names.push(&b.name);
        }
    }
    eprintln!(
        "multiproc-bench: {}: {} rows, {} warm-up + {} samples each, interleaved",
        names.join(", "),
        benches.len(),
        counts.warmup,
        counts.samples
    );
    let t = Instant::now();
    let (rows, failures) = harness::run_group(benches, counts);
    eprintln!("multiproc-bench:   done in {:.1} s", t.elapsed().as_secs_f64());
    out.rows.extend(rows);
    out.failures.extend(failures);
}

fn start_join_fork_benches(name: &str) -> Vec<Bench<'static>> {
    vec![
        Bench::new(name, Impl::Floor, "fork + _exit(0) + waitpid", floors::fork_exit),
        Bench::new(
            name,
            Impl::Multiproc,
            "Process::new(noop) under fork: start + join",
            || start_join(StartMethod::Fork),
        ),
    ]
}

fn start_join_spawn_benches<'a>(name: &str, exe: &'a Path) -> Vec<Bench<'a>> {
    vec![
        Bench::new(
            name,
            Impl::Floor,
            "re-exec of this binary + 1 B over stdin + 1 B back over stdout + wait",
            move || floors::reexec_handshake(exe),
        ),
        Bench::new(
            name,
            Impl::Multiproc,
            "Process::new(noop) under spawn: start + join",
            || start_join(StartMethod::Spawn),
        ),
    ]
}

fn forkserver_benches(name: &str) -> Vec<Bench<'static>> {
    vec![
        Bench::new(
            name,
            Impl::Multiproc,
            "Process::new(noop) under forkserver: start + join",
            || start_join(StartMethod::ForkServer),
        ),
        Bench::new(
            name,
            Impl::OwnSpawn,
            "Process::new(noop) under spawn: start + join",
            || start_join(StartMethod::Spawn),
        ),
    ]
}

/// Fork and spawn start+join, with their floors, while this process holds
/// `mib` MiB of touched heap: `counts` for the fork pair and the spawn pair,
/// measured apart (interleaved with the forks, the spawns pay for the
/// forks' page-table work and look slower than they are).
fn run_rss(opts: &Options, out: &mut Outcome, mib: usize, counts: [Counts; 2], exe: &Path) {
    let fork_name = format!("process/start_join_rss{mib}/fork");
    let spawn_name = format!("process/start_join_rss{mib}/spawn");
    let server_name = format!("process/start_join_rss{mib}/forkserver");
    if !opts.wants(&fork_name) && !opts.wants(&spawn_name) && !opts.wants(&server_name) {
        return;
    }
    let ballast = payload(mib * MIB);
    group(opts, out, counts[0], note(start_join_fork_benches(&fork_name), mib));
    group(
        opts,
        out,
        counts[1],
        note(start_join_spawn_benches(&spawn_name, exe), mib),
    );
    group(opts, out, counts[1], note(forkserver_benches(&server_name), mib));
    drop(std::hint::black_box(ballast));
}

/// Appends the parent's heap size to the descriptions.
fn note(mut benches: Vec<Bench<'_>>, mib: usize) -> Vec<Bench<'_>> {
    for b in &mut benches {
        b.desc = format!("{}; parent holds {mib} MiB of touched heap", b.desc);
    }
    benches
}

fn run_cpython(opts: &Options, out: &mut Outcome) {
    // Full-run sample counts: about 2 ms, 12 ms and 55 ms per start here.
    let methods: Vec<cpython::Method> = [("fork", 200), ("forkserver", 60), ("spawn", 40)]
        .into_iter()
        .filter(|(m, _)| opts.wants(&format!("process/start_join/{m}")))
        .map(|(name, full)| cpython::Method {
            name,
            samples: opts.counts(full).samples,
        })
        .collect();
    if methods.is_empty() {
        return;
    }
    let warmup = if opts.quick { 1 } else { 3 };
    let list: Vec<String> = methods.iter().map(|m| format!("{} x{}", m.name, m.samples)).collect();
    eprintln!(
        "multiproc-bench: CPython start+join ({}), {warmup} warm-up each",
        list.join(", ")
    );
    let t = Instant::now();
    match cpython::start_join(&methods, warmup) {
        Ok(cpython::Outcome::Rows(rows)) => out.rows.extend(rows),
        Ok(cpython::Outcome::Skipped(why)) => eprintln!("multiproc-bench: CPython rows skipped: {why}"),
        Err(e) => out.failures.push(format!("CPython rows: {e}")),
    }
    eprintln!("multiproc-bench:   done in {:.1} s", t.elapsed().as_secs_f64());
}

/// A buffer of `size` bytes, every page touched.
pub(crate) fn payload(size: usize) -> Vec<u8> {
    vec![0xA5; size]
}

fn noop() {}

fn byte_len(v: Vec<u8>) -> usize {
    v.len()
}

/// multiproc: a trivial target, from `Process` creation to `join` returning.
pub(crate) fn start_join(method: StartMethod) -> Result<Duration, String> {
    let t = Instant::now();
    let mut p = ProcessBuilder::new().start_method(method).target(noop);
    p.start().map_err(|e| format!("start failed: {e}"))?;
    p.join().map_err(|e| format!("join failed: {e}"))?;
    Ok(t.elapsed())
}

/// multiproc: a `size`-byte `Vec<u8>` argument whose length the child
/// returns, from `Process` creation to `join` returning.
fn transfer(method: StartMethod, size: usize) -> Result<Duration, String> {
    let data = payload(size);
    let t = Instant::now();
    let mut p = ProcessBuilder::new().start_method(method).target_with(byte_len, data);
    p.start().map_err(|e| format!("start failed: {e}"))?;
    let len = p.join().map_err(|e| format!("join failed: {e}"))?;
    let elapsed = t.elapsed();
    if len != size {
        return Err(format!("the child saw {len} bytes, {size} were sent"));
    }
    Ok(elapsed)
}
