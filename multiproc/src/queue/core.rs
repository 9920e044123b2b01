//! The plumbing behind every queue handle: [`Core`], the state the
//! handles of one queue share in one process (the ring, the descriptor
//! side channel, the readiness and room eventfds, the producers' end), and its put
//! and get of encoded records (see the parent module's docs).

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use super::ring::{RingError, ShmRing};
use crate::{
    error::channel::RecvFailure,
    error::{Error, ErrorKind, Result},
    sys::{self, Fd, RawFd},
};

/// Initial size of a queue's shared ring; it doubles as needed.
const INITIAL_CAPACITY: usize = 256 * 1024;
/// Send buffer asked for on the descriptor side channel (the kernel caps
/// it at `net.core.wmem_max`): it bounds how many descriptor-carrying items
/// can wait in a queue at once.
const SIDE_BUFFER: usize = 4 << 20;
const TRAILER: usize = 12;

/// The state shared by the handles of one queue in one process.
pub(super) struct Core {
    pub(super) ring: ShmRing,
    pub(super) side_tx: Fd,
    pub(super) side_rx: Fd,
    /// Signalled after a put while someone watches (see the module docs).
    pub(super) ready: Fd,
    /// Signalled after a get while an async put waits for room (see the
    /// module docs).
    pub(super) room: Fd,
    /// This process's `close` (Python's: this process only).
    pub(super) closed: AtomicBool,
    /// For a queue made with producers: the end of a socket pair whose
    /// other end only [`Producer`] handles hold. It hangs up when the last
    /// of them is closed, dropped or gone with its process (see the module
    /// docs).
    pub(super) producers: Option<Fd>,
}

static TOKENS: AtomicU64 = AtomicU64::new(1);

impl Core {
    /// A new queue; with `with_producers`, also the descriptor its
    /// producers hold.
    pub(super) fn new(max: Option<u64>, with_producers: bool) -> Result<(Core, Option<Fd>)> {
        let ring =
            ShmRing::new(INITIAL_CAPACITY, max).map_err(|e| Error::io("failed to create the queue's memory", e))?;
        let (side_tx, side_rx) =
            sys::seqpacket_pair().map_err(|e| Error::io("failed to create the queue's descriptor channel", e))?;
        let _ = side_tx.set_send_buffer(SIDE_BUFFER);
        let ready = sys::eventfd().map_err(|e| Error::io("failed to create the queue's readiness eventfd", e))?;
        let room = sys::eventfd().map_err(|e| Error::io("failed to create the queue's room eventfd", e))?;
        let (token, producers) = if with_producers {
            let (token, watch) =
                sys::socketpair().map_err(|e| Error::io("failed to create the queue's producer descriptors", e))?;
            (Some(token), Some(watch))
        } else {
            (None, None)
        };
        let core = Core {
            ring,
            side_tx,
            side_rx,
            ready,
            room,
            closed: AtomicBool::new(false),
            producers,
        };
        Ok((core, token))
    }

    /// `true` once no item can come any more: every producer handle of a
    /// queue made with producers is gone (its descriptor hung up). A queue
    /// made without producers never ends this way.
    fn producers_gone(&self) -> bool {
        self.producers
            .as_ref()
            .is_some_and(|fd| fd.poll_readable(Some(Duration::ZERO)).unwrap_or(false))
    }

    /// `true` when a get on the empty queue would report the end.
    pub(super) fn ended(&self) -> bool {
        self.ring.is_closed() || self.producers_gone()
    }

    /// Wakes every process waiting on the queue, to look again at whether
    /// it ended (a close, a producer gone).
    pub(super) fn wake_everyone(&self) {
        self.ring.wake_all();
        self.notify_watchers();
        self.notify_room_watchers();
    }

    /// Wakes the watchers after a put, if there are any.
    pub(super) fn notify_watchers(&self) {
        if self.ring.has_watchers() {
            sys::eventfd_signal(&self.ready);
        }
    }

    /// Wakes the async puts waiting for room after a get, if there are
    /// any (one atomic load otherwise).
    pub(super) fn notify_room_watchers(&self) {
        if self.ring.has_room_watchers() {
            sys::eventfd_signal(&self.room);
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::InvalidState, "queue is closed"));
        }
        Ok(())
    }

    /// Puts an encoded item; `Timeout` when the queue stayed full.
    pub(super) fn put_bytes(
        &self,
        bytes: &[u8],
        fds: &[RawFd],
        deadline: Option<Instant>,
    ) -> std::result::Result<(), PutFail> {
        self.check_open().map_err(PutFail::Failed)?;
        let token = if fds.is_empty() {
            0
        } else {
            (u64::from(sys::getpid()) << 32) | (TOKENS.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
        };
        let mut trailer = [0u8; TRAILER];
        trailer[..4].copy_from_slice(&(fds.len() as u32).to_le_bytes());
        trailer[4..].copy_from_slice(&token.to_le_bytes());
        let side = &self.side_tx;
        loop {
            let mut side_full = false;
            // Under the ring's lock: the datagram is tagged with the index
            // the record is about to get, so that getters can tell it from
            // one left by a putter that died before committing.
            let mut send_fds = |index: u64| {
                if fds.is_empty() {
                    return Ok(());
                }
                let mut tag = [0u8; 16];
                tag[..8].copy_from_slice(&index.to_le_bytes());
                tag[8..].copy_from_slice(&token.to_le_bytes());
                if side.try_send_datagram(&tag, fds)? {
                    Ok(())
                } else {
                    side_full = true;
                    Err(std::io::Error::from(std::io::ErrorKind::WouldBlock))
                }
            };
            match self.ring.push(&[bytes, &trailer], deadline, &mut send_fds) {
                Ok(()) => {
                    self.notify_watchers();
                    return Ok(());
                }
                Err(RingError::Timeout) => return Err(PutFail::Timeout),
                Err(RingError::Closed) => return Err(PutFail::Closed),
                Err(RingError::Io(_)) if side_full => {
                    // Too many items carrying descriptors are waiting: wait
                    // (without the ring's lock) for getters to take some.
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    match side.poll_writable_or(-1, left) {
                        Ok((true, _)) => continue,
                        Ok(_) => return Err(PutFail::Timeout),
                        Err(e) => return Err(PutFail::Failed(Error::io("queue put failed", e))),
                    }
                }
                Err(e) => return Err(PutFail::Failed(ring_error(e, "put"))),
            }
        }
    }

    /// Gets one encoded item and its descriptors.
    pub(super) fn get_bytes(&self, deadline: Option<Instant>) -> std::result::Result<(Vec<u8>, Vec<Fd>), RecvFailure> {
        self.check_open().map_err(RecvFailure::Failed)?;
        let mut fds = Vec::new();
        let mut lost = false;
        let side = &self.side_rx;
        let mut take_fds = |record: &[u8], index: u64| {
            let Some((n, token)) = trailer_of(record) else {
                // Reported below, after the record is removed.
                return Ok(());
            };
            if n > 0 {
                lost = !receive_tagged(side, index, token, &mut fds)?;
            }
            Ok(())
        };
        let mut record = match self.ring.pop(deadline, &mut take_fds, &|| self.producers_gone()) {
            Ok(r) => {
                // A record left the ring, whatever it holds: room.
                self.notify_room_watchers();
                r
            }
            Err(RingError::Timeout) => return Err(RecvFailure::Timeout),
            Err(RingError::Closed) => return Err(RecvFailure::Disconnected),
            Err(e) => return Err(RecvFailure::Failed(ring_error(e, "get"))),
        };
        if record.len() < TRAILER {
            return Err(RecvFailure::Failed(Error::new(
                ErrorKind::Protocol,
                "the queue held a malformed item",
            )));
        }
        if lost {
            return Err(RecvFailure::Failed(Error::new(
                ErrorKind::Protocol,
                "an item's descriptors were lost (a process died while receiving it); the item was dropped",
            )));
        }
        record.truncate(record.len() - TRAILER);
        Ok((record, fds))
    }
}

fn trailer_of(record: &[u8]) -> Option<(u32, u64)> {
    let t = record.len().checked_sub(TRAILER).map(|at| &record[at..])?;
    Some((
        u32::from_le_bytes(t[..4].try_into().expect("4 bytes")),
        u64::from_le_bytes(t[4..].try_into().expect("8 bytes")),
    ))
}

/// Receives the datagram of record `index` (tagged `token`) from the side
/// channel; `false` if it is not there (a getter that died while taking
/// this record took its datagram with it). Datagrams of older indexes, or
/// of this index with another token, were left by putters that died before
/// committing: they are taken and their descriptors closed. A datagram of
/// a later record is left for that record's getter.
fn receive_tagged(side: &Fd, index: u64, token: u64, out: &mut Vec<Fd>) -> std::io::Result<bool> {
    loop {
        let mut tag = [0u8; 16];
        match side.peek_datagram(&mut tag)? {
            Some(16) => {}
            // Nothing there, or not one of ours: nothing to take.
            _ => return Ok(false),
        }
        let at = u64::from_le_bytes(tag[..8].try_into().expect("8 bytes"));
        let its_token = u64::from_le_bytes(tag[8..].try_into().expect("8 bytes"));
        // Wrapping distance: indexes only grow.
        let ahead = at.wrapping_sub(index) as i64;
        if ahead > 0 {
            return Ok(false);
        }
        let mut buf = Vec::with_capacity(16);
        let mut fds = Vec::new();
        side.recv_upto(&mut buf, 16, &mut fds, true)?;
        if ahead == 0 && its_token == token {
            *out = fds;
            return Ok(true);
        }
        // A stale datagram: its descriptors close as `fds` drops.
    }
}

pub(super) fn ring_error(e: RingError, op: &str) -> Error {
    match e {
        RingError::Timeout => Error::new(ErrorKind::Timeout, format!("queue {op} timed out")),
        RingError::Broken(why) => Error::new(ErrorKind::Protocol, why),
        RingError::TooManyTaskDone => Error::new(ErrorKind::InvalidState, "task_done() called too many times"),
        RingError::Closed => Error::new(
            ErrorKind::Disconnected,
            format!("queue {op} failed: the queue has ended"),
        ),
        RingError::Io(e) => Error::io(format!("queue {op} failed"), e),
    }
}

pub(super) enum PutFail {
    Timeout,
    /// The queue was closed for every process.
    Closed,
    Failed(Error),
}
