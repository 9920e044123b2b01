//! The integration suite: one binary, one directory per area, files
//! named by the behaviour they check. Every child
//! process behaviour runs under each start method (see `per_method!`).
#![cfg(any(target_os = "linux", target_os = "macos", windows))]

#[macro_use]
mod support;

// Linux runs every area below; Windows runs what `windows.rs` lists, and
// says there what it leaves out and why.
#[cfg(unix)]
mod async_support;
#[cfg(unix)]
mod asynchronous;
#[cfg(unix)]
mod channels;
#[cfg(unix)]
mod cluster;
#[cfg(unix)]
mod examples;
#[cfg(unix)]
mod hygiene;
#[cfg(unix)]
mod pool;
#[cfg(unix)]
mod process;
// The property tests' harness checks memfds.
#[cfg(target_os = "linux")]
mod properties;
#[cfg(unix)]
mod queues;
#[cfg(unix)]
mod shared;
#[cfg(unix)]
mod sync;
#[cfg(windows)]
mod windows;
