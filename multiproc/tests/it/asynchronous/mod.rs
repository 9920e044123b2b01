//! The `async` feature: awaiting processes, connections, queues and
//! `wait`, under tokio's current-thread and multi-thread runtimes.

mod connection;
mod process;
mod queue;
mod queue_room;
mod wait;
