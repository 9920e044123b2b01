//! The message format of a [`Connection`](super::Connection) and its
//! receiving side: a buffer that cuts messages out of a byte stream.

use std::{collections::VecDeque, io, time::Instant};

use crate::{
    error::channel::RecvFailure,
    error::{Error, ErrorKind},
    frame,
    sys::{self, Fd, RawFd, RecvSome},
};

/// Size of a message header (the crate's one header, [`frame::Header`]).
pub(crate) const HEADER: usize = frame::HEADER;
/// Messages at least this large are read straight into their own buffer.
const DIRECT_MIN: usize = 64 * 1024;
/// A length up to this is believed at once (one allocation); beyond it a
/// buffer grows with the bytes that arrive, so a corrupted header cannot
/// make the reader allocate much more than the peer really sent.
const TRUSTED_LEN: usize = 64 << 20;
/// How much a read asks the socket for when the buffer runs low.
const READ_CHUNK: usize = 64 * 1024;

/// The header of a message of `len` bytes carrying `nfds` descriptors.
#[inline]
pub(crate) fn header(len: u64, nfds: usize) -> [u8; HEADER] {
    frame::Header::message(len, nfds).encode()
}

/// Parses a header: `(descriptors, payload length)`. A connection's
/// messages are of kind 0, with no flag.
#[inline]
pub(crate) fn parse_header(h: &[u8]) -> Result<(usize, u64), String> {
    let h = frame::Header::decode(h)?;
    if h.kind != 0 || h.flags != 0 {
        return Err("corrupted message header".into());
    }
    Ok((usize::from(h.nfds), h.len))
}

/// The error of a failed send.
pub(crate) fn send_error(e: io::Error) -> Error {
    // By kind, not number: EPIPE, ECONNRESET, ENOTCONN on Unix;
    // ERROR_BROKEN_PIPE and ERROR_NO_DATA on Windows.
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected => {
            Error::new(ErrorKind::Disconnected, "the other end of the connection is closed")
        }
        _ => Error::io("failed to send a message", e),
    }
}

fn protocol(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Protocol, msg.into())
}

/// A received message: its payload and the descriptors that came with it.
pub(crate) type Message = (Vec<u8>, Vec<Fd>);

/// A large message being read into its own buffer.
#[derive(Debug)]
struct Partial {
    nfds: usize,
    len: usize,
    payload: Vec<u8>,
}

/// The receiving state of a connection.
#[derive(Debug, Default)]
pub(crate) struct Rx {
    /// Received bytes; `buf[pos..]` are not yet delivered.
    buf: Vec<u8>,
    pos: usize,
    /// Descriptors received, in arrival order (each message's arrive with
    /// its first byte, so they queue in message order).
    fds: VecDeque<Fd>,
    partial: Option<Partial>,
    eof: bool,
    broken: Option<String>,
}

impl Rx {
    /// The state of a connection that arrived with undelivered bytes.
    pub(crate) fn with_buffered(buf: Vec<u8>, fds: VecDeque<Fd>) -> Rx {
        Rx {
            buf,
            fds,
            ..Rx::default()
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The undelivered bytes and descriptors, for a copy of the connection
    /// being passed to another process. Nothing is removed here: see
    /// [`discard_passed`](Rx::discard_passed), once the copy was sent.
    pub(crate) fn passing_view(&self) -> Result<(Vec<u8>, Vec<RawFd>), String> {
        if self.partial.is_some() {
            return Err("a connection cannot be passed while a message is half received".into());
        }
        if let Some(why) = &self.broken {
            return Err(format!("a broken connection cannot be passed: {why}"));
        }
        Ok((self.available().to_vec(), self.fds.iter().map(Fd::raw).collect()))
    }

    /// Forgets the `bytes` undelivered bytes and `fds` descriptors that a
    /// passed copy of the connection took with it.
    pub(crate) fn discard_passed(&mut self, bytes: usize, fds: usize) {
        self.pos += bytes.min(self.buf.len() - self.pos);
        let n = fds.min(self.fds.len());
        self.fds.drain(..n);
    }

    /// Closes the descriptors buffered here (a fork child's copy of a
    /// connection it was not given).
    pub(crate) fn close_buffered_fds(&mut self) {
        for fd in self.fds.drain(..) {
            fd.close_now();
        }
        if let Some(p) = self.partial.take() {
            drop(p);
        }
    }

    /// `true` when a whole message (or the end, or a broken state) is
    /// buffered, so a receive would not wait.
    pub(crate) fn has_message_or_end(&self) -> bool {
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
        match parse_header(&avail[..HEADER]) {
            Ok((_, len)) => (avail.len() - HEADER) as u64 >= len,
            Err(_) => true,
        }
    }

    /// Waits until [`has_message_or_end`](Rx::has_message_or_end) or the
    /// deadline, reading what arrives.
    pub(crate) fn poll(&mut self, fd: &Fd, deadline: Option<Instant>) -> crate::Result<bool> {
        loop {
            if self.has_message_or_end() {
                return Ok(true);
            }
            if self.partial.is_some() {
                // A large message is half read: read on into its buffer.
                match self.advance_partial(fd, deadline) {
                    Ok(()) => continue,
                    Err(RecvFailure::Timeout) => return Ok(false),
                    // The end or a broken stream is something to receive.
                    Err(_) => return Ok(true),
                }
            }
            match self.fill(fd, true) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Err(Error::io("failed to read from the connection", e)),
            }
            if !wait_readable(fd, deadline).map_err(|e| Error::io("failed to wait on the connection", e))? {
                return Ok(self.has_message_or_end());
            }
        }
    }

    /// Reads once; `false` when nothing was available (non-blocking).
    fn fill(&mut self, fd: &Fd, nonblocking: bool) -> io::Result<bool> {
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

    fn broken(&mut self, why: String) -> RecvFailure {
        self.broken = Some(why.clone());
        RecvFailure::Failed(protocol(why))
    }

    /// The next whole message and its descriptors.
    pub(crate) fn next_message(
        &mut self,
        fd: &Fd,
        deadline: Option<Instant>,
        max_len: Option<usize>,
    ) -> Result<Message, RecvFailure> {
        loop {
            if let Some(why) = &self.broken {
                return Err(RecvFailure::Failed(protocol(format!(
                    "the connection is broken: {why}"
                ))));
            }
            if let Some(p) = &self.partial {
                if let Some(max) = max_len.filter(|&m| p.len > m) {
                    let why = format!("a {}-byte message exceeds the {max}-byte limit", p.len);
                    self.partial = None;
                    return Err(self.broken(why));
                }
                if p.payload.len() == p.len {
                    let p = self.partial.take().expect("checked just above");
                    return self.with_fds(p.payload, p.nfds);
                }
                self.advance_partial(fd, deadline)?;
                continue;
            }
            let avail = self.available();
            if avail.len() >= HEADER {
                let (nfds, len) = match parse_header(&avail[..HEADER]) {
                    Ok(x) => x,
                    Err(why) => return Err(self.broken(why)),
                };
                let len = match usize::try_from(len) {
                    Ok(l) if max_len.is_none_or(|m| l <= m) => l,
                    _ => {
                        let why = match max_len {
                            Some(m) => format!("a {len}-byte message exceeds the {m}-byte limit"),
                            None => format!("a {len}-byte message cannot be held in memory"),
                        };
                        return Err(self.broken(why));
                    }
                };
                if avail.len() - HEADER >= len {
                    let payload = avail[HEADER..HEADER + len].to_vec();
                    self.pos += HEADER + len;
                    return self.with_fds(payload, nfds);
                }
                if len >= DIRECT_MIN {
                    let have = avail.len() - HEADER;
                    let mut payload = sys::buffer(len.min(TRUSTED_LEN).max(have))
                        .map_err(|e| RecvFailure::Failed(Error::io("cannot allocate a message buffer", e)))?;
                    payload.extend_from_slice(&avail[HEADER..]);
                    self.pos = self.buf.len();
                    self.partial = Some(Partial { nfds, len, payload });
                    continue;
                }
            }
            if self.eof {
                return if self.available().is_empty() {
                    Err(RecvFailure::Disconnected)
                } else {
                    Err(self.broken("the stream ended inside a message (the writer died or closed mid-send)".into()))
                };
            }
            self.read_more(fd, deadline)?;
        }
    }

    /// The next message, read straight into `out` when it is large and fits
    /// (no intermediate buffer): `Ok(len)`; otherwise the whole message as
    /// [`next_message`](Rx::next_message) returns it, for the caller to copy
    /// or to report as too long.
    pub(crate) fn next_message_into(&mut self, fd: &Fd, out: &mut [u8]) -> Result<Result<usize, Message>, RecvFailure> {
        loop {
            if self.broken.is_some() || self.partial.is_some() || self.available().len() >= HEADER || self.eof {
                break;
            }
            self.read_more(fd, None)?;
        }
        let direct = self.broken.is_none()
            && self.partial.is_none()
            && self.available().len() >= HEADER
            && match parse_header(&self.available()[..HEADER]) {
                Ok((_, len)) => len >= DIRECT_MIN as u64 && len <= out.len() as u64,
                Err(_) => false,
            };
        if !direct {
            return self.next_message(fd, None, None).map(Err);
        }
        let (nfds, len) = parse_header(&self.available()[..HEADER]).expect("checked above");
        let len = len as usize;
        let have = (self.available().len() - HEADER).min(len);
        out[..have].copy_from_slice(&self.available()[HEADER..HEADER + have]);
        self.pos += HEADER + have;
        let mut done = have;
        while done < len {
            let mut fds = Vec::new();
            let got = match fd.recv_into(&mut out[done..len], &mut fds, false) {
                Ok(got) => got,
                Err(e) => {
                    // The stream is cut inside a message: nothing after it
                    // can be read as a message any more.
                    self.broken = Some(format!("a read failed inside a message: {e}"));
                    return Err(RecvFailure::Failed(Error::io("failed to read from the connection", e)));
                }
            };
            self.fds.extend(fds);
            match got {
                RecvSome::Data(n) => done += n,
                RecvSome::Eof | RecvSome::WouldBlock => {
                    self.eof = true;
                    return Err(
                        self.broken("the stream ended inside a message (the writer died or closed mid-send)".into())
                    );
                }
            }
        }
        self.with_fds(Vec::new(), nfds).map(|_| Ok(len))
    }

    /// Blocks for more bytes (or returns `Timeout`).
    fn read_more(&mut self, fd: &Fd, deadline: Option<Instant>) -> Result<(), RecvFailure> {
        let io_err = |e| RecvFailure::Failed(Error::io("failed to read from the connection", e));
        match deadline {
            // Without a deadline a blocking read is one system call.
            None => {
                self.fill(fd, false).map_err(io_err)?;
            }
            Some(d) => {
                if !self.fill(fd, true).map_err(io_err)? {
                    if !wait_readable(fd, Some(d)).map_err(io_err)? {
                        return Err(RecvFailure::Timeout);
                    }
                    self.fill(fd, true).map_err(io_err)?;
                }
            }
        }
        Ok(())
    }

    /// Reads more of the large message in progress (once, or waits for
    /// the deadline); its completion is for the caller to see.
    fn advance_partial(&mut self, fd: &Fd, deadline: Option<Instant>) -> Result<(), RecvFailure> {
        let io_err = |e| RecvFailure::Failed(Error::io("failed to read from the connection", e));
        let p = self.partial.as_mut().expect("checked by the caller");
        let want = p.len - p.payload.len();
        if want == 0 {
            return Ok(());
        }
        if p.payload.capacity() == p.payload.len() {
            // Grow with what arrives: at most doubling, never past `len`.
            let more = want.min(p.payload.len().max(READ_CHUNK));
            p.payload
                .try_reserve_exact(more)
                .map_err(|_| RecvFailure::Failed(Error::new(ErrorKind::Io, "cannot allocate a message buffer")))?;
        }
        let mut fds = Vec::new();
        let nonblocking = deadline.is_some();
        let got = fd
            .recv_upto(&mut p.payload, want, &mut fds, nonblocking)
            .map_err(io_err)?;
        self.fds.extend(fds);
        match got {
            RecvSome::Data(_) => Ok(()),
            RecvSome::Eof => {
                self.eof = true;
                self.partial = None;
                Err(self.broken("the stream ended inside a message (the writer died or closed mid-send)".into()))
            }
            RecvSome::WouldBlock => {
                if wait_readable(fd, deadline).map_err(io_err)? {
                    Ok(())
                } else {
                    Err(RecvFailure::Timeout)
                }
            }
        }
    }

    fn with_fds(&mut self, payload: Vec<u8>, nfds: usize) -> Result<Message, RecvFailure> {
        if self.fds.len() < nfds {
            return Err(self.broken(format!(
                "a message announces {nfds} descriptors but {} arrived",
                self.fds.len()
            )));
        }
        Ok((payload, self.fds.drain(..nfds).collect()))
    }
}

/// Waits for readability until `deadline` (`None`: forever).
fn wait_readable(fd: &Fd, deadline: Option<Instant>) -> io::Result<bool> {
    let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    fd.poll_readable(timeout)
}

#[cfg(test)]
pub(crate) fn feed_for_test(rx: &mut Rx, bytes: &[u8]) {
    rx.buf.extend_from_slice(bytes);
}
