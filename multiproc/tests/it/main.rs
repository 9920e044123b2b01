//! The integration suite: one binary, one module per area. Every child
//! process behaviour runs under each start method (see `per_method!`).
#![cfg(target_os = "linux")]

#[macro_use]
mod support;

mod async_connection;
mod async_process;
mod async_queue;
mod async_support;
mod async_wait;
mod bootstrap;
mod child_output;
mod codec_messages;
mod conformance_pool;
mod connection;
mod context;
mod cpu_count;
mod error_report;
mod examples;
mod executor;
mod executor_on_demand;
mod exit_daemons;
mod faults;
mod forkserver;
mod forkserver_signals;
mod fuzz;
mod hygiene;
mod identity;
mod lifecycle;
mod listener;
mod listener_concurrent_auth;
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
mod python_surface;
mod queue;
mod queue_end;
mod shared_memory;
mod shared_memory_threads;
mod sharedctypes;
mod shm_creator_killed;
mod sync;
mod target_threads;
mod tracing_spans;
mod wait_readiness;
