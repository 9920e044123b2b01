//! Recipe: `tracing` and `log` in a pool's workers (see the crate's
//! `logging` module for the why).
//!
//! Each worker sets up its own subscriber in the pool's initializer, first
//! thing, so that no event of a task is lost; `log` records go to the same
//! subscriber (tracing-subscriber's `tracing-log` bridge). The workers'
//! lines are prefixed with their names (`ChildOutput::Prefix`), and with
//! the `tracing` feature every task runs inside a `task` span naming the
//! worker, its pid and the task number.
//!
//! Run with `cargo run -p multiproc --features tracing --example recipe_logging`.

use multiproc::{self as mp, ChildOutput, Pool};
use tracing::Level;

/// A subscriber that writes plain lines to standard error. In a fresh
/// worker (spawn, forkserver) it becomes the global one; in a fork child
/// the parent's was copied along and stays (setting another fails, which
/// is fine: the copy writes to the worker's standard error too).
fn init_logging(level: String) {
    let level: Level = level.parse().unwrap_or(Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .try_init();
}

fn square(x: u64) -> u64 {
    tracing::info!(x, "squaring");
    log::info!("the same through log: {x}");
    x * x
}

fn main() -> mp::Result<()> {
    init_logging("info".into());
    tracing::info!("parent starting the pool");
    let pool = Pool::builder()
        .processes(2)
        .output(ChildOutput::Prefix)
        .initializer(init_logging, "info".to_string())
        .build()?;
    let squares = pool.map(square, 0..6u64)?;
    pool.close();
    pool.join()?;
    tracing::info!(?squares, "done");
    assert_eq!(squares, [0, 1, 4, 9, 16, 25]);
    Ok(())
}
