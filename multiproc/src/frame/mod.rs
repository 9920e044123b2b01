//! The one message framing of the crate: a 16-byte header followed by its
//! payload, for every protocol (a connection's messages, the bootstrap
//! socket, the fork server).
//!
//! ```text
//! bytes 0..2  magic "mp"
//! byte 2      version (1)
//! byte 3      kind: 0 for a connection's message; otherwise the message
//!             kind of the protocol the socket speaks (each protocol module
//!             names its kinds: `entry::protocol`, `forkserver::protocol`)
//! bytes 4..6  descriptors sent with the message, little-endian u16
//! byte 6      flags (bit 0: the payload is in an attached memory file)
//! byte 7      zero
//! bytes 8..16 payload length, little-endian u64
//! ```
//!
//! [`Header`] writes and checks it; one [`Reader`] (`reader.rs`) cuts the
//! frames out of every stream: a connection's messages (`connection::wire`
//! adds the connection's errors) and the protocols of this crate's own
//! processes alike, each stream with its [`Framing`] (which kinds, flags and
//! lengths it may carry).
//!
//! Payloads up to [`INLINE_MAX`] bytes follow the header in the stream, and
//! so do the arguments of a spawned child of any size, streamed while the
//! child reads them ([`send_stream`], bounded by the bootstrap timeout).
//! Larger ones are written to an anonymous memory file whose descriptor
//! travels with the header (`SCM_RIGHTS`); the reader copies it out with
//! `pread` into a buffer backed by huge pages. That keeps
//! every such write small enough for the socket buffer (a sender never blocks on
//! a reader that is not reading yet, so a child can exit as soon as its
//! result is sent), and lets a large argument reach a new process with one
//! copy into the file and no copy out of the socket.
//!
//! The reader never trusts the header: an inline length above
//! [`INLINE_MAX`], a wrong magic or version, an unknown flag, or a missing
//! descriptor is a protocol error, not an allocation; an unknown kind is
//! for the protocol module to refuse.

mod reader;

use std::{fmt, io, time::Duration};

pub(crate) use self::reader::{Framing, PollError, ReadFailure, Reader};
use crate::sys::{self, ChildHandle, Fd, MAX_FDS, Memfd};

/// The send buffer asked for on bootstrap sockets: large enough that the
/// frames of one start (at most two of [`INLINE_MAX`] bytes plus headers)
/// never block a writer whose peer is not reading yet.
pub(crate) const SOCKET_BUFFER: usize = 160 * 1024;

/// Largest payload sent inline.
pub(crate) const INLINE_MAX: usize = 64 * 1024;
/// Size of a header.
pub(crate) const HEADER: usize = 16;
const MAGIC: [u8; 2] = *b"mp";
const VERSION: u8 = 1;
const FLAG_FILE: u8 = 1;

/// A frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// 0 for a connection's message; a protocol's message kind otherwise.
    pub(crate) kind: u8,
    /// Descriptors sent with the message.
    pub(crate) nfds: u16,
    /// Bit 0: the payload is in an attached memory file.
    pub(crate) flags: u8,
    /// Payload length.
    pub(crate) len: u64,
}

impl Header {
    /// The header of a connection's message of `len` bytes carrying `nfds`
    /// descriptors.
    #[inline]
    pub(crate) fn message(len: u64, nfds: usize) -> Header {
        Header {
            kind: 0,
            nfds: nfds as u16,
            flags: 0,
            len,
        }
    }

    #[inline]
    pub(crate) fn encode(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..2].copy_from_slice(&MAGIC);
        h[2] = VERSION;
        h[3] = self.kind;
        h[4..6].copy_from_slice(&self.nfds.to_le_bytes());
        h[6] = self.flags;
        h[8..].copy_from_slice(&self.len.to_le_bytes());
        h
    }

    /// Checks the first [`HEADER`] bytes of `h`: magic, version, the zero
    /// byte, and a descriptor count that can arrive in one message.
    #[inline]
    pub(crate) fn decode(h: &[u8]) -> Result<Header, String> {
        if h[..2] != MAGIC || h[2] != VERSION || h[7] != 0 {
            return Err("corrupted message header".into());
        }
        let nfds = u16::from_le_bytes([h[4], h[5]]);
        if usize::from(nfds) > MAX_FDS {
            return Err(format!("message header announces {nfds} descriptors"));
        }
        Ok(Header {
            kind: h[3],
            nfds,
            flags: h[6],
            len: u64::from_le_bytes(h[8..HEADER].try_into().expect("8 bytes")),
        })
    }
}

/// A violation of the framing rules.
#[derive(Debug)]
pub(crate) struct ProtocolError(pub(crate) String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn header(kind: u8, flags: u8, len: usize, nfds: usize) -> [u8; HEADER] {
    Header {
        kind,
        nfds: nfds as u16,
        flags,
        len: len as u64,
    }
    .encode()
}

/// Sends one frame of kind `kind`, blocking until it is written.
pub(crate) fn send(sock: &Fd, kind: u8, payload: &[u8]) -> io::Result<()> {
    if payload.len() <= INLINE_MAX {
        sock.send_frame(&header(kind, 0, payload.len(), 0), payload, &[])
    } else {
        let file = Memfd::with_contents(payload)?;
        sock.send_frame(&header(kind, FLAG_FILE, payload.len(), 1), &[], &[file.fd().raw()])
    }
}

/// Sends one small frame of kind `kind` with descriptors attached.
pub(crate) fn send_with_fds(sock: &Fd, kind: u8, payload: &[u8], fds: &[sys::RawFd]) -> io::Result<()> {
    debug_assert!(payload.len() <= INLINE_MAX);
    sock.send_frame(&header(kind, 0, payload.len(), fds.len()), payload, fds)
}

/// Sends one frame whose payload may be far larger than the socket
/// buffer, while the peer reads it: the copies into and out of the socket
/// overlap on two CPUs, and nothing is written to memory twice. Used for
/// the arguments of a spawned child, which is reading them.
///
/// Blocks while the reader reads, failing with [`StreamError::Timeout`]
/// when it takes nothing for `stall` (the deadline restarts at every
/// progress), and stops as soon as `peer` (the reader's pidfd) reports its
/// end.
pub(crate) fn send_stream(
    sock: &Fd,
    kind: u8,
    (payload, fds): (&[u8], &[sys::RawFd]),
    peer: &ChildHandle,
    stall: Duration,
) -> Result<(), StreamError> {
    sock.send_frame(&header(kind, 0, payload.len(), fds.len()), &[], fds)
        .map_err(|_| StreamError::Io)?;
    let mut rest = payload;
    while !rest.is_empty() {
        let n = sock.send_some(rest).map_err(|_| StreamError::Io)?;
        rest = &rest[n..];
        if n == 0 {
            let (writable, peer_ended) = sock
                .poll_writable_or(peer.raw_fd(), Some(stall))
                .map_err(|_| StreamError::Io)?;
            if peer_ended {
                return Err(StreamError::PeerEnded);
            }
            if !writable {
                return Err(StreamError::Timeout);
            }
        }
    }
    Ok(())
}

/// Why [`send_stream`] stopped.
#[derive(Debug)]
pub(crate) enum StreamError {
    Io,
    /// The reader ended before taking the whole frame.
    PeerEnded,
    /// The reader took nothing for too long.
    Timeout,
}

/// Why a blocking read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(#[allow(dead_code)] io::Error),
    Protocol(ProtocolError),
}

#[cfg(test)]
mod tests;
