//! CPython's `multiprocessing`, measured by `cpython.py` run with `python3`
//! as a subprocess (the script is embedded and written to a temporary file:
//! spawn children re-import the main script by path).

use std::{
    io::{self, ErrorKind},
    path::PathBuf,
    process::{Command, Stdio},
};

use serde::{Deserialize, Serialize};

use crate::harness::{Impl, Row, Unit};

const SCRIPT: &str = include_str!("cpython.py");

/// One start method to measure, with its sample count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Method {
    pub(crate) name: &'static str,
    pub(crate) samples: usize,
}

#[derive(Deserialize)]
struct Record {
    name: String,
    samples_us: Vec<f64>,
}

/// What running the script gave.
pub(crate) enum Outcome {
    Rows(Vec<Row>),
    /// No python3 here: not a failure of the benchmark.
    Skipped(String),
}

/// Runs the script with `args`; its records, or `None` without python3.
fn run_script(args: &[String]) -> Result<Option<Vec<Record>>, String> {
    let script = TempScript::write().map_err(|e| format!("cannot write the CPython script: {e}"))?;
    let mut cmd = Command::new("python3");
    cmd.arg(&script.0)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot run python3: {e}")),
    };
    if !out.status.success() {
        return Err(format!("python3 {} ended with {}", script.0.display(), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut records = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let rec: Record =
            serde_json::from_str(line).map_err(|e| format!("unexpected line from the CPython script ({e}): {line}"))?;
        records.push(rec);
    }
    Ok(Some(records))
}

fn no_python() -> Outcome {
    Outcome::Skipped("python3 is not on PATH".to_owned())
}

/// Measures `Process(target=noop).start(); join()` for each method.
pub(crate) fn start_join(methods: &[Method], warmup: usize) -> Result<Outcome, String> {
    let mut args = vec!["start_join".to_owned(), warmup.to_string()];
    args.extend(methods.iter().map(|m| format!("{}={}", m.name, m.samples)));
    let Some(records) = run_script(&args)? else {
        return Ok(no_python());
    };
    let mut rows = Vec::new();
    for rec in records {
        let method = rec.name.rsplit('/').next().unwrap_or_default();
        let desc = format!("CPython {method}: Process(target=noop).start(); join()");
        let row = Row::apart(rec.name.clone(), Impl::Cpython, desc, Unit::Time, rec.samples_us)
            .ok_or_else(|| format!("the CPython script sent no samples for {}", rec.name))?;
        rows.push(row);
    }
    Ok(Outcome::Rows(rows))
}

/// What a channel row of the script does (see `cpython.py`).
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChannelKind {
    PipeOneway,
    PipePingpong,
    QueueEcho,
    QueueOneway,
    /// `Pool(2).map(square, range(count), chunksize=size or automatic)`.
    PoolMap,
    /// `ProcessPoolExecutor(2).map(square, range(count))`, its default
    /// chunksize (1), or `size` if not 0.
    ExecutorMap,
    /// `Pool(2)` created, `map(square, range(count))`, `close`, `join`.
    PoolLifecycle,
    /// `Pool(2).map(blen, args)` of `count` distinct `bytes` of `size`
    /// bytes each, automatic chunk size.
    PoolMapBytes,
}

/// One channel row for the script to measure.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChannelRow {
    pub(crate) name: String,
    pub(crate) kind: ChannelKind,
    pub(crate) method: &'static str,
    pub(crate) size: usize,
    /// Messages per sample, or round trips per sample for a ping-pong.
    pub(crate) count: usize,
    pub(crate) pin: Option<usize>,
    /// Not sent: how the row is shown, and what a sample covers.
    #[serde(skip)]
    pub(crate) unit: Unit,
    #[serde(skip)]
    pub(crate) ops: u64,
    #[serde(skip)]
    pub(crate) desc: String,
}

#[derive(Serialize)]
struct ChannelConfig<'a> {
    warmup: usize,
    samples: usize,
    rows: &'a [ChannelRow],
}

/// Measures Pipe and Queue rows, `warmup` untimed and `samples` timed
/// repetitions each.
pub(crate) fn channels(rows: &[ChannelRow], warmup: usize, samples: usize) -> Result<Outcome, String> {
    let config = serde_json::to_string(&ChannelConfig { warmup, samples, rows }).expect("plain data serialises");
    let Some(records) = run_script(&["channels".to_owned(), config])? else {
        return Ok(no_python());
    };
    let mut out = Vec::new();
    for rec in records {
        let spec = rows
            .iter()
            .find(|r| r.name == rec.name)
            .ok_or_else(|| format!("the CPython script sent an unknown row {}", rec.name))?;
        let per_op = rec.samples_us.iter().map(|s| s / spec.ops as f64).collect();
        let row = Row::apart(rec.name.clone(), Impl::Cpython, spec.desc.clone(), spec.unit, per_op)
            .ok_or_else(|| format!("the CPython script sent no samples for {}", rec.name))?;
        out.push(row);
    }
    Ok(Outcome::Rows(out))
}

/// The script in a temporary file, removed on drop.
struct TempScript(PathBuf);

impl TempScript {
    fn write() -> io::Result<TempScript> {
        let path = std::env::temp_dir().join(format!("multiproc_bench_cpython_{}.py", std::process::id()));
        std::fs::write(&path, SCRIPT)?;
        Ok(TempScript(path))
    }
}

impl Drop for TempScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
