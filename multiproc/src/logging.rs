//! Children's output and logs: where they go, and a recipe for `tracing`
//! and `log` in children.
//!
//! # Where a child's output goes
//!
//! By default a child writes to this process's standard output and error
//! (it inherits descriptors 1 and 2, as in Python), so the lines of
//! several children interleave there with nothing saying which child wrote
//! which. [`ProcessBuilder::output`](crate::ProcessBuilder::output) and
//! [`PoolBuilder::output`](crate::PoolBuilder::output) change that:
//! [`ChildOutput::Prefix`](crate::ChildOutput::Prefix) puts the child's
//! name in front of each of its lines (`[PoolWorker-2] ...`), and
//! [`ChildOutput::Capture`](crate::ChildOutput::Capture) keeps everything
//! for [`Process::output`](crate::Process::output). A child's standard
//! input is always `/dev/null`.
//!
//! # Logging in a child
//!
//! A child is another process, with its own global `tracing` subscriber
//! and its own `log` logger:
//!
//! - Under **spawn** and **forkserver** the child starts fresh: it has
//!   neither until it sets them up. Every `tracing` event and `log` record
//!   before that (in a constructor, in an argument's `Deserialize`, in a
//!   task that runs before the set-up) goes nowhere: it is dropped, without
//!   error. A panic is not an event: its message always reaches the
//!   child's standard error.
//! - Under **fork** the child starts with a copy of the parent's: events
//!   before its own set-up go to that copy, which writes where the
//!   parent's did, through the child's descriptors (so to the pipe of a
//!   prefixed child). A second global set-up fails there: use the `try_`
//!   forms (`try_init`, `set_global_default`, `log::set_logger`) and keep
//!   the copy when they fail, never `init`, which panics.
//!
//! So set up logging first thing in the child: at the top of a
//! [`Process`](crate::Process)'s target, or for a [`Pool`](crate::Pool) in
//! its [initializer](crate::PoolBuilder::initializer), which each worker
//! (replacements included) runs once before any task. With the `tracing`
//! feature each task then runs inside a `task` span (target `multiproc`)
//! naming the worker, its pid and the task's number in that worker, and
//! the parent has `start` and `join` spans around
//! [`Process::start`](crate::Process::start) and
//! [`Process::join`](crate::Process::join).
//!
//! The recipe, with `tracing-subscriber` (its `tracing-log` feature
//! sends `log` records to the same subscriber); the program
//! `examples/recipe_logging.rs` runs it in a pool with prefixed output:
//!
//! ```
//! use multiproc::{ChildOutput, ProcessBuilder};
//!
//! /// The child's set-up: plain lines on its standard error.
//! fn init_logging() {
//!     // Under fork this fails (the parent's copy is already there): fine.
//!     let _ = tracing_subscriber::fmt()
//!         .with_writer(std::io::stderr)
//!         .with_ansi(false)
//!         .without_time()
//!         .try_init();
//! }
//!
//! fn work(x: u32) -> u32 {
//!     tracing::info!("lost: no subscriber yet (under spawn)");
//!     init_logging();
//!     tracing::info!(x, "working");
//!     log::warn!("a log record, through the same subscriber");
//!     x + 1
//! }
//!
//! # fn main() -> multiproc::Result<()> {
//! let mut p = ProcessBuilder::new()
//!     .start_method(multiproc::StartMethod::Spawn)
//!     .output(ChildOutput::Capture)
//!     .target_with(work, 41);
//! p.start()?;
//! assert_eq!(p.join()?, 42);
//! let log = String::from_utf8(p.stderr()?).unwrap();
//! assert!(!log.contains("lost"));
//! assert!(log.contains("working x=41"));
//! assert!(log.contains("a log record, through the same subscriber"));
//! # Ok(()) }
//! ```
