//! The operating-system boundary.
//!
//! Everything that talks to the kernel lives below this module; the layers
//! above (processes, connections, queues, synchronisation, shared memory,
//! the pool) use only the names listed in the contract below, never a
//! platform type or a `libc` call of their own. The crate's other `unsafe`
//! code is small and listed in ARCHITECTURE.md: the target trampolines
//! (`crate::target`), three items of `crate::bootstrap`, the fork call and
//! the `unsafe fn` contract in `crate::process`, the entry constructor in
//! `lib.rs`, and the views of shared pages in `crate::sync`.
//!
//! The backend is chosen once, below: `unix/` on Linux and macOS (POSIX
//! files shared, `unix/linux/` and `unix/apple/` for the rest),
//! `unsupported.rs` elsewhere (or anywhere, with `--cfg
//! multiproc_stub_backend`), whose every call fails with
//! [`ErrorKind::Unsupported`](crate::ErrorKind) so that the facade
//! type-checks on any target.
//!
//! # The contract a backend provides
//!
//! The promises below are what a new backend (Windows, macOS) must keep;
//! the types are the same names in every backend, with methods, so that a
//! backend may carry what its platform needs inside them (a Windows lock
//! may carry a kernel handle next to its shared bytes).
//!
//! **Deadlines.** Every wait takes a deadline on the monotonic clock,
//! `Option<Instant>`: `None` waits forever, a past instant tries once.
//! [`deadline_after`] turns a timeout into one (a timeout too large to
//! represent is [`FOREVER`]); [`passed`] says whether one has passed. These
//! two are shared by every backend (this file).
//!
//! **Descriptors and handles.** `Fd`: an owned descriptor (a handle),
//! never inherited by a started program unless passed on purpose, closed
//! on drop. `Fd::try_clone`, `Fd::identity` (same object?), polling for
//! readability (`Fd::poll_readable`, `poll_readable_set`), `eventfd`
//! (a counter to wake a poller) and `null_device`, `redirect`.
//!
//! **Sockets and descriptor passing.** `socketpair()` (a connected stream
//! pair), `seqpacket_pair()` (datagrams); `Fd::send_frame`,
//! `Fd::send_vectored`, `Fd::send_nonblocking` (what the socket takes now,
//! for async sends), `Fd::recv_some`, `Fd::recv_exact_into`,
//! `Fd::try_send_datagram`, `Fd::peek_datagram`, `Fd::recv_into` move
//! bytes and up to `MAX_FDS` descriptors per message, in order, whole;
//! listening and connecting Unix and TCP sockets (`bound_socket`,
//! `listen`, `accept`, `connect` with a timeout, `set_nodelay`, `set_tcp_liveness`, `peer_closed`,
//! `socket_peer_pid`).
//!
//! **Spawn, fork, exit.** `spawn_self(fd, marker)` / `spawn_program`:
//! start the running binary (or another) with `fd` as `BOOT_FD`, the null
//! device as stdin, every other descriptor closed; `fork_child()`: fork,
//! returning the side the caller is on; `exit_now(code)`: leave at once,
//! running no destructor or exit handler; `atexit`, `close_inherited`,
//! `reserve_closed` (park descriptor numbers in a fork child).
//!
//! **Process handles.** `ChildHandle`: a started child that cannot be
//! confused with a later process of the same pid: `poll_exit(timeout)`
//! (wait), `try_reap()` (its `RawStatus`, once), `signal(sig)`; `SIGTERM`,
//! `SIGKILL`, `signal_name`. Process facts: `getpid`, `getppid`,
//! `thread_count`, `cpu_count`, `affinity_cpu_count`, `cgroup_cpu_limit`,
//! `random_bytes`, `exe_identity`, `image_base`, `main_image_base`,
//! `ignore_sigpipe`, `set_sigint_ignored`, `ignore_group_signals`.
//!
//! **Thread and process identity.** `thread_id()`: the calling thread's
//! system-wide id, never 0, right after a fork too;
//! `process_identity()`: (pid, start time), a pair no later process
//! shares; `is_alive(pid, tid, start)`: whether that thread or process
//! still exists (an uninspectable one counts as alive); `may_spin()`: whether busy-waiting
//! can help (this thread may run on more than one CPU).
//!
//! **Memory files and mappings.** `memfd_sealed(size)` /
//! `memfd_sealed_labelled(label, size)`: an anonymous, zero-filled memory
//! file of a fixed size, which no process can grow or shrink, freed when
//! its last descriptor and mapping go; `is_size_sealed`, `file_size`
//! (which refuses anything but such a file); named segments
//! (`shm_create`, `shm_attach`, `shm_unlink`); `size_matches(actual,
//! wanted)`: whether a received fixed-size file's size is the one its
//! sender asked for (macOS rounds shared memory objects up to whole
//! pages); `Mapping`: a shared,
//! readable and writable view of a whole file that every process mapping
//! it sees at once, accessed as atomics or through raw copies, unmapped on
//! drop unless `keep_mapped`. `Memfd`, `read_file`, `buffer`: one large
//! payload in a memory file. `memfile_create`, `memfile_check`,
//! `memfile_grow`, `memfile_size`: a memory file sealed at a fixed size or
//! grow-only, checked on receipt (the queue ring's storage).
//!
//! **One robust, process-shared mutex with a deadline.** `RobustMutex`,
//! `MUTEX_SIZE` bytes at an offset of a `Mapping` aligned to
//! `MUTEX_ALIGN` (both at most 64): `init(map, off, kind)` (error-checking
//! or recursive: [`MutexKind`]), `attach(map, off)`, `lock(deadline)`,
//! `unlock()`, `owner()` (the holder's `thread_id`, 0: none),
//! `held_by_current_thread()`, `held_by_this_process()`. Its promises:
//! when the holding thread or its process dies, the next locker gets the
//! lock at once with [`Locked::OwnerDied`] (no polling) and the lock is
//! usable again afterwards; a lock held by a stopped process makes a
//! timed lock time out, never hang; only the holder may unlock
//! ([`UnlockError`]); an error-checking mutex refuses a relock by its
//! holder ([`LockError::Deadlock`]). A thread of this process that still
//! holds a mutex needs its mapping kept (`Mapping::keep_mapped`).
//!
//! **Futex-style wait and wake on shared memory.** `futex_wait(word,
//! seen, deadline, slice)`: sleep while the 32-bit `word` (in a
//! `Mapping`) holds `seen`, at most `slice` and not past `deadline`;
//! returns on a wake, a change, a signal or the timeout alike (callers
//! recheck). `futex_wake(word, n)`, `futex_wake_all(word)`: wake sleepers
//! of any process mapping the word.
//!
//! **A child's output.** `output_pipe()`: a pipe whose read end (this
//! process's, non-blocking) reads what a child writes to the other end
//! (blocking, for its standard output or error); `read_some` reads it
//! (`ReadSome`: data, nothing now, or the end); `capture_file()`: an
//! empty memory file that never fills up, for a child to write to, read
//! whole at any time by `file_contents`; `write_all_raw(1 or 2, bytes)`:
//! this process's standard output or error, without std's locks.
//!
//! **Parent death.** `ParentWatch`: the parent's death as something to
//! wait for; `arm_parent_death(real_parent, server_child)`: end this
//! process when the process that created it ends, without a thread.
//!
//! Not yet behind the contract: the queues' ring (`ShmRing`, an algorithm
//! on these primitives, moving up to `crate::queue`).

// The stub backend constructs none of the contract's results, and the
// Windows backend not all of them yet.
#![cfg_attr(
    any(not(any(target_os = "linux", target_os = "macos")), multiproc_stub_backend),
    allow(dead_code)
)]

#[cfg(all(any(target_os = "linux", target_os = "macos"), not(multiproc_stub_backend)))]
#[path = "unix/mod.rs"]
mod imp;

#[cfg(all(windows, not(multiproc_stub_backend)))]
#[path = "windows/mod.rs"]
mod imp;

#[cfg(any(
    all(not(any(target_os = "linux", target_os = "macos")), not(windows)),
    multiproc_stub_backend
))]
#[path = "unsupported.rs"]
mod imp;

pub(crate) use imp::*;

/// The number at which a child started with `spawn_self(boot, ..)` finds
/// its bootstrap channel (the marker carries it): always `BOOT_FD` here.
#[cfg(not(all(windows, not(multiproc_stub_backend))))]
pub(crate) fn boot_channel_number(_boot: &Fd) -> RawFd {
    BOOT_FD
}

/// Whether a marker's number may name a bootstrap channel: only `BOOT_FD`
/// here (a backend that inherits handles by value accepts any).
#[cfg(not(all(windows, not(multiproc_stub_backend))))]
pub(crate) fn is_boot_channel_number(n: RawFd) -> bool {
    n == BOOT_FD
}

/// Ties `ours`, this process's end of a child's bootstrap channel, to the
/// child: a backend whose handles must be placed in the receiving process
/// by the sender (Windows) sends them straight into the child. Nothing to
/// do where the kernel carries descriptors in the channel (Unix).
#[cfg(not(all(windows, not(multiproc_stub_backend))))]
pub(crate) fn set_channel_peer(_ours: &Fd, _child: &ChildHandle) -> std::io::Result<()> {
    Ok(())
}

/// The child's side of [`set_channel_peer`]: ties its bootstrap channel
/// to its parent `pid` (nothing to do on Unix).
#[cfg(not(all(windows, not(multiproc_stub_backend))))]
pub(crate) fn set_channel_peer_pid(_ours: &Fd, _pid: u32) -> std::io::Result<()> {
    Ok(())
}

/// A descriptor's number, as the layers above the backend see it.
#[cfg(all(any(target_os = "linux", target_os = "macos"), not(multiproc_stub_backend)))]
pub(crate) use std::os::fd::RawFd;

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// What a timeout too large to represent means: about a century, which
/// no wait outlives.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The deadline `timeout` from now, on the monotonic clock.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + FOREVER)
}

/// Whether `deadline` (`None`: never) has passed.
pub(crate) fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// How a shared memory file may change size once created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resize {
    /// Never: sealed against shrinking and growing.
    Fixed,
    /// Only up: sealed against shrinking, free to grow, writable.
    GrowOnly,
}

/// What `memfile_check` learnt about a received memory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemfileFacts {
    /// The file's identity (device, inode): two descriptors of one file
    /// have the same.
    pub(crate) id: (u64, u64),
    /// Its size in bytes.
    pub(crate) size: u64,
}

/// An address to bind or connect to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SockAddr<'a> {
    Path(&'a Path),
    Abstract(&'a [u8]),
    Inet(SocketAddr),
}

/// The address of an accepted peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PeerAddr {
    /// A Unix socket that was never bound (the usual client).
    Unnamed,
    Path(PathBuf),
    Abstract(Vec<u8>),
    Inet(SocketAddr),
}

/// How a child ended, as the system reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawStatus {
    Exited(i32),
    Signaled(i32),
    /// The child was reaped by someone else (for example `SIGCHLD` set to
    /// `SIG_IGN`), so its status is lost.
    Unknown,
}

/// Bytes of a fork server's exit-status record (kind, value, pid; little
/// endian), which every backend's `ChildHandle` reads the same way.
pub(crate) const STATUS_RECORD_LEN: usize = 12;

/// The record a fork server writes for the end of its child `pid`.
pub(crate) fn encode_status_record(pid: u32, status: RawStatus) -> [u8; STATUS_RECORD_LEN] {
    let (kind, value) = match status {
        RawStatus::Exited(c) => (0u32, c),
        RawStatus::Signaled(s) => (1, s),
        RawStatus::Unknown => (2, 0),
    };
    let mut out = [0u8; STATUS_RECORD_LEN];
    out[..4].copy_from_slice(&kind.to_le_bytes());
    out[4..8].copy_from_slice(&value.to_le_bytes());
    out[8..].copy_from_slice(&pid.to_le_bytes());
    out
}

/// What a record says of child `pid`: a record that names another pid
/// answers nothing asked, so the status is then unknown, never another
/// child's.
pub(crate) fn decode_status_record(pid: u32, buf: &[u8]) -> RawStatus {
    let word = |i: usize| <[u8; 4]>::try_from(&buf[i..i + 4]).expect("4 bytes");
    let (kind, value, named) = (
        u32::from_le_bytes(word(0)),
        i32::from_le_bytes(word(4)),
        u32::from_le_bytes(word(8)),
    );
    match kind {
        _ if named != pid => RawStatus::Unknown,
        0 => RawStatus::Exited(value),
        1 => RawStatus::Signaled(value),
        _ => RawStatus::Unknown,
    }
}

/// The kind of a [`RobustMutex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MutexKind {
    /// Locking it again from the holding thread is refused.
    ErrorCheck,
    /// The holding thread may lock it again; it is free after as many
    /// unlocks.
    Recursive,
}

/// How a [`RobustMutex::lock`] went (it holds the lock either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locked {
    /// Normally.
    Clean,
    /// The previous holder died holding it; the mutex is consistent again,
    /// what it protects may not be.
    OwnerDied,
}

/// Why a [`RobustMutex::lock`] did not lock.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Still held at the deadline (or at once, for a try).
    Timeout,
    /// An error-checking mutex locked again by its holder.
    Deadlock,
    /// A holder died and the state could not be recovered: the mutex is
    /// unusable for good (never on macOS: its owner-word lock always is).
    #[cfg_attr(target_os = "macos", allow(dead_code))]
    NotRecoverable,
    /// Any other failure of the system.
    Io(io::Error),
}

impl From<LockError> for io::Error {
    fn from(e: LockError) -> io::Error {
        match e {
            LockError::Timeout => io::Error::new(io::ErrorKind::TimedOut, "the lock is busy"),
            LockError::Deadlock => io::Error::new(io::ErrorKind::WouldBlock, "the lock is held by this thread"),
            LockError::NotRecoverable => {
                io::Error::other("the lock is not recoverable: a holder died and it was not made consistent")
            }
            LockError::Io(e) => e,
        }
    }
}

/// Why a [`RobustMutex::unlock`] was refused.
#[derive(Debug)]
pub(crate) enum UnlockError {
    /// Another thread holds it.
    NotOwner,
    /// Nobody holds it.
    NotLocked,
    /// Any other failure of the system (none on macOS).
    #[cfg_attr(target_os = "macos", allow(dead_code))]
    Io(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, ErrorKind};

    /// A backend's "not supported here" reaches the user as
    /// `ErrorKind::Unsupported`, whatever operation reported it.
    #[test]
    fn an_unsupported_system_call_is_reported_as_unsupported() {
        let e = Error::io(
            "failed to create the lock's shared memory",
            io::ErrorKind::Unsupported.into(),
        );
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = Error::io(
            "failed to create the lock's shared memory",
            io::ErrorKind::PermissionDenied.into(),
        );
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn a_timeout_too_large_to_represent_is_forever() {
        let d = deadline_after(Duration::MAX);
        assert!(d > Instant::now() + FOREVER - Duration::from_secs(60));
        assert!(!passed(Some(d)));
        assert!(passed(Some(Instant::now())));
        assert!(!passed(None));
    }
}
