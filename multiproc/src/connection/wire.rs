//! The message format of a [`Connection`](super::Connection) and its
//! receiving side: the crate's one frame reader ([`frame::Reader`], which
//! cuts messages out of the byte stream) with a connection's errors.

use std::{collections::VecDeque, io, time::Instant};

use crate::{
    error::channel::RecvFailure,
    error::{Error, ErrorKind},
    frame::{self, Framing, PollError, ReadFailure},
    sys::{Fd, RawFd},
};

/// Size of a message header (the crate's one header, [`frame::Header`]).
pub(crate) const HEADER: usize = frame::HEADER;

/// The header of a message of `len` bytes carrying `nfds` descriptors.
#[inline]
pub(crate) fn header(len: u64, nfds: usize) -> [u8; HEADER] {
    frame::Header::message(len, nfds).encode()
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

/// A read's failure as a receive's.
fn failure(f: ReadFailure) -> RecvFailure {
    match f {
        ReadFailure::Timeout => RecvFailure::Timeout,
        ReadFailure::End => RecvFailure::Disconnected,
        ReadFailure::Io(e) => RecvFailure::Failed(Error::io("failed to read from the connection", e)),
        ReadFailure::Alloc(e) => RecvFailure::Failed(Error::io("cannot allocate a message buffer", e)),
        ReadFailure::Broken(why) => RecvFailure::Failed(protocol(why)),
        ReadFailure::WasBroken(why) => RecvFailure::Failed(protocol(format!("the connection is broken: {why}"))),
    }
}

/// The receiving state of a connection: the frame reader of its stream.
#[derive(Debug)]
pub(crate) struct Rx(frame::Reader);

impl Default for Rx {
    fn default() -> Rx {
        Rx(frame::Reader::new(Framing::Messages))
    }
}

impl Rx {
    /// The state of a connection that arrived with undelivered bytes.
    pub(crate) fn with_buffered(buf: Vec<u8>, fds: VecDeque<Fd>) -> Rx {
        Rx(frame::Reader::with_buffered(Framing::Messages, buf, fds))
    }

    /// The undelivered bytes and descriptors, for a copy of the connection
    /// being passed to another process. Nothing is removed here: see
    /// [`discard_passed`](Rx::discard_passed), once the copy was sent.
    pub(crate) fn passing_view(&self) -> Result<(Vec<u8>, Vec<RawFd>), String> {
        if self.0.is_inside_frame() {
            return Err("a connection cannot be passed while a message is half received".into());
        }
        if let Some(why) = self.0.broken_reason() {
            return Err(format!("a broken connection cannot be passed: {why}"));
        }
        Ok(self.0.undelivered())
    }

    /// Forgets the `bytes` undelivered bytes and `fds` descriptors that a
    /// passed copy of the connection took with it.
    pub(crate) fn discard_passed(&mut self, bytes: usize, fds: usize) {
        self.0.discard(bytes, fds);
    }

    /// Closes the descriptors buffered here (a fork child's copy of a
    /// connection it was not given).
    pub(crate) fn close_buffered_fds(&mut self) {
        self.0.close_buffered_fds();
    }

    /// `true` when a whole message (or the end, or a broken state) is
    /// buffered, so a receive would not wait.
    pub(crate) fn has_message_or_end(&self) -> bool {
        self.0.has_frame_or_end()
    }

    /// Waits until [`has_message_or_end`](Rx::has_message_or_end) or the
    /// deadline, reading what arrives.
    pub(crate) fn poll(&mut self, fd: &Fd, deadline: Option<Instant>) -> crate::Result<bool> {
        self.0.poll(fd, deadline).map_err(|e| match e {
            PollError::Read(e) => Error::io("failed to read from the connection", e),
            PollError::Wait(e) => Error::io("failed to wait on the connection", e),
        })
    }

    /// The next whole message and its descriptors.
    #[inline]
    pub(crate) fn next_message(
        &mut self,
        fd: &Fd,
        deadline: Option<Instant>,
        max_len: Option<usize>,
    ) -> Result<Message, RecvFailure> {
        let frame = self.0.next_frame(fd, deadline, max_len).map_err(failure)?;
        let fds = self.0.take_frame_fds(frame.nfds).map_err(failure)?;
        Ok((frame.payload, fds))
    }

    /// The next message, read straight into `out` when it is large and fits
    /// (no intermediate buffer): `Ok(len)`; otherwise the whole message as
    /// [`next_message`](Rx::next_message) returns it, for the caller to copy
    /// or to report as too long.
    pub(crate) fn next_message_into(&mut self, fd: &Fd, out: &mut [u8]) -> Result<Result<usize, Message>, RecvFailure> {
        match self.0.next_frame_into(fd, out).map_err(failure)? {
            Ok((len, nfds)) => {
                // A message read into a caller's buffer has nowhere to put
                // descriptors: they are closed.
                self.0.take_frame_fds(nfds).map_err(failure)?;
                Ok(Ok(len))
            }
            Err(frame) => {
                let fds = self.0.take_frame_fds(frame.nfds).map_err(failure)?;
                Ok(Err((frame.payload, fds)))
            }
        }
    }
}

#[cfg(test)]
pub(crate) fn feed_for_test(rx: &mut Rx, bytes: &[u8]) {
    rx.0.feed(bytes);
}
