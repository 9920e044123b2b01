//! The pool's wire protocol: task and reply messages, encoded and
//! decoded here for both the parent and the worker.
//!
//! Every message between the parent and a worker starts with a header
//! defined here, encoded and decoded only by [`TaskHead`] and
//! [`ReplyHead`]:
//!
//! ```text
//! task  (parent → worker): "mpt" mode(u8) id(u64 LE) tramp(i64 LE) target(i64 LE)
//! reply (worker → parent): "mpr" kind(u8) id(u64 LE)
//! ```
//!
//! The `id` of a task message names that sending of the chunk (the
//! parent numbers every send afresh, from a random start); a reply names
//! the task message it answers, or 0 for the first message, the report of
//! the initializer ([`ReplyKind::Init`]). A worker runs its chunks in
//! order, so the parent takes a reply only when it names the oldest chunk
//! the worker holds; any other (an unknown or replayed id, a reply out of
//! order, of the wrong kind, an undecodable header or body, such as a
//! frame that task code wrote onto the worker's socket) is a protocol
//! violation: the tasks that worker held fail with
//! [`ErrorKind::Protocol`](crate::ErrorKind::Protocol) and the worker is
//! replaced. A result is only ever delivered to the task it names.
//!
//! Task bodies: [`Mode::Each`]: per task, the count of descriptors its
//! argument carries (u32 LE), then its encoded argument as length (u64
//! LE) + bytes; [`Mode::Batch`] (a `map` chunk): the encoded `Vec<A>` for a
//! batch trampoline; [`Mode::Large`] (one large argument): nothing, the
//! argument is the next message. The descriptors of the library objects
//! among a chunk's arguments ride on its task message (`SCM_RIGHTS`), in
//! the order of the tasks. Reply bodies: [`ReplyKind::Outcomes`]: per task,
//! in order, its [`Outcome`] bytes as length (u64 LE) + bytes;
//! [`ReplyKind::Values`]: the encoded `Vec<R>` when every task of a batch
//! returned and the results encode together; [`ReplyKind::ArgsFailed`]:
//! one outcome for every task of the chunk (its arguments did not decode);
//! [`ReplyKind::Init`]: the initializer's outcome (an empty value when
//! there is none).

use std::{
    ops::Range,
    panic::{self, AssertUnwindSafe},
};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    child::panic::payload_text,
    codec::{self, CodecError},
    error::{Error, ErrorKind},
    outcome::{Failure, Outcome, OutcomeRef},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Each task's argument, with its descriptor count.
    Each = 0,
    /// One encoded `Vec<A>` for a batch trampoline.
    Batch = 1,
    /// One task, whose argument is the next message.
    Large = 2,
}

/// The header of a task message (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskHead {
    pub(crate) mode: Mode,
    pub(crate) id: u64,
    pub(crate) tramp: i64,
    pub(crate) target: i64,
}

impl TaskHead {
    const MAGIC: [u8; 3] = *b"mpt";
    /// Its length on the wire.
    pub(crate) const LEN: usize = 28;

    /// A new task message holding just this header, with id 0: the parent
    /// names the message when it sends it ([`TaskHead::set_id`]).
    pub(crate) fn message(tramp: i64, target: i64, mode: Mode) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&Self::MAGIC);
        out.push(mode as u8);
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&tramp.to_le_bytes());
        out.extend_from_slice(&target.to_le_bytes());
        out
    }

    /// Names the task message `msg` (made by [`TaskHead::message`]).
    pub(crate) fn set_id(msg: &mut [u8], id: u64) {
        msg[4..12].copy_from_slice(&id.to_le_bytes());
    }

    /// The header of `msg`; `None` if it is not a task message.
    pub(crate) fn decode(msg: &[u8]) -> Option<TaskHead> {
        let h = msg.get(..Self::LEN)?;
        if h[..3] != Self::MAGIC {
            return None;
        }
        let mode = match h[3] {
            0 => Mode::Each,
            1 => Mode::Batch,
            2 => Mode::Large,
            _ => return None,
        };
        let word = |at: usize| h[at..at + 8].try_into().ok().map(u64::from_le_bytes);
        Some(TaskHead {
            mode,
            id: word(4)?,
            tramp: word(12)? as i64,
            target: word(20)? as i64,
        })
    }
}

/// What a reply carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    /// The initializer's outcome (the worker's first message).
    Init = 0,
    /// One outcome per task, in order.
    Outcomes = 1,
    /// The encoded `Vec<R>` of a batch whose tasks all returned.
    Values = 2,
    /// One outcome for every task (the chunk's arguments did not decode).
    ArgsFailed = 3,
}

/// The header of a reply (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplyHead {
    pub(crate) kind: ReplyKind,
    pub(crate) id: u64,
}

impl ReplyHead {
    const MAGIC: [u8; 3] = *b"mpr";
    /// Its length on the wire.
    pub(crate) const LEN: usize = 12;

    /// A new reply holding just this header.
    pub(crate) fn message(kind: ReplyKind, id: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&Self::MAGIC);
        out.push(kind as u8);
        out.extend_from_slice(&id.to_le_bytes());
        out
    }

    /// The header and the body of `msg`; `None` if it is not a reply.
    pub(crate) fn decode(msg: &[u8]) -> Option<(ReplyHead, &[u8])> {
        let (h, body) = msg.split_first_chunk::<{ Self::LEN }>()?;
        if h[..3] != Self::MAGIC {
            return None;
        }
        let kind = match h[3] {
            0 => ReplyKind::Init,
            1 => ReplyKind::Outcomes,
            2 => ReplyKind::Values,
            3 => ReplyKind::ArgsFailed,
            _ => return None,
        };
        let id = u64::from_le_bytes(h[4..12].try_into().ok()?);
        Some((ReplyHead { kind, id }, body))
    }
}

/// Appends `bytes` with its length prefix.
pub(crate) fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Splits a sequence of length-prefixed items; `None` if malformed.
pub(crate) fn items(mut buf: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (len, rest) = buf.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        out.push(&rest[..len]);
        buf = &rest[len..];
    }
    Some(out)
}

/// Begins a [`Mode::Each`] task's argument at the end of `out`: room for
/// the count of descriptors it carries and its length, which
/// [`end_task_item`] fills in once the caller has written its bytes.
/// Returns where the bytes start.
pub(crate) fn start_task_item(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; 12]);
    out.len()
}

/// Finishes the argument begun at `at` (by [`start_task_item`]): it
/// carries `nfds` descriptors.
pub(crate) fn end_task_item(out: &mut [u8], at: usize, nfds: usize) {
    let len = (out.len() - at) as u64;
    out[at - 12..at - 8].copy_from_slice(&(nfds as u32).to_le_bytes());
    out[at - 8..at].copy_from_slice(&len.to_le_bytes());
}

/// Takes back the argument begun at `at` (it failed to encode).
pub(crate) fn drop_task_item(out: &mut Vec<u8>, at: usize) {
    out.truncate(at - 12);
}

/// The arguments of a [`Mode::Each`] task message: for each task, its
/// descriptor count and where its bytes lie in `msg`; `None` if malformed.
pub(crate) fn task_items(msg: &[u8]) -> Option<Vec<(usize, Range<usize>)>> {
    let mut at = TaskHead::LEN;
    let mut out = Vec::new();
    while at < msg.len() {
        let (nfds, rest) = msg.get(at..)?.split_first_chunk::<4>()?;
        let (len, rest) = rest.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let start = at + 12;
        out.push((u32::from_le_bytes(*nfds) as usize, start..start + len));
        at = start + len;
    }
    Some(out)
}

/// A panic of the caller's `Serialize`/`Deserialize`, as a codec error.
fn codec_panic(what: &str, p: &(dyn std::any::Any + Send)) -> CodecError {
    CodecError(format!("its {what} panicked: {}", payload_text(p)))
}

/// Encodes a batch (a `map` chunk's arguments, or its results) at the end
/// of `out`: a sequence of serde values as an indexed sequence (see
/// `codec::encode_indexed`), so that one that does not decode fails
/// alone; numbers and bytes as their raw `Vec`. A panic of `T`'s
/// `Serialize` is an error. On an error, `out` is left as it was.
pub(crate) fn encode_seq<T: Serialize + 'static>(items: &Vec<T>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        if codec::by_serde::<Vec<T>>() {
            codec::encode_indexed(items, out)
        } else {
            codec::encode_into(items, out)
        }
    }))
    .unwrap_or_else(|p| Err(codec_panic("Serialize", &*p)));
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Decodes a batch [`encode_seq`] made, whole. A panic of `T`'s
/// `Deserialize` is an error.
pub(crate) fn decode_seq<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<Vec<T>, CodecError> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        if codec::by_serde::<Vec<T>>() {
            codec::decode_indexed::<T>(bytes)
        } else {
            codec::decode::<Vec<T>>(bytes)
        }
    }))
    .unwrap_or_else(|p| Err(codec_panic("Deserialize", &*p)))
}

/// Decodes a batch [`encode_seq`] made: whole when it can, else, for
/// serde values, each from its own bytes (an error for each one that does
/// not decode); the error of the whole when even that cannot be done.
pub(crate) fn decode_seq_each<T: DeserializeOwned + 'static>(
    bytes: &[u8],
) -> Result<Vec<Result<T, CodecError>>, CodecError> {
    if codec::by_serde::<Vec<T>>() {
        // Each value from its own bytes, in one pass.
        let parts = codec::indexed_elements(bytes)?;
        return Ok(parts.into_iter().map(decode_one_caught).collect());
    }
    decode_seq::<T>(bytes).map(|values| values.into_iter().map(Ok).collect())
}

fn decode_one_caught<T: DeserializeOwned>(part: &[u8]) -> Result<T, CodecError> {
    panic::catch_unwind(AssertUnwindSafe(|| codec::decode_element::<T>(part)))
        .unwrap_or_else(|p| Err(codec_panic("Deserialize", &*p)))
}

/// The per-value half of [`decode_seq_each`], once the whole failed with
/// `e`.
pub(crate) fn decode_seq_elements<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    e: CodecError,
) -> Result<Vec<Result<T, CodecError>>, CodecError> {
    if !codec::by_serde::<Vec<T>>() {
        return Err(e);
    }
    let Ok(parts) = codec::indexed_elements(bytes) else {
        return Err(e);
    };
    Ok(parts.into_iter().map(decode_one_caught).collect())
}

/// What a reply to a task message carries, typed (see the module docs).
#[derive(Debug)]
pub(crate) enum ReplyBody<'a> {
    /// One outcome per task, in order.
    Outcomes(Vec<&'a [u8]>),
    /// The encoded `Vec<R>` of a batch whose tasks all returned.
    Values(&'a [u8]),
    /// One outcome for every task of the chunk (its arguments did not
    /// decode).
    ArgsFailed(&'a [u8]),
}

impl<'a> ReplyBody<'a> {
    /// The body of a reply of `kind` to a chunk of `tasks` tasks sent in
    /// `mode`; `None` if it cannot answer such a chunk (a protocol
    /// violation): only a batch is answered with values, or with one
    /// outcome for all, and an outcome list names every task.
    pub(crate) fn parse(kind: ReplyKind, body: &'a [u8], mode: Mode, tasks: usize) -> Option<ReplyBody<'a>> {
        match kind {
            ReplyKind::Outcomes => items(body)
                .filter(|items| items.len() == tasks)
                .map(ReplyBody::Outcomes),
            ReplyKind::Values if mode == Mode::Batch => Some(ReplyBody::Values(body)),
            ReplyKind::ArgsFailed if mode == Mode::Batch => Some(ReplyBody::ArgsFailed(body)),
            _ => None,
        }
    }
}

/// Whether a task's outcome bytes say it returned a value (not a panic
/// nor a codec failure).
pub(crate) fn returned(outcome: &[u8]) -> bool {
    matches!(Outcome::from_bytes(outcome), Ok(OutcomeRef::Value(_)))
}

/// The initializer's report (the body of a [`ReplyKind::Init`] reply), as
/// a result; the caller names the worker in the error.
pub(crate) fn init_result(outcome: &[u8]) -> std::result::Result<(), Error> {
    match Outcome::from_bytes(outcome) {
        Ok(OutcomeRef::Value(_)) => Ok(()),
        Ok(OutcomeRef::Panic(p)) => {
            Err(Error::new(ErrorKind::ChildPanicked, "the pool's initializer panicked").with_panic(p))
        }
        Ok(OutcomeRef::Failed(Failure::DecodeArgs, m)) => Err(Error::new(
            ErrorKind::Deserialize,
            format!("the pool's initializer could not deserialize its arguments: {m}"),
        )),
        Ok(OutcomeRef::Failed(_, m)) => Err(Error::new(
            ErrorKind::Bootstrap,
            format!("the pool's initializer failed: {m}"),
        )),
        Err(m) => Err(Error::new(
            ErrorKind::Protocol,
            format!("malformed initializer outcome: {m}"),
        )),
    }
}

/// A task's outcome bytes as its value (still encoded) or its error.
pub(crate) fn task_result(outcome: &[u8]) -> std::result::Result<&[u8], Error> {
    match Outcome::from_bytes(outcome) {
        Ok(OutcomeRef::Value(v)) => Ok(v),
        Ok(OutcomeRef::Panic(p)) => Err(Error::new(ErrorKind::ChildPanicked, "the task panicked").with_panic(p)),
        Ok(OutcomeRef::Failed(Failure::DecodeArgs, m)) => Err(Error::new(
            ErrorKind::Deserialize,
            format!("the worker failed to deserialize the task's argument: {m}"),
        )),
        Ok(OutcomeRef::Failed(Failure::EncodeResult, m)) => Err(Error::new(
            ErrorKind::Serialize,
            format!("the worker failed to serialize the task's result: {m}"),
        )),
        Ok(OutcomeRef::Failed(Failure::Bootstrap, m)) => Err(Error::new(ErrorKind::Bootstrap, m)),
        Err(m) => Err(Error::new(ErrorKind::Protocol, format!("malformed task outcome: {m}"))),
    }
}

/// The reply to task message `id` of a worker that ran each task on its
/// own: one outcome per task, in order.
pub(crate) fn outcomes_reply(id: u64, outcomes: impl IntoIterator<Item = Outcome>) -> Vec<u8> {
    let mut out = ReplyHead::message(ReplyKind::Outcomes, id);
    for o in outcomes {
        put(&mut out, &o.to_bytes());
    }
    out
}

/// The worker's first message: its initializer's outcome.
pub(crate) fn init_report(outcome: &Outcome) -> Vec<u8> {
    let mut report = ReplyHead::message(ReplyKind::Init, 0);
    report.extend(outcome.to_bytes());
    report
}
