//! The integration suite: one binary, one module per area. Every child
//! process behaviour runs under each start method (see `per_method!`).
#![cfg(target_os = "linux")]

#[macro_use]
mod support;

mod channels;
mod conformance_pool;
mod examples;
mod executor;
mod executor_on_demand;
mod hygiene;
mod pool;
mod pool_async;
mod pool_call_options;
mod pool_edges;
mod pool_imap_input_failure;
mod pool_library_objects;
mod pool_map_results;
mod pool_pids;
mod pool_task_identity;
mod pool_unsignalled;
mod process;
mod properties;
mod queues;
mod shared;
mod sync;
