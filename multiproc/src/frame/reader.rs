//! [`Reader`]: the one reader of the crate's framing. It cuts frames out
//! of a byte stream for a [`Connection`](crate::Connection)'s messages and
//! for the control sockets of this crate's own processes alike; a
//! [`Framing`] says which frames a stream may carry.
//!
//! # Design
//!
//! The reader asks the socket for what it has, into one buffer, and cuts
//! frames out of it without moving the bytes behind them (a position
//! advances; the buffer is compacted when half of it is spent). The
//! descriptors that arrive queue up in arrival order: each frame's arrive
//! with its first byte, so they are in frame order.
//!
//! A frame of [`DIRECT_MIN`] bytes or more whose payload has not all
//! arrived is read into a buffer of its own (huge-page advised), never
//! through the stream buffer. Its allocation believes the header only up
//! to a point: a connection's message buffer starts at 64 MiB at most and
//! grows with the bytes that arrive, so a forged length allocates at most
//! that much before data backs it; a control frame's length is checked
//! against its framing's inline limit first. A read with a deadline can
//! stop inside such a frame and go on at the next call.
//!
//! The reader never trusts a header: a wrong magic or version, a kind or
//! flag the framing does not carry, a length over the limit, a file frame
//! without its descriptor, too few descriptors, or the end of the stream
//! inside a frame *breaks* the stream for good: that read reports why, and
//! every later one reports the stream broken, so later bytes are never
//! misread as a frame.

use std::{collections::VecDeque, fmt, io, time::Instant};

use super::{FLAG_FILE, HEADER, Header, INLINE_MAX, ProtocolError, ReadError};
use crate::sys::{self, Fd, RawFd, RecvSome};

/// Frames at least this large that have not all arrived are read straight
/// into a buffer of their own.
const DIRECT_MIN: usize = 64 * 1024;
/// A connection's message length up to this is believed at once (one
/// allocation); beyond it the buffer grows with the bytes that arrive, so
/// a corrupted header cannot make the reader allocate much more than the
/// peer really sent.
const TRUSTED_LEN: usize = 64 << 20;
/// How much a read asks the socket for when the buffer runs low.
const READ_CHUNK: usize = 64 * 1024;

/// Which frames a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// A connection's messages: kind 0, no flag, payloads inline; the
    /// receiver gives the length limit with each read.
    Messages,
    /// A control socket's frames: a protocol's kinds (never 0), payloads
    /// inline up to `max_inline` bytes or in an attached memory file.
    Control {
        /// Largest inline payload accepted.
        max_inline: usize,
    },
}

impl Framing {
    /// Checks a header against the rules of the framing.
    #[inline]
    fn check(self, h: &[u8]) -> Result<Header, String> {
        let h = Header::decode(h)?;
        match self {
            Framing::Messages if h.kind != 0 || h.flags != 0 => Err("corrupted message header".into()),
            Framing::Control { .. } if h.kind == 0 || h.flags & !FLAG_FILE != 0 => Err("malformed frame header".into()),
            _ => Ok(h),
        }
    }

    /// The inline payload length of `h`, if it is within the limit (the
    /// caller's `max_len` for messages); otherwise why not.
    #[inline]
    fn inline_len(self, len: u64, max_len: Option<usize>) -> Result<usize, String> {
        let (limit, noun) = match self {
            Framing::Messages => (max_len, "message"),
            Framing::Control { max_inline } => (Some(max_inline), "frame"),
        };
        match usize::try_from(len) {
            Ok(l) if limit.is_none_or(|m| l <= m) => Ok(l),
            _ => Err(match limit {
                Some(m) => format!("a {len}-byte {noun} exceeds the {m}-byte limit"),
                None => format!("a {len}-byte {noun} cannot be held in memory"),
            }),
        }
    }

    /// The largest buffer allocated for a frame's payload before its bytes
    /// arrive.
    fn trusted_len(self) -> usize {
        match self {
            Framing::Messages => TRUSTED_LEN,
            // The length passed the inline limit already.
            Framing::Control { .. } => usize::MAX,
        }
    }

    fn ended_inside(self) -> String {
        let noun = match self {
            Framing::Messages => "message",
            Framing::Control { .. } => "frame",
        };
        format!("the stream ended inside a {noun} (the writer died or closed mid-send)")
    }
}

/// A frame taken from the stream: its kind, its payload and how many of
/// the descriptors queued in the reader are its own (a file frame's file
/// not counted: the reader took it).
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) nfds: usize,
    pub(crate) payload: Vec<u8>,
}

/// Why no frame was read.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// No whole frame by the deadline.
    Timeout,
    /// The peer closed the stream at a frame boundary.
    End,
    /// A read failed (the stream is not broken by it, unless it failed
    /// inside a frame read straight into the caller's buffer).
    Io(io::Error),
    /// No memory for a frame's payload.
    Alloc(io::Error),
    /// The stream broke the framing rules just now: why.
    Broken(String),
    /// The stream broke them earlier: why.
    WasBroken(String),
}

impl fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadFailure::Timeout => f.write_str("no whole frame arrived in time"),
            ReadFailure::End => f.write_str("the stream ended"),
            ReadFailure::Io(e) | ReadFailure::Alloc(e) => fmt::Display::fmt(e, f),
            ReadFailure::Broken(why) => f.write_str(why),
            ReadFailure::WasBroken(why) => write!(f, "the stream is broken: {why}"),
        }
    }
}

/// Why [`Reader::poll`] failed.
#[derive(Debug)]
pub(crate) enum PollError {
    Read(io::Error),
    Wait(io::Error),
}

/// A large frame being read into its own buffer.
#[derive(Debug)]
struct Partial {
    kind: u8,
    nfds: usize,
    len: usize,
    payload: Vec<u8>,
}

/// Accumulates bytes and descriptors from a stream and cuts frames out of
/// them (see the module docs).
#[derive(Debug)]
pub(crate) struct Reader {
    framing: Framing,
    /// Received bytes; `buf[pos..]` are not yet taken.
    buf: Vec<u8>,
    pos: usize,
    /// Descriptors received and not yet taken, in arrival order.
    fds: VecDeque<Fd>,
    partial: Option<Partial>,
    eof: bool,
    broken: Option<String>,
}

impl Reader {
    /// An empty reader of `framing`.
    pub(crate) fn new(framing: Framing) -> Reader {
        Reader::with_buffered(framing, Vec::new(), VecDeque::new())
    }

    /// A reader of a control socket, inline payloads up to [`INLINE_MAX`].
    pub(crate) fn control() -> Reader {
        Reader::new(Framing::Control { max_inline: INLINE_MAX })
    }

    /// A reader of a control socket that accepts inline payloads of any
    /// size, read straight into their own buffer: for a spawned child
    /// reading its parent, which streams large arguments (see
    /// [`send_stream`](super::send_stream)).
    pub(crate) fn trusting_large_frames() -> Reader {
        Reader::new(Framing::Control { max_inline: usize::MAX })
    }

    /// A reader whose stream already delivered `buf` and `fds` (a passed
    /// connection's undelivered bytes).
    pub(crate) fn with_buffered(framing: Framing, buf: Vec<u8>, fds: VecDeque<Fd>) -> Reader {
        Reader {
            framing,
            buf,
            pos: 0,
            fds,
            partial: None,
            eof: false,
            broken: None,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads once what the socket has (blocking unless `nonblocking`);
    /// `false` when nothing was available or the end was seen before.
    pub(crate) fn fill(&mut self, fd: &Fd, nonblocking: bool) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= self.buf.capacity() / 2) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let mut fds = Vec::new();
        let got = fd.recv_upto(&mut self.buf, usize::MAX, &mut fds, nonblocking)?;
        self.fds.extend(fds);
        Ok(match got {
            RecvSome::Data(_) => true,
            RecvSome::Eof => {
                self.eof = true;
                true
            }
            RecvSome::WouldBlock => false,
        })
    }

    /// Reads everything already queued on the socket without blocking.
    pub(crate) fn drain(&mut self, fd: &Fd) -> io::Result<()> {
        while self.fill(fd, true)? {}
        Ok(())
    }

    fn broken(&mut self, why: String) -> ReadFailure {
        self.broken = Some(why.clone());
        ReadFailure::Broken(why)
    }

    /// `true` when a whole frame (or the end, or a broken stream) is
    /// buffered, so a read would not wait.
    pub(crate) fn has_frame_or_end(&self) -> bool {
        if self.broken.is_some() || self.eof {
            return true;
        }
        if let Some(p) = &self.partial {
            return p.payload.len() == p.len;
        }
        let avail = self.available();
        if avail.len() < HEADER {
            return false;
        }
        match self.framing.check(&avail[..HEADER]) {
            Ok(h) => h.flags & FLAG_FILE != 0 || (avail.len() - HEADER) as u64 >= h.len,
            Err(_) => true,
        }
    }

    /// Waits until [`has_frame_or_end`](Reader::has_frame_or_end) or the
    /// deadline, reading what arrives.
    pub(crate) fn poll(&mut self, fd: &Fd, deadline: Option<Instant>) -> Result<bool, PollError> {
        loop {
            if self.has_frame_or_end() {
                return Ok(true);
            }
            if self.partial.is_some() {
                // A large frame is half read: read on into its buffer.
                match self.advance_partial(fd, deadline) {
                    Ok(()) => continue,
                    Err(ReadFailure::Timeout) => return Ok(false),
                    // The end or a broken stream is something to read.
                    Err(_) => return Ok(true),
                }
            }
            match self.fill(fd, true) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Err(PollError::Read(e)),
            }
            if !wait_readable(fd, deadline).map_err(PollError::Wait)? {
                return Ok(self.has_frame_or_end());
            }
        }
    }

    /// The next whole frame, reading from `fd` until `deadline` (`None`:
    /// as long as it takes). `max_len` bounds a message's payload (a
    /// control frame's bound is its framing's).
    #[inline]
    pub(crate) fn next_frame(
        &mut self,
        fd: &Fd,
        deadline: Option<Instant>,
        max_len: Option<usize>,
    ) -> Result<Frame, ReadFailure> {
        match self.cut(Some((fd, deadline)), max_len)? {
            Some(frame) => Ok(frame),
            None => unreachable!("a read from the socket ends with a frame or a failure"),
        }
    }

    /// The next frame if the buffer holds it whole, reading nothing (a file
    /// frame's payload is read from its file).
    pub(crate) fn next_buffered(&mut self) -> Result<Option<Frame>, ReadFailure> {
        self.cut(None, None)
    }

    /// Cuts the next frame out of the buffer, reading from the socket (if
    /// given) until one is whole; `Ok(None)` only without a socket.
    #[inline]
    fn cut(
        &mut self,
        read: Option<(&Fd, Option<Instant>)>,
        max_len: Option<usize>,
    ) -> Result<Option<Frame>, ReadFailure> {
        loop {
            if let Some(why) = &self.broken {
                return Err(ReadFailure::WasBroken(why.clone()));
            }
            if let Some(p) = &self.partial {
                if let Some(max) = max_len.filter(|&m| p.len > m) {
                    let why = format!("a {}-byte message exceeds the {max}-byte limit", p.len);
                    self.partial = None;
                    return Err(self.broken(why));
                }
                if p.payload.len() == p.len {
                    let p = self.partial.take().expect("checked just above");
                    return Ok(Some(Frame {
                        kind: p.kind,
                        nfds: p.nfds,
                        payload: p.payload,
                    }));
                }
                let Some((fd, deadline)) = read else {
                    return Ok(None);
                };
                self.advance_partial(fd, deadline)?;
                continue;
            }
            let avail = self.available();
            if avail.len() >= HEADER {
                let h = match self.framing.check(&avail[..HEADER]) {
                    Ok(h) => h,
                    Err(why) => return Err(self.broken(why)),
                };
                if h.flags & FLAG_FILE != 0 {
                    return self.file_frame(h).map(Some);
                }
                let len = match self.framing.inline_len(h.len, max_len) {
                    Ok(len) => len,
                    Err(why) => return Err(self.broken(why)),
                };
                let nfds = usize::from(h.nfds);
                if avail.len() - HEADER >= len {
                    let payload = avail[HEADER..HEADER + len].to_vec();
                    self.pos += HEADER + len;
                    return Ok(Some(Frame {
                        kind: h.kind,
                        nfds,
                        payload,
                    }));
                }
                if len >= DIRECT_MIN && read.is_some() {
                    let have = avail.len() - HEADER;
                    let mut payload =
                        sys::buffer(len.min(self.framing.trusted_len()).max(have)).map_err(ReadFailure::Alloc)?;
                    payload.extend_from_slice(&avail[HEADER..]);
                    self.pos = self.buf.len();
                    self.partial = Some(Partial {
                        kind: h.kind,
                        nfds,
                        len,
                        payload,
                    });
                    continue;
                }
            }
            let Some((fd, deadline)) = read else {
                return Ok(None);
            };
            if self.eof {
                return if self.available().is_empty() {
                    Err(ReadFailure::End)
                } else {
                    Err(self.broken(self.framing.ended_inside()))
                };
            }
            self.read_more(fd, deadline)?;
        }
    }

    /// A frame whose payload is in an attached memory file (the first
    /// descriptor not yet taken).
    fn file_frame(&mut self, h: Header) -> Result<Frame, ReadFailure> {
        let Ok(len) = usize::try_from(h.len) else {
            return Err(self.broken("a frame's length overflows usize".into()));
        };
        let Some(file) = self.fds.pop_front() else {
            return Err(self.broken("a frame announces a file that did not arrive".into()));
        };
        self.pos += HEADER;
        match sys::read_file(&file, len) {
            Ok(payload) => Ok(Frame {
                kind: h.kind,
                nfds: usize::from(h.nfds).saturating_sub(1),
                payload,
            }),
            Err(e) => Err(self.broken(format!("cannot read the payload file: {e}"))),
        }
    }

    /// The next frame, its payload read straight into `out` when it is
    /// large and fits (no intermediate buffer): `Ok((length, descriptors))`;
    /// otherwise the whole frame as [`next_frame`](Reader::next_frame)
    /// returns it, for the caller to copy or to report as too long.
    pub(crate) fn next_frame_into(
        &mut self,
        fd: &Fd,
        out: &mut [u8],
    ) -> Result<Result<(usize, usize), Frame>, ReadFailure> {
        while self.broken.is_none() && self.partial.is_none() && self.available().len() < HEADER && !self.eof {
            self.read_more(fd, None)?;
        }
        let direct = match (&self.broken, &self.partial) {
            (None, None) if self.available().len() >= HEADER => match self.framing.check(&self.available()[..HEADER]) {
                Ok(h) => h.flags == 0 && h.len >= DIRECT_MIN as u64 && h.len <= out.len() as u64,
                Err(_) => false,
            },
            _ => false,
        };
        if !direct {
            return self.next_frame(fd, None, None).map(Err);
        }
        let h = self.framing.check(&self.available()[..HEADER]).expect("checked above");
        let len = h.len as usize;
        let have = (self.available().len() - HEADER).min(len);
        out[..have].copy_from_slice(&self.available()[HEADER..HEADER + have]);
        self.pos += HEADER + have;
        let mut done = have;
        while done < len {
            let mut fds = Vec::new();
            let got = match fd.recv_into(&mut out[done..len], &mut fds, false) {
                Ok(got) => got,
                Err(e) => {
                    // The stream is cut inside a frame: nothing after it
                    // can be read as a frame any more.
                    self.broken = Some(format!("a read failed inside a message: {e}"));
                    return Err(ReadFailure::Io(e));
                }
            };
            self.fds.extend(fds);
            match got {
                RecvSome::Data(n) => done += n,
                RecvSome::Eof | RecvSome::WouldBlock => {
                    self.eof = true;
                    return Err(self.broken(self.framing.ended_inside()));
                }
            }
        }
        Ok(Ok((len, usize::from(h.nfds))))
    }

    /// Blocks for more bytes (or returns `Timeout`).
    fn read_more(&mut self, fd: &Fd, deadline: Option<Instant>) -> Result<(), ReadFailure> {
        match deadline {
            // Without a deadline a blocking read is one system call.
            None => {
                self.fill(fd, false).map_err(ReadFailure::Io)?;
            }
            Some(d) => {
                if !self.fill(fd, true).map_err(ReadFailure::Io)? {
                    if !wait_readable(fd, Some(d)).map_err(ReadFailure::Io)? {
                        return Err(ReadFailure::Timeout);
                    }
                    self.fill(fd, true).map_err(ReadFailure::Io)?;
                }
            }
        }
        Ok(())
    }

    /// Reads more of the large frame in progress (once, or waits for the
    /// deadline); its completion is for the caller to see.
    fn advance_partial(&mut self, fd: &Fd, deadline: Option<Instant>) -> Result<(), ReadFailure> {
        let p = self.partial.as_mut().expect("checked by the caller");
        let want = p.len - p.payload.len();
        if want == 0 {
            return Ok(());
        }
        if p.payload.capacity() == p.payload.len() {
            // Grow with what arrives: at most doubling, never past `len`.
            let more = want.min(p.payload.len().max(READ_CHUNK));
            p.payload.try_reserve_exact(more).map_err(|_| {
                ReadFailure::Alloc(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!("cannot grow a {}-byte buffer", p.payload.len()),
                ))
            })?;
        }
        let mut fds = Vec::new();
        let nonblocking = deadline.is_some();
        let got = fd
            .recv_upto(&mut p.payload, want, &mut fds, nonblocking)
            .map_err(ReadFailure::Io)?;
        self.fds.extend(fds);
        match got {
            RecvSome::Data(_) => Ok(()),
            RecvSome::Eof => {
                self.eof = true;
                self.partial = None;
                Err(self.broken(self.framing.ended_inside()))
            }
            RecvSome::WouldBlock => {
                if wait_readable(fd, deadline).map_err(ReadFailure::Io)? {
                    Ok(())
                } else {
                    Err(ReadFailure::Timeout)
                }
            }
        }
    }

    /// Takes the `nfds` descriptors of the frame just taken; fewer queued
    /// breaks the stream.
    #[inline]
    pub(crate) fn take_frame_fds(&mut self, nfds: usize) -> Result<Vec<Fd>, ReadFailure> {
        if self.fds.len() < nfds {
            let why = format!("a message announces {nfds} descriptors but {} arrived", self.fds.len());
            return Err(self.broken(why));
        }
        Ok(self.fds.drain(..nfds).collect())
    }

    /// Takes every descriptor queued (those of the frames read so far).
    pub(crate) fn take_fds(&mut self) -> Vec<Fd> {
        self.fds.drain(..).collect()
    }

    /// Takes the next `n` descriptors in arrival order, or fewer if fewer
    /// arrived.
    pub(crate) fn take_n_fds(&mut self, n: usize) -> Vec<Fd> {
        let n = n.min(self.fds.len());
        self.fds.drain(..n).collect()
    }

    /// The numbers of the descriptors received but not yet taken.
    pub(crate) fn pending_fds(&self) -> Vec<RawFd> {
        self.fds.iter().map(Fd::raw).collect()
    }

    /// `true` while a large frame is half read into its own buffer.
    pub(crate) fn is_inside_frame(&self) -> bool {
        self.partial.is_some()
    }

    /// Why the stream is broken, if it is.
    pub(crate) fn broken_reason(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Copies of the bytes not yet taken and the numbers of the queued
    /// descriptors (for a connection passed with what it buffered).
    pub(crate) fn undelivered(&self) -> (Vec<u8>, Vec<RawFd>) {
        (self.available().to_vec(), self.pending_fds())
    }

    /// Forgets `bytes` bytes not yet taken and `fds` queued descriptors
    /// (which a passed copy of the connection took with it).
    pub(crate) fn discard(&mut self, bytes: usize, fds: usize) {
        self.pos += bytes.min(self.buf.len() - self.pos);
        let n = fds.min(self.fds.len());
        self.fds.drain(..n);
    }

    /// Closes the queued descriptors and drops a half-read frame (a fork
    /// child's copy of a stream it was not given).
    pub(crate) fn close_buffered_fds(&mut self) {
        for fd in self.fds.drain(..) {
            fd.close_now();
        }
        self.partial = None;
    }

    /// The bytes read past the last frame taken.
    pub(crate) fn into_leftover(mut self) -> Vec<u8> {
        self.buf.drain(..self.pos);
        self.buf
    }

    /// `true` once the peer closed its end and every frame was taken.
    pub(crate) fn at_end_empty(&self) -> bool {
        self.eof && self.partial.is_none() && self.available().is_empty()
    }

    /// Appends bytes as if they had arrived.
    #[cfg(test)]
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
}

/// The reads of the control protocols (`entry::protocol`,
/// `forkserver::protocol`): a frame's kind and payload, its descriptors
/// left queued for the protocol to take.
impl Reader {
    /// The next complete frame, if the buffer holds one.
    pub(crate) fn next(&mut self) -> Result<Option<(u8, Vec<u8>)>, ProtocolError> {
        match self.next_buffered() {
            Ok(frame) => Ok(frame.map(|f| (f.kind, f.payload))),
            Err(e) => Err(ProtocolError(e.to_string())),
        }
    }

    /// Blocks until a whole frame has arrived; `None` at end of stream.
    pub(crate) fn next_blocking(&mut self, sock: &Fd) -> Result<Option<(u8, Vec<u8>)>, ReadError> {
        match self.next_frame(sock, None, None) {
            Ok(f) => Ok(Some((f.kind, f.payload))),
            Err(ReadFailure::End) => Ok(None),
            Err(ReadFailure::Io(e) | ReadFailure::Alloc(e)) => Err(ReadError::Io(e)),
            Err(e) => Err(ReadError::Protocol(ProtocolError(e.to_string()))),
        }
    }
}

/// Waits for readability until `deadline` (`None`: forever).
fn wait_readable(fd: &Fd, deadline: Option<Instant>) -> io::Result<bool> {
    let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    fd.poll_readable(timeout)
}
