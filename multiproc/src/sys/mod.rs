//! The operating-system boundary.
//!
//! Everything that talks to the kernel lives below this module, and every
//! `unsafe` block of the crate except the target trampolines
//! (`crate::target`) and the child entry constructor (`crate::bootstrap`)
//! lives here. The backend is chosen once, below; the rest of the crate uses
//! the names re-exported from `imp` and never mentions a platform type.
//!
//! # The contract a backend provides
//!
//! - `Fd`: an owned descriptor (close on drop), always close-on-exec.
//! - `socketpair()`: a connected pair of stream sockets;
//!   `Fd::send_frame` / `Fd::recv_some` move bytes and descriptors (`SCM_RIGHTS`).
//! - `Memfd`: an anonymous, sealed-size memory file used for large payloads,
//!   and `Mapping`: a read-only view of one.
//! - `ChildHandle`: a started child (pid + pidfd): `poll_exit(timeout)`,
//!   `try_reap()`, `signal(sig)`.
//! - `spawn_self(fd)`: re-execute the running binary with `fd` as descriptor 3,
//!   `/dev/null` as stdin and every other descriptor closed.
//! - `fork_child()`: fork; the child continues in the closure passed.
//! - `exit_now(code)`: leave the process at once (`_exit`).
//! - process facts: `getpid`, `getppid`, `thread_count`, `cpu_count`,
//!   `random_bytes`, `exe_identity`.
//! - `ParentWatch`: a handle on another process (the parent) whose death can
//!   be awaited.
//!
//! Only Linux implements it today (`unix/`, which relies on pidfds, `memfd`
//! and `close_range`). Other targets select `unsupported.rs`, which stops the
//! build with a clear message rather than offering a crate whose every call
//! fails.

#[cfg(target_os = "linux")]
#[path = "unix/mod.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
#[path = "unsupported.rs"]
mod imp;

pub(crate) use imp::*;
