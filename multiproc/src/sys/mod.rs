//! The operating-system boundary.
//!
//! Everything that talks to the kernel lives below this module. The crate's
//! other `unsafe` code is small and listed in ARCHITECTURE.md: the target
//! trampolines (`crate::target`), three items of `crate::bootstrap`, the
//! fork call and the `unsafe fn` contract in `crate::process`, and the entry
//! constructor in `lib.rs`. The backend is chosen once, below; the rest of
//! the crate uses the names re-exported from `imp` and never mentions a
//! platform type.
//!
//! # The contract a backend provides
//!
//! - `Fd`: an owned descriptor, always close-on-exec and numbered 3 or
//!   above, closed on drop in the process that created it.
//! - `socketpair()`: a connected pair of stream sockets; `Fd::send_frame`,
//!   `Fd::recv_some`, `Fd::send_some`, `Fd::recv_exact_into` move bytes and
//!   descriptors (`SCM_RIGHTS`).
//! - `Memfd`: an anonymous memory file holding one large payload;
//!   `read_file` copies one out; `buffer` makes a huge-page-advised buffer.
//! - `ChildHandle`: a started child (pid + pidfd): `poll_exit(timeout)`,
//!   `try_reap()`, `signal(sig)`.
//! - `spawn_self(fd, marker)`: re-execute the running binary with `fd` as
//!   descriptor 3, `/dev/null` as stdin, every other descriptor closed and
//!   `SIGCHLD` at its default.
//! - `fork_child()`: fork; returns which side the caller is on.
//! - `exit_now(code)`: leave the process at once (`_exit`).
//! - process facts: `getpid`, `getppid`, `thread_count`, `cpu_count`,
//!   `affinity_cpu_count`, `cgroup_cpu_limit`,
//!   `random_bytes`, `exe_identity`, `image_base`, `main_image_base`,
//!   `socket_peer_pid`.
//! - `ParentWatch`: a pidfd on this process's parent, whose death can be
//!   awaited.
//! - `arm_parent_death(real_parent, server_child)`: end this process when
//!   the process that created it ends (a fork server's child: when its
//!   owner ends, not its server), without a thread (the parent-death
//!   signal and its handler; design and the signal's number in
//!   `unix/pdeath.rs`).
//! - channels: `seqpacket_pair()`, `Fd::try_send_datagram`,
//!   `Fd::peek_datagram`, `Fd::recv_into`, `MAX_FDS`; Unix and TCP listening and
//!   connecting sockets (`net.rs`); `reserve_closed` (park descriptor
//!   numbers on `/dev/null` in a fork child).
//! - shared state: sealed memfds, mappings, robust process-shared mutexes
//!   and futex waits (`shm.rs`), the synchronisation primitives' shared
//!   page (`sync.rs`), `shm_open` segments and the Value/Array lock
//!   (`segment.rs`).
//! - shared memory: `Mapping` (a shared mapping of a whole file, accessed
//!   by raw copies or as atomics), `memfd_sealed` (an anonymous segment
//!   sealed at its size), `shm_create`/`shm_attach`/`shm_unlink` (named
//!   segments), `RobustMutex` (a process-shared robust mutex inside a
//!   mapping), `ignore_group_signals` (for the cleanup tracker);
//!   `memfile_create`/`memfile_check`/`memfile_grow`/`memfile_size`
//!   (memory files sealed fixed or grow-only, checked on receipt),
//!   `futex_wait`/`futex_wake_all` (process-shared waits on a word) and
//!   `is_lock_not_recoverable`, which the queue ring (`crate::queue`)
//!   builds on.
//!
//! Only Linux implements it today (`unix/`, which relies on pidfds, memfd,
//! and glibc 2.34's `posix_spawn_file_actions_addclosefrom_np`). Other
//! targets select `unsupported.rs`, which stops the build with a clear
//! message rather than offering a crate whose every call fails.

#[cfg(target_os = "linux")]
#[path = "unix/mod.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
#[path = "unsupported.rs"]
mod imp;

pub(crate) use imp::*;
