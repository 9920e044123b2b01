//! What the macOS backend has instead of Linux's own calls: kqueue process
//! waits and a life token instead of pidfds (`process.rs`), shared memory
//! objects and unlinked files instead of sealed memfds (`memfile.rs`), the
//! owner-word lock instead of robust pthread mutexes (`mutex.rs`, over
//! `../owner_lock.rs`), `os_sync_wait_on_address` or bounded sleeps
//! instead of futexes (`wait.rs`), `proc_pidinfo` instead of `/proc`
//! (`identity.rs`), descriptors marked close-on-exec after the fact,
//! `_NSGetExecutablePath` and `POSIX_SPAWN_CLOEXEC_DEFAULT` (`fdops.rs`),
//! a FIFO for an eventfd and process facts (`misc.rs`).
//!
//! Type-checked for `aarch64-apple-darwin` and `x86_64-apple-darwin` in
//! CI; not run there (no Mac). The owner-word lock's protocol runs in the
//! Linux unit tests.
//!
//! `unsafe` is allowed per file, as in the parent module.

#[allow(unsafe_code)]
mod fdops;
#[allow(unsafe_code)]
mod identity;
#[allow(unsafe_code)]
mod memfile;
#[allow(unsafe_code)]
mod misc;
#[allow(unsafe_code)]
mod mutex;
#[allow(unsafe_code)]
mod process;
#[allow(unsafe_code)]
mod wait;

use super::{
    Fd, Mapping, after_fork_in_child, close_inherited, cpu_count, cvt, cvt_r, fd::poll_one, getpid, getppid,
    null_device,
};

pub(crate) use fdops::{
    OPEN_CLOEXEC, PACKET_KIND, RECV_CLOEXEC, SEND_NOSIGNAL, SPAWN_FLAGS, accept_raw, adopt_received, close_others,
    fix_cloexec_raw, is_eventfd_raw, is_full, pipe_raw, populate, self_exe, socket_raw, socketpair_raw,
};
pub(crate) use identity::{is_alive, may_spin, process_identity, thread_id};
#[cfg(test)]
pub(crate) use memfile::memfile_unsealed_for_test;
pub(crate) use memfile::{
    Memfd, buffer, capture_file, file_size, is_size_sealed, memfd_sealed, memfd_sealed_labelled, memfile_check,
    memfile_create, memfile_grow, memfile_size, retain_freed_memory, size_matches,
};
pub(crate) use misc::{
    affinity_cpu_count, cgroup_cpu_limit, eventfd, eventfd_drain, eventfd_signal, exe_identity, main_image_base,
    random_bytes, reserve_closed, socket_peer_pid, thread_count,
};
pub(crate) use mutex::{MUTEX_ALIGN, MUTEX_SIZE, RobustMutex};
pub(crate) use process::{ChildHandle, ForkToken, ParentWatch, ServerChild, arm_parent_death};
pub(crate) use wait::{futex_wait, futex_wake, futex_wake_all};
