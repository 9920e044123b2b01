//! The fork server's protocol, in frames of the crate's one framing
//! ([`crate::frame`]):
//!
//! ```text
//! owner → server, on the control socket:
//!   Fork (request number, u64 LE) + [boot socket, status socket, owner pidfd]
//! server → owner, on that request's status socket:
//!   Pid (request number u64 LE, pid u32 LE) + [the child's pidfd]
//!   then, once the child ended, its exit status record (`sys::ChildHandle`)
//! ```

use std::io;

use crate::{
    frame::{self, ProtocolError},
    sys::{Fd, RawFd},
};

// The frame kinds of this protocol (the bootstrap protocol's are 1..5, 8).
pub(crate) const FORK: u8 = 6;
pub(crate) const PID: u8 = 7;

/// The descriptors a `Fork` request carries.
pub(crate) const FORK_FDS: usize = 3;

/// A message of the fork server's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// Fork a child for request `id` ([`FORK_FDS`] descriptors attached).
    Fork { id: u64 },
    /// The child of request `id` is `pid` (its pidfd attached).
    Pid { id: u64, pid: u32 },
}

impl Message {
    /// Decodes a frame; a frame of another kind or length is an error.
    pub(crate) fn decode(kind: u8, payload: &[u8]) -> Result<Message, String> {
        match (kind, payload.len()) {
            (FORK, 8) => Ok(Message::Fork {
                id: u64::from_le_bytes(payload.try_into().expect("8 bytes")),
            }),
            (PID, 12) => Ok(Message::Pid {
                id: u64::from_le_bytes(payload[..8].try_into().expect("8 bytes")),
                pid: u32::from_le_bytes(payload[8..].try_into().expect("4 bytes")),
            }),
            (k, n) => Err(format!("a frame of kind {k} and {n} bytes")),
        }
    }

    fn encode(&self) -> (u8, Vec<u8>) {
        match *self {
            Message::Fork { id } => (FORK, id.to_le_bytes().to_vec()),
            Message::Pid { id, pid } => (PID, [&id.to_le_bytes()[..], &pid.to_le_bytes()].concat()),
        }
    }

    /// Sends the message with its descriptors.
    pub(crate) fn send(&self, sock: &Fd, fds: &[RawFd]) -> io::Result<()> {
        let (kind, payload) = self.encode();
        frame::send_with_fds(sock, kind, &payload, fds)
    }
}

/// The next message among the bytes `reader` holds, if a whole frame has
/// arrived: `Ok(Err(what))` for a frame that is no message of this
/// protocol (its bytes are consumed).
pub(crate) fn next_buffered(reader: &mut frame::Reader) -> Result<Option<Result<Message, String>>, ProtocolError> {
    Ok(reader.next()?.map(|(kind, payload)| Message::decode(kind, &payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_decode_to_themselves() {
        for m in [Message::Fork { id: 7 }, Message::Pid { id: 7, pid: 1234 }] {
            let (kind, payload) = m.encode();
            assert_eq!(Message::decode(kind, &payload), Ok(m));
        }
        assert!(Message::decode(PID, &[0; 4]).is_err());
        assert!(Message::decode(FORK, &[0; 9]).is_err());
        assert!(Message::decode(3, &[]).is_err());
    }
}
