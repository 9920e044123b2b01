//! The integration suite: one binary, one directory per area, files
//! named by the behaviour they check. Every child
//! process behaviour runs under each start method (see `per_method!`).
#![cfg(any(target_os = "linux", windows))]

#[macro_use]
mod support;

// Linux runs every area below; Windows runs what `windows.rs` lists, and
// says there what it leaves out and why.
#[cfg(target_os = "linux")]
mod async_support;
#[cfg(target_os = "linux")]
mod asynchronous;
#[cfg(target_os = "linux")]
mod channels;
#[cfg(target_os = "linux")]
mod cluster;
#[cfg(target_os = "linux")]
mod examples;
#[cfg(target_os = "linux")]
mod hygiene;
#[cfg(target_os = "linux")]
mod pool;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
mod properties;
#[cfg(target_os = "linux")]
mod queues;
#[cfg(target_os = "linux")]
mod shared;
#[cfg(target_os = "linux")]
mod sync;
#[cfg(windows)]
mod windows;
