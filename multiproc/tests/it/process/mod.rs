//! Processes: their lifecycle and identity, how a child starts under each
//! start method, the fork server, daemons, errors and faults in children.

mod context;
// CPU affinity masks and pipe2 are Linux-only.
#[cfg(target_os = "linux")]
mod cpu_count;
#[cfg(target_os = "linux")]
mod errors;
mod exit_daemons;
mod faults;
mod forkserver;
mod forkserver_signals;
mod identity;
mod lifecycle;
mod output;
mod set_executable;
mod spawn_bootstrap;
mod target_threads;
mod tracing_spans;
