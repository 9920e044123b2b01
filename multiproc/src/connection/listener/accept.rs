//! Accepting: waiting for a connection, and the keyed listener's set of
//! handshakes driven concurrently inside `accept` (see the parent module's
//! docs).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::{Address, Listener};
use crate::{
    connection::{Connection, auth::Accepting, lock},
    error::{Error, ErrorKind, Result},
    sys::{self, Fd, PeerAddr, RawFd},
};

/// One accepted connection whose peer is authenticating.
struct Pending {
    conn: Connection,
    peer: Option<Address>,
    handshake: Accepting,
}

/// The shared part of a keyed listener's handshakes. A thread inside
/// `accept` takes the pending ones out (counted in `held`), drives them,
/// and puts back those not over when it returns.
#[derive(Default)]
pub(super) struct Handshakes {
    pending: Vec<Pending>,
    held: usize,
    failures: VecDeque<Error>,
    /// Failures dropped because `failures` was full.
    dropped: usize,
}

impl Handshakes {
    fn fail(&mut self, e: Error, bound: usize) {
        if self.failures.len() >= bound {
            self.failures.pop_front();
            self.dropped += 1;
        }
        self.failures.push_back(e);
    }

    fn next_failure(&mut self) -> Option<Error> {
        let e = self.failures.pop_front()?;
        if self.dropped == 0 {
            return Some(e);
        }
        let dropped = std::mem::take(&mut self.dropped);
        let kind = e.kind();
        Some(
            Error::new(
                kind,
                format!("{e} (and {dropped} earlier failed handshakes were not reported: too many failed at once)"),
            )
            .with_source(e),
        )
    }
}

fn evicted_error(peer: Option<&Address>, listener: &Listener) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "the handshake with {} was abandoned unfinished: {} handshakes were pending at {}, the limit \
             (see ListenerBuilder::max_pending_handshakes)",
            peer_name(peer),
            listener.max_pending,
            listener.address
        ),
    )
}

/// The error `accept` reports for a failed handshake: the handshake's
/// kind and message, and the peer's address.
fn handshake_failed(peer: Option<&Address>, e: &Error) -> Error {
    Error::new(e.kind(), format!("authentication of {} failed: {e}", peer_name(peer)))
}

fn peer_name(peer: Option<&Address>) -> String {
    peer.map_or_else(|| "an unnamed peer".to_owned(), |a| a.to_string())
}

impl Listener {
    pub(super) fn accept_until(&self, deadline: Option<(Instant, Duration)>) -> Result<Connection> {
        let Some(key) = &self.authkey else {
            let (fd, peer) = self.take_connection(deadline)?;
            *lock(&self.last_accepted) = peer;
            return Ok(Connection::from_socket(fd));
        };
        let mut mine = {
            let mut shared = lock(&self.handshakes);
            if let Some(e) = shared.next_failure() {
                return Err(e);
            }
            let mine = std::mem::take(&mut shared.pending);
            shared.held += mine.len();
            mine
        };
        let result = self.drive(key, &mut mine, deadline);
        let mut shared = lock(&self.handshakes);
        shared.held -= mine.len();
        shared.pending.append(&mut mine);
        drop(shared);
        result.map(|p| self.accepted(p))
    }

    fn accepted(&self, p: Pending) -> Connection {
        *lock(&self.last_accepted) = p.peer;
        p.conn
    }

    /// Drives the handshakes in `mine` and takes new connections into them
    /// until one is over (returned, out of `mine`), one failed, or the
    /// deadline. Every change to `mine` is counted in `held`.
    fn drive(&self, key: &[u8], mine: &mut Vec<Pending>, deadline: Option<(Instant, Duration)>) -> Result<Pending> {
        let io_err = |e| Error::io(format!("failed to accept a connection at {}", self.address), e);
        // Descriptors of handshakes whose peer sent something; `None`: all
        // (the first round, where some may have been waiting for a caller).
        let mut readable: Option<Vec<RawFd>> = None;
        loop {
            // New connections first: their challenge goes out at once.
            while let Some((fd, peer)) = sys::accept(&self.fd).map_err(io_err)? {
                self.start_handshake(fd, peer, mine);
            }
            // Then every handshake whose peer sent something, or whose
            // deadline has come.
            let now = Instant::now();
            let mut failed = None;
            let mut i = 0;
            while i < mine.len() {
                let p = &mut mine[i];
                let due =
                    readable.as_ref().is_none_or(|r| r.contains(&p.conn.raw_fd())) || now >= p.handshake.deadline();
                let advanced = if due {
                    p.handshake.advance(&p.conn, key)
                } else {
                    Ok(false)
                };
                match advanced {
                    Ok(false) => i += 1,
                    Ok(true) => {
                        let p = mine.swap_remove(i);
                        let mut shared = lock(&self.handshakes);
                        shared.held -= 1;
                        if let Some(e) = failed {
                            // Reported by a later call: this peer goes first.
                            shared.failures.push_front(e);
                        }
                        return Ok(p);
                    }
                    Err(e) => {
                        let p = mine.swap_remove(i);
                        let e = handshake_failed(p.peer.as_ref(), &e);
                        drop(p);
                        let mut shared = lock(&self.handshakes);
                        shared.held -= 1;
                        match failed {
                            None => failed = Some(e),
                            Some(_) => shared.fail(e, self.max_pending),
                        }
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let now = Instant::now();
            let caller_left = deadline.map(|(d, _)| d.saturating_duration_since(now));
            if caller_left == Some(Duration::ZERO) {
                let waited = deadline.map_or(Duration::ZERO, |(_, t)| t);
                let pending = match mine.len() {
                    0 => String::new(),
                    n => format!(" ({n} still authenticating)"),
                };
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no connection was accepted at {} within {waited:?}{pending}",
                        self.address
                    ),
                ));
            }
            let first_due = mine
                .iter()
                .map(|p| p.handshake.deadline().saturating_duration_since(now))
                .min();
            let left = match (caller_left, first_due) {
                (Some(a), Some(d)) => Some(a.min(d)),
                (a, d) => a.or(d),
            };
            let mut fds = Vec::with_capacity(mine.len() + 1);
            fds.push(self.fd.raw());
            fds.extend(mine.iter().map(|p| p.conn.raw_fd()));
            let polled = sys::poll_readable_set(&fds, left).map_err(io_err)?;
            readable = Some(
                fds.iter()
                    .zip(polled)
                    .skip(1)
                    .filter_map(|(&fd, r)| r.then_some(fd))
                    .collect(),
            );
        }
    }

    /// Takes an accepted socket into `mine` and sends it the challenge;
    /// when the set of pending handshakes is full, the oldest is evicted
    /// first (see the module docs).
    fn start_handshake(&self, fd: Fd, peer: PeerAddr, mine: &mut Vec<Pending>) {
        if let Address::Tcp(_) = self.address {
            // Latency only, see `take_connection`.
            let _ = sys::set_nodelay(&fd);
        }
        let peer = Address::from_peer(peer);
        let conn = Connection::from_socket(fd);
        let mut shared = lock(&self.handshakes);
        if shared.pending.len() + shared.held >= self.max_pending {
            let in_mine = mine
                .iter()
                .map(|p| p.handshake.deadline())
                .enumerate()
                .min_by_key(|&(_, d)| d);
            let in_shared = shared
                .pending
                .iter()
                .map(|p| p.handshake.deadline())
                .enumerate()
                .min_by_key(|&(_, d)| d);
            let evicted = match (in_mine, in_shared) {
                (Some((i, a)), Some((_, b))) if a <= b => {
                    shared.held -= 1;
                    mine.swap_remove(i)
                }
                (Some((i, _)), None) => {
                    shared.held -= 1;
                    mine.swap_remove(i)
                }
                (_, Some((i, _))) => shared.pending.swap_remove(i),
                // Every pending handshake is held by other threads: this
                // connection is the one refused.
                (None, None) => {
                    let e = evicted_error(peer.as_ref(), self);
                    shared.fail(e, self.max_pending);
                    return;
                }
            };
            let e = evicted_error(evicted.peer.as_ref(), self);
            shared.fail(e, self.max_pending);
        }
        drop(shared);
        match Accepting::start(&conn, self.auth_timeout) {
            Ok(handshake) => {
                mine.push(Pending { conn, peer, handshake });
                lock(&self.handshakes).held += 1;
            }
            Err(e) => {
                let e = handshake_failed(peer.as_ref(), &e);
                lock(&self.handshakes).fail(e, self.max_pending);
            }
        }
    }

    /// Waits for a connection without a handshake.
    fn take_connection(&self, deadline: Option<(Instant, Duration)>) -> Result<(Fd, Option<Address>)> {
        let io_err = |e| Error::io(format!("failed to accept a connection at {}", self.address), e);
        let (fd, peer) = loop {
            if let Some(got) = sys::accept(&self.fd).map_err(io_err)? {
                break got;
            }
            let left = deadline.map(|(d, _)| d.saturating_duration_since(Instant::now()));
            if !self.fd.poll_readable(left).map_err(io_err)? {
                let waited = deadline.map_or(Duration::ZERO, |(_, t)| t);
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no connection arrived at {} within {waited:?}", self.address),
                ));
            }
        };
        if let Address::Tcp(_) = self.address {
            // Latency only: a socket this fails on (the peer already
            // reset it) fails the handshake or first receive more clearly.
            let _ = sys::set_nodelay(&fd);
        }
        Ok((fd, Address::from_peer(peer)))
    }
}
