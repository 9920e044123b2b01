//! The integration suite: one binary, one module per area. Every child
//! process behaviour runs under each start method (see `per_method!`).
#![cfg(target_os = "linux")]

#[macro_use]
mod support;

mod channels;
mod examples;
mod hygiene;
mod pool;
mod process;
mod properties;
mod queues;
mod shared;
mod sync;
