//! Benchmarks for `multiproc`, each measured next to its baselines in the
//! same run: the machine's floors (a bare re-exec of this binary, a raw
//! `fork`, a bare socket pair or pipe), CPython's `multiprocessing` and the
//! `procspawn` crate.
//!
//! ```text
//! cargo run --release -p multiproc-bench -- [--json] [--quick] [--iters N] [FILTER]
//! ```
//!
//! Rows are named `<area>/<operation>/<start method>`: `process/...`
//! (start + join, argument transfer) and the channel rows `pipe/...` and
//! `queue/...` (see [`channels`]), whose floors are `<area>/<operation>/raw_*`,
//! and the pool rows `pool/...` and `executor/...` (see [`pool_rows`]), some
//! of whose baselines are this library's own single process or pipe, and
//! the scaling rows `scale/...` (see [`scale_rows`]).
//!
//! `--json` prints one JSON object per row (`name`, `impl`, `unit`,
//! `median`, `min`, `max`, `n`, plus `desc`; a rate row has unit `msg/s` or
//! `GB/s`, its `min` is the lowest rate, `per_op_us` its median time per
//! message, and a row whose own rate has a target carries `target`,
//! `target_desc` and `pass`), then one `ratio_vs_*` row per comparison
//! (unit `x`: multiproc's median time over the baseline's, lower is better,
//! with its `target` and whether it was met; for a rate row also
//! `rate_ratio`, multiproc's rate over the baseline's). Without it, a table.
//! `--quick` is a smoke run (one warm-up and two samples per row, and
//! shorter channel samples) that only checks that every row still works.
//! FILTER keeps the rows whose name contains it, or any of its
//! comma-separated parts (with the floors of the channel rows it keeps). Progress and skipped rows are reported on
//! stderr; the exit status is 1 if any row failed or FILTER matched none.

mod async_pipe_rows;
mod async_queue_rows;
mod async_rows;
mod channels;
mod cli;
mod codec_rows;
mod cpython;
mod floors;
mod harness;
mod peers;
mod pool_rows;
mod report;
mod rows;
mod scale_rows;
mod shm_rows;
mod sync_rows;

use std::process::ExitCode;

fn main() -> ExitCode {
    // First of all: a re-executed copy of this binary measuring the floor
    // does its one job and exits.
    floors::child_entry();
    shm_rows::child_entry();
    // procspawn's children run `main` up to here, then never return.
    procspawn::init();

    let opts = match cli::Options::parse(std::env::args().skip(1)) {
        Ok(cli::Parsed::Run(opts)) => opts,
        Ok(cli::Parsed::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("multiproc-bench: {msg}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let outcome = rows::run_all(&opts);
    if outcome.rows.is_empty() && outcome.failures.is_empty() {
        let filter = opts.filter.as_deref().unwrap_or("");
        eprintln!("multiproc-bench: no row matches {filter:?}");
        return ExitCode::FAILURE;
    }
    let ratios = report::ratios(&outcome.rows);
    let goals = report::goals(&outcome.rows);
    if opts.json {
        report::print_json(&outcome.rows, &ratios, &goals);
    } else {
        report::print_table(&outcome.rows, &ratios, &goals, &opts);
    }
    if outcome.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &outcome.failures {
            eprintln!("multiproc-bench: FAILED {f}");
        }
        ExitCode::FAILURE
    }
}
