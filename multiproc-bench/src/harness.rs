//! Sampling: a group of benchmarks is run interleaved, one sample of each
//! per round with the order rotated every round, so that a candidate and its
//! baselines see the same machine state on this noisy 2-vCPU VM.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use crate::cli::Counts;

/// Who a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Impl {
    /// This library.
    Multiproc,
    /// The machine's floor for the operation (no library at all).
    Floor,
    /// CPython's `multiprocessing`.
    Cpython,
    /// The `procspawn` crate.
    Procspawn,
    /// This library's own spawn start method, as the baseline of its fork
    /// server.
    OwnSpawn,
    /// This library's own single `Process` start + join, as the baseline of
    /// a pool's whole life (create, map, close, join).
    OwnProcess,
    /// This library's own `Pipe` (a `Connection`) carrying the same bytes,
    /// as the baseline of a pool's large arguments.
    OwnPipe,
    /// This library's own blocking call, as the baseline of its awaited
    /// form (`async` feature).
    OwnBlocking,
    /// This library's local pool of the same size, as the baseline of a
    /// pool whose workers connect over TCP.
    OwnLocalPool,
    /// The raw single-process floor beside a row whose [`Impl::Floor`] is
    /// several processes' work (the pool's lifecycle under fork): their
    /// ratio is the floor of the row's target.
    FloorSingle,
}

impl Impl {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Impl::Multiproc => "multiproc",
            Impl::Floor => "floor",
            Impl::Cpython => "cpython",
            Impl::Procspawn => "procspawn",
            Impl::OwnSpawn => "multiproc_spawn",
            Impl::OwnProcess => "multiproc_process",
            Impl::OwnPipe => "multiproc_pipe",
            Impl::OwnBlocking => "multiproc_blocking",
            Impl::FloorSingle => "floor_single",
            Impl::OwnLocalPool => "multiproc_local_pool",
        }
    }
}

/// What a row's samples are and how the report shows them. Samples are
/// always times per operation in microseconds, so that medians and ratios
/// work the same for every row; a rate row is shown as a rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Unit {
    /// The time of one operation.
    Time,
    /// The time per message, shown as messages per second.
    Msgs,
    /// The time per message of this many bytes, shown as GB/s (1e9 B/s).
    Bytes(u64),
}

impl Unit {
    /// Whether the row is shown as a rate (higher is better).
    pub(crate) fn is_rate(self) -> bool {
        self != Unit::Time
    }

    /// A time per operation in microseconds, in this unit's terms:
    /// messages per second or GB/s for rates, unchanged for times.
    pub(crate) fn value(self, us: f64) -> f64 {
        match self {
            Unit::Time => us,
            Unit::Msgs => 1e6 / us,
            Unit::Bytes(b) => b as f64 / (us * 1e3),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unit::Time => "us",
            Unit::Msgs => "msg/s",
            Unit::Bytes(_) => "GB/s",
        }
    }
}

/// One timed operation; `run` returns the time of one sample (its own
/// set-up, such as filling an argument buffer, left out), which covers
/// `ops` operations.
pub(crate) struct Bench<'a> {
    pub(crate) name: String,
    pub(crate) imp: Impl,
    pub(crate) desc: String,
    pub(crate) run: Box<dyn FnMut() -> Result<Duration, String> + 'a>,
    /// Operations per sample: a sample is recorded as its time over this.
    pub(crate) ops: u64,
    pub(crate) unit: Unit,
}

impl<'a> Bench<'a> {
    pub(crate) fn new(
        name: impl Into<String>,
        imp: Impl,
        desc: impl Into<String>,
        run: impl FnMut() -> Result<Duration, String> + 'a,
    ) -> Bench<'a> {
        Bench {
            name: name.into(),
            imp,
            desc: desc.into(),
            run: Box::new(run),
            ops: 1,
            unit: Unit::Time,
        }
    }

    /// A bench whose samples each time `ops` operations, shown in `unit`.
    pub(crate) fn per(mut self, ops: u64, unit: Unit) -> Bench<'a> {
        self.ops = ops.max(1);
        self.unit = unit;
        self
    }
}

/// A measured row: samples and their statistics, in microseconds.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) imp: Impl,
    pub(crate) desc: String,
    pub(crate) unit: Unit,
    /// Of the time per operation, in microseconds.
    pub(crate) stats: Stats,
    /// In the order taken: sample `i` of every row of one group was taken
    /// in the same round.
    pub(crate) samples: Vec<f64>,
    /// The interleaved group the row was measured in; `None` for rows
    /// measured apart (CPython's).
    pub(crate) group: Option<usize>,
}

impl Row {
    /// A row measured outside any interleaved group.
    pub(crate) fn apart(name: String, imp: Impl, desc: String, unit: Unit, samples: Vec<f64>) -> Option<Row> {
        Some(Row {
            name,
            imp,
            desc,
            unit,
            stats: Stats::of(&samples)?,
            samples,
            group: None,
        })
    }

    /// Whether sample `i` of `self` and of `other` were taken in the same
    /// round.
    pub(crate) fn paired_with(&self, other: &Row) -> bool {
        self.group.is_some() && self.group == other.group && self.samples.len() == other.samples.len()
    }
}

/// Median, minimum and maximum of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

impl Stats {
    /// `None` for an empty set.
    pub(crate) fn of(samples: &[f64]) -> Option<Stats> {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = match n {
            0 => return None,
            n if n % 2 == 1 => s[n / 2],
            n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
        };
        Some(Stats {
            median,
            min: s[0],
            max: s[n - 1],
            n,
        })
    }
}

/// Numbers the interleaved groups.
static GROUPS: AtomicUsize = AtomicUsize::new(0);

/// Runs `benches` interleaved: `counts.warmup` untimed rounds, then
/// `counts.samples` timed rounds, each round taking one sample of every
/// bench, starting from a different bench each round. A bench that fails is
/// dropped from the group and its error returned; the others go on.
pub(crate) fn run_group(mut benches: Vec<Bench<'_>>, counts: Counts) -> (Vec<Row>, Vec<String>) {
    let mut failures = Vec::new();
    let mut failed = vec![false; benches.len()];
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(counts.samples); benches.len()];
    let k = benches.len();
    if k == 0 {
        return (Vec::new(), failures);
    }
    let group = GROUPS.fetch_add(1, Ordering::Relaxed);
    for round in 0..counts.warmup + counts.samples {
        let timed = round >= counts.warmup;
        for j in 0..k {
            let i = (round + j) % k;
            if failed[i] {
                continue;
            }
            let b = &mut benches[i];
            match (b.run)() {
                Ok(d) if timed => samples[i].push(d.as_secs_f64() * 1e6 / b.ops as f64),
                Ok(_) => {}
                Err(e) => {
                    failed[i] = true;
                    failures.push(format!("{} [{}]: {e}", b.name, b.imp.as_str()));
                }
            }
        }
    }
    let rows = benches
        .into_iter()
        .zip(samples)
        .zip(failed)
        .filter(|(_, failed)| !failed)
        .filter_map(|((b, s), _)| {
            Stats::of(&s).map(|stats| Row {
                name: b.name,
                imp: b.imp,
                desc: b.desc,
                unit: b.unit,
                stats,
                samples: s,
                group: Some(group),
            })
        })
        .collect();
    (rows, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        assert_eq!(Stats::of(&[]), None);
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
    }

    #[test]
    fn rates() {
        let benches = vec![Bench::new("r", Impl::Floor, "", || Ok(Duration::from_micros(40))).per(4, Unit::Msgs)];
        let (rows, _) = run_group(benches, Counts { warmup: 0, samples: 1 });
        assert_eq!((rows[0].stats.median, rows[0].unit), (10.0, Unit::Msgs));
        assert_eq!(Unit::Msgs.value(10.0), 100_000.0);
        assert_eq!(Unit::Bytes(1 << 20).value(1000.0), 1.048576);
        assert_eq!(Unit::Time.value(3.0), 3.0);
        assert!(Unit::Bytes(1).is_rate() && !Unit::Time.is_rate());
    }

    #[test]
    fn interleaves_and_isolates_failures() {
        let order = std::cell::RefCell::new(Vec::new());
        let benches = vec![
            Bench::new("a", Impl::Floor, "", || {
                order.borrow_mut().push('a');
                Ok(Duration::from_micros(10))
            }),
            Bench::new("b", Impl::Multiproc, "", || Err("broken".into())),
            Bench::new("c", Impl::Multiproc, "", || {
                order.borrow_mut().push('c');
                Ok(Duration::from_micros(30))
            }),
        ];
        let (rows, failures) = run_group(benches, Counts { warmup: 1, samples: 3 });
        assert_eq!(failures.len(), 1);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].stats.n, 3);
        assert_eq!(rows[1].stats.median, 30.0);
        assert!(rows[0].paired_with(&rows[1]));
        // Round r starts at bench r % 3; b failed at once and is skipped.
        assert_eq!(order.into_inner(), ['a', 'c', 'c', 'a', 'c', 'a', 'a', 'c']);
    }
}
