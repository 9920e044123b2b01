//! Rows of the codec (serde values, not raw bytes), measured alone: they
//! have no outside baseline, and compare builds of this library (a codec
//! change is judged by running the old and the new build's rows
//! alternately).
//!
//! | row | what |
//! |---|---|
//! | `pool/map_100k_structs/<m>` | `Pool(2).map` of 100 000 small structs (`u64`, `f64`, a 10-byte `String`, `u8`), each task returning such a struct; automatic chunk size; tasks/s |
//! | `pipe/nested_struct/fork` | `send` of a nested struct (about 190 bytes encoded: a `String`, 8 items each with a `String`, a `Vec<u16>`, an `Option<f64>` and an enum, 8 pairs, an inner struct) to a forked child that `recv`s it as that type; messages/s |
//! | `pipe/nested_1MiB/fork` | the same with 30 000 items (about 1 MiB encoded); GB/s of encoded bytes |
//!
//! `--quick` sends fewer messages per sample and says so.

use std::{
    hint::black_box,
    sync::OnceLock,
    time::{Duration, Instant},
};

use multiproc::{Connection, Pool, ProcessBuilder, RecvError, StartMethod};
use serde::{Deserialize, Serialize};

use crate::{
    cli::Options,
    harness::{Bench, Impl, Unit},
    rows::{METHODS, Outcome, run_benches},
};

/// Runs the codec rows `opts` selects.
pub(crate) fn run_all(opts: &Options, out: &mut Outcome) {
    run_pipe(opts, out);
    run_pool(opts, out);
}

/// A small struct, as a `map` over records would carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Small {
    id: u64,
    score: f64,
    name: String,
    flags: u8,
}

fn small(i: u64) -> Small {
    Small {
        id: i,
        score: i as f64 * 0.5,
        name: format!("item-{i:05}"),
        flags: (i % 7) as u8,
    }
}

/// The pool rows' task: a struct in, a struct out.
fn bump(s: Small) -> Small {
    Small {
        id: s.id + 1,
        score: s.score * 2.0,
        name: s.name,
        flags: s.flags ^ 1,
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Kind {
    A,
    B(u32),
    C { x: i64, y: Option<String> },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Item {
    id: u32,
    name: String,
    vals: Vec<u16>,
    opt: Option<f64>,
    kind: Kind,
}

/// A nested struct: strings, vectors, options, enums and a boxed inner
/// value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Nested {
    title: String,
    items: Vec<Item>,
    pairs: Vec<(u64, i32)>,
    inner: Option<Box<Nested>>,
}

fn item(i: u32) -> Item {
    Item {
        id: i,
        name: format!("n{i}"),
        vals: vec![i as u16, 2, 3, 4],
        opt: (i % 2 == 0).then_some(f64::from(i)),
        kind: match i % 3 {
            0 => Kind::A,
            1 => Kind::B(i),
            _ => Kind::C {
                x: -i64::from(i),
                y: Some("y".into()),
            },
        },
    }
}

fn nested(n: u32) -> Nested {
    Nested {
        title: "hello".into(),
        items: (0..n).map(item).collect(),
        pairs: (0..u64::from(n)).map(|i| (i * 1000, -(i as i32))).collect(),
        inner: Some(Box::new(Nested {
            title: "inner".into(),
            items: vec![item(1)],
            pairs: Vec::new(),
            inner: None,
        })),
    }
}

/// Items of the small and the 1 MiB nested struct.
const SMALL_ITEMS: u32 = 8;
const BIG_ITEMS: u32 = 30_000;

fn small_nested() -> &'static Nested {
    static V: OnceLock<Nested> = OnceLock::new();
    V.get_or_init(|| nested(SMALL_ITEMS))
}

fn big_nested() -> &'static Nested {
    static V: OnceLock<Nested> = OnceLock::new();
    V.get_or_init(|| nested(BIG_ITEMS))
}

/// Child: receives `count` values of `Nested` (checking the item count),
/// then answers `count`; again until the end of the stream.
fn nested_sink((conn, count, items): (Connection, usize, u32)) -> u64 {
    let mut reps = 0;
    loop {
        for i in 0..count {
            match conn.recv::<Nested>() {
                Ok(v) => assert_eq!(black_box(v).items.len(), items as usize, "a wrong value"),
                Err(RecvError::Disconnected) if i == 0 => return reps,
                Err(e) => panic!("recv failed: {e}"),
            }
        }
        conn.send(count as u64).expect("answer the count");
        reps += 1;
    }
}

/// One sample: `count` values sent, the child's count back.
fn send_nested(conn: &Connection, value: &'static Nested, count: usize) -> Result<Duration, String> {
    let t = Instant::now();
    for _ in 0..count {
        conn.send(value)
            .map_err(|e| format!("send failed: {}", e.into_error()))?;
    }
    let n: u64 = conn.recv().map_err(|e| format!("no count back: {e}"))?;
    let took = t.elapsed();
    if n != count as u64 {
        return Err(format!("the child counted {n} of {count}"));
    }
    Ok(took)
}

fn run_pipe(opts: &Options, out: &mut Outcome) {
    let rows = [
        (
            "pipe/nested_struct/fork",
            SMALL_ITEMS,
            if opts.quick { 500 } else { 10_000 },
        ),
        ("pipe/nested_1MiB/fork", BIG_ITEMS, if opts.quick { 2 } else { 8 }),
    ];
    for (name, items, count) in rows {
        if !opts.wants(name) {
            continue;
        }
        let value = if items == SMALL_ITEMS {
            small_nested()
        } else {
            big_nested()
        };
        let size = multiproc_encoded_len(value);
        let (ours, theirs) = match multiproc::pipe(true) {
            Ok(p) => p,
            Err(e) => {
                out.failures.push(format!("{name}: pipe failed: {e}"));
                continue;
            }
        };
        let mut child = ProcessBuilder::new()
            .start_method(StartMethod::Fork)
            .target_with(nested_sink, (theirs, count, items));
        if let Err(e) = child.start() {
            out.failures.push(format!("{name}: start failed: {e}"));
            continue;
        }
        let desc = format!(
            "send {count} nested structs of {items} items ({size} bytes encoded) to a forked child that recv()s them"
        );
        let conn = &ours;
        let bench = Bench::new(name, Impl::Multiproc, desc, move || send_nested(conn, value, count));
        let bench = if items == SMALL_ITEMS {
            bench.per(count as u64, Unit::Msgs)
        } else {
            bench.per(count as u64, Unit::Bytes(size as u64))
        };
        run_benches(out, opts.counts(20), vec![bench]);
        drop(ours);
        if child.join_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let _ = child.join_timeout(Duration::from_secs(10));
        }
    }
}

/// How many bytes `value` takes on the wire (the message's length as the
/// other end receives it).
fn multiproc_encoded_len(value: &'static Nested) -> usize {
    let Ok((a, b)) = multiproc::pipe(true) else { return 0 };
    std::thread::scope(|s| {
        let reader = s.spawn(move || b.recv_bytes().map(|m| m.len()).unwrap_or(0));
        let _ = a.send(value);
        reader.join().unwrap_or(0)
    })
}

fn run_pool(opts: &Options, out: &mut Outcome) {
    let n: usize = if opts.quick { 10_000 } else { 100_000 };
    let quick = if opts.quick { " (--quick: 10k, not 100k)" } else { "" };
    for (m, mname) in METHODS {
        let name = format!("pool/map_100k_structs/{mname}");
        if !opts.wants(&name) {
            continue;
        }
        let pool = match Pool::builder().processes(2).start_method(m).build() {
            Ok(p) => p,
            Err(e) => {
                out.failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let items: Vec<Small> = (0..n as u64).map(small).collect();
        let p = &pool;
        let items = &items;
        let desc = format!(
            "Pool(2).map of {n} small structs{quick} (u64, f64, String, u8) to such structs, automatic chunk size"
        );
        let bench = Bench::new(name, Impl::Multiproc, desc, move || {
            let args = items.clone();
            let t = Instant::now();
            let r = p.map(bump, args).map_err(|e| e.to_string())?;
            let took = t.elapsed();
            if r.len() != n || r[n - 1] != bump(small(n as u64 - 1)) {
                return Err("wrong map result".into());
            }
            Ok(took)
        })
        .per(n as u64, Unit::Msgs);
        run_benches(out, opts.counts(20), vec![bench]);
        drop(pool);
    }
}
