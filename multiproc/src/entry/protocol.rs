//! The bootstrap protocol: what a parent and a process it spawned from
//! this executable say on the bootstrap socket, in frames of the crate's
//! one framing ([`crate::frame`]).
//!
//! ```text
//! parent → spawned   Serve [preload offset]        become a fork server
//!                    Track + [socket, pidfd]       become a shm tracker
//!                    Boot (Boot record)            become a child ...
//!                    Args (arguments) + [fds]      ... and run with these
//! child → parent     Ready                         the entry point was reached
//!                    Outcome (see crate::outcome)  how the target ended
//! ```
//!
//! The first frame names the role. A fork server's child reads `Boot` and
//! `Args` from its owner in the same way.

use std::{io, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    codec,
    frame::{self, ProtocolError, ReadError, StreamError},
    outcome::Outcome,
    start::StartMethod,
    sys::{ChildHandle, Fd, RawFd},
};

/// Version of the bootstrap protocol; parent and child are the same
/// binary, so this only guards against a stray variable.
pub(crate) const PROTOCOL: u32 = 1;

// The frame kinds of this protocol (6 and 7 are the fork server's, whose
// requests travel on another socket).
const BOOT: u8 = 1;
const ARGS: u8 = 2;
const READY: u8 = 3;
const OUTCOME: u8 = 4;
const SERVE: u8 = 5;
const TRACK: u8 = 8;

/// Everything a spawned child needs to become the parent's child.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Boot {
    pub(crate) protocol: u32,
    pub(crate) exe: (u64, u64),
    /// The parent's GNU build id (empty if it has none): a child running
    /// another file (`set_executable`) must have the same.
    pub(crate) build_id: Vec<u8>,
    pub(crate) trampoline: i64,
    pub(crate) target: i64,
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) authkey: [u8; 32],
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    /// The parent's default start method, which the child adopts (as
    /// Python's spawn children do), so grandchildren start the same way.
    pub(crate) default_method: StartMethod,
    /// Whether to capture a backtrace at a panic of the target: forced on
    /// or off, or (`None`) as the environment says.
    pub(crate) backtrace: Option<bool>,
    /// Two descriptors came with this frame, to become the child's 1 and 2
    /// (`crate::output`).
    pub(crate) output: bool,
}

/// A message received on a bootstrap socket (its descriptors stay in the
/// reader: `Reader::take_fds`).
#[derive(Debug)]
pub(crate) enum Message {
    /// Become a fork server, after running the function at this code
    /// offset, if any.
    Serve { preload: Option<i64> },
    /// Become a shared-memory tracker (a socket and a pidfd attached).
    Track,
    /// Become this child. A record that does not decode is kept as its
    /// error, for the child to report.
    Boot(Result<Box<Boot>, String>),
    /// The target's encoded arguments.
    Args(Vec<u8>),
    /// The child reached the library's entry point.
    Ready,
    /// How the target ended: an encoded [`Outcome`], decoded where it is
    /// used (`Outcome::from_bytes` borrows it).
    Outcome(Vec<u8>),
}

impl Message {
    fn decode(kind: u8, payload: Vec<u8>) -> Result<Message, String> {
        Ok(match kind {
            SERVE => Message::Serve {
                // Anything but an offset: no preload.
                preload: <[u8; 8]>::try_from(&payload[..]).ok().map(i64::from_le_bytes),
            },
            TRACK => Message::Track,
            BOOT => Message::Boot(
                codec::decode_record(&payload)
                    .map(Box::new)
                    .map_err(|e| format!("bad boot record: {}", e.0)),
            ),
            ARGS => Message::Args(payload),
            READY => Message::Ready,
            OUTCOME => Message::Outcome(payload),
            k => return Err(format!("unknown bootstrap frame kind {k}")),
        })
    }

    /// The message's name, for errors.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Message::Serve { .. } => "Serve",
            Message::Track => "Track",
            Message::Boot(_) => "Boot",
            Message::Args(_) => "Args",
            Message::Ready => "Ready",
            Message::Outcome(_) => "Outcome",
        }
    }
}

/// Why no message could be read.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// The stream ended (or failed) between messages: the peer is gone.
    Gone,
    /// The peer broke the protocol.
    Protocol(String),
}

/// The next message, blocking; `Ok(None)` at the end of the stream.
pub(crate) fn recv(reader: &mut frame::Reader, sock: &Fd) -> Result<Message, RecvError> {
    match reader.next_blocking(sock) {
        Ok(Some((kind, payload))) => Message::decode(kind, payload).map_err(RecvError::Protocol),
        Ok(None) | Err(ReadError::Io(_)) => Err(RecvError::Gone),
        Err(ReadError::Protocol(e)) => Err(RecvError::Protocol(e.0)),
    }
}

/// The next message among the bytes `reader` holds, if a whole one has
/// arrived (the parent's non-blocking side).
pub(crate) fn next_buffered(reader: &mut frame::Reader) -> Result<Option<Message>, ProtocolError> {
    match reader.next()? {
        Some((kind, payload)) => Message::decode(kind, payload).map(Some).map_err(ProtocolError),
        None => Ok(None),
    }
}

/// Tells a spawned process to become a fork server.
pub(crate) fn send_serve(sock: &Fd, preload: Option<i64>) -> io::Result<()> {
    let payload = preload.map(i64::to_le_bytes);
    frame::send(sock, SERVE, payload.as_ref().map_or(&[][..], |p| &p[..]))
}

/// Tells a spawned process to become a tracker, on these descriptors.
pub(crate) fn send_track(sock: &Fd, fds: &[RawFd]) -> io::Result<()> {
    frame::send_with_fds(sock, TRACK, &[], fds)
}

/// Sends a child its boot record.
pub(crate) fn send_boot(sock: &Fd, boot: &Boot, output: Option<[RawFd; 2]>) -> io::Result<()> {
    let record = codec::encode_record(boot);
    match output {
        None => frame::send(sock, BOOT, &record),
        // Descriptors ride on an inline frame only.
        Some(fds) if record.len() <= frame::INLINE_MAX => frame::send_with_fds(sock, BOOT, &record, &fds),
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a boot record too large to carry output descriptors (the process's name is too long)",
        )),
    }
}

/// Whether [`send_args`] can send `len` bytes of arguments in one frame
/// (larger ones are streamed, [`stream_args`]).
pub(crate) fn args_fit_inline(len: usize) -> bool {
    len <= frame::INLINE_MAX
}

/// Sends a child its arguments and the descriptors of the endpoints among
/// them, in one frame.
pub(crate) fn send_args(sock: &Fd, args: &[u8], fds: &[RawFd]) -> io::Result<()> {
    frame::send_with_fds(sock, ARGS, args, fds)
}

/// Streams a child its large arguments while it reads them (see
/// [`frame::send_stream`]).
pub(crate) fn stream_args(
    sock: &Fd,
    (args, fds): (&[u8], &[RawFd]),
    child: &ChildHandle,
    stall: Duration,
) -> Result<(), StreamError> {
    frame::send_stream(sock, ARGS, (args, fds), child, stall)
}

/// Tells the parent the entry point was reached.
pub(crate) fn send_ready(sock: &Fd) -> io::Result<()> {
    frame::send(sock, READY, &[])
}

/// Tells the parent how the target ended.
pub(crate) fn send_outcome(sock: &Fd, outcome: &Outcome) -> io::Result<()> {
    frame::send(sock, OUTCOME, &outcome.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    #[test]
    fn every_message_arrives_as_sent() {
        let (a, b) = sys::socketpair().unwrap();
        send_serve(&a, Some(-42)).unwrap();
        send_serve(&a, None).unwrap();
        send_track(&a, &[]).unwrap();
        send_args(&a, b"args", &[]).unwrap();
        send_ready(&a).unwrap();
        send_outcome(&a, &Outcome::Value(b"v".to_vec())).unwrap();
        drop(a);
        let mut r = frame::Reader::control();
        let mut next = || recv(&mut r, &b);
        assert!(matches!(next(), Ok(Message::Serve { preload: Some(-42) })));
        assert!(matches!(next(), Ok(Message::Serve { preload: None })));
        assert!(matches!(next(), Ok(Message::Track)));
        assert!(matches!(next(), Ok(Message::Args(a)) if a == b"args"));
        assert!(matches!(next(), Ok(Message::Ready)));
        assert!(matches!(next(), Ok(Message::Outcome(o)) if o == Outcome::Value(b"v".to_vec()).to_bytes()));
        assert!(matches!(next(), Err(RecvError::Gone)));
    }

    #[test]
    fn a_frame_of_another_protocol_is_refused() {
        let (a, b) = sys::socketpair().unwrap();
        // 6: the fork server's request, which never travels here.
        frame::send(&a, 6, &[]).unwrap();
        let mut r = frame::Reader::control();
        assert!(matches!(recv(&mut r, &b), Err(RecvError::Protocol(_))));
    }
}
