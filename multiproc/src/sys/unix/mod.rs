//! Linux backend.
//!
//! Syscall results are converted in one place ([`cvt`], [`cvt_r`]); every
//! descriptor is created close-on-exec atomically; the code that runs
//! between `fork` and `exec`/`_exit` lives in `fork.rs` and `spawn.rs` and
//! follows the rules written there.
//!
//! `unsafe` is allowed per file, on each module's line below, for the
//! files that make system calls; this file has none.

#[allow(unsafe_code)]
mod fd;
#[allow(unsafe_code)]
mod fork;
#[allow(unsafe_code)]
mod identity;
#[allow(unsafe_code)]
mod memfd;
#[allow(unsafe_code)]
mod memfile;
#[allow(unsafe_code)]
mod misc;
#[allow(unsafe_code)]
mod mutex;
#[allow(unsafe_code)]
mod net;
#[allow(unsafe_code)]
mod pdeath;
#[allow(unsafe_code)]
mod pidfd;
#[allow(unsafe_code)]
mod segment;
#[allow(unsafe_code)]
mod shm;
#[allow(unsafe_code)]
mod spawn;
#[allow(unsafe_code)]
mod stdio;

pub(crate) use fd::{
    Fd, MAX_FDS, RecvSome, eventfd, eventfd_drain, eventfd_signal, poll_readable_set, seqpacket_pair, socketpair,
};
pub(crate) use fork::{ForkSide, after_fork_in_child, exit_now, fork_child};
pub(crate) use identity::{is_alive, may_spin, process_identity, thread_id};
pub(crate) use memfd::{Memfd, buffer, read_file, retain_freed_memory};
#[cfg(test)]
pub(crate) use memfile::memfile_unsealed_for_test;
pub(crate) use memfile::{memfile_check, memfile_create, memfile_grow, memfile_size};
pub(crate) use misc::{
    SIGKILL, SIGTERM, affinity_cpu_count, atexit, cgroup_cpu_limit, close_inherited, cpu_count, exe_identity, getpid,
    getppid, ignore_sigpipe, image_base, main_image_base, null_device, random_bytes, redirect, reserve_closed,
    set_sigint_ignored, signal_name, socket_peer_pid, thread_count,
};
pub(crate) use mutex::{MUTEX_ALIGN, MUTEX_SIZE, RobustMutex};
pub(crate) use net::{
    UNIX_NAME_MAX, accept, bound_socket, connect, listen, local_inet_addr, peer_closed, set_nodelay, set_tcp_liveness,
};
pub(crate) use pdeath::{ServerChild, arm_parent_death};
pub(crate) use pidfd::{ChildHandle, ParentWatch};
pub(crate) use segment::{
    Mapping, ignore_group_signals, is_size_sealed, memfd_sealed, memfd_sealed_labelled, shm_attach, shm_create,
    shm_unlink, unit_of,
};
pub(crate) use shm::{file_size, futex_wait, futex_wake, futex_wake_all};
pub(crate) use spawn::{BOOT_FD, spawn_program, spawn_self};
pub(crate) use stdio::{ReadSome, capture_file, file_contents, output_pipe, read_some, write_all_raw};

use std::io;

/// Turns a `-1` return into the thread's `errno` as an [`io::Error`].
pub(crate) fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], retrying while the call was interrupted by a signal.
pub(crate) fn cvt_r<T: IsMinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Integer types a syscall returns.
pub(crate) trait IsMinusOne: Copy {
    fn is_minus_one(self) -> bool;
}
macro_rules! impl_is_minus_one {
    ($($t:ty)*) => {$(
        impl IsMinusOne for $t {
            fn is_minus_one(self) -> bool { self == -1 }
        }
    )*};
}
impl_is_minus_one! { i32 i64 isize }

/// Milliseconds for `poll`, rounding up so that a short positive timeout
/// never becomes a busy loop; `None` waits forever.
pub(crate) fn poll_millis(timeout: Option<std::time::Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}
