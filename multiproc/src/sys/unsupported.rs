//! Backend for targets without process support: the contract of
//! [`crate::sys`] with every operation failing.
//!
//! Every call that can fail returns [`io::ErrorKind::Unsupported`] ("not
//! supported on this platform"), which the crate reports as
//! [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported). Nothing can
//! create a descriptor, a mapping, a child or a ring here, so those types
//! are uninhabited and their methods are unreachable by construction; the
//! few infallible queries answer with what `std` knows (the pid, the CPU
//! count) or with "nothing". It exists so that the facade type-checks on
//! any target (CI: `RUSTFLAGS="--cfg multiproc_stub_backend" cargo check`),
//! and as the skeleton a new backend fills in.
//!
//! It holds no `unsafe` block: the allowance below is for the `unsafe fn`
//! signatures the contract declares (`Fd::from_raw`, `fork_child`,
//! `Mapping::bytes`), whose bodies fail or cannot be reached.
#![allow(unsafe_code)]

use std::{
    cell::Cell,
    ffi::CStr,
    io,
    net::SocketAddr,
    path::Path,
    sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed},
    time::{Duration, Instant},
};

use crate::sys::{LockError, Locked, MemfileFacts, MutexKind, PeerAddr, RawStatus, Resize, SockAddr, UnlockError};

/// The error of every operation.
fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not supported on this platform")
}

/// `Err(unsupported())`.
fn no<T>() -> io::Result<T> {
    Err(unsupported())
}

/// No value: the types nothing can create hold one.
#[derive(Clone, Copy, Debug)]
enum Never {}

/// A descriptor's number, as the layers above see it.
pub(crate) type RawFd = i32;

// ----- descriptors and handles -----

/// An owned descriptor; none exist on this platform.
#[derive(Debug)]
pub(crate) struct Fd {
    never: Never,
}

/// A real backend closes the descriptor here; the stub's cannot exist,
/// but callers rely on `Fd` having drop glue (`drop(fd)` means "close").
impl Drop for Fd {
    fn drop(&mut self) {
        match self.never {}
    }
}

/// What a receive got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvSome {
    /// This many bytes.
    Data(usize),
    /// The peer closed its end.
    Eof,
    /// Nothing yet (a non-blocking receive).
    WouldBlock,
}

/// Most descriptors in one message.
pub(crate) const MAX_FDS: usize = 253;

impl Fd {
    /// Takes ownership of a descriptor number.
    ///
    /// # Safety
    ///
    /// None needed here: there are no descriptors, and this panics.
    pub(crate) unsafe fn from_raw(_raw: RawFd) -> Fd {
        panic!("descriptors are not supported on this platform")
    }
    pub(crate) fn dup_raw(_raw: RawFd) -> io::Result<Fd> {
        no()
    }
    pub(crate) fn into_endpoint(self) -> Fd {
        match self.never {}
    }
    pub(crate) fn raw(&self) -> RawFd {
        match self.never {}
    }
    /// The descriptor, borrowed (the public `AsFd` impls use it; Unix
    /// targets only).
    #[cfg(unix)]
    pub(crate) fn borrow(&self) -> std::os::fd::BorrowedFd<'_> {
        match self.never {}
    }
    pub(crate) fn forget(self) {
        match self.never {}
    }
    pub(crate) fn close_now(self) {
        match self.never {}
    }
    pub(crate) fn try_clone(&self) -> io::Result<Fd> {
        match self.never {}
    }
    pub(crate) fn set_cloexec(&self) -> io::Result<()> {
        match self.never {}
    }
    pub(crate) fn set_send_buffer(&self, _bytes: usize) -> io::Result<()> {
        match self.never {}
    }
    pub(crate) fn send_frame(&self, _header: &[u8], _payload: &[u8], _fds: &[RawFd]) -> io::Result<()> {
        match self.never {}
    }
    pub(crate) fn send_vectored(&self, _parts: &[&[u8]]) -> (usize, io::Result<()>) {
        match self.never {}
    }
    pub(crate) fn recv_exact_into(&self, _buf: &mut Vec<u8>, _len: usize) -> io::Result<()> {
        match self.never {}
    }
    pub(crate) fn identity(&self) -> Option<(u64, u64)> {
        match self.never {}
    }
    pub(crate) fn is_socket(&self) -> bool {
        match self.never {}
    }
    pub(crate) fn is_eventfd(&self) -> bool {
        match self.never {}
    }
    pub(crate) fn shutdown(&self, _how: std::net::Shutdown) -> io::Result<()> {
        match self.never {}
    }
    pub(crate) fn try_send_datagram(&self, _bytes: &[u8], _fds: &[RawFd]) -> io::Result<bool> {
        match self.never {}
    }
    pub(crate) fn peek_datagram(&self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.never {}
    }
    pub(crate) fn send_some(&self, _bytes: &[u8]) -> io::Result<usize> {
        match self.never {}
    }
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn send_nonblocking(&self, _parts: [&[u8]; 2], _fds: &[RawFd]) -> io::Result<usize> {
        match self.never {}
    }
    pub(crate) fn poll_writable_or(&self, _other: i32, _timeout: Option<Duration>) -> io::Result<(bool, bool)> {
        match self.never {}
    }
    pub(crate) fn poll_readable(&self, _timeout: Option<Duration>) -> io::Result<bool> {
        match self.never {}
    }
    pub(crate) fn poll_readable_or(&self, _other: i32, _timeout: Option<Duration>) -> io::Result<(bool, bool)> {
        match self.never {}
    }
    pub(crate) fn recv_some(&self, _buf: &mut Vec<u8>, _fds: &mut Vec<Fd>, _nonblocking: bool) -> io::Result<RecvSome> {
        match self.never {}
    }
    pub(crate) fn recv_upto(
        &self,
        _buf: &mut Vec<u8>,
        _limit: usize,
        _fds: &mut Vec<Fd>,
        _nonblocking: bool,
    ) -> io::Result<RecvSome> {
        match self.never {}
    }
    pub(crate) fn recv_into(&self, _buf: &mut [u8], _fds: &mut Vec<Fd>, _nonblocking: bool) -> io::Result<RecvSome> {
        match self.never {}
    }
}

pub(crate) fn eventfd() -> io::Result<Fd> {
    no()
}
pub(crate) fn eventfd_signal(fd: &Fd) {
    match fd.never {}
}
pub(crate) fn eventfd_drain(fd: &Fd) {
    match fd.never {}
}
pub(crate) fn socketpair() -> io::Result<(Fd, Fd)> {
    no()
}
pub(crate) fn seqpacket_pair() -> io::Result<(Fd, Fd)> {
    no()
}
pub(crate) fn poll_readable_set(fds: &[RawFd], _timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    if fds.is_empty() { Ok(Vec::new()) } else { no() }
}
pub(crate) fn null_device() -> io::Result<Fd> {
    no()
}
pub(crate) fn redirect(source: &Fd, _target: i32) -> io::Result<()> {
    match source.never {}
}

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
pub(crate) fn file_contents(fd: &Fd) -> io::Result<Vec<u8>> {
    match fd.never {}
}
pub(crate) fn read_some(fd: &Fd, _buf: &mut Vec<u8>, _max: usize) -> io::Result<ReadSome> {
    match fd.never {}
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
pub(crate) fn listen(fd: &Fd, _backlog: i32) -> io::Result<()> {
    match fd.never {}
}
pub(crate) fn local_inet_addr(fd: &Fd) -> io::Result<SocketAddr> {
    match fd.never {}
}
pub(crate) fn accept(listener: &Fd) -> io::Result<Option<(Fd, PeerAddr)>> {
    match listener.never {}
}
pub(crate) fn connect(_addr: SockAddr<'_>, _timeout: Option<Duration>) -> io::Result<Fd> {
    no()
}
pub(crate) fn set_nodelay(fd: &Fd) -> io::Result<()> {
    match fd.never {}
}
pub(crate) fn peer_closed(_fd: std::os::fd::BorrowedFd<'_>, _timeout: Duration) -> io::Result<bool> {
    no()
}
pub(crate) fn set_tcp_liveness(_fd: std::os::fd::BorrowedFd<'_>, _timeout: Duration) -> io::Result<()> {
    no()
}
pub(crate) fn socket_peer_pid(_fd: RawFd) -> io::Result<u32> {
    no()
}

// ----- spawn, fork, exit -----

/// The descriptor number a started child finds its boot channel at.
pub(crate) const BOOT_FD: i32 = 3;

/// Which side of a fork the caller is on.
#[derive(Debug)]
pub(crate) enum ForkSide {
    Parent(ChildHandle),
    Child,
}

pub(crate) fn spawn_self(boot: &Fd, _marker: (&str, &str)) -> io::Result<ChildHandle> {
    match boot.never {}
}
pub(crate) fn spawn_program(boot: &Fd, _marker: (&str, &str), _program: Option<&Path>) -> io::Result<ChildHandle> {
    match boot.never {}
}

/// Forks.
///
/// # Safety
///
/// None needed here: it fails.
pub(crate) unsafe fn fork_child() -> io::Result<ForkSide> {
    no()
}

/// Leaves the process with `code`. (`std::process::exit` runs exit
/// handlers, which `_exit` would not; no child of this library exists
/// here to need the difference.)
#[allow(clippy::disallowed_methods)] // the stub's one exit call
pub(crate) fn exit_now(code: i32) -> ! {
    std::process::exit(code)
}
pub(crate) fn atexit(_f: extern "C" fn()) -> io::Result<()> {
    no()
}
pub(crate) fn close_inherited(_fds: &[i32]) {}
pub(crate) fn reserve_closed(_fds: &[i32]) {}

// ----- process handles and facts -----

/// A started child; none exist on this platform.
#[derive(Debug)]
pub(crate) struct ChildHandle {
    never: Never,
}

impl ChildHandle {
    /// Bytes of [`encode_status`](Self::encode_status)'s record.
    pub(crate) const STATUS_LEN: usize = super::STATUS_RECORD_LEN;

    pub(crate) fn open(_pid: u32) -> io::Result<ChildHandle> {
        no()
    }
    pub(crate) fn remote(_pid: u32, pidfd: Fd, _status: Fd, _already_read: Vec<u8>) -> ChildHandle {
        match pidfd.never {}
    }
    /// The record a fork server writes for the end of its child `pid`.
    pub(crate) fn encode_status(pid: u32, status: RawStatus) -> [u8; Self::STATUS_LEN] {
        super::encode_status_record(pid, status)
    }
    #[cfg(test)]
    pub(crate) fn status_for_test(&self) -> RawStatus {
        match self.never {}
    }
    pub(crate) fn pid(&self) -> u32 {
        match self.never {}
    }
    pub(crate) fn raw_fd(&self) -> i32 {
        match self.never {}
    }
    /// The process descriptor, borrowed (Unix targets only).
    #[cfg(unix)]
    pub(crate) fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self.never {}
    }
    pub(crate) fn raw_fds(&self) -> Vec<i32> {
        match self.never {}
    }
    pub(crate) fn pidfd_copy(&self) -> io::Result<Fd> {
        match self.never {}
    }
    pub(crate) fn poll_exit(&self, _timeout: Option<Duration>) -> io::Result<bool> {
        match self.never {}
    }
    pub(crate) fn try_reap(&self) -> io::Result<Option<RawStatus>> {
        match self.never {}
    }
    pub(crate) fn signal(&self, _signal: i32) -> io::Result<()> {
        match self.never {}
    }
}

/// The parent's death as something to wait for; never created here.
#[derive(Debug)]
pub(crate) struct ParentWatch {
    never: Never,
}

impl ParentWatch {
    pub(crate) fn from_pidfd(pidfd: Fd) -> ParentWatch {
        match pidfd.never {}
    }
    pub(crate) fn of_self() -> io::Result<Fd> {
        no()
    }
    pub(crate) fn open_parent(_pid: u32) -> io::Result<ParentWatch> {
        no()
    }
    pub(crate) fn raw_fd(&self) -> i32 {
        match self.never {}
    }
    pub(crate) fn wait(&self, _timeout: Option<Duration>) -> io::Result<bool> {
        match self.never {}
    }
}

/// A fork server's child's link to its owner.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServerChild {
    pub(crate) owner_pidfd: i32,
    pub(crate) sock: i32,
}

pub(crate) fn arm_parent_death(_real_parent: u32, _server_child: Option<ServerChild>) -> io::Result<bool> {
    no()
}

/// Signal numbers (the POSIX values; only names here).
pub(crate) const SIGTERM: i32 = 15;
pub(crate) const SIGKILL: i32 = 9;

pub(crate) fn signal_name(sig: i32) -> Option<&'static str> {
    match sig {
        SIGTERM => Some("SIGTERM"),
        SIGKILL => Some("SIGKILL"),
        _ => None,
    }
}
pub(crate) fn getpid() -> u32 {
    std::process::id()
}
pub(crate) fn getppid() -> u32 {
    0
}
pub(crate) fn thread_count() -> io::Result<usize> {
    no()
}
pub(crate) fn cpu_count() -> Option<usize> {
    std::thread::available_parallelism().ok().map(usize::from)
}
pub(crate) fn affinity_cpu_count() -> Option<usize> {
    None
}
pub(crate) fn cgroup_cpu_limit() -> Option<f64> {
    None
}
pub(crate) fn random_bytes(_buf: &mut [u8]) -> io::Result<()> {
    no()
}
pub(crate) fn exe_identity() -> io::Result<(u64, u64)> {
    no()
}
pub(crate) fn image_base(_addr: usize) -> Option<usize> {
    None
}
pub(crate) fn main_image_base() -> Option<usize> {
    None
}
pub(crate) fn ignore_sigpipe() {}
pub(crate) fn set_sigint_ignored(_ignored: bool) {}
pub(crate) fn ignore_group_signals() {}

// ----- thread and process identity -----

thread_local! {
    static THREAD: Cell<u32> = const { Cell::new(0) };
}

/// A per-process thread number (never 0): no other process can see it.
pub(crate) fn thread_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    THREAD.with(|t| {
        if t.get() == 0 {
            t.set(NEXT.fetch_add(1, Relaxed));
        }
        t.get()
    })
}
pub(crate) fn process_identity() -> (u32, u64) {
    (getpid(), 0)
}
pub(crate) fn is_alive(_pid: u32, _tid: u32, _start: u64) -> bool {
    true
}
pub(crate) fn may_spin() -> bool {
    false
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
pub(crate) fn is_size_sealed(fd: &Fd) -> bool {
    match fd.never {}
}
pub(crate) fn file_size(fd: &Fd) -> io::Result<u64> {
    match fd.never {}
}
/// Whether a received memory file of `actual` bytes is one of `wanted`.
pub(crate) fn size_matches(actual: u64, wanted: u64) -> bool {
    actual == wanted
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

/// One large payload in a memory file; never created here.
#[derive(Debug)]
pub(crate) struct Memfd {
    never: Never,
}

impl Memfd {
    pub(crate) fn with_contents(_bytes: &[u8]) -> io::Result<Memfd> {
        no()
    }
    pub(crate) fn fd(&self) -> &Fd {
        match self.never {}
    }
}

pub(crate) fn read_file(fd: &Fd, _len: usize) -> io::Result<Vec<u8>> {
    match fd.never {}
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
    pub(crate) fn new(fd: &Fd, _len: usize) -> io::Result<Mapping> {
        match fd.never {}
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
    pub(crate) fn init(map: &Mapping, _off: usize, _kind: MutexKind) -> io::Result<RobustMutex> {
        match map.never {}
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

/// Run with `RUSTFLAGS="--cfg multiproc_stub_backend" cargo test -p
/// multiproc --lib -- stub_backend` (CI does).
#[cfg(test)]
mod tests {
    use crate::{ErrorKind, Event, Lock, Queue, RLock, Semaphore, SharedMemory, Value, pipe};

    #[test]
    fn stub_backend_fails_every_constructor_as_unsupported() {
        let kinds = [
            Lock::new().err().map(|e| e.kind()),
            RLock::new().err().map(|e| e.kind()),
            Semaphore::new(1).err().map(|e| e.kind()),
            Event::new().err().map(|e| e.kind()),
            Queue::<u8>::new().err().map(|e| e.kind()),
            pipe(true).err().map(|e| e.kind()),
            SharedMemory::new(4096).err().map(|e| e.kind()),
            Value::new(0u64).err().map(|e| e.kind()),
        ];
        for (i, k) in kinds.into_iter().enumerate() {
            assert_eq!(k, Some(ErrorKind::Unsupported), "constructor {i}");
        }
    }
}
