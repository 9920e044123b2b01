//! Owned handles, and the library's channels: message-mode named pipes
//! that carry handles beside their bytes.
//!
//! # Handle numbers
//!
//! The layers above see a handle as a [`RawFd`], an `i32`: 64-bit Windows
//! gives kernel handles 32 significant bits so that 32- and 64-bit
//! processes can share them ("Interprocess Communication Between 32-bit and
//! 64-bit Applications"), and sign extension restores the pointer-sized
//! value (pseudo handles such as `-1` included).
//!
//! # Channels
//!
//! [`socketpair`] is a pair of ends of one duplex named pipe
//! (`\\.\pipe\multiproc-<pid>-<n>-<random>`, one instance, local clients
//! only) in message mode, opened for overlapped I/O. Every send is one
//! *frame*: a header message `[data length u64][sender pid u32][handle
//! count u32][handle u64 ...]` followed by the data as one or more
//! messages (the caller's parts, never copied together). The reader keeps
//! how much data of the current frame is left (`Fd::left`) and reads the
//! next header once it is zero. That is the whole difference from the
//! Unix socket stream the contract describes; the bytes the layers above
//! see are the same.
//!
//! **Handles travel by duplication**, as CPython's `DupHandle` does when
//! the receiving process is unknown: the sender duplicates each handle
//! into an in-flight copy of its own and writes the copy's value with its
//! pid; the receiver opens the sender with `PROCESS_DUP_HANDLE` and takes
//! the copy with `DuplicateHandle(.., DUPLICATE_CLOSE_SOURCE)`. A sender
//! that has exited before the receiver took them has taken the handles
//! with it: the receive fails with an error saying so (Unix keeps them in
//! the socket buffer).
//!
//! **Readiness** (`poll_readable_set`): a pipe is ready when
//! `PeekNamedPipe` sees bytes or a closed peer; otherwise the wait issues
//! a zero-byte overlapped read on each pipe (in message mode it completes
//! when a message arrives, consuming nothing: CPython's `PipeConnection`
//! and `wait` do the same) and waits on those reads' events together with
//! any process or event handle in one `WaitForMultipleObjects`, then
//! cancels the reads. More than 63 objects are looked at in turns of
//! [`TURN`].

use std::{
    cell::RefCell,
    io, ptr,
    sync::{
        OnceLock,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use windows_sys::Win32::{
    Foundation::{
        CloseHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, DuplicateHandle, ERROR_BROKEN_PIPE,
        ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED, GENERIC_READ, GENERIC_WRITE,
        GetLastError, HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE, SetHandleInformation, WAIT_FAILED,
        WAIT_OBJECT_0,
    },
    Storage::FileSystem::{
        CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, FILE_TYPE_PIPE, GetFileType, OPEN_EXISTING,
        PIPE_ACCESS_DUPLEX, ReadFile, WriteFile,
    },
    System::{
        IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED},
        Pipes::{
            CreateNamedPipeW, GetNamedPipeServerProcessId, PIPE_READMODE_MESSAGE, PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_TYPE_MESSAGE, PIPE_WAIT, PeekNamedPipe,
        },
        Threading::{
            CreateEventW, GetCurrentProcess, INFINITE, OpenProcess, PROCESS_DUP_HANDLE, WaitForMultipleObjects,
            WaitForSingleObject,
        },
    },
};

use super::{cvt, getpid, random_u64, wide};

/// A handle's number, as the layers above the backend see it (see the
/// module docs).
pub(crate) type RawFd = i32;

/// The handle a number stands for.
pub(crate) fn handle_of(raw: RawFd) -> HANDLE {
    raw as isize as HANDLE
}

/// This process's pseudo handle (needs no closing).
pub(crate) fn current_process() -> HANDLE {
    // SAFETY: no arguments; the pseudo handle is always valid.
    unsafe { GetCurrentProcess() }
}

/// The number of a handle.
pub(crate) fn raw_of_handle(h: std::os::windows::io::RawHandle) -> RawFd {
    h as isize as RawFd
}

/// Bytes of a frame's header before its handles.
const FRAME_HEAD: usize = 16;

/// Most handles in one frame (as on Linux).
pub(crate) const MAX_FDS: usize = 253;

/// How long one turn of a wait over more objects than one
/// `WaitForMultipleObjects` takes lasts.
const TURN: Duration = Duration::from_millis(1);

/// Bytes each direction of a pipe buffers (advisory for the system).
const PIPE_BUFFER: u32 = 256 * 1024;

/// An owned handle, closed on drop, never inherited unless a spawn passes
/// it on purpose (handles are created non-inheritable).
#[derive(Debug)]
pub(crate) struct Fd {
    raw: RawFd,
    /// Data bytes of the frame being read that are still in the pipe.
    left: AtomicUsize,
    /// For a channel to a child this process started: a handle on that
    /// child, into which handles sent on the channel are duplicated
    /// directly (see [`set_channel_peer`]).
    peer: OnceLock<RawFd>,
}

impl Drop for Fd {
    fn drop(&mut self) {
        if let Some(&peer) = self.peer.get() {
            // SAFETY: the peer handle is ours and open.
            unsafe { CloseHandle(handle_of(peer)) };
        }
        // SAFETY: the handle is ours and open; nothing uses it after drop.
        unsafe { CloseHandle(handle_of(self.raw)) };
    }
}

/// Makes `ours`, this process's end of a child's bootstrap channel, send
/// handles straight into `child` (`DuplicateHandle` into the child, as
/// CPython's spawn does): they are the child's at once, and closed by the
/// system with it if it dies before reading them, where handles that wait
/// in this process for the receiver to take them would stay here.
pub(crate) fn set_channel_peer(ours: &Fd, child: &super::ChildHandle) -> io::Result<()> {
    ours.set_peer(child.process_fd().try_clone()?);
    Ok(())
}

/// The child's side of [`set_channel_peer`]: its bootstrap channel sends
/// handles (a large outcome's section) straight into its parent `pid`,
/// so that the child may exit before the parent reads them.
pub(crate) fn set_channel_peer_pid(ours: &Fd, pid: u32) -> io::Result<()> {
    // SAFETY: OpenProcess takes plain values; the result is checked.
    ours.set_peer(Fd::from_new(unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) })?);
    Ok(())
}

impl Fd {
    fn set_peer(&self, process: Fd) {
        let raw = process.raw();
        if self.peer.set(raw).is_ok() {
            process.forget();
        }
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

impl Fd {
    /// Takes ownership of a handle number.
    ///
    /// # Safety
    /// `raw` must be an open handle that nothing else owns.
    pub(crate) unsafe fn from_raw(raw: RawFd) -> Fd {
        Fd {
            raw,
            left: AtomicUsize::new(0),
            peer: OnceLock::new(),
        }
    }

    /// Takes ownership of a handle just returned by the system (`null` or
    /// `INVALID_HANDLE_VALUE`: the thread's last error).
    pub(crate) fn from_new(h: HANDLE) -> io::Result<Fd> {
        if h.is_null() || h == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new handle that nobody else owns.
        Ok(unsafe { Fd::from_raw(raw_of_handle(h)) })
    }

    /// A new handle for the object `raw` names (which stays the caller's).
    pub(crate) fn dup_raw(raw: RawFd) -> io::Result<Fd> {
        let mut out: HANDLE = ptr::null_mut();
        let me = current_process();
        // SAFETY: duplicating within this process into a valid out-pointer.
        cvt(unsafe { DuplicateHandle(me, handle_of(raw), me, &mut out, 0, 0, DUPLICATE_SAME_ACCESS) })?;
        Fd::from_new(out)
    }
    pub(crate) fn into_endpoint(self) -> Fd {
        self
    }
    pub(crate) fn raw(&self) -> RawFd {
        self.raw
    }
    pub(crate) fn handle(&self) -> HANDLE {
        handle_of(self.raw)
    }
    /// The handle, for the public `AsRawHandle` impls.
    pub(crate) fn raw_handle(&self) -> std::os::windows::io::RawHandle {
        self.handle()
    }
    /// The handle, borrowed.
    pub(crate) fn borrow_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        // SAFETY: the handle is open for as long as `self` is borrowed.
        unsafe { std::os::windows::io::BorrowedHandle::borrow_raw(self.handle()) }
    }
    /// Gives up the handle without closing it.
    pub(crate) fn forget(self) {
        std::mem::forget(self);
    }
    pub(crate) fn close_now(self) {
        drop(self);
    }
    pub(crate) fn try_clone(&self) -> io::Result<Fd> {
        Fd::dup_raw(self.raw)
    }
    /// Makes the handle non-inheritable (the spawned child's bootstrap
    /// pipe arrives inheritable).
    pub(crate) fn set_cloexec(&self) -> io::Result<()> {
        // SAFETY: the handle is open.
        cvt(unsafe { SetHandleInformation(self.handle(), HANDLE_FLAG_INHERIT, 0) }).map(drop)
    }
    /// Makes the handle inheritable (for a spawn's handle list).
    pub(crate) fn set_inheritable(&self) -> io::Result<()> {
        // SAFETY: the handle is open.
        cvt(unsafe { SetHandleInformation(self.handle(), HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) }).map(drop)
    }
    /// Pipe buffers are sized at creation.
    pub(crate) fn set_send_buffer(&self, _bytes: usize) -> io::Result<()> {
        Ok(())
    }

    /// Sends `header` and `payload` as one frame, with `fds` (see the
    /// module docs), blocking until everything is written.
    pub(crate) fn send_frame(&self, header: &[u8], payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
        self.write_frame(&[header, payload], fds).1
    }

    /// Sends `parts` back to back as one frame; how many bytes went out,
    /// with the error that stopped it.
    pub(crate) fn send_vectored(&self, parts: &[&[u8]]) -> (usize, io::Result<()>) {
        self.write_frame(parts, &[])
    }

    /// Writes one frame: its header (with the in-flight copies of `fds`),
    /// then each non-empty part as a message.
    fn write_frame(&self, parts: &[&[u8]], fds: &[RawFd]) -> (usize, io::Result<()>) {
        if fds.len() > MAX_FDS {
            return (
                0,
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "too many handles in one message",
                )),
            );
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let peer = self.peer.get().map(|&p| handle_of(p));
        let mut head = Vec::with_capacity(FRAME_HEAD + 8 * fds.len());
        head.extend_from_slice(&(total as u64).to_le_bytes());
        // Sender 0: the handles are already the receiver's.
        head.extend_from_slice(&(if peer.is_some() { 0 } else { getpid() }).to_le_bytes());
        head.extend_from_slice(&(fds.len() as u32).to_le_bytes());
        let mut copies = Vec::with_capacity(fds.len());
        for &fd in fds {
            let copy = match peer {
                Some(child) => dup_into(fd, child),
                None => Fd::dup_raw(fd).map(|c| {
                    let raw = c.raw();
                    copies.push(c);
                    raw
                }),
            };
            match copy {
                Ok(raw) => head.extend_from_slice(&(raw as i64).to_le_bytes()),
                // Copies already made in the child are lost with the frame
                // (closed with the child); this process's are closed here.
                Err(e) => return (0, Err(e)),
            }
        }
        if let Err(e) = write_message(self.handle(), &head) {
            return (0, Err(e));
        }
        // The copies are the receiver's now: it closes them here when it
        // takes them.
        copies.into_iter().for_each(Fd::forget);
        let mut sent = 0;
        for part in parts.iter().filter(|p| !p.is_empty()) {
            if let Err(e) = write_message(self.handle(), part) {
                return (sent, Err(e));
            }
            sent += part.len();
        }
        (sent, Ok(()))
    }

    /// Blocks until `buf` holds `len` bytes.
    pub(crate) fn recv_exact_into(&self, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
        let mut fds = Vec::new();
        while buf.len() < len {
            match self.recv_upto(buf, len - buf.len(), &mut fds, false)? {
                RecvSome::Data(_) => {}
                RecvSome::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                RecvSome::WouldBlock => unreachable!("a blocking receive"),
            }
        }
        Ok(())
    }

    /// No file identity for pipes here.
    pub(crate) fn identity(&self) -> Option<(u64, u64)> {
        None
    }
    /// `true` for a pipe (the library's channels).
    pub(crate) fn is_socket(&self) -> bool {
        // SAFETY: querying an open handle.
        unsafe { GetFileType(self.handle()) == FILE_TYPE_PIPE }
    }
    pub(crate) fn is_eventfd(&self) -> bool {
        false
    }
    /// A pipe has no half-close: the layers above track which direction an
    /// end may use, so this does nothing.
    pub(crate) fn shutdown(&self, _how: std::net::Shutdown) -> io::Result<()> {
        Ok(())
    }
    pub(crate) fn try_send_datagram(&self, _bytes: &[u8], _fds: &[RawFd]) -> io::Result<bool> {
        Err(super::unsupported(
            "datagram channels (queues) are not supported on Windows yet",
        ))
    }
    pub(crate) fn peek_datagram(&self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        Err(super::unsupported(
            "datagram channels (queues) are not supported on Windows yet",
        ))
    }
    /// Writes `bytes` as one frame (blocking: a pipe's write waits for
    /// room itself).
    pub(crate) fn send_some(&self, bytes: &[u8]) -> io::Result<usize> {
        self.send_frame(bytes, &[], &[]).map(|()| bytes.len())
    }
    /// As [`send_some`](Self::send_some): the whole frame, blocking.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn send_nonblocking(&self, parts: [&[u8]; 2], fds: &[RawFd]) -> io::Result<usize> {
        self.write_frame(&parts, fds)
            .1
            .map(|()| parts[0].len() + parts[1].len())
    }
    /// A pipe's writes wait for room themselves: writable at once; `other`
    /// is looked at without waiting.
    pub(crate) fn poll_writable_or(&self, other: i32, _timeout: Option<Duration>) -> io::Result<(bool, bool)> {
        let other_ready = other >= 0 && poll_readable_set(&[other], Some(Duration::ZERO))?[0];
        Ok((true, other_ready))
    }
    pub(crate) fn poll_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        if self.left.load(Ordering::Acquire) > 0 {
            return Ok(true);
        }
        Ok(poll_readable_set(&[self.raw], timeout)?[0])
    }
    pub(crate) fn poll_readable_or(&self, other: i32, timeout: Option<Duration>) -> io::Result<(bool, bool)> {
        if self.left.load(Ordering::Acquire) > 0 {
            return Ok((true, false));
        }
        let r = poll_readable_set(&[self.raw, other], timeout)?;
        Ok((r[0], r[1]))
    }

    /// Reads what is available (blocking unless `nonblocking`) into the
    /// spare capacity of `buf`, collecting received handles into `fds`.
    pub(crate) fn recv_some(&self, buf: &mut Vec<u8>, fds: &mut Vec<Fd>, nonblocking: bool) -> io::Result<RecvSome> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        self.recv_upto(buf, usize::MAX, fds, nonblocking)
    }

    /// Like [`recv_some`](Fd::recv_some), at most `limit` bytes.
    pub(crate) fn recv_upto(
        &self,
        buf: &mut Vec<u8>,
        limit: usize,
        fds: &mut Vec<Fd>,
        nonblocking: bool,
    ) -> io::Result<RecvSome> {
        let start = buf.len();
        let limit = limit.min(buf.capacity() - start);
        buf.resize(start + limit, 0);
        let r = self.recv_into(&mut buf[start..], fds, nonblocking);
        let got = match &r {
            Ok(RecvSome::Data(n)) => *n,
            _ => 0,
        };
        buf.truncate(start + got);
        r
    }

    /// Like [`recv_upto`](Fd::recv_upto), into an initialised slice.
    pub(crate) fn recv_into(&self, buf: &mut [u8], fds: &mut Vec<Fd>, nonblocking: bool) -> io::Result<RecvSome> {
        if buf.is_empty() {
            return Ok(RecvSome::Data(0));
        }
        loop {
            let left = self.left.load(Ordering::Acquire);
            if left > 0 {
                let want = buf.len().min(left).min(u32::MAX as usize);
                return match read_some(self.handle(), &mut buf[..want])? {
                    Some(0) | None => Ok(RecvSome::Eof),
                    Some(n) => {
                        self.left.fetch_sub(n, Ordering::AcqRel);
                        Ok(RecvSome::Data(n))
                    }
                };
            }
            if nonblocking && !poll_readable_set(&[self.raw], Some(Duration::ZERO))?[0] {
                return Ok(RecvSome::WouldBlock);
            }
            // The next frame's header.
            let mut head = vec![0u8; FRAME_HEAD + 8 * MAX_FDS];
            let n = match read_some(self.handle(), &mut head)? {
                None | Some(0) => return Ok(RecvSome::Eof),
                Some(n) => n,
            };
            let word = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
            if n < FRAME_HEAD || n != FRAME_HEAD + 8 * word(12) as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed frame header on a pipe",
                ));
            }
            let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
            let (sender, count) = (word(8), word(12) as usize);
            let raws: Vec<i64> = (0..count)
                .map(|i| i64::from_le_bytes(head[FRAME_HEAD + 8 * i..FRAME_HEAD + 8 * i + 8].try_into().expect("8")))
                .collect();
            self.left.store(len as usize, Ordering::Release);
            if count > 0 {
                fds.extend(take_handles(sender, &raws)?);
            }
        }
    }
}

/// A copy of this process's handle `fd` in the process `target`; its
/// value there.
fn dup_into(fd: RawFd, target: HANDLE) -> io::Result<RawFd> {
    let mut out: HANDLE = ptr::null_mut();
    let me = current_process();
    // SAFETY: duplicating an open handle of ours into `target` (a process
    // handle with PROCESS_DUP_HANDLE); `out` is a valid out-pointer.
    cvt(unsafe { DuplicateHandle(me, handle_of(fd), target, &mut out, 0, 0, DUPLICATE_SAME_ACCESS) })?;
    Ok(raw_of_handle(out))
}

/// Takes the in-flight copies `raws` from process `sender` (0: they were
/// duplicated into this process already).
fn take_handles(sender: u32, raws: &[i64]) -> io::Result<Vec<Fd>> {
    if sender == 0 {
        // SAFETY: the sender made these handles in this process for this
        // frame; nothing else owns them.
        return Ok(raws.iter().map(|&r| unsafe { Fd::from_raw(r as RawFd) }).collect());
    }
    let from = if sender == getpid() {
        None
    } else {
        // SAFETY: OpenProcess takes plain values; the result is checked.
        let h = unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, sender) };
        Some(Fd::from_new(h).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the sender (pid {sender}) of handles is gone, and the handles with it: {e}"),
            )
        })?)
    };
    let me = current_process();
    let source = from.as_ref().map_or(me, Fd::handle);
    let mut out = Vec::with_capacity(raws.len());
    let mut first_error = None;
    for &raw in raws {
        let mut h: HANDLE = ptr::null_mut();
        // SAFETY: the source handle is the sender's in-flight copy, closed
        // there by this call; `h` is a valid out-pointer.
        let ok = unsafe {
            DuplicateHandle(
                source,
                raw as isize as HANDLE,
                me,
                &mut h,
                0,
                0,
                DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE,
            )
        };
        match cvt(ok).and_then(|_| Fd::from_new(h)) {
            Ok(fd) => out.push(fd),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(out),
        Some(e) => Err(io::Error::new(
            e.kind(),
            format!("failed to take a handle sent by pid {sender}: {e}"),
        )),
    }
}

thread_local! {
    /// This thread's event for its blocking overlapped operations.
    static IO_EVENT: RefCell<Option<Fd>> = const { RefCell::new(None) };
}

/// Runs one overlapped operation on `h` to completion; `op` starts it.
/// `Ok(None)`: the pipe is broken (end of file for a read).
fn overlapped(h: HANDLE, op: impl FnOnce(*mut OVERLAPPED) -> i32) -> io::Result<Option<usize>> {
    IO_EVENT.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(new_event(true)?);
        }
        let event = slot.as_ref().expect("set above").handle();
        // SAFETY: OVERLAPPED is plain data; all-zero is its initial state.
        let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
        ov.hEvent = event;
        let started = op(&mut ov);
        let mut n = 0u32;
        let done = if started != 0 {
            1
        } else {
            // SAFETY: reading the thread's last error.
            match unsafe { GetLastError() } {
                // SAFETY: `ov` stays alive and in place until the
                // operation completes (this call waits for it).
                ERROR_IO_PENDING => unsafe { GetOverlappedResult(h, &ov, &mut n, 1) },
                _ => 0,
            }
        };
        if done != 0 {
            if started != 0 {
                // SAFETY: the operation completed; this reads its count.
                unsafe { GetOverlappedResult(h, &ov, &mut n, 0) };
            }
            return Ok(Some(n as usize));
        }
        // SAFETY: reading the thread's last error.
        match unsafe { GetLastError() } {
            ERROR_MORE_DATA => {
                if n == 0 {
                    // SAFETY: the operation completed; this reads its count.
                    unsafe { GetOverlappedResult(h, &ov, &mut n, 0) };
                }
                Ok(Some(n as usize))
            }
            ERROR_BROKEN_PIPE | ERROR_NO_DATA | ERROR_PIPE_NOT_CONNECTED => Ok(None),
            code => Err(io::Error::from_raw_os_error(code as i32)),
        }
    })
}

/// Reads up to `buf.len()` bytes of the current message, blocking;
/// `None` at end of file.
fn read_some(h: HANDLE, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let len = buf.len().min(u32::MAX as usize) as u32;
    // SAFETY: `buf` is valid for `len` bytes until the operation completes
    // (`overlapped` waits for it).
    overlapped(h, |ov| unsafe {
        ReadFile(h, buf.as_mut_ptr(), len, ptr::null_mut(), ov)
    })
}

/// Writes `bytes` as one message, blocking until the pipe took it all.
fn write_message(h: HANDLE, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a message part over 4 GiB"))?;
    // SAFETY: `bytes` is valid for `len` bytes until the operation completes.
    match overlapped(h, |ov| unsafe {
        WriteFile(h, bytes.as_ptr(), len, ptr::null_mut(), ov)
    })? {
        Some(n) if n == bytes.len() => Ok(()),
        Some(_) => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "a pipe took part of a message",
        )),
        None => Err(io::ErrorKind::BrokenPipe.into()),
    }
}

/// A new unnamed, non-inheritable event.
pub(crate) fn new_event(manual_reset: bool) -> io::Result<Fd> {
    // SAFETY: no security attributes, no name.
    Fd::from_new(unsafe { CreateEventW(ptr::null(), i32::from(manual_reset), 0, ptr::null()) })
}

/// The readiness of one object without waiting: a pipe with bytes (or a
/// closed peer), any other handle signalled.
fn ready_now(h: HANDLE) -> bool {
    // SAFETY: querying a handle the caller holds open.
    if unsafe { GetFileType(h) } == FILE_TYPE_PIPE {
        let mut avail = 0u32;
        // SAFETY: only the count is asked for.
        let ok = unsafe { PeekNamedPipe(h, ptr::null_mut(), 0, ptr::null_mut(), &mut avail, ptr::null_mut()) };
        ok == 0 || avail > 0
    } else {
        // SAFETY: a zero-time wait on an open handle.
        unsafe { WaitForSingleObject(h, 0) == WAIT_OBJECT_0 }
    }
}

/// Waits until any of `fds` (negative ones are ignored) is readable (a
/// pipe) or signalled (a process, an event); returns which are, all false
/// on timeout.
pub(crate) fn poll_readable_set(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let deadline = timeout.map(crate::sys::deadline_after);
    loop {
        let ready: Vec<bool> = fds.iter().map(|&fd| fd >= 0 && ready_now(handle_of(fd))).collect();
        if ready.iter().any(|&r| r) || crate::sys::passed(deadline) || fds.iter().all(|&fd| fd < 0) && timeout.is_some()
        {
            return Ok(ready);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let live: Vec<HANDLE> = fds.iter().filter(|&&fd| fd >= 0).map(|&fd| handle_of(fd)).collect();
        if live.is_empty() {
            // Nothing to wait for, forever: as `poll` with no descriptor.
            std::thread::sleep(left.unwrap_or(Duration::from_secs(3600)));
            continue;
        }
        if live.len() > 63 {
            std::thread::sleep(left.map_or(TURN, |l| l.min(TURN)));
            continue;
        }
        wait_once(&live, left)?;
    }
}

/// One wait on `handles` (at most 63) for at most `left`: pipes through a
/// zero-byte read each, other objects directly. Returns on any wake.
fn wait_once(handles: &[HANDLE], left: Option<Duration>) -> io::Result<()> {
    struct Pending {
        h: HANDLE,
        ov: Box<OVERLAPPED>,
        _event: Fd,
    }
    let mut pending: Vec<Pending> = Vec::new();
    let mut objects: Vec<HANDLE> = Vec::with_capacity(handles.len());
    let mut result = Ok(());
    for &h in handles {
        // SAFETY: querying an open handle.
        if unsafe { GetFileType(h) } != FILE_TYPE_PIPE {
            objects.push(h);
            continue;
        }
        let event = new_event(true)?;
        // SAFETY: OVERLAPPED is plain data; all-zero is its initial state.
        let mut ov: Box<OVERLAPPED> = Box::new(unsafe { std::mem::zeroed() });
        ov.hEvent = event.handle();
        let mut empty = [0u8; 0];
        // SAFETY: a zero-byte read; `ov` is boxed and kept in `pending`
        // until the read is cancelled and completed below.
        let ok = unsafe { ReadFile(h, empty.as_mut_ptr(), 0, ptr::null_mut(), &mut *ov) };
        // SAFETY: reading the thread's last error.
        let started = ok != 0 || unsafe { GetLastError() } == ERROR_IO_PENDING;
        if !started {
            // Failed at once (a closed peer, a message waiting): ready now.
            break;
        }
        objects.push(event.handle());
        pending.push(Pending { h, ov, _event: event });
        if ok != 0 {
            break;
        }
    }
    if objects.len() == handles.len() {
        let ms = left.map_or(INFINITE, |l| l.as_millis().min(u128::from(INFINITE - 1)) as u32);
        // SAFETY: every handle in `objects` is open for the call.
        let r = unsafe { WaitForMultipleObjects(objects.len() as u32, objects.as_ptr(), 0, ms) };
        if r == WAIT_FAILED {
            result = Err(io::Error::last_os_error());
        }
    }
    for p in &mut pending {
        let mut n = 0u32;
        // SAFETY: cancels only this read (by its OVERLAPPED), which may have
        // completed already.
        unsafe { CancelIoEx(p.h, &*p.ov) };
        // SAFETY: waits until the read (started above) is over, so that `ov`
        // may then be freed; cancelled or completed, nothing was consumed.
        unsafe { GetOverlappedResult(p.h, &*p.ov, &mut n, 1) };
    }
    result
}

/// Counts pipes created by this process, for their names.
static PIPES: AtomicU32 = AtomicU32::new(0);

/// A connected pair of ends of a duplex message pipe (see the module
/// docs): the first is the server end (created by this process, which
/// `socket_peer_pid` names from the second), both overlapped and
/// non-inheritable.
pub(crate) fn socketpair() -> io::Result<(Fd, Fd)> {
    let name = format!(
        r"\\.\pipe\multiproc-{}-{}-{:016x}",
        getpid(),
        PIPES.fetch_add(1, Ordering::Relaxed),
        random_u64()
    );
    let wname = wide(&name);
    // SAFETY: a NUL-terminated name; no security attributes (not
    // inheritable, the default access of the creator).
    let server = Fd::from_new(unsafe {
        CreateNamedPipeW(
            wname.as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            PIPE_BUFFER,
            PIPE_BUFFER,
            0,
            ptr::null(),
        )
    })?;
    // SAFETY: as above; the pipe instance exists and waits for this client.
    let client = Fd::from_new(unsafe {
        CreateFileW(
            wname.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED,
            ptr::null_mut(),
        )
    })?;
    // A client handle reads in byte mode unless told: ask for messages.
    let mode = PIPE_READMODE_MESSAGE;
    // SAFETY: `mode` outlives the call; the other settings stay.
    cvt(unsafe {
        windows_sys::Win32::System::Pipes::SetNamedPipeHandleState(client.handle(), &mode, ptr::null(), ptr::null())
    })?;
    Ok((server, client))
}

/// The pid of the process that created the pipe `fd` is the client end of.
pub(crate) fn socket_peer_pid(fd: RawFd) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: `pid` is a valid out-pointer; a handle that is not a pipe's
    // client end makes the call fail.
    cvt(unsafe { GetNamedPipeServerProcessId(handle_of(fd), &mut pid) })?;
    Ok(pid)
}

/// The queue's sequenced-packet channel is not implemented yet.
pub(crate) fn seqpacket_pair() -> io::Result<(Fd, Fd)> {
    Err(super::unsupported(
        "datagram channels (queues) are not supported on Windows yet",
    ))
}

/// A manual-reset event stands in for an eventfd: signalled, it is
/// "readable" for `poll_readable_set`.
pub(crate) fn eventfd() -> io::Result<Fd> {
    new_event(true)
}
pub(crate) fn eventfd_signal(fd: &Fd) {
    // SAFETY: setting an event this process holds open.
    unsafe { windows_sys::Win32::System::Threading::SetEvent(fd.handle()) };
}
pub(crate) fn eventfd_drain(fd: &Fd) {
    // SAFETY: resetting an event this process holds open.
    unsafe { windows_sys::Win32::System::Threading::ResetEvent(fd.handle()) };
}
