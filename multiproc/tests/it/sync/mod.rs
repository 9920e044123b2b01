//! Synchronisation primitives across processes.

mod barrier_timeout;
mod primitives;
