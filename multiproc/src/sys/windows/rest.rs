//! The parts of the contract not implemented on Windows yet: each call
//! fails with `io::ErrorKind::Unsupported` and a message naming the
//! feature, and the types nothing can create (a mapping, a robust mutex)
//! are uninhabited. This is the list of what remains to port: shared
//! memory (file mappings), the robust mutex (a kernel mutex whose
//! abandonment is `OwnerDied`) and the futex waits (events or semaphores:
//! `WaitOnAddress` does not cross processes), Unix and TCP sockets, and the
//! capture of a child's output.

use std::{
    ffi::CStr,
    io,
    net::SocketAddr,
    sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed},
    time::{Duration, Instant},
};

use super::{ChildHandle, Fd, unsupported};
use crate::sys::{LockError, Locked, MemfileFacts, MutexKind, PeerAddr, Resize, SockAddr, UnlockError};

/// What a feature that is not ported yet answers.
fn no<T>() -> io::Result<T> {
    Err(unsupported(
        "not supported on Windows yet (shared memory, locks, queues, sockets and output capture are not ported)",
    ))
}

/// No value: the types nothing can create hold one.
#[derive(Clone, Copy, Debug)]
enum Never {}

// ----- a child's output (crate::output) -----

/// What a non-blocking read got.
pub(crate) enum ReadSome {
    Data(usize),
    Empty,
    End,
}
pub(crate) fn output_pipe() -> io::Result<(Fd, Fd)> {
    no()
}
pub(crate) fn capture_file() -> io::Result<Fd> {
    no()
}
pub(crate) fn file_contents(_fd: &Fd) -> io::Result<Vec<u8>> {
    no()
}
pub(crate) fn read_some(_fd: &Fd, _buf: &mut Vec<u8>, _max: usize) -> io::Result<ReadSome> {
    no()
}
pub(crate) fn write_all_raw(_fd: i32, _bytes: &[u8]) -> io::Result<()> {
    no()
}

// ----- sockets -----

/// Most bytes of a Unix socket's path.
pub(crate) const UNIX_NAME_MAX: usize = 107;

pub(crate) fn bound_socket(_addr: SockAddr<'_>) -> io::Result<Fd> {
    no()
}
pub(crate) fn listen(_fd: &Fd, _backlog: i32) -> io::Result<()> {
    no()
}
pub(crate) fn local_inet_addr(_fd: &Fd) -> io::Result<SocketAddr> {
    no()
}
pub(crate) fn accept(_listener: &Fd) -> io::Result<Option<(Fd, PeerAddr)>> {
    no()
}
pub(crate) fn connect(_addr: SockAddr<'_>, _timeout: Option<Duration>) -> io::Result<Fd> {
    no()
}
pub(crate) fn set_nodelay(_fd: &Fd) -> io::Result<()> {
    no()
}

/// Which side of a fork the caller is on.
#[derive(Debug)]
pub(crate) enum ForkSide {
    Parent(ChildHandle),
    Child,
}

/// Forks: Windows has no fork.
///
/// # Safety
///
/// None needed: it fails.
pub(crate) unsafe fn fork_child() -> io::Result<ForkSide> {
    Err(unsupported(
        "fork does not exist on Windows; use the spawn start method",
    ))
}

// ----- memory files and mappings -----

pub(crate) fn memfile_create(_name: &CStr, _size: u64, _resize: Resize) -> io::Result<Fd> {
    no()
}
pub(crate) fn memfile_check(_fd: &Fd, _resize: Resize, _what: &str) -> io::Result<MemfileFacts> {
    no()
}
pub(crate) fn memfile_grow(_fd: &Fd, _size: u64) -> io::Result<()> {
    no()
}
pub(crate) fn memfile_size(_fd: &Fd) -> io::Result<u64> {
    no()
}
#[cfg(test)]
pub(crate) fn memfile_unsealed_for_test(_size: u64) -> io::Result<Fd> {
    no()
}
pub(crate) fn memfd_sealed(_size: usize) -> io::Result<Fd> {
    no()
}
pub(crate) fn memfd_sealed_labelled(_label: &CStr, _size: usize) -> io::Result<Fd> {
    no()
}
/// Whether a received memory file of `actual` bytes is one of `wanted`.
pub(crate) fn size_matches(actual: u64, wanted: u64) -> bool {
    actual == wanted
}
pub(crate) fn is_size_sealed(_fd: &Fd) -> bool {
    false
}
pub(crate) fn file_size(_fd: &Fd) -> io::Result<u64> {
    no()
}
pub(crate) fn shm_create(_name: &str, _size: usize) -> io::Result<Fd> {
    no()
}
pub(crate) fn shm_attach(_name: &str) -> io::Result<Fd> {
    no()
}
pub(crate) fn shm_unlink(_name: &str) -> io::Result<()> {
    no()
}

/// An empty buffer with room for `len` bytes (there is no huge-page
/// advice to give); an allocation failure is an error, not an abort.
pub(crate) fn buffer(len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate a {len}-byte buffer"),
        )
    })?;
    Ok(buf)
}
pub(crate) fn retain_freed_memory() {}

/// The widest atomic access (1, 2, 4 or 8 bytes) that tiles a `T` and is
/// aligned wherever a `T` is (pure: as on Linux).
pub(crate) const fn unit_of<T>() -> usize {
    let mut unit = 8;
    while unit > 1 && (size_of::<T>() % unit != 0 || align_of::<T>() % unit != 0) {
        unit /= 2;
    }
    unit
}

/// A shared mapping; none exist on this platform.
#[derive(Debug)]
pub(crate) struct Mapping {
    never: Never,
}

impl Mapping {
    pub(crate) fn new(_fd: &Fd, _len: usize) -> io::Result<Mapping> {
        no()
    }
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        match self.never {}
    }
    pub(crate) fn len(&self) -> usize {
        match self.never {}
    }
    pub(crate) fn copy_out(&self, _off: usize, _out: &mut [u8]) {
        match self.never {}
    }
    pub(crate) fn copy_in(&self, _off: usize, _src: &[u8]) {
        match self.never {}
    }
    pub(crate) fn fill(&self, _off: usize, _n: usize, _byte: u8) {
        match self.never {}
    }
    pub(crate) fn atomic_bytes(&self) -> &[AtomicU8] {
        match self.never {}
    }
    /// # Safety
    ///
    /// Unreachable: no mapping exists.
    pub(crate) unsafe fn bytes(&self) -> &[u8] {
        match self.never {}
    }
    /// # Safety
    ///
    /// Unreachable: no mapping exists.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self) -> &mut [u8] {
        match self.never {}
    }
    pub(crate) fn keep_mapped(&mut self) {
        match self.never {}
    }
    pub(crate) fn copy_out_units(&self, _off: usize, _out: &mut [u8], _unit: usize) {
        match self.never {}
    }
    pub(crate) fn copy_in_units(&self, _off: usize, _src: &[u8], _unit: usize) {
        match self.never {}
    }
    pub(crate) fn load<T: bytemuck::Pod>(&self, _off: usize) -> T {
        match self.never {}
    }
    pub(crate) fn store<T: bytemuck::Pod>(&self, _off: usize, _v: T) {
        match self.never {}
    }
}

// ----- the robust mutex -----

/// Bytes a [`RobustMutex`] takes in shared memory (a backend's own choice,
/// at most 64).
pub(crate) const MUTEX_SIZE: usize = 40;
/// The alignment its offset needs.
pub(crate) const MUTEX_ALIGN: usize = 8;

/// The robust mutex; none exist (there is no mapping to hold one).
#[derive(Debug)]
pub(crate) struct RobustMutex {
    never: Never,
}

impl RobustMutex {
    pub(crate) fn init(_map: &Mapping, _off: usize, _kind: MutexKind) -> io::Result<RobustMutex> {
        no()
    }
    pub(crate) fn attach(map: &Mapping, _off: usize) -> RobustMutex {
        match map.never {}
    }
    pub(crate) fn lock(&self, _deadline: Option<Instant>) -> Result<Locked, LockError> {
        match self.never {}
    }
    pub(crate) fn unlock(&self) -> Result<(), UnlockError> {
        match self.never {}
    }
    pub(crate) fn owner(&self) -> u32 {
        match self.never {}
    }
    pub(crate) fn held_by_current_thread(&self) -> bool {
        match self.never {}
    }
    pub(crate) fn held_by_this_process(&self) -> bool {
        match self.never {}
    }
}

// ----- futex-style wait and wake -----

/// Nobody can wake a word here (no memory is shared): waits the slice out
/// unless the word already changed.
pub(crate) fn futex_wait(word: &AtomicU32, seen: u32, deadline: Option<Instant>, slice: Duration) {
    let left = deadline.map_or(slice, |d| d.saturating_duration_since(Instant::now()).min(slice));
    if word.load(Relaxed) == seen && !left.is_zero() {
        std::thread::sleep(left);
    }
}
pub(crate) fn futex_wake(_word: &AtomicU32, _n: i32) {}
pub(crate) fn futex_wake_all(_word: &AtomicU32) {}
