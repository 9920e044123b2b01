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

use serde::Serialize;

use crate::{
    cli::Options,
    harness::{Impl, Row, Stats},
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
}

/// Targets from the issue and from `shared/reference/performance.md`.
fn target(name: &str, baseline: Impl) -> Option<Target> {
    let t = |max, why| Some(Target { max, why });
    match (name, baseline) {
        ("process/start_join/spawn", Impl::Floor) => t(1.5, "<= 1.5x the re-exec + handshake floor"),
        ("process/start_join/fork", Impl::Floor) => t(2.0, "<= 2x the raw fork floor"),
        ("process/start_join/spawn", Impl::Cpython) => t(1.0 / 40.0, ">= 40x faster than CPython"),
        ("process/start_join/fork", Impl::Cpython) => t(1.0 / 5.0, ">= 5x faster than CPython"),
        ("process/start_join/forkserver", Impl::OwnSpawn) => t(0.6, "<= 0.6x this library's own spawn"),
        ("process/start_join/forkserver", Impl::Cpython) => t(1.0 / 20.0, "aim: >= 20x faster than CPython"),
        ("process/transfer_16MiB/spawn" | "process/transfer_16MiB/fork", Impl::Procspawn) => {
            t(0.25, ">= 4x faster than procspawn")
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
            .filter(|r| r.imp != Impl::Multiproc && r.name == cand.name)
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
                target: target(&cand.name, base.imp),
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
        [Impl::Multiproc, Impl::Floor, Impl::Procspawn, Impl::Cpython]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    desc: Option<&'a str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    ratio: Option<JsonRatio<'a>>,
}

/// The fields only ratio lines have.
#[derive(Serialize)]
struct JsonRatio<'a> {
    baseline: String,
    paired: bool,
    of_medians: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_desc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<bool>,
}

/// One JSON object per line: the rows, then the ratios.
pub(crate) fn print_json(rows: &[Row], ratios: &[Ratio]) {
    let print = |line: &JsonLine<'_>| println!("{}", serde_json::to_string(line).expect("plain data serialises"));
    for r in grouped(rows) {
        let s = r.stats;
        print(&JsonLine {
            name: &r.name,
            imp: r.imp.as_str(),
            unit: "us",
            median: round(s.median, 3),
            min: round(s.min, 3),
            max: round(s.max, 3),
            n: s.n,
            desc: Some(&r.desc),
            ratio: None,
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
            desc: None,
            ratio: Some(JsonRatio {
                baseline: format!(
                    "{} {}",
                    q.baseline_name.as_deref().unwrap_or(&q.name),
                    q.baseline.as_str()
                ),
                paired: q.paired,
                of_medians: round(q.of_medians, 4),
                target: q.target.map(|t| format!("<= {}", round(t.max, 4))),
                target_desc: q.target.map(|t| t.why),
                pass: q.pass(),
            }),
        });
    }
}

/// A time in microseconds, in a readable unit.
fn time(us: f64) -> String {
    if us < 1e3 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
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
pub(crate) fn print_table(rows: &[Row], ratios: &[Ratio], opts: &Options) {
    let mode = match (opts.quick, opts.iters) {
        (true, _) => "quick smoke run: too few samples to judge anything",
        (false, Some(_)) => "custom sample count",
        (false, None) => "full run",
    };
    println!(
        "multiproc-bench ({mode}; {} CPUs). Times per operation. 'vs' = multiproc's time / the baseline's, lower is better\n\
         (median of the per-round ratios for rows measured interleaved, else the ratio of the medians).",
        multiproc::cpu_count().map_or_else(|_| "?".to_owned(), |n| n.to_string())
    );
    println!();
    println!(
        "{:<32} {:<10} {:>10} {:>10} {:>10} {:>5}  vs baselines",
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
                .map(|q| {
                    let of = q
                        .baseline_name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    format!("{} {}{of}", ratio(q.stats.median), q.baseline.as_str())
                })
                .collect()
        } else {
            vec![r.desc.clone()]
        };
        let s = r.stats;
        println!(
            "{:<32} {:<10} {:>10} {:>10} {:>10} {:>5}  {}",
            shown,
            r.imp.as_str(),
            time(s.median),
            time(s.min),
            time(s.max),
            s.n,
            vs.join(", ")
        );
    }
    let judged: Vec<&Ratio> = ratios.iter().filter(|q| q.target.is_some()).collect();
    if judged.is_empty() {
        return;
    }
    println!();
    println!("targets:");
    for q in judged {
        let t = q.target.expect("filtered on targets");
        let verdict = match (opts.quick, q.pass()) {
            (true, _) => "(quick run: not judged)",
            (false, Some(true)) => "met",
            (false, _) => "MISSED",
        };
        println!(
            "  {:<30} vs {:<10} {:>8}  target {:>8}  ({})  {verdict}",
            q.name,
            q.baseline.as_str(),
            ratio(q.stats.median),
            format!("<= {}", ratio(t.max)),
            t.why,
        );
    }
}
