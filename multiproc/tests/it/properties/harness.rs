//! The harness: the run's budget, raw access to a connection's socket, a
//! watchdog, receiving each type, and `run_case`, which plays a stream
//! against the library and the model.
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use multiproc::{self as mp, Connection, ErrorKind};
use proptest::test_runner::Config as ProptestConfig;
use serde::Serialize;

use super::model::{Canon, Delivery, Mode, Model, Next, Op, Out, Rec, Ty, expected_value, out_of, outcome_of};

// ---------------------------------------------------------------------
// Budget

/// Cases per property in CI, unless `MULTIPROC_FUZZ_CASES` says otherwise.
pub(super) const DEFAULT_CASES: u32 = 256;

pub(super) fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("MULTIPROC_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 1000,
        max_shrink_time: 60_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any single receive, poll included, must return within this: a bound
/// that tells a hang from a slow step, generous enough for a machine whose
/// CPUs are busy with other work (5 s was exceeded under load).
pub(super) const OP_LIMIT: Duration = Duration::from_secs(30);
/// The timeout of receives that must not time out (the writer closed).
pub(super) const LONG: Duration = Duration::from_secs(10);
/// The timeout of receives that may time out (the writer is still open and
/// everything it will ever send is already in the socket).
pub(super) const SHORT: Duration = Duration::from_millis(5);
/// After this, a blocked receive is unblocked by shutting the writer down.
pub(super) const WATCHDOG: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------------
// Raw access to a socket

/// Sends without blocking; returns how many bytes the socket took.
pub(super) fn send_nonblocking(fd: RawFd, bytes: &[u8]) -> usize {
    let mut done = 0;
    while done < bytes.len() {
        let rest = &bytes[done..];
        // SAFETY: sending from a readable slice on a descriptor that the
        // caller keeps open.
        let n = unsafe {
            libc::send(
                fd,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n > 0 {
            done += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => break,
            _ => panic!("send: {e}"),
        }
    }
    done
}

/// Sends everything, blocking; stops quietly when the reader is gone.
pub(super) fn send_blocking(fd: RawFd, bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        let rest = &bytes[done..];
        // SAFETY: as in `send_nonblocking`.
        let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
        if n > 0 {
            done += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EPIPE | libc::ECONNRESET) => return,
            _ => panic!("send: {e}"),
        }
    }
}

/// Everything waiting on `fd` (descriptors that came with it are discarded
/// by the kernel).
pub(super) fn drain(fd: RawFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receiving into a writable buffer of the given length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            _ if n == 0 => return out,
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => return out,
            _ => panic!("recv: {e}"),
        }
    }
}

/// The exact bytes `send(value)` puts on the wire (header included).
pub(super) fn captured<T: Serialize + 'static>(value: T) -> Vec<u8> {
    let (a, b) = mp::pipe(true).unwrap();
    a.send(value).map_err(|e| e.into_error()).unwrap();
    drain(b.as_raw_fd())
}

/// Sends `bytes` in one `sendmsg` with `fds` attached (`SCM_RIGHTS`),
/// without blocking; returns how many bytes the socket took.
pub(super) fn send_with_fds(fd: RawFd, bytes: &[u8], fds: &[RawFd]) -> usize {
    assert!(!bytes.is_empty(), "descriptors ride on a byte");
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let data_len = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE is a size computation.
    let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg's control buffer is set, big enough for a header.
        let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        // SAFETY: CMSG_LEN is a size computation.
        let len = unsafe { libc::CMSG_LEN(data_len) } as _;
        // SAFETY: c points at the zeroed, aligned header inside `control`,
        // which nothing else refers to.
        let h = unsafe { &mut *c };
        (h.cmsg_level, h.cmsg_type, h.cmsg_len) = (libc::SOL_SOCKET, libc::SCM_RIGHTS, len);
        // SAFETY: c is the header of msg's control buffer.
        let data = unsafe { libc::CMSG_DATA(c) }.cast::<RawFd>();
        // SAFETY: the buffer, sized by CMSG_SPACE, has room for `fds` after
        // the header, aligned for an int (the header is).
        unsafe { std::ptr::copy_nonoverlapping(fds.as_ptr(), data, fds.len()) };
    }
    // SAFETY: `msg` describes live buffers.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    assert!(n > 0, "sendmsg: {}", io::Error::last_os_error());
    n as usize + send_nonblocking(fd, &bytes[n as usize..])
}

/// A new memfd with a name no other test uses; its descriptors are found
/// by [`count_open`], whatever runs in parallel.
pub(super) fn marker_fd() -> (RawFd, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("mpfuzz-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let c = std::ffi::CString::new(name.clone()).unwrap();
    // SAFETY: memfd_create takes a C string and flags.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
    (fd, name)
}

/// How many descriptors of this process point at the memfd `name`.
pub(super) fn count_open(name: &str) -> usize {
    let target = format!("/memfd:{name} ");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().starts_with(&target))
        .count()
}

/// Shuts `fd` down unless disarmed within [`WATCHDOG`]: a receive blocked
/// on the other end then sees the end of the stream and returns, and the
/// case fails on the elapsed time instead of hanging the suite.
pub(super) struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn arm(fd: RawFd) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(WATCHDOG) {
                // SAFETY: `fd` stays open until this thread is joined (the
                // watchdog is dropped before the connection owning it).
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        });
        Watchdog {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum How {
    Wait(Duration),
    Try,
    Block,
}

pub(super) fn recv_as<T: Canon>(c: &Connection, how: How) -> Out {
    let r = match how {
        How::Wait(d) => c.recv_timeout::<T>(d).map_err(|e| e.kind()),
        How::Try => c.try_recv::<T>().map_err(|e| e.kind()),
        How::Block => c.recv::<T>().map_err(|e| e.kind()),
    };
    r.map_or_else(Out::Err, |v| Out::Data(v.canon()))
}

pub(super) fn recv_ty(c: &Connection, ty: Ty, how: How) -> Out {
    match ty {
        Ty::U64 => recv_as::<u64>(c, how),
        Ty::Str => recv_as::<String>(c, how),
        Ty::Bytes => recv_as::<Vec<u8>>(c, how),
        Ty::Rec => recv_as::<Rec>(c, how),
        Ty::Conn => recv_as::<Connection>(c, how),
    }
}

/// Writes `stream` into one end as `delivery` says, runs `ops`
/// (cyclically) on the other end until the model says the stream is over,
/// then a few more, comparing every result with the model.
pub(super) fn run_case(stream: &[u8], delivery: Delivery, ops: &[Op]) {
    assert!(!ops.is_empty());
    let (reader, writer) = mp::pipe(true).unwrap();
    let wfd = writer.as_raw_fd();
    let sent = match delivery {
        Delivery::Streaming(_) => 0,
        _ => send_nonblocking(wfd, stream),
    };
    let (mode, stream, mut writer_thread, writer) = match delivery {
        Delivery::Open => (Mode::Open, &stream[..sent], None, Some(writer)),
        Delivery::Closed if sent == stream.len() => {
            drop(writer);
            (Mode::Closed, stream, None, None)
        }
        Delivery::Closed | Delivery::Streaming(_) => {
            let rest = stream[sent..].to_vec();
            let piece = match delivery {
                // At most a few thousand pieces.
                Delivery::Streaming(n) => n.max(rest.len() / 2000).max(1),
                _ => usize::MAX,
            };
            let t = thread::spawn(move || {
                for chunk in rest.chunks(piece) {
                    send_blocking(writer.as_raw_fd(), chunk);
                    thread::yield_now();
                }
                drop(writer);
            });
            (Mode::Streaming, stream, Some(t), None)
        }
    };
    // Declared after `writer` so that it is disarmed before the writer closes.
    let _watchdog = writer.as_ref().map(|w| Watchdog::arm(w.as_raw_fd()));
    let wait = if mode == Mode::Open { SHORT } else { LONG };

    let mut model = Model {
        stream,
        pos: 0,
        eof: mode != Mode::Open,
        broken: false,
    };
    let mut after_end = 0;
    let mut stalled = 0;
    let case_started = Instant::now();
    for (step, &op) in ops.iter().cycle().enumerate() {
        assert!(case_started.elapsed() < 4 * OP_LIMIT, "the stream never ends");
        let pos_before = model.pos;
        let mut op = op;
        let next = match op {
            Op::Max(m) => model.next(Some(m)),
            _ => model.next(None),
        };
        if op.blocking() && matches!(next, Next::Pending) {
            // Would block for good: the writer stays open.
            op = Op::Bytes;
        }
        let started = Instant::now();
        let (got, expected) = match op {
            Op::Wait => {
                let timeout = if mode == Mode::Open { SHORT } else { LONG };
                let got = match mp::wait(&[(&reader).into()], Some(timeout)) {
                    Ok(ready) => Out::Ready(ready == [0]),
                    Err(e) => Out::Err(e.kind()),
                };
                // Ready also when the socket holds part of a message: only
                // "a receive would not wait" implies an answer.
                let expected = if model.ready() { Out::Ready(true) } else { got.clone() };
                if !matches!(got, Out::Ready(_)) {
                    (got, Out::Ready(model.ready()))
                } else {
                    (got, expected)
                }
            }
            Op::Poll => {
                let timeout = if mode == Mode::Open { SHORT } else { LONG };
                let got = match reader.poll(Some(timeout)) {
                    Ok(r) => Out::Ready(r),
                    Err(e) => Out::Err(e.kind()),
                };
                (got, Out::Ready(model.ready()))
            }
            Op::Into { len, offset } => {
                let mut buf = vec![0xA5u8; len];
                let got = match reader.recv_bytes_into(&mut buf, offset) {
                    Ok(n) => {
                        let outside = buf[..offset].iter().chain(&buf[offset + n..]);
                        assert!(
                            outside.into_iter().all(|&b| b == 0xA5),
                            "recv_bytes_into wrote outside the message's place"
                        );
                        Out::Into(n, buf[offset..offset + n].to_vec())
                    }
                    Err(e) => {
                        let e = e.into_error();
                        match e.kind() {
                            ErrorKind::BufferTooShort => {
                                Out::TooShort(e.message_bytes().expect("the message comes with the error").to_vec())
                            }
                            k => Out::Err(k),
                        }
                    }
                };
                let expected = if offset > len {
                    Out::Err(ErrorKind::InvalidInput)
                } else {
                    match model.take(&next) {
                        Some(p) if p.len() > len - offset => Out::TooShort(p.to_vec()),
                        Some(p) => Out::Into(p.len(), p.to_vec()),
                        None => outcome_of(&next),
                    }
                };
                (got, expected)
            }
            _ => {
                let (got, ty) = match op {
                    Op::Bytes => (out_of(reader.recv_bytes_timeout(wait).map_err(|e| e.kind())), None),
                    Op::Blocking => (out_of(reader.recv_bytes().map_err(|e| e.kind())), None),
                    Op::Max(m) => (out_of(reader.recv_bytes_max(m).map_err(|e| e.kind())), None),
                    Op::Value(ty) => (recv_ty(&reader, ty, How::Wait(wait)), Some(ty)),
                    Op::BlockingValue(ty) => (recv_ty(&reader, ty, How::Block), Some(ty)),
                    Op::Try(ty) => (recv_ty(&reader, ty, How::Try), Some(ty)),
                    Op::Poll | Op::Wait | Op::Into { .. } => unreachable!(),
                };
                let empty_allowed = matches!(op, Op::Try(_)) && mode == Mode::Streaming && !model.broken;
                if got == Out::Err(ErrorKind::Timeout) && empty_allowed {
                    // The writer thread may not have got that far yet.
                    thread::yield_now();
                    continue;
                }
                let expected = match (model.take(&next), ty) {
                    (Some(p), Some(ty)) => expected_value(ty, p),
                    (Some(p), None) => Out::Data(p.to_vec()),
                    (None, _) => outcome_of(&next),
                };
                (got, expected)
            }
        };
        let took = started.elapsed();
        assert!(
            got == expected,
            "step {step}: {op:?} in {mode:?} mode gave {got:?}, the model says {expected:?} \
             (stream of {} bytes, at {})",
            stream.len(),
            model.pos
        );
        assert!(took < OP_LIMIT, "step {step}: {op:?} took {took:?}");
        if model.pos == pos_before && matches!(next, Next::Msg { .. }) {
            // Nothing taken (a bad offset, a poll, an empty try): once a
            // whole cycle of the calls makes no progress, stop.
            stalled += 1;
            if stalled > ops.len() {
                break;
            }
        } else {
            stalled = 0;
        }
        if matches!(next, Next::Protocol | Next::Disconnected | Next::Pending) {
            // Over (for now): a few more calls must say the same.
            after_end += 1;
            if after_end > 4 {
                break;
            }
        }
    }
    drop(reader);
    if let Some(t) = writer_thread.take() {
        t.join().expect("the writer thread");
    }
}
