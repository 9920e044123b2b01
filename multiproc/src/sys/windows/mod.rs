//! Windows backend, through the documented Win32 API (`windows-sys`).
//!
//! What it implements: owned handles and the library's channels
//! (`handle.rs`: message-mode named pipes that carry handles, readiness
//! over pipes, processes and events), spawning this executable and
//! process handles (`process.rs`), large payloads in memory sections
//! (`memory.rs`), and the process facts (`misc.rs`).
//! What it does not implement yet fails with
//! [`io::ErrorKind::Unsupported`] and a message naming the feature
//! (`rest.rs`): shared memory, the robust mutex and futex waits (so the
//! queues, the synchronisation primitives, `Value`/`Array` and the pool's
//! shared parts), Unix and TCP sockets (`Listener`/`Client`), and the
//! capture of a child's output. `fork` and the fork server do not exist
//! on Windows: they fail saying to use spawn.
//!
//! `unsafe` is allowed per file on the module lines below; every block
//! does one unsafe operation with a `// SAFETY:` comment.

#[allow(unsafe_code)]
mod handle;
#[allow(unsafe_code)]
mod memory;
#[allow(unsafe_code)]
mod misc;
#[allow(unsafe_code)]
mod process;
#[allow(unsafe_code)]
mod rest;

pub(crate) use handle::{
    Fd, MAX_FDS, RawFd, RecvSome, current_process, eventfd, eventfd_drain, eventfd_signal, poll_readable_set,
    raw_of_handle, seqpacket_pair, set_channel_peer, set_channel_peer_pid, socket_peer_pid, socketpair,
};
pub(crate) use memory::{Memfd, read_file};
pub(crate) use misc::*;
pub(crate) use process::{
    ChildHandle, ParentWatch, SIGKILL, SIGTERM, ServerChild, arm_parent_death, boot_channel_number,
    is_boot_channel_number, null_device, redirect, signal_name, spawn_program, spawn_self,
};
pub(crate) use rest::*;

use std::{ffi::OsStr, io, os::windows::ffi::OsStrExt};

/// Turns a failed `BOOL` result into the thread's last error.
pub(crate) fn cvt(ret: i32) -> io::Result<i32> {
    if ret == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `s` as a NUL-terminated UTF-16 string.
pub(crate) fn wide(s: impl AsRef<OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().chain(std::iter::once(0)).collect()
}

/// An `Unsupported` error that says what is missing.
pub(crate) fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_owned())
}
