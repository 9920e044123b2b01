//! The reference model: the wire format written independently of the
//! library, the types decoded, and `Model`, which says for every receive
//! what the library must return.

use multiproc::{Connection, ErrorKind};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

// ---------------------------------------------------------------------
// The wire format, written independently of the library

pub(super) const HEADER: usize = 16;
pub(super) const MAX_FDS: usize = 253;
pub(super) const DIRECT_MIN: usize = 64 * 1024;
pub(super) const TRUSTED_LEN: u64 = 64 << 20;

pub(super) fn header(len: u64, nfds: u16) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..2].copy_from_slice(b"mp");
    h[2] = 1;
    h[4..6].copy_from_slice(&nfds.to_le_bytes());
    h[8..].copy_from_slice(&len.to_le_bytes());
    h
}

pub(super) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = header(payload.len() as u64, 0).to_vec();
    f.extend_from_slice(payload);
    f
}

/// `(descriptors, length)` of a header the documented format accepts.
pub(super) fn parse(h: &[u8]) -> Option<(usize, u64)> {
    let nfds = u16::from_le_bytes([h[4], h[5]]) as usize;
    let ok = &h[..3] == b"mp\x01" && h[3] == 0 && h[6..8] == [0, 0] && nfds <= MAX_FDS;
    ok.then(|| (nfds, u64::from_le_bytes(h[8..16].try_into().unwrap())))
}

/// Deterministic filler, cheaper than a proptest strategy per byte.
pub(super) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------
// Types to decode into

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) enum Shape {
    Empty,
    Small(u16),
    Pair(i32, Option<u8>),
    Named { id: u64, flags: Vec<bool> },
}

/// A derived value with enum, `Option`, `Vec` and `String` fields. (The
/// reference decoder, plain postcard, takes a string's bytes from the input
/// once its length was checked, so a corrupted length is safe to decode
/// there too; the library's handling of absurd string lengths is pinned by
/// `corrupted_string_length_is_a_clean_error` and
/// `corrupted_string_length_does_not_abort`.)
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct Rec {
    pub(super) id: u32,
    pub(super) delta: i64,
    pub(super) ratio: f64,
    pub(super) letter: char,
    pub(super) name: String,
    pub(super) shape: Shape,
    pub(super) maybe: Option<Vec<Shape>>,
    pub(super) items: Vec<(u8, Option<i16>)>,
    pub(super) nested: Vec<Vec<u32>>,
    pub(super) wide: u128,
}

pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap()
}

/// What the documented codec makes of `bytes` as a `T`: postcard 1 (its
/// plain API), every byte used.
pub(super) fn reference_decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Some(v),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    U64,
    Str,
    Bytes,
    Rec,
    Conn,
}

/// A received value in comparable form: its bytes for `Vec<u8>` and
/// `String`, its encoding otherwise (floats compare by bits).
pub(super) trait Canon: DeserializeOwned + 'static {
    fn canon(self) -> Vec<u8>;
}

impl Canon for u64 {
    fn canon(self) -> Vec<u8> {
        encode(&self)
    }
}

impl Canon for String {
    fn canon(self) -> Vec<u8> {
        self.into_bytes()
    }
}

impl Canon for Vec<u8> {
    fn canon(self) -> Vec<u8> {
        self
    }
}

impl Canon for Rec {
    fn canon(self) -> Vec<u8> {
        encode(&self)
    }
}

impl Canon for Connection {
    fn canon(self) -> Vec<u8> {
        b"<a connection>".to_vec()
    }
}

/// What receiving `payload` as a `ty` must give.
pub(super) fn expected_value(ty: Ty, payload: &[u8]) -> Out {
    let v = match ty {
        Ty::U64 => reference_decode::<u64>(payload).map(Canon::canon),
        Ty::Str => std::str::from_utf8(payload).ok().map(|_| payload.to_vec()),
        Ty::Bytes => Some(payload.to_vec()),
        Ty::Rec => reference_decode::<Rec>(payload).map(Canon::canon),
        // No descriptor ever travels here: a connection cannot arrive.
        Ty::Conn => None,
    };
    v.map_or(Out::Err(ErrorKind::Deserialize), Out::Data)
}

// ---------------------------------------------------------------------
// The reference model

/// What one receive produced, or must produce.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Out {
    Data(Vec<u8>),
    /// `recv_bytes_into`: the length and the bytes written at the offset.
    Into(usize, Vec<u8>),
    /// `BufferTooShort` with the message it carries.
    TooShort(Vec<u8>),
    Err(ErrorKind),
    Ready(bool),
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |b: &[u8]| {
            format!(
                "{} bytes {:02x?}{}",
                b.len(),
                &b[..b.len().min(24)],
                if b.len() > 24 { "…" } else { "" }
            )
        };
        match self {
            Out::Data(b) => write!(f, "Data({})", short(b)),
            Out::Into(n, b) => write!(f, "Into({n}, {})", short(b)),
            Out::TooShort(b) => write!(f, "TooShort({})", short(b)),
            Out::Err(k) => write!(f, "Err({k:?})"),
            Out::Ready(r) => write!(f, "Ready({r})"),
        }
    }
}

/// The next receive, as the framing rules decide it.
pub(super) enum Next {
    Msg {
        start: usize,
        end: usize,
    },
    Protocol,
    Disconnected,
    /// A receive would wait (the writer is still open).
    Pending,
}

/// The receiving side of a stream, read by the documented rules.
pub(super) struct Model<'a> {
    pub(super) stream: &'a [u8],
    pub(super) pos: usize,
    pub(super) eof: bool,
    pub(super) broken: bool,
}

impl Model<'_> {
    pub(super) fn next(&self, max_len: Option<usize>) -> Next {
        if self.broken {
            return Next::Protocol;
        }
        let rem = &self.stream[self.pos..];
        if rem.len() >= HEADER {
            let Some((nfds, len)) = parse(rem) else {
                return Next::Protocol;
            };
            if max_len.is_some_and(|m| len > m as u64) {
                return Next::Protocol;
            }
            if (rem.len() - HEADER) as u64 >= len {
                // No descriptor is ever sent: a frame announcing some is
                // corrupted.
                if nfds > 0 {
                    return Next::Protocol;
                }
                let start = self.pos + HEADER;
                return Next::Msg {
                    start,
                    end: start + len as usize,
                };
            }
        }
        match (self.eof, rem.is_empty()) {
            (true, true) => Next::Disconnected,
            (true, false) => Next::Protocol,
            (false, _) => Next::Pending,
        }
    }

    /// `poll`: a receive would not wait.
    pub(super) fn ready(&self) -> bool {
        !matches!(self.next(None), Next::Pending)
    }

    /// Applies a receive's effect; returns the message, if one came.
    pub(super) fn take(&mut self, next: &Next) -> Option<&[u8]> {
        match *next {
            Next::Msg { start, end } => {
                self.pos = end;
                Some(&self.stream[start..end])
            }
            Next::Protocol => {
                self.broken = true;
                None
            }
            Next::Disconnected | Next::Pending => None,
        }
    }
}

/// One call on the receiving end.
#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    /// `recv_bytes_timeout`
    Bytes,
    /// `recv_bytes` (blocking)
    Blocking,
    /// `recv_timeout::<T>`
    Value(Ty),
    /// `recv::<T>` (blocking)
    BlockingValue(Ty),
    /// `try_recv::<T>`
    Try(Ty),
    /// `recv_bytes_max` (blocking)
    Max(usize),
    /// `recv_bytes_into` (blocking)
    Into { len: usize, offset: usize },
    /// `poll`
    Poll,
    /// `multiproc::wait` on this connection alone
    Wait,
}

impl Op {
    pub(super) fn blocking(self) -> bool {
        matches!(self, Op::Blocking | Op::BlockingValue(_) | Op::Max(_) | Op::Into { .. })
    }
}

/// How the bytes reach the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Everything was in the socket and the writer closed before the first
    /// receive: every result is determined.
    Closed,
    /// A thread is still writing, then closes: a `try_recv` may find
    /// nothing yet.
    Streaming,
    /// Everything is in the socket and the writer stays open: a receive
    /// that needs more times out.
    Open,
}

/// How a case's bytes are written.
#[derive(Clone, Copy, Debug)]
pub(super) enum Delivery {
    /// All at once, then the writer closes (a thread finishes the job if
    /// the socket cannot take it all).
    Closed,
    /// All at once (what the socket takes), the writer staying open.
    Open,
    /// By a thread, in pieces of this size, then the writer closes.
    Streaming(usize),
}

pub(super) fn out_of(r: Result<Vec<u8>, ErrorKind>) -> Out {
    r.map_or_else(Out::Err, Out::Data)
}

pub(super) fn outcome_of(next: &Next) -> Out {
    match next {
        Next::Msg { .. } => unreachable!("a message is taken"),
        Next::Protocol => Out::Err(ErrorKind::Protocol),
        Next::Disconnected => Out::Err(ErrorKind::Disconnected),
        Next::Pending => Out::Err(ErrorKind::Timeout),
    }
}
