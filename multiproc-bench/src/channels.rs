//! The channel rows (issue 4): `Connection` (Python's `Pipe`) and `Queue`
//! throughput and latency between this process and a child started under
//! each start method, interleaved with a raw transport floor
//! ([`crate::floors::transport`]), and CPython's `Pipe`/`Queue` by the methods of
//! `shared/baselines/py_mp.py` (A3, A4).
//!
//! | row | multiproc | floor | CPython |
//! |---|---|---|---|
//! | `pipe/oneway_64B/<m>` | `send_bytes` 64 B × N, `b""`; the child `recv_bytes` and answers the byte count | socket pair, one `write` per message, reader takes what is there (also a pipe, for reference) | `Pipe()`, same |
//! | `pipe/oneway_1MiB/<m>` | same with 1 MiB; the child `recv_bytes_into` one reused buffer | socket pair, 1 MiB writes, reads into one reused buffer | `Pipe()`, same |
//! | `pipe/oneway_1MiB_alloc/<m>` | same, the child `recv_bytes` (a new `Vec` per message) | as above | as above |
//! | `pipe/pingpong_1B[_cpu0]/<m>` | `send_bytes(b"x")` + `recv_bytes` of the echo; median of a batch | socket pair, 1-byte write + read | `Pipe()`, same |
//! | `queue/echo_64B/<m>` | `put` N `Vec<u8>` of 64 B into q1, then `get` N from q2; the child moves each from q1 to q2 | socket pair, pipelined echo | two `Queue()`, same |
//! | `queue/oneway_1MiB/<m>` | `put` N `Vec<u8>` of 1 MiB, then an empty one; the child answers the byte count on a second queue | socket pair, 1 MiB | `Queue()`, same |
//!
//! Each row's child is started on its first (warm-up) sample and stopped
//! when the row is done, so a sample is only the traffic. `_cpu0` rows pin
//! both ends to CPU 0 (the parent only during its samples, so that no child
//! or fork server inherits the pinning); the others leave them where the
//! scheduler puts them, which on this VM is often on two CPUs (a wake-up
//! across CPUs costs about 20 µs). Throughput rows record the time per
//! message and are shown as msg/s or GB/s; a ping-pong sample is the median
//! round trip of its batch.

use std::{
    ops::Deref,
    time::{Duration, Instant},
};

use multiproc::{Connection, Process, ProcessBuilder, Queue, StartMethod};

use crate::{
    cli::Options,
    cpython::{self, ChannelKind, ChannelRow},
    floors::transport::{self, Echo, OneWay, PingPong, Pinned, Transport},
    harness::{Bench, Impl, Unit},
    rows::{self, Outcome},
};

const MIB: usize = 1 << 20;
const SMALL: usize = 64;

/// The start methods every channel row runs under.
const METHODS: [(StartMethod, &str); 3] = [
    (StartMethod::Spawn, "spawn"),
    (StartMethod::Fork, "fork"),
    (StartMethod::ForkServer, "forkserver"),
];

/// The last segment of a floor row's name starts with this.
const FLOOR_PREFIX: &str = "raw_";

/// Messages (or round trips) per sample.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// 64 B pipe messages (py_mp.py: 100,000).
    pipe_small: usize,
    /// 1 MiB pipe messages (py_mp.py: 200).
    pipe_big: usize,
    /// Ping-pong round trips per sample (py_mp.py: 5,000 in one batch).
    rounds: usize,
    /// 64 B queue echoes (py_mp.py: 20,000).
    echo: usize,
    /// 1 MiB queue messages (py_mp.py: 100).
    queue_big: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                pipe_small: 5_000,
                pipe_big: 20,
                rounds: 100,
                echo: 2_000,
                queue_big: 10,
            }
        } else {
            Sizes {
                pipe_small: 100_000,
                pipe_big: 200,
                rounds: 1_000,
                echo: 20_000,
                queue_big: 100,
            }
        }
    }
}

/// Full-run samples per row (CPython's are fewer: each of its samples
/// takes 0.1 to 0.3 s).
const SAMPLES: usize = 15;
const CPYTHON_SAMPLES: usize = 9;

/// Runs every channel row `opts` selects.
pub(crate) fn run_all(opts: &Options, out: &mut Outcome) {
    let sizes = Sizes::new(opts.quick);
    let counts = opts.counts(SAMPLES);
    for benches in [
        pipe_small_benches(sizes),
        pipe_big_benches(sizes),
        pingpong_benches(sizes, Some(0)),
        pingpong_benches(sizes, None),
        queue_echo_benches(sizes),
        queue_big_benches(sizes),
    ] {
        rows::run_benches(out, counts, select(opts, benches));
    }
    run_cpython(opts, out, sizes);
}

/// The benches `opts` asks for, and the floors of their group whenever one
/// of the others is asked for (a floor is a baseline, not a row of its own).
fn select<'a>(opts: &Options, benches: Vec<Bench<'a>>) -> Vec<Bench<'a>> {
    let any = benches.iter().any(|b| b.imp != Impl::Floor && opts.wants(&b.name));
    benches
        .into_iter()
        .filter(|b| opts.wants(&b.name) || (any && b.imp == Impl::Floor))
        .collect()
}

/// Whether the row `base` is a baseline of the multiproc row `cand`: the
/// same name, a floor of its family (`<family>/raw_*`), or, for a variant
/// family `<family>_alloc`, either of those for `<family>`.
pub(crate) fn is_baseline(cand: &str, base_name: &str, base_imp: Impl) -> bool {
    let Some((family, method)) = cand.rsplit_once('/') else {
        return false;
    };
    if !family.starts_with("pipe/") && !family.starts_with("queue/") {
        return false;
    }
    let mut families = vec![family];
    if let Some(plain) = family.strip_suffix("_alloc") {
        families.push(plain);
    }
    families.into_iter().any(|f| {
        base_name
            .strip_prefix(f)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|last| last == method || (base_imp == Impl::Floor && last.starts_with(FLOOR_PREFIX)))
    })
}

/// A bench whose peer is made on its first sample and kept (and dropped,
/// stopping the child, with the bench).
pub(crate) fn lazily<'a, P: 'a>(
    start: impl Fn() -> Result<P, String> + 'a,
    mut sample: impl FnMut(&mut P) -> Result<Duration, String> + 'a,
) -> impl FnMut() -> Result<Duration, String> + 'a {
    let mut peer: Option<P> = None;
    move || {
        if peer.is_none() {
            peer = Some(start()?);
        }
        sample(peer.as_mut().expect("just set"))
    }
}

fn floor_name(family: &str, what: &str) -> String {
    format!("{family}/{FLOOR_PREFIX}{what}")
}

// --------------------------------------------------------------------------
// Connection rows
// --------------------------------------------------------------------------

/// A child holding the other end of `conn`; told to stop with `quit` and
/// joined on drop.
pub(crate) struct ConnPeer {
    conn: Connection,
    child: Stopped,
    quit: &'static [u8],
}

impl ConnPeer {
    pub(crate) fn start<A>(
        method: StartMethod,
        target: fn((Connection, A)) -> u64,
        arg: A,
        quit: &'static [u8],
    ) -> Result<ConnPeer, String>
    where
        A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let (ours, theirs) = multiproc::pipe(true).map_err(|e| format!("pipe failed: {e}"))?;
        let mut p = ProcessBuilder::new()
            .start_method(method)
            .target_with(target, (theirs, arg));
        p.start().map_err(|e| format!("start failed: {e}"))?;
        Ok(ConnPeer {
            conn: ours,
            child: Stopped(p),
            quit,
        })
    }
}

impl Deref for ConnPeer {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for ConnPeer {
    fn drop(&mut self) {
        let _ = self.conn.send_bytes(self.quit);
        self.child.stop();
    }
}

/// A started child, joined (killed if it does not end) when stopped.
struct Stopped(Process<u64>);

impl Stopped {
    fn stop(&mut self) {
        if self.0.join_timeout(Duration::from_secs(10)).is_err() {
            let _ = self.0.kill();
            let _ = self.0.join_timeout(Duration::from_secs(10));
        }
    }
}

/// Child: receives until b"Q" (or the end), answering the byte count since
/// the last answer on every empty message; with `into`, into one reused
/// buffer, else as a new `Vec` per message.
pub(crate) fn conn_sink((conn, into): (Connection, bool)) -> u64 {
    let mut buf = vec![0u8; if into { MIB } else { 0 }];
    let mut total = 0u64;
    let mut reps = 0;
    loop {
        let got = if into {
            conn.recv_bytes_into(&mut buf, 0)
        } else {
            conn.recv_bytes().map(|m| m.len())
        };
        match got {
            Ok(0) => {
                conn.send_bytes(&total.to_le_bytes()).expect("answer the byte count");
                total = 0;
                reps += 1;
            }
            Ok(1) | Err(multiproc::RecvError::Disconnected) => return reps,
            Ok(n) => total += n as u64,
            Err(e) => panic!("recv failed: {e}"),
        }
    }
}

/// Child: optionally pinned, sends every message back until an empty one
/// (or the end).
pub(crate) fn conn_echo((conn, cpu): (Connection, Option<usize>)) -> u64 {
    if let Some(cpu) = cpu {
        transport::pin_self(cpu).expect("pin the child");
    }
    let mut n = 0;
    loop {
        match conn.recv_bytes() {
            Ok(m) if m.is_empty() => return n,
            Ok(m) => conn.send_bytes(&m).expect("echo"),
            Err(multiproc::RecvError::Disconnected) => return n,
            Err(e) => panic!("recv failed: {e}"),
        }
        n += 1;
    }
}

/// One repetition of the one-way rows: `count` messages, an empty one, the
/// byte count back.
pub(crate) fn conn_oneway(peer: &mut ConnPeer, msg: &[u8], count: usize) -> Result<Duration, String> {
    conn_oneway_each(peer, std::iter::repeat_n(msg, count))
}

/// Sends each of `msgs` (then an empty message) to a [`conn_sink`] child and
/// times it until the child's byte count comes back. The messages may be
/// owned buffers: each is dropped once sent, inside the timing.
pub(crate) fn conn_oneway_each<M: AsRef<[u8]>>(
    peer: &mut ConnPeer,
    msgs: impl IntoIterator<Item = M>,
) -> Result<Duration, String> {
    let mut want = 0u64;
    let t = Instant::now();
    for msg in msgs {
        let msg = msg.as_ref();
        peer.send_bytes(msg).map_err(|e| format!("send_bytes failed: {e}"))?;
        want += msg.len() as u64;
    }
    peer.send_bytes(b"").map_err(|e| format!("send_bytes failed: {e}"))?;
    let ack = peer.recv_bytes().map_err(|e| format!("no byte count: {e}"))?;
    let elapsed = t.elapsed();
    if ack != want.to_le_bytes() {
        return Err(format!("the child answered {ack:?}, {want} bytes were sent"));
    }
    Ok(elapsed)
}

fn pipe_small_benches(sizes: Sizes) -> Vec<Bench<'static>> {
    let family = "pipe/oneway_64B";
    let n = sizes.pipe_small;
    let mut v = vec![
        Bench::new(
            floor_name(family, "socketpair"),
            Impl::Floor,
            "socketpair(AF_UNIX, SOCK_STREAM) to a forked child: one write() per 64 B message, reader read()s what is there",
            {
                let mut f = OneWay::new(Transport::SocketPair, SMALL, n);
                move || f.sample()
            },
        ),
        Bench::new(
            floor_name(family, "pipe"),
            Impl::Floor,
            "pipe(2) (64 KiB) to a forked child: one write() per 64 B message, reader read()s what is there",
            {
                let mut f = OneWay::new(Transport::Pipe, SMALL, n);
                move || f.sample()
            },
        ),
    ];
    for (method, m) in METHODS {
        let msg = vec![0x5Au8; SMALL];
        v.push(Bench::new(
            format!("{family}/{m}"),
            Impl::Multiproc,
            format!("pipe(true); send_bytes(64 B) x{n} + b\"\" to a {m} child that recv_bytes and answers the count"),
            lazily(
                move || ConnPeer::start(method, conn_sink, false, b"Q"),
                move |p| conn_oneway(p, &msg, n),
            ),
        ));
    }
    v.into_iter().map(|b| b.per(n as u64, Unit::Msgs)).collect()
}

fn pipe_big_benches(sizes: Sizes) -> Vec<Bench<'static>> {
    let family = "pipe/oneway_1MiB";
    let n = sizes.pipe_big;
    let mut v = vec![Bench::new(
        floor_name(family, "socketpair"),
        Impl::Floor,
        "socketpair to a forked child: 1 MiB write()s, reader read()s into one reused 1 MiB buffer",
        {
            let mut f = OneWay::new(Transport::SocketPair, MIB, n);
            move || f.sample()
        },
    )];
    for (into, family, how) in [
        (true, family, "recv_bytes_into a reused buffer"),
        (false, "pipe/oneway_1MiB_alloc", "recv_bytes (a new Vec each)"),
    ] {
        for (method, m) in METHODS {
            let msg = vec![0x5Au8; MIB];
            v.push(Bench::new(
                format!("{family}/{m}"),
                Impl::Multiproc,
                format!("pipe(true); send_bytes(1 MiB) x{n} + b\"\" to a {m} child that {how}"),
                lazily(
                    move || ConnPeer::start(method, conn_sink, into, b"Q"),
                    move |p| conn_oneway(p, &msg, n),
                ),
            ));
        }
    }
    v.into_iter()
        .map(|b| b.per(n as u64, Unit::Bytes(MIB as u64)))
        .collect()
}

fn pingpong_benches(sizes: Sizes, cpu: Option<usize>) -> Vec<Bench<'static>> {
    let (family, where_) = match cpu {
        Some(_) => ("pipe/pingpong_1B_cpu0", "both ends pinned to CPU 0"),
        None => ("pipe/pingpong_1B", "unpinned"),
    };
    let rounds = sizes.rounds;
    let mut v = vec![Bench::new(
        floor_name(family, "socketpair"),
        Impl::Floor,
        format!("socketpair to a forked child: 1 B write + read of the echo, {where_}; median of {rounds}"),
        {
            let mut f = PingPong::new(rounds, cpu);
            move || f.sample()
        },
    )];
    for (method, m) in METHODS {
        let mut rtts = Vec::with_capacity(rounds);
        v.push(Bench::new(
            format!("{family}/{m}"),
            Impl::Multiproc,
            format!("pipe(true); send_bytes(b\"x\") + recv_bytes of a {m} child's echo, {where_}; median of {rounds}"),
            lazily(
                move || ConnPeer::start(method, conn_echo, cpu, b""),
                move |p| {
                    let _pin = cpu.map(Pinned::to).transpose()?;
                    rtts.clear();
                    for _ in 0..rounds {
                        let t = Instant::now();
                        p.send_bytes(b"x").map_err(|e| format!("send_bytes failed: {e}"))?;
                        let m = p.recv_bytes().map_err(|e| format!("recv_bytes failed: {e}"))?;
                        rtts.push(t.elapsed().as_nanos() as u64);
                        if m != b"x" {
                            return Err(format!("the child echoed {m:?}"));
                        }
                    }
                    Ok(transport::median_ns(&mut rtts))
                },
            ),
        ));
    }
    v
}

// --------------------------------------------------------------------------
// Queue rows
// --------------------------------------------------------------------------

/// A queue child's argument: the queue it gets from, the one it answers on.
type Queues<B> = (Queue<Vec<u8>>, Queue<B>);

/// A child between two queues: `put` feeds it, `back` carries its answers.
/// On drop it is sent `quit` and joined.
struct QueuePeer<B> {
    put: Queue<Vec<u8>>,
    back: Queue<B>,
    child: Stopped,
    quit: &'static [u8],
}

impl<B: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> QueuePeer<B> {
    fn start(method: StartMethod, target: fn(Queues<B>) -> u64, quit: &'static [u8]) -> Result<QueuePeer<B>, String> {
        let put = Queue::new().map_err(|e| format!("Queue::new failed: {e}"))?;
        let back = Queue::new().map_err(|e| format!("Queue::new failed: {e}"))?;
        let mut p = ProcessBuilder::new()
            .start_method(method)
            .target_with(target, (put.clone(), back.clone()));
        p.start().map_err(|e| format!("start failed: {e}"))?;
        Ok(QueuePeer {
            put,
            back,
            child: Stopped(p),
            quit,
        })
    }
}

impl<B> Drop for QueuePeer<B> {
    fn drop(&mut self) {
        let _ = self.put.put(self.quit.to_vec());
        self.child.stop();
    }
}

/// Child: moves every item from `qin` to `qout` until an empty one.
fn queue_echo((qin, qout): Queues<Vec<u8>>) -> u64 {
    let mut n = 0;
    loop {
        let m = qin.get().expect("get");
        if m.is_empty() {
            return n;
        }
        qout.put(m).expect("put");
        n += 1;
    }
}

/// Child: counts the bytes of the items of `qin`, answers the count on
/// `qack` at every empty item, ends at a 1-byte one.
fn queue_sink((qin, qack): Queues<u64>) -> u64 {
    let (mut total, mut reps) = (0u64, 0);
    loop {
        match qin.get().expect("get").len() {
            0 => {
                qack.put(total).expect("put");
                total = 0;
                reps += 1;
            }
            1 => return reps,
            n => total += n as u64,
        }
    }
}

fn queue_echo_benches(sizes: Sizes) -> Vec<Bench<'static>> {
    let family = "queue/echo_64B";
    let n = sizes.echo;
    let mut v = vec![Bench::new(
        floor_name(family, "socketpair"),
        Impl::Floor,
        "socketpair to a forked child that writes back what it reads: one write() per 64 B message, parent polls both ways",
        {
            let mut f = Echo::new(SMALL, n);
            move || f.sample()
        },
    )];
    for (method, m) in METHODS {
        let msg = vec![0x5Au8; SMALL];
        v.push(Bench::new(
            format!("{family}/{m}"),
            Impl::Multiproc,
            format!("Queue<Vec<u8>>: put {n} x 64 B into q1, then get {n} from q2; a {m} child moves each across"),
            lazily(
                move || QueuePeer::<Vec<u8>>::start(method, queue_echo, b""),
                move |p| {
                    let t = Instant::now();
                    for _ in 0..n {
                        p.put.put(msg.clone()).map_err(|e| format!("put failed: {e}"))?;
                    }
                    for _ in 0..n {
                        let m = p.back.get().map_err(|e| format!("get failed: {e}"))?;
                        if m.len() != SMALL {
                            return Err(format!("got a {}-byte item", m.len()));
                        }
                    }
                    Ok(t.elapsed())
                },
            ),
        ));
    }
    v.into_iter().map(|b| b.per(n as u64, Unit::Msgs)).collect()
}

fn queue_big_benches(sizes: Sizes) -> Vec<Bench<'static>> {
    let family = "queue/oneway_1MiB";
    let n = sizes.queue_big;
    let mut v = vec![Bench::new(
        floor_name(family, "socketpair"),
        Impl::Floor,
        "socketpair to a forked child: 1 MiB write()s, reader read()s into one reused 1 MiB buffer",
        {
            let mut f = OneWay::new(Transport::SocketPair, MIB, n);
            move || f.sample()
        },
    )];
    for (method, m) in METHODS {
        let big = vec![0x5Au8; MIB];
        v.push(Bench::new(
            format!("{family}/{m}"),
            Impl::Multiproc,
            format!(
                "Queue<Vec<u8>>: put(big.clone()) of 1 MiB x{n} + an empty one; a {m} child counts, puts the total on a Queue<u64>"
            ),
            lazily(
                move || QueuePeer::<u64>::start(method, queue_sink, b"Q"),
                move |p| {
                    let t = Instant::now();
                    for _ in 0..n {
                        p.put.put(big.clone()).map_err(|e| format!("put failed: {e}"))?;
                    }
                    p.put.put(Vec::new()).map_err(|e| format!("put failed: {e}"))?;
                    let got = p.back.get().map_err(|e| format!("get failed: {e}"))?;
                    let elapsed = t.elapsed();
                    if got != (n * MIB) as u64 {
                        return Err(format!("the child got {got} bytes, {} were sent", n * MIB));
                    }
                    Ok(elapsed)
                },
            ),
        ));
    }
    v.into_iter()
        .map(|b| b.per(n as u64, Unit::Bytes(MIB as u64)))
        .collect()
}

// --------------------------------------------------------------------------
// CPython
// --------------------------------------------------------------------------

/// CPython's rows for the channel rows `opts` selects (a row also serves
/// the `_alloc` variant of its family), measured apart in one script run.
fn run_cpython(opts: &Options, out: &mut Outcome, sizes: Sizes) {
    let mut specs = Vec::new();
    for (_, m) in METHODS {
        let mut add = |family: &str, kind, size, count: usize, pin, unit, desc: String, also: &[&str]| {
            let name = format!("{family}/{m}");
            let wanted = opts.wants(&name) || also.iter().any(|f| opts.wants(&format!("{f}/{m}")));
            if wanted {
                let ops = if matches!(kind, ChannelKind::PipePingpong) {
                    1
                } else {
                    count as u64
                };
                specs.push(ChannelRow {
                    name,
                    kind,
                    method: m,
                    size,
                    count,
                    pin,
                    unit,
                    ops,
                    desc,
                });
            }
        };
        let (n, b, r, e, q) = (
            sizes.pipe_small,
            sizes.pipe_big,
            sizes.rounds,
            sizes.echo,
            sizes.queue_big,
        );
        add(
            "pipe/oneway_64B",
            ChannelKind::PipeOneway,
            SMALL,
            n,
            None,
            Unit::Msgs,
            format!("CPython {m}: Pipe() send_bytes(64 B) x{n} + b\"\" to a recv_bytes child, count back"),
            &[],
        );
        add(
            "pipe/oneway_1MiB",
            ChannelKind::PipeOneway,
            MIB,
            b,
            None,
            Unit::Bytes(MIB as u64),
            format!("CPython {m}: Pipe() send_bytes(1 MiB) x{b} + b\"\" to a recv_bytes child, count back"),
            &["pipe/oneway_1MiB_alloc"],
        );
        for (family, pin, where_) in [
            ("pipe/pingpong_1B_cpu0", Some(0), "both on CPU 0"),
            ("pipe/pingpong_1B", None, "unpinned"),
        ] {
            add(
                family,
                ChannelKind::PipePingpong,
                1,
                r,
                pin,
                Unit::Time,
                format!("CPython {m}: Pipe() send_bytes(b\"x\") + recv_bytes of the echo, {where_}; median of {r}"),
                &[],
            );
        }
        add(
            "queue/echo_64B",
            ChannelKind::QueueEcho,
            SMALL,
            e,
            None,
            Unit::Msgs,
            format!("CPython {m}: Queue() put {e} x 64 B, then get {e} from a second Queue via an echo child"),
            &[],
        );
        add(
            "queue/oneway_1MiB",
            ChannelKind::QueueOneway,
            MIB,
            q,
            None,
            Unit::Bytes(MIB as u64),
            format!("CPython {m}: Queue() put 1 MiB bytes x{q} + b\"\", count back on a second Queue"),
            &[],
        );
    }
    if specs.is_empty() {
        return;
    }
    let warmup = 1;
    let samples = match (opts.iters, opts.quick) {
        (Some(n), _) => n,
        (None, true) => 2,
        (None, false) => CPYTHON_SAMPLES,
    };
    eprintln!(
        "multiproc-bench: CPython Pipe/Queue ({} rows), {warmup} warm-up + {samples} samples each",
        specs.len()
    );
    let t = Instant::now();
    match cpython::channels(&specs, warmup, samples) {
        Ok(cpython::Outcome::Rows(rows)) => out.rows.extend(rows),
        Ok(cpython::Outcome::Skipped(why)) => eprintln!("multiproc-bench: CPython rows skipped: {why}"),
        Err(e) => out.failures.push(format!("CPython channel rows: {e}")),
    }
    eprintln!("multiproc-bench:   done in {:.1} s", t.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines() {
        let b = |c, n, i| is_baseline(c, n, i);
        assert!(b("pipe/oneway_64B/fork", "pipe/oneway_64B/fork", Impl::Cpython));
        assert!(b("pipe/oneway_64B/fork", "pipe/oneway_64B/raw_pipe", Impl::Floor));
        assert!(!b("pipe/oneway_64B/fork", "pipe/oneway_64B/spawn", Impl::Cpython));
        assert!(!b(
            "pipe/oneway_64B/fork",
            "pipe/oneway_1MiB/raw_socketpair",
            Impl::Floor
        ));
        assert!(b(
            "pipe/oneway_1MiB_alloc/spawn",
            "pipe/oneway_1MiB/spawn",
            Impl::Cpython
        ));
        assert!(b(
            "pipe/oneway_1MiB_alloc/spawn",
            "pipe/oneway_1MiB/raw_socketpair",
            Impl::Floor
        ));
        assert!(!b(
            "pipe/pingpong_1B/fork",
            "pipe/pingpong_1B_cpu0/raw_socketpair",
            Impl::Floor
        ));
        assert!(!b("process/start_join/fork", "process/start_join/raw_x", Impl::Floor));
    }
}
