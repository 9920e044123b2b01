//! What the Linux backend alone has: pidfds (`pidfd.rs`), sealed memfds
//! and futexes (`shm.rs`, `memfile.rs`, `memfd.rs`), robust pthread
//! mutexes (`mutex.rs`), the parent-death signal (`pdeath.rs`), thread and
//! process identity from `/proc` (`identity.rs`), process facts
//! (`misc.rs`) and how descriptors are made close-on-exec (`fdops.rs`).
//!
//! `unsafe` is allowed per file, as in the parent module.

#[allow(unsafe_code)]
mod fdops;
#[allow(unsafe_code)]
pub(super) mod identity;
#[allow(unsafe_code)]
mod memfd;
#[allow(unsafe_code)]
mod memfile;
#[allow(unsafe_code)]
mod misc;
#[allow(unsafe_code)]
mod mutex;
#[allow(unsafe_code)]
mod pdeath;
#[allow(unsafe_code)]
mod pidfd;
#[allow(unsafe_code)]
mod shm;

use super::{
    Fd, Mapping, after_fork_in_child, close_inherited, cvt, cvt_r, exit_now, fd::poll_one, getpid, getppid, image_base,
    null_device,
};

pub(crate) use fdops::{
    OPEN_CLOEXEC, PACKET_KIND, RECV_CLOEXEC, SEND_NOSIGNAL, SPAWN_FLAGS, accept_raw, adopt_received, close_others,
    fix_cloexec_raw, is_eventfd_raw, is_full, pipe_raw, populate, self_exe, socket_raw, socketpair_raw,
};
pub(crate) use identity::{is_alive, may_spin, process_identity, thread_id};
pub(crate) use memfd::{Memfd, buffer, capture_file, retain_freed_memory};
#[cfg(test)]
pub(crate) use memfile::memfile_unsealed_for_test;
pub(crate) use memfile::{memfile_check, memfile_create, memfile_grow, memfile_size};
pub(crate) use misc::{
    affinity_cpu_count, cgroup_cpu_limit, eventfd, eventfd_drain, eventfd_signal, exe_identity, main_image_base,
    random_bytes, reserve_closed, socket_peer_pid, thread_count,
};
pub(crate) use mutex::{MUTEX_ALIGN, MUTEX_SIZE, RobustMutex};
pub(crate) use pdeath::{ServerChild, arm_parent_death};
pub(crate) use pidfd::{ChildHandle, ForkToken, ParentWatch};
pub(crate) use shm::{
    file_size, futex_wait, futex_wake, futex_wake_all, is_size_sealed, memfd_sealed, memfd_sealed_labelled,
    size_matches,
};
