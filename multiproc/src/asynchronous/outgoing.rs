//! A connection's send state: the unsent end of a message whose async send
//! was dropped after its first bytes went out.
//!
//! A message is written whole or not at all as far as the reader can
//! tell: once its first byte is in the socket, the rest must follow before
//! any other message. An async send that cannot write everything at once
//! keeps the rest here (the `tail`), under the connection's send lock, and
//! pushes it on as the socket drains. If its future is dropped, the tail
//! stays: every later send on the connection (async or blocking) finishes
//! it first, and dropping the connection finishes it (a blocking write that
//! ends when the peer reads it or closes). So a dropped send future never
//! leaves half a message in the stream.
// Without the `async` feature nothing makes a tail, and only the blocking
// sends' `finish_blocking` (a no-op then) is used.
#![cfg_attr(not(feature = "async"), allow(dead_code))]

use std::io;

use super::wakers::Wakers;
use crate::sys::{self, Fd};

/// The rest of a message being sent.
#[derive(Debug)]
pub(crate) struct Tail {
    /// Which send this is (see [`Outgoing::next_id`]).
    pub(crate) id: u64,
    /// The process that wrote the start: a fork child's copy of the state
    /// is not its to finish.
    pub(crate) pid: u32,
    pub(crate) header: [u8; crate::connection::HEADER],
    pub(crate) payload: Vec<u8>,
    /// Bytes of `header` then `payload` already written.
    pub(crate) sent: usize,
}

impl Tail {
    /// What is left to write: `[rest of header, rest of payload]`.
    pub(crate) fn rest(&self) -> [&[u8]; 2] {
        let h = self.sent.min(self.header.len());
        let p = self.sent - h;
        [&self.header[h..], &self.payload[p..]]
    }

    pub(crate) fn is_done(&self) -> bool {
        self.sent == self.header.len() + self.payload.len()
    }
}

/// The state under a connection's send lock.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    pub(crate) tail: Option<Tail>,
    pub(crate) next_id: u64,
    /// Futures whose message is the tail: woken when someone else finishes
    /// it (a blocking send, or another future).
    pub(crate) done: Wakers,
}

impl Outgoing {
    /// Finishes the tail, if any, blocking until it is written; the send
    /// lock is held. Every send does this before its own message.
    pub(crate) fn finish_blocking(&mut self, fd: &Fd) -> io::Result<()> {
        let Some(tail) = self.tail.take() else {
            return Ok(());
        };
        if tail.pid == sys::getpid() {
            let [h, p] = tail.rest();
            let r = fd.send_frame(h, p, &[]);
            self.done.wake_all();
            r?;
        }
        Ok(())
    }
}
