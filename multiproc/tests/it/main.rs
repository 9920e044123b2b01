//! The integration suite: one binary, one module per area. Every child
//! process behaviour runs under each start method (see `per_method!`).
#![cfg(target_os = "linux")]

#[macro_use]
mod support;

mod bootstrap;
mod codec_messages;
mod conformance_pool;
mod connection;
mod context;
mod cpu_count;
mod error_report;
mod examples;
mod executor;
mod faults;
mod forkserver;
mod fuzz;
mod hygiene;
mod identity;
mod lifecycle;
mod listener;
mod pool;
mod pool_edges;
mod queue;
mod shared_memory;
mod sharedctypes;
mod sync;
mod target_threads;
