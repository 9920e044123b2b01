//! Mutual HMAC-SHA256 challenge-response (Python 3.12's protocol).
//!
//! # Design
//!
//! Each side proves that it knows the key without sending it: one side
//! delivers a challenge, the other answers it, then the roles swap
//! ([`Listener`](super::Listener) delivers first, the client answers
//! first). The messages are those of CPython 3.12+
//! (`multiprocessing.connection.deliver_challenge` / `answer_challenge`):
//!
//! ```text
//! deliverer -> answerer   "#CHALLENGE#" + "{sha256}" + 40 random bytes
//! answerer  -> deliverer  "{sha256}" + HMAC-SHA256(key, "{sha256}" + the 40 bytes)
//! deliverer -> answerer   "#WELCOME#" or "#FAILURE#"
//! ```
//!
//! The HMAC covers the `{sha256}` prefix, so a peer cannot downgrade the
//! digest. Only SHA-256 is spoken: Python's legacy HMAC-MD5 and its other
//! digests are refused with a clear error. The framing is this crate's
//! (a Python process could not talk to a `Connection` anyway).
//!
//! Until the handshake succeeds the peer is untrusted, so every message is
//! a raw byte message (nothing is deserialised), at most
//! [`MESSAGE_MAX`] bytes (a longer one is a [`ErrorKind::Protocol`] error
//! before any of it is buffered), descriptors it attaches are closed, and
//! the whole handshake has one deadline: a silent or slow peer costs at most
//! that long. Digests are compared in constant time (`hmac`'s
//! `verify_slice`).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Connection;
use crate::{
    error::channel::{RecvFailure, SendError},
    error::{Error, ErrorKind, Result},
    sys,
};

/// The longest message accepted during the handshake (Python's
/// `recv_bytes(256)`).
pub(crate) const MESSAGE_MAX: usize = 256;
/// How long a handshake may take unless configured otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const DIGEST: &[u8] = b"{sha256}";
/// Random bytes in a challenge (Python's `MESSAGE_LENGTH`).
const NONCE_LEN: usize = 40;
/// Digest names Python 3.12 accepts, to tell "unsupported" from "garbage".
const PYTHON_DIGESTS: [&[u8]; 5] = [b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384"];
/// Python's legacy (pre-3.12) challenge and response lengths.
const LEGACY_LENGTHS: [usize; 2] = [20, 16];

/// One handshake's deadline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Handshake {
    deadline: Instant,
    timeout: Duration,
}

impl Handshake {
    /// A handshake that must be over `timeout` from now.
    pub(crate) fn new(timeout: Duration) -> Handshake {
        Handshake {
            deadline: super::deadline(timeout),
            timeout,
        }
    }

    /// The listener's side: challenge the client, then answer its challenge.
    #[cfg(test)]
    pub(crate) fn accept(self, conn: &Connection, key: &[u8]) -> Result<()> {
        let message = send_challenge(conn)?;
        check_response(conn, key, &message, &self.recv(conn, RESPONSE)?)?;
        send_answer(conn, key, &self.recv(conn, CHALLENGE_WHAT)?)?;
        check_verdict(&self.recv(conn, VERDICT)?)
    }

    /// The client's side: answer the listener's challenge, then challenge it.
    pub(crate) fn connect(self, conn: &Connection, key: &[u8]) -> Result<()> {
        send_answer(conn, key, &self.recv(conn, CHALLENGE_WHAT)?)?;
        check_verdict(&self.recv(conn, VERDICT)?)?;
        let message = send_challenge(conn)?;
        check_response(conn, key, &message, &self.recv(conn, RESPONSE)?)
    }

    /// The next message, at most [`MESSAGE_MAX`] bytes, before the deadline.
    fn recv(self, conn: &Connection, what: &str) -> Result<Vec<u8>> {
        match recv_until(conn, Some(self.deadline), what)? {
            Some(bytes) => Ok(bytes),
            None => Err(timed_out(what, self.timeout)),
        }
    }
}

const RESPONSE: &str = "a response to the authentication challenge";
const CHALLENGE_WHAT: &str = "an authentication challenge";
const VERDICT: &str = "the verdict on the authentication response";

/// Where the listener's side of a handshake stands (see [`Accepting`]).
#[derive(Debug)]
enum Step {
    /// The challenge is sent; the peer's response is awaited.
    Response([u8; DIGEST.len() + NONCE_LEN]),
    /// The peer passed; its own challenge is awaited.
    Challenge,
    /// The answer is sent; the peer's verdict is awaited.
    Verdict,
    /// Both sides proved they know the key.
    Done,
}

/// The listener's side of a handshake as a state machine that never
/// waits: [`advance`](Self::advance) consumes whatever messages have
/// arrived and sends the replies, so that one thread can drive many
/// handshakes with one `poll`. The messages and checks are those of
/// [`Handshake`]; replies are at most a few dozen bytes on a fresh socket,
/// so they fit its send buffer and their sends do not wait either.
#[derive(Debug)]
pub(crate) struct Accepting {
    step: Step,
    deadline: Instant,
    timeout: Duration,
}

impl Accepting {
    /// Sends the challenge; the handshake must be over `timeout` from now.
    pub(crate) fn start(conn: &Connection, timeout: Duration) -> Result<Accepting> {
        let deadline = super::deadline(timeout);
        Ok(Accepting {
            step: Step::Response(send_challenge(conn)?),
            deadline,
            timeout,
        })
    }

    /// The moment this handshake fails unless it is over.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Goes as far as the messages already received allow, without
    /// waiting; `Ok(true)` once done. Past the deadline, a handshake that
    /// is not done fails with a [`ErrorKind::Timeout`] error.
    pub(crate) fn advance(&mut self, conn: &Connection, key: &[u8]) -> Result<bool> {
        loop {
            let what = match self.step {
                Step::Done => return Ok(true),
                Step::Response(_) => RESPONSE,
                Step::Challenge => CHALLENGE_WHAT,
                Step::Verdict => VERDICT,
            };
            let Some(message) = recv_until(conn, Some(Instant::now()), what)? else {
                if Instant::now() >= self.deadline {
                    return Err(timed_out(what, self.timeout));
                }
                return Ok(false);
            };
            self.step = match &self.step {
                Step::Response(challenge) => {
                    check_response(conn, key, challenge, &message)?;
                    Step::Challenge
                }
                Step::Challenge => {
                    send_answer(conn, key, &message)?;
                    Step::Verdict
                }
                Step::Verdict => {
                    check_verdict(&message)?;
                    Step::Done
                }
                Step::Done => unreachable!("returned above"),
            };
        }
    }
}

/// Sends a fresh challenge; returns the part the response must cover.
fn send_challenge(conn: &Connection) -> Result<[u8; DIGEST.len() + NONCE_LEN]> {
    let mut message = [0u8; DIGEST.len() + NONCE_LEN];
    message[..DIGEST.len()].copy_from_slice(DIGEST);
    sys::random_bytes(&mut message[DIGEST.len()..])
        .map_err(|e| Error::io("failed to make an authentication challenge", e))?;
    send(conn, &[CHALLENGE, &message[..]].concat())?;
    Ok(message)
}

/// Checks the peer's response to our challenge `message` and tells it the
/// verdict.
fn check_response(conn: &Connection, key: &[u8], message: &[u8], response: &[u8]) -> Result<()> {
    match verify(key, message, response) {
        Ok(()) => send(conn, WELCOME),
        Err(e) => {
            // Tell the peer why it is dropped, as Python does; if it is
            // gone already, the failed check is still the error to report.
            let _ = conn.send_bytes(FAILURE);
            Err(e)
        }
    }
}

/// Answers the peer's `challenge`.
fn send_answer(conn: &Connection, key: &[u8], challenge: &[u8]) -> Result<()> {
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(auth(format!(
            "expected an authentication challenge, got a {}-byte message that is not one \
             (does the peer use an authentication key?)",
            challenge.len()
        )));
    };
    if !message.starts_with(DIGEST) {
        return Err(auth(match digest_name(message) {
            Some(name) => format!("the authentication challenge asks for {name}; only sha256 is supported"),
            None if LEGACY_LENGTHS.contains(&message.len()) => {
                "the authentication challenge is a legacy HMAC-MD5 one; only sha256 is supported".into()
            }
            None => "the authentication challenge names no digest".into(),
        }));
    }
    if message.len() < DIGEST.len() + LEGACY_LENGTHS[0] {
        return Err(auth(format!(
            "the authentication challenge is too short ({} bytes)",
            message.len()
        )));
    }
    send(
        conn,
        &[DIGEST, &hmac(key, message).finalize().into_bytes()[..]].concat(),
    )
}

/// Checks the peer's verdict on our answer.
fn check_verdict(verdict: &[u8]) -> Result<()> {
    if verdict != WELCOME {
        return Err(auth(
            "digest sent was rejected (the peer has a different authentication key)",
        ));
    }
    Ok(())
}

/// The next message, at most [`MESSAGE_MAX`] bytes; `None` when none
/// arrived before `deadline`.
fn recv_until(conn: &Connection, deadline: Option<Instant>, what: &str) -> Result<Option<Vec<u8>>> {
    match conn.recv_message(deadline, Some(MESSAGE_MAX)) {
        // Descriptors from a peer that is not authenticated are closed.
        Ok((bytes, _fds)) => Ok(Some(bytes)),
        Err(RecvFailure::Timeout) => Ok(None),
        Err(RecvFailure::Disconnected) => Err(closed()),
        Err(RecvFailure::Failed(e)) if e.kind() == ErrorKind::Protocol => Err(Error::new(
            ErrorKind::Protocol,
            format!("the peer sent something other than {what}"),
        )
        .with_source(e)),
        Err(RecvFailure::Failed(e)) => Err(e),
    }
}

fn timed_out(what: &str, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("timed out waiting for {what} from the peer (the authentication deadline is {timeout:?})"),
    )
}

fn send(conn: &Connection, bytes: &[u8]) -> Result<()> {
    match conn.send_bytes(bytes) {
        Ok(()) => Ok(()),
        Err(SendError::Disconnected(_)) => Err(closed()),
        Err(SendError::Failed(_, e)) => Err(e),
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac
}

/// Checks `response` against the challenge `message` we sent.
fn verify(key: &[u8], message: &[u8], response: &[u8]) -> Result<()> {
    let Some(tag) = response.strip_prefix(DIGEST) else {
        return Err(auth(match digest_name(response) {
            Some(name) => format!("the authentication response uses {name}; only sha256 is supported"),
            None if LEGACY_LENGTHS.contains(&response.len()) => {
                "the authentication response is a legacy HMAC-MD5 one; only sha256 is supported".into()
            }
            None => "the response to the authentication challenge is not a digest \
                     (does the peer use an authentication key?)"
                .into(),
        }));
    };
    hmac(key, message)
        .verify_slice(tag)
        .map_err(|_| auth("digest received was wrong (the peer has a different authentication key)"))
}

/// The name in a `{name}` prefix, if it is one of Python's digests.
fn digest_name(message: &[u8]) -> Option<&str> {
    let rest = message.strip_prefix(b"{")?;
    let end = rest.iter().take(9).position(|&b| b == b'}')?;
    let name = &rest[..end];
    PYTHON_DIGESTS
        .contains(&name)
        .then(|| std::str::from_utf8(name).expect("digest names are ASCII"))
}

fn auth(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Authentication, message)
}

fn closed() -> Error {
    auth("the peer closed the connection during authentication")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Digests computed by CPython:
    /// `hmac.new(key, b'{sha256}' + bytes(range(40)), 'sha256').hexdigest()`.
    #[test]
    fn digests_match_python() {
        let message: Vec<u8> = [DIGEST, &(0..40).collect::<Vec<u8>>()].concat();
        for (key, expected) in [
            (
                &b"secret key"[..],
                "de660527caa52c2d8313422ff6496f5aa46b4ddfca5f20b8da5748f901d3dd5b",
            ),
            (b"", "d18b190a737f779d3125c4a2dfddcebf933e2f2713bc92fbe386ca25df9fd7af"),
            (
                &[b'k'; 100][..],
                "92a28f957d705592e88ca4ee0f82e4b409c0458d65e1d7d224d9e27f259b7007",
            ),
        ] {
            assert_eq!(hex(&hmac(key, &message).finalize().into_bytes()), expected);
            let response = [DIGEST, &hmac(key, &message).finalize().into_bytes()[..]].concat();
            verify(key, &message, &response).unwrap();
        }
    }

    #[test]
    fn bad_responses_are_authentication_errors() {
        let message = [DIGEST, &[7u8; NONCE_LEN][..]].concat();
        let good = [DIGEST, &hmac(b"k", &message).finalize().into_bytes()[..]].concat();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        for (response, needle) in [
            (&flipped[..], "digest received was wrong"),
            (&good[..good.len() - 1], "digest received was wrong"),
            (b"{md5}0123456789abcdef", "uses md5"),
            (&[0u8; 16][..], "legacy"),
            (b"hello", "not a digest"),
        ] {
            let e = verify(b"k", &message, response).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Authentication);
            assert!(e.to_string().contains(needle), "{e}");
        }
        let e = verify(b"other key", &message, &good).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication);
    }

    #[test]
    fn handshake_over_a_pipe() {
        let (a, b) = super::super::pipe(true).unwrap();
        let t = std::thread::spawn(move || {
            let r = Handshake::new(Duration::from_secs(60)).connect(&b, b"key");
            (r, b)
        });
        Handshake::new(Duration::from_secs(60)).accept(&a, b"key").unwrap();
        let (r, b) = t.join().unwrap();
        r.unwrap();
        // The connection carries messages afterwards.
        b.send_bytes(b"after").unwrap();
        assert_eq!(a.recv_bytes().unwrap(), b"after");
    }

    #[test]
    fn silence_times_out() {
        let (a, _b) = super::super::pipe(true).unwrap();
        let e = Handshake::new(Duration::from_millis(50))
            .accept(&a, b"key")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    }
}
