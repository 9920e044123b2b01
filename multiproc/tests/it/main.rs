//! The integration suite: one binary, one directory per area, files
//! named by the behaviour they check. Every child
//! process behaviour runs under each start method (see `per_method!`).
#![cfg(target_os = "linux")]

#[macro_use]
mod support;

mod async_support;
mod asynchronous;
mod channels;
mod cluster;
mod examples;
mod hygiene;
mod pool;
mod process;
mod properties;
mod queues;
mod shared;
mod sync;
