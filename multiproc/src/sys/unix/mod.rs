//! Unix backends: Linux and the Apple platforms (macOS; iOS and the other
//! Apple targets type-check with it too).
//!
//! # Layout
//!
//! The files in this directory are POSIX and shared by both: owned
//! descriptors and descriptor passing (`fd.rs`), `fork`/`_exit`
//! (`fork.rs`), sockets by address (`net.rs`), `posix_spawn` (`spawn.rs`),
//! shared mappings and named segments (`segment.rs`), a child's output
//! (`stdio.rs`), small process facts (`misc.rs`), and two designs of the
//! macOS backend, unit-tested on Linux too: the owner-word lock protocol
//! (`owner_lock.rs`) and life tokens, pidfds that travel (`token.rs`). What one platform alone has sits in `linux/` (pidfds,
//! sealed memfds, futexes, robust pthread mutexes, the parent-death
//! signal, `/proc`) or `apple/` (kqueue process waits, `shm_open` and
//! unlinked files, the owner-word mutex, `os_sync_wait_on_address`,
//! `_NSGetExecutablePath`); each exports the same names, re-exported
//! below as one backend, and the shared files reach their platform's
//! small helpers (how a descriptor is made close-on-exec, which flags a
//! send takes) through `os::`.
//!
//! Syscall results are converted in one place ([`cvt`], [`cvt_r`]). The
//! code that runs between `fork` and `exec`/`_exit` lives in `fork.rs` and
//! `spawn.rs` and follows the rules written there.
//!
//! # Close-on-exec
//!
//! On Linux every descriptor is created close-on-exec atomically
//! (`SOCK_CLOEXEC`, `pipe2`, `accept4`, `MSG_CMSG_CLOEXEC`, `dup3`). The
//! Apple platforms have none of these: a descriptor is marked with
//! `FD_CLOEXEC` right after the call that created it, so another thread's
//! `exec` may inherit it in between. The library's own children never do:
//! `spawn` starts them with `POSIX_SPAWN_CLOEXEC_DEFAULT`, which passes
//! only the descriptors its file actions name, whatever their flags, and
//! a fork child closes the library's descriptors it does not pass on
//! (`crate::registry`). Only a program that the user `exec`s from another
//! thread at that very instant could inherit one.
//!
//! `unsafe` is allowed per file, on each module's line below, for the
//! files that make system calls; this file has none.

#[allow(unsafe_code)]
mod fd;
#[allow(unsafe_code)]
mod fork;
#[allow(unsafe_code)]
mod misc;
#[allow(unsafe_code)]
mod net;
#[cfg(any(test, target_os = "macos"))]
#[allow(unsafe_code)]
mod owner_lock;
#[allow(unsafe_code)]
mod payload;
#[allow(unsafe_code)]
mod segment;
#[allow(unsafe_code)]
mod spawn;
#[allow(unsafe_code)]
mod stdio;
#[cfg(any(test, target_os = "macos"))]
#[allow(unsafe_code)]
mod token;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod apple;
#[cfg(target_os = "macos")]
use apple as os;

pub(crate) use fd::{Fd, MAX_FDS, RecvSome, poll_readable_set, seqpacket_pair, socketpair};
pub(crate) use fork::{ForkSide, after_fork_in_child, exit_now, fork_child};
pub(crate) use misc::{
    SIGKILL, SIGTERM, atexit, close_inherited, cpu_count, getpid, getppid, ignore_sigpipe, image_base, null_device,
    redirect, set_sigint_ignored, signal_name,
};
pub(crate) use net::{
    UNIX_NAME_MAX, accept, bound_socket, connect, listen, local_inet_addr, peer_closed, set_nodelay, set_tcp_liveness,
};
#[cfg(test)]
pub(crate) use os::memfile_unsealed_for_test;
pub(crate) use os::{
    ChildHandle, MUTEX_ALIGN, MUTEX_SIZE, Memfd, ParentWatch, RobustMutex, ServerChild, affinity_cpu_count,
    arm_parent_death, buffer, capture_file, cgroup_cpu_limit, eventfd, eventfd_drain, eventfd_signal, exe_identity,
    file_size, futex_wait, futex_wake, futex_wake_all, is_alive, is_size_sealed, main_image_base, may_spin,
    memfd_sealed, memfd_sealed_labelled, memfile_check, memfile_create, memfile_grow, memfile_size, process_identity,
    random_bytes, reserve_closed, retain_freed_memory, size_matches, socket_peer_pid, thread_count, thread_id,
};
pub(crate) use payload::read_file;
pub(crate) use segment::{Mapping, ignore_group_signals, shm_attach, shm_create, shm_unlink, unit_of};
pub(crate) use spawn::{BOOT_FD, spawn_program, spawn_self};
pub(crate) use stdio::{ReadSome, file_contents, output_pipe, read_some, write_all_raw};

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
