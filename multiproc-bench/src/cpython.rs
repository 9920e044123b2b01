//! CPython's `multiprocessing`, measured by `cpython.py` run with `python3`
//! as a subprocess (the script is embedded and written to a temporary file:
//! spawn children re-import the main script by path).

use std::{
    io::{self, ErrorKind},
    path::PathBuf,
    process::{Command, Stdio},
};

use serde::Deserialize;

use crate::harness::{Impl, Row};

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

/// Measures `Process(target=noop).start(); join()` for each method.
pub(crate) fn start_join(methods: &[Method], warmup: usize) -> Result<Outcome, String> {
    let script = TempScript::write().map_err(|e| format!("cannot write the CPython script: {e}"))?;
    let mut cmd = Command::new("python3");
    cmd.arg(&script.0)
        .arg(warmup.to_string())
        .args(methods.iter().map(|m| format!("{}={}", m.name, m.samples)))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Outcome::Skipped(format!("python3 is not on PATH ({e})")));
        }
        Err(e) => return Err(format!("cannot run python3: {e}")),
    };
    if !out.status.success() {
        return Err(format!("python3 {} ended with {}", script.0.display(), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut rows = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let rec: Record =
            serde_json::from_str(line).map_err(|e| format!("unexpected line from the CPython script ({e}): {line}"))?;
        let method = rec.name.rsplit('/').next().unwrap_or_default();
        let desc = format!("CPython {method}: Process(target=noop).start(); join()");
        let row = Row::apart(rec.name.clone(), Impl::Cpython, desc, rec.samples_us)
            .ok_or_else(|| format!("the CPython script sent no samples for {}", rec.name))?;
        rows.push(row);
    }
    Ok(Outcome::Rows(rows))
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
