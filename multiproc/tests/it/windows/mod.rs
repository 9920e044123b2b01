//! The integration tests that run on Windows (CI: under Wine), in one
//! place, with what is left out and why. A file `area/name.rs` is the
//! module `windows::area_name`; `per_method!` makes only `name::spawn`
//! there (Windows has no fork). A file is listed here once everything it
//! uses works on Windows.
//!
//! Left out, by reason (the counts are of test functions):
//! - not ported yet: shared memory, the robust mutex and futex waits, so
//!   every queue, lock, semaphore, event, condition, barrier,
//!   `Value`/`Array`, `SharedMemory` and the pool (whose workers and
//!   results need nothing else, but whose tests synchronise through those
//!   primitives): `queues/`, `sync/`, `shared/`, `pool/`, `asynchronous/`,
//!   `properties/`;
//! - Unix sockets and TCP listeners (`Listener`/`Client`): not ported:
//!   `channels/listener.rs`, `channels/listener_auth.rs`;
//! - fork and the fork server, which Windows does not have:
//!   `process/forkserver.rs`, `process/forkserver_signals.rs`,
//!   `process/target_threads.rs` (fork with threads);
//! - the capture and prefixing of a child's output (not ported):
//!   `process/output.rs`;
//! - Linux facilities the tests inspect (`/proc/self/fd`, pidfds, signals,
//!   ELF build ids): `hygiene.rs`, `process/set_executable.rs`,
//!   `process/tracing_spans.rs`, `examples.rs` (runs the examples through
//!   cargo, not under Wine).

#[path = "../process/lifecycle.rs"]
mod process_lifecycle;

#[path = "../channels/connection.rs"]
mod channels_connection;
