//! Ratios between rows, and the two output formats.
//!
//! A ratio is multiproc's time over a baseline's time for the same
//! operation (unit `x`, lower is better). When the two rows were measured
//! interleaved, sample `i` of each was taken in the same round, and the
//! ratio's `median`, `min` and `max` are those of the per-round ratios
//! (`paired`), which cancels the machine's slow drifts. Otherwise (CPython,
//! measured apart) `median` is the ratio of the medians and `min`/`max` the
//! extreme ratios any two samples could give. `of_medians` is always the
//! ratio of the medians. Targets judge `median`.
//!
//! Rate rows (msg/s, GB/s) keep times per message as samples, so their
//! ratios are time ratios too; the table shows them the other way up, as
//! multiproc's rate over the baseline's (higher is better), and so does
//! `rate_ratio` in the JSON. A few rows also have a target on their own
//! rate ([`Goal`]).

use serde::Serialize;

use crate::{
    channels,
    cli::Options,
    harness::{Impl, Row, Stats, Unit},
    pool_rows,
};

/// multiproc's row against one baseline row.
#[derive(Debug)]
pub(crate) struct Ratio {
    /// The multiproc row's name.
    pub(crate) name: String,
    pub(crate) baseline: Impl,
    /// The baseline row's name, when it differs from `name`.
    pub(crate) baseline_name: Option<String>,
    pub(crate) stats: Stats,
    /// Whether `stats` are those of per-round ratios.
    pub(crate) paired: bool,
    /// The candidate's median over the baseline's median.
    pub(crate) of_medians: f64,
    /// The ratio to stay at or below, when the project set one.
    pub(crate) target: Option<Target>,
    /// The candidate's unit: a rate row's ratio is shown as a rate ratio.
    pub(crate) unit: Unit,
}

/// A bound on a ratio and where it comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) max: f64,
    pub(crate) why: &'static str,
}

impl Ratio {
    pub(crate) fn label(&self) -> String {
        format!("ratio_vs_{}", self.baseline.as_str())
    }

    pub(crate) fn pass(&self) -> Option<bool> {
        self.target.map(|t| self.stats.median <= t.max)
    }

    /// The baseline as shown: its kind, and its row's name when that is
    /// not the candidate's (only the last segment within one family).
    fn baseline_label(&self) -> String {
        let Some(base) = self.baseline_name.as_deref() else {
            return self.baseline.as_str().to_owned();
        };
        let family = |n: &str| n.rsplit_once('/').map(|(f, _)| f.to_owned());
        let shown = match (family(base), family(&self.name)) {
            (Some(a), Some(b)) if a == b => base.rsplit('/').next().unwrap_or(base),
            _ => base,
        };
        format!("{} ({shown})", self.baseline.as_str())
    }

    /// The median as shown: a time ratio, or for a rate row the rate
    /// ratio (its inverse).
    fn shown(&self) -> f64 {
        if self.unit.is_rate() {
            1.0 / self.stats.median
        } else {
            self.stats.median
        }
    }
}

/// A bound on a multiproc row's own rate.
#[derive(Debug)]
pub(crate) struct Goal {
    pub(crate) name: String,
    pub(crate) unit: Unit,
    /// The row's median, in `unit`.
    pub(crate) value: f64,
    /// The rate to reach, in `unit`.
    pub(crate) min: f64,
    pub(crate) why: &'static str,
}

impl Goal {
    pub(crate) fn pass(&self) -> bool {
        self.value >= self.min
    }
}

/// Rates the issue sets for multiproc rows, in the rows' units.
fn goal(name: &str) -> Option<(f64, &'static str)> {
    match name.rsplit_once('/')?.0 {
        "queue/echo_64B" => Some((1e6, ">= 1 M msg/s")),
        "queue/oneway_1MiB" => Some((2.5, ">= 2.5 GB/s")),
        _ => None,
    }
}

/// The goals of the multiproc rows that have one.
pub(crate) fn goals(rows: &[Row]) -> Vec<Goal> {
    rows.iter()
        .filter(|r| r.imp == Impl::Multiproc)
        .filter_map(|r| {
            let (min, why) = goal(&r.name)?;
            Some(Goal {
                name: r.name.clone(),
                unit: r.unit,
                value: r.unit.value(r.stats.median),
                min,
                why,
            })
        })
        .collect()
}

/// Targets from the issues and from `shared/reference/performance.md`,
/// as bounds on the time ratio (a rate that must reach 70 % of the
/// baseline's is a time at most 1 / 0.7 of it).
fn target(name: &str, base_name: &str, baseline: Impl) -> Option<Target> {
    let t = |max, why| Some(Target { max, why });
    let family = name.rsplit_once('/').map_or("", |(f, _)| f);
    let base_last = base_name.rsplit('/').next().unwrap_or_default();
    let raw_socketpair = baseline == Impl::Floor && base_last == "raw_socketpair";
    match (family, baseline) {
        ("pipe/oneway_64B", Impl::Floor) if raw_socketpair => {
            return t(1.0 / 0.7, ">= 70 % of the raw socket pair's rate (aim 100 %)");
        }
        ("pipe/oneway_1MiB", Impl::Floor) if raw_socketpair => {
            return t(1.0 / 0.8, ">= 80 % of the raw socket pair's rate (aim 90 %)");
        }
        ("pipe/pingpong_1B" | "pipe/pingpong_1B_cpu0", Impl::Floor) if raw_socketpair => {
            return t(1.3, "<= 1.3x the raw socket pair's round trip (aim 1.1x)");
        }
        ("queue/echo_64B", Impl::Cpython) => return t(1.0 / 8.0, ">= 8x CPython's rate"),
        ("queue/oneway_1MiB", Impl::Floor) if raw_socketpair => {
            return t(1.0 / 0.4, ">= 40 % of the raw socket pair's rate");
        }
        _ => {}
    }
    match (name, baseline) {
        ("cluster/ready_6/srun" | "cluster/ready_6/tcp", Impl::Floor) => {
            t(1.2, "<= 1.2x the bare launch of the same executable doing nothing")
        }
        ("cluster/map_10k_chunk1/tcp" | "cluster/map_10k_chunk1/env", Impl::OwnLocalPool) => {
            t(1.0 / 0.5, ">= 50 % of the local Pool(6)'s rate")
        }
        ("cluster/map_100k_auto/tcp" | "cluster/map_100k_auto/env", Impl::OwnLocalPool) => {
            t(1.0 / 0.8, ">= 80 % of the local Pool(6)'s rate")
        }
        ("cluster/map_1mib/tcp" | "cluster/map_1mib/env", Impl::Floor) => {
            t(1.0 / 0.8, ">= 80 % of a raw TCP stream's rate")
        }
        ("process/start_join/spawn", Impl::Floor) => t(1.5, "<= 1.5x the re-exec + handshake floor"),
        ("process/start_join/fork", Impl::Floor) => t(2.0, "<= 2x the raw fork floor"),
        ("process/start_join/spawn", Impl::Cpython) => t(1.0 / 40.0, ">= 40x faster than CPython"),
        ("process/start_join/fork", Impl::Cpython) => t(1.0 / 5.0, ">= 5x faster than CPython"),
        ("process/start_join/forkserver", Impl::OwnSpawn) => t(0.6, "<= 0.6x this library's own spawn"),
        ("process/start_join/forkserver", Impl::Cpython) => t(1.0 / 20.0, "aim: >= 20x faster than CPython"),
        ("process/transfer_16MiB/spawn" | "process/transfer_16MiB/fork", Impl::Procspawn) => {
            t(0.25, ">= 4x faster than procspawn")
        }
        ("sync/handoff_pinned" | "sync/handoff", Impl::Floor) => t(1.3, "<= 1.3x the raw futex ping-pong"),
        ("executor/map_10k/fork" | "executor/map_10k/spawn" | "executor/map_10k/forkserver", Impl::Cpython) => {
            t(1.0 / 20.0, ">= 20x CPython's ProcessPoolExecutor(2).map rate")
        }
        (
            "pool/lifecycle_map2/fork" | "pool/lifecycle_map2/spawn" | "pool/lifecycle_map2/forkserver",
            Impl::OwnProcess,
        ) => t(2.0, "<= 2x this library's own Process start+join"),
        ("pool/map_1mib/fork" | "pool/map_1mib/spawn" | "pool/map_1mib/forkserver", Impl::OwnPipe) => {
            t(1.0 / 0.8, ">= 80 % of this library's Pipe 1 MiB rate")
        }
        _ => crate::shm_rows::target(name, baseline).and_then(|(max, why)| t(max, why)),
    }
}

/// Every multiproc row against each baseline row of the same name; the
/// fork transfer also against procspawn's (spawn-only) transfer.
pub(crate) fn ratios(rows: &[Row]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for cand in rows.iter().filter(|r| r.imp == Impl::Multiproc) {
        let mut baselines: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                r.imp != Impl::Multiproc
                    && (r.name == cand.name
                        || channels::is_baseline(&cand.name, &r.name, r.imp)
                        || pool_rows::is_baseline(&cand.name, &r.name, r.imp))
            })
            .collect();
        if cand.name == "process/transfer_16MiB/fork" {
            baselines.extend(
                rows.iter()
                    .filter(|r| r.imp == Impl::Procspawn && r.name == "process/transfer_16MiB/spawn"),
            );
        }
        for base in baselines {
            let (c, b) = (cand.stats, base.stats);
            let paired = cand.paired_with(base);
            let per_round: Vec<f64> = cand.samples.iter().zip(&base.samples).map(|(c, b)| c / b).collect();
            let stats = match Stats::of(&per_round) {
                Some(s) if paired => s,
                _ => Stats {
                    median: c.median / b.median,
                    min: c.min / b.max,
                    max: c.max / b.min,
                    n: c.n.min(b.n),
                },
            };
            out.push(Ratio {
                name: cand.name.clone(),
                baseline: base.imp,
                baseline_name: (base.name != cand.name).then(|| base.name.clone()),
                stats,
                paired,
                of_medians: c.median / b.median,
                target: target(&cand.name, &base.name, base.imp),
                unit: cand.unit,
            });
        }
    }
    out
}

/// Rows grouped by name (in order of first appearance), multiproc first.
fn grouped(rows: &[Row]) -> Vec<&Row> {
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    let rank = |i: Impl| {
        [
            Impl::Multiproc,
            Impl::Floor,
            Impl::FloorSingle,
            Impl::OwnSpawn,
            Impl::OwnProcess,
            Impl::OwnPipe,
            Impl::OwnBlocking,
            Impl::OwnLocalPool,
            Impl::Procspawn,
            Impl::Cpython,
        ]
        .iter()
        .position(|&x| x == i)
    };
    let mut out: Vec<&Row> = rows.iter().collect();
    out.sort_by_key(|r| (names.iter().position(|n| *n == r.name), rank(r.imp)));
    out
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// One line of `--json` output.
#[derive(Serialize)]
struct JsonLine<'a> {
    name: &'a str,
    #[serde(rename = "impl")]
    imp: &'a str,
    unit: &'static str,
    median: f64,
    min: f64,
    max: f64,
    n: usize,
    /// A rate row's median time per message, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    per_op_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    desc: Option<&'a str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    ratio: Option<JsonRatio<'a>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    goal: Option<JsonGoal>,
}

/// The fields of a row line whose own rate has a target.
#[derive(Serialize)]
struct JsonGoal {
    target: String,
    target_desc: &'static str,
    pass: bool,
}

/// The fields only ratio lines have.
#[derive(Serialize)]
struct JsonRatio<'a> {
    baseline: String,
    paired: bool,
    of_medians: f64,
    /// For a rate row: multiproc's rate over the baseline's (1 / median).
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_desc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<bool>,
}

/// A row's median, min and max in its unit (for a rate, `min` is the
/// lowest rate, from the longest time).
fn shown_stats(r: &Row) -> (f64, f64, f64) {
    let (u, s) = (r.unit, r.stats);
    if u.is_rate() {
        (u.value(s.median), u.value(s.max), u.value(s.min))
    } else {
        (s.median, s.min, s.max)
    }
}

/// Rounds to `digits` significant digits.
fn sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    round(x, digits - 1 - x.abs().log10().floor() as i32)
}

/// One JSON object per line: the rows, then the ratios.
pub(crate) fn print_json(rows: &[Row], ratios: &[Ratio], goals: &[Goal]) {
    let print = |line: &JsonLine<'_>| println!("{}", serde_json::to_string(line).expect("plain data serialises"));
    for r in grouped(rows) {
        let s = r.stats;
        let (median, min, max) = shown_stats(r);
        let (median, min, max) = if r.unit.is_rate() {
            (sig(median, 6), sig(min, 6), sig(max, 6))
        } else {
            (round(median, 3), round(min, 3), round(max, 3))
        };
        let goal = goals
            .iter()
            .find(|g| g.name == r.name && r.imp == Impl::Multiproc)
            .map(|g| JsonGoal {
                target: format!(">= {}", g.min),
                target_desc: g.why,
                pass: g.pass(),
            });
        print(&JsonLine {
            name: &r.name,
            imp: r.imp.as_str(),
            unit: r.unit.as_str(),
            median,
            min,
            max,
            n: s.n,
            per_op_us: r.unit.is_rate().then(|| round(s.median, 5)),
            desc: Some(&r.desc),
            ratio: None,
            goal,
        });
    }
    for q in ratios {
        let s = q.stats;
        let label = q.label();
        print(&JsonLine {
            name: &q.name,
            imp: &label,
            unit: "x",
            median: round(s.median, 4),
            min: round(s.min, 4),
            max: round(s.max, 4),
            n: s.n,
            per_op_us: None,
            desc: None,
            goal: None,
            ratio: Some(JsonRatio {
                baseline: format!(
                    "{} {}",
                    q.baseline_name.as_deref().unwrap_or(&q.name),
                    q.baseline.as_str()
                ),
                paired: q.paired,
                of_medians: round(q.of_medians, 4),
                rate_ratio: q.unit.is_rate().then(|| round(q.shown(), 4)),
                target: q.target.map(|t| format!("<= {}", round(t.max, 4))),
                target_desc: q.target.map(|t| t.why),
                pass: q.pass(),
            }),
        });
    }
}

/// A time in microseconds, in a readable unit.
fn time(us: f64) -> String {
    if us < 1.0 {
        format!("{:.1} ns", us * 1e3)
    } else if us < 1e3 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A value of `unit` (a time in microseconds, or a rate), readable.
fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Time => time(v),
        Unit::Msgs if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Unit::Msgs => format!("{:.1} k/s", v / 1e3),
        Unit::Bytes(_) => format!("{v:.2} GB/s"),
    }
}

fn ratio(x: f64) -> String {
    if x < 0.1 {
        format!("{x:.4}x")
    } else {
        format!("{x:.2}x")
    }
}

/// The human-readable report.
pub(crate) fn print_table(rows: &[Row], ratios: &[Ratio], goals: &[Goal], opts: &Options) {
    let mode = match (opts.quick, opts.iters) {
        (true, _) => "quick smoke run: too few samples to judge anything",
        (false, Some(_)) => "custom sample count",
        (false, None) => "full run",
    };
    println!(
        "multiproc-bench ({mode}; {} CPUs). Times per operation, or rates (msg/s, GB/s = 1e9 B/s).\n\
         'vs' = multiproc's time / the baseline's, lower is better; for a rate, multiproc's rate / the baseline's, higher\n\
         is better (median of the per-round ratios for rows measured interleaved, else the ratio of the medians).",
        multiproc::cpu_count().map_or_else(|_| "?".to_owned(), |n| n.to_string())
    );
    println!();
    // Names, impls and baselines as wide as the widest, for aligned columns.
    let w = rows.iter().map(|r| r.name.chars().count()).max().unwrap_or(0).max(32);
    let bw = ratios
        .iter()
        .filter(|q| q.target.is_some())
        .map(|q| q.baseline_label().chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    let iw = rows.iter().map(|r| r.imp.as_str().len()).max().unwrap_or(0).max(10);
    println!(
        "{:<w$} {:<iw$} {:>10} {:>10} {:>10} {:>5}  vs baselines",
        "name", "impl", "median", "min", "max", "n"
    );
    let mut last = "";
    for r in grouped(rows) {
        let shown = if r.name == last { "" } else { r.name.as_str() };
        if !shown.is_empty() && !last.is_empty() {
            println!();
        }
        last = &r.name;
        let vs: Vec<String> = if r.imp == Impl::Multiproc {
            ratios
                .iter()
                .filter(|q| q.name == r.name)
                .map(|q| format!("{} {}", ratio(q.shown()), q.baseline_label()))
                .collect()
        } else {
            vec![r.desc.clone()]
        };
        let (median, min, max) = shown_stats(r);
        println!(
            "{:<w$} {:<iw$} {:>10} {:>10} {:>10} {:>5}  {}",
            shown,
            r.imp.as_str(),
            value(r.unit, median),
            value(r.unit, min),
            value(r.unit, max),
            r.stats.n,
            vs.join(", ")
        );
    }
    let judged: Vec<&Ratio> = ratios.iter().filter(|q| q.target.is_some()).collect();
    if judged.is_empty() && goals.is_empty() {
        return;
    }
    let verdict = |pass: bool| match (opts.quick, pass) {
        (true, _) => "(quick run: not judged)",
        (false, true) => "met",
        (false, false) => "MISSED",
    };
    println!();
    println!("targets:");
    for q in judged {
        let t = q.target.expect("filtered on targets");
        let bound = if q.unit.is_rate() {
            format!(">= {}", ratio(1.0 / t.max))
        } else {
            format!("<= {}", ratio(t.max))
        };
        println!(
            "  {:<w$} vs {:<bw$} {:>10}  target {:>10}  ({})  {}",
            q.name,
            q.baseline_label(),
            ratio(q.shown()),
            bound,
            t.why,
            verdict(q.pass() == Some(true)),
        );
    }
    for g in goals {
        println!(
            "  {:<w$}    {:<bw$} {:>10}  target {:>10}  ({})  {}",
            g.name,
            "own rate",
            value(g.unit, g.value),
            format!(">= {}", value(g.unit, g.min)),
            g.why,
            verdict(g.pass()),
        );
    }
}
