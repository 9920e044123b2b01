//! The worker side of the pool, and the task and result messages.
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
    os::fd::RawFd,
    panic::{self, AssertUnwindSafe},
    sync::{Arc, Weak},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

use crate::{
    bootstrap::{self, Outcome},
    codec::{self, CodecError},
    connection::Connection,
    error::{Error, Result},
    registry,
    sys::{self, Fd},
    target,
};

/// An initializer named by code offsets, with its encoded argument and the
/// descriptors of the library objects in it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Init {
    pub(crate) tramp: i64,
    pub(crate) target: i64,
    pub(crate) args: Vec<u8>,
    pub(crate) fds: PassedFds,
}

impl Init {
    /// A copy for one worker, with descriptors of its own (the pool keeps
    /// the original for the replacements).
    pub(crate) fn duplicate(&self) -> Result<Init> {
        Ok(Init {
            tramp: self.tramp,
            target: self.target,
            args: self.args.clone(),
            fds: self.fds.duplicate()?,
        })
    }
}

/// Descriptors that travel with a value the library sends (a task's
/// arguments; the initializer's, inside the worker's start arguments):
/// each serialises as its index in the message's descriptor list
/// (`codec::fds`).
///
/// The parent's copies (duplicates that outlive the arguments they came
/// from) are registered like connections: a fork child that was not given
/// them (a worker started while a chunk waits, any other `Process`)
/// closes them, so that a passed connection's peer still sees the end of
/// the stream once the task is done with it.
#[derive(Debug, Default)]
pub(crate) struct PassedFds {
    fds: Vec<Fd>,
    /// Set when the descriptors are registered (see above).
    registered: Option<Arc<Registered>>,
}

/// The registration of a [`PassedFds`]; revoking needs no action of its
/// own (the registry closes the numbers in the fork child).
#[derive(Debug)]
struct Registered;

impl registry::Revoke for Registered {
    fn revoke(&self) {}
}

impl PassedFds {
    /// Duplicates of `raw` (the descriptors a value exported while it was
    /// encoded), which outlive the value.
    pub(crate) fn dup_all(raw: &[RawFd]) -> Result<PassedFds> {
        if raw.is_empty() {
            return Ok(PassedFds::default());
        }
        let fds = raw
            .iter()
            .map(|&fd| Fd::dup_raw(fd))
            .collect::<std::io::Result<Vec<Fd>>>()
            .map_err(|e| Error::io("failed to duplicate a descriptor of a pool task's argument", e))?;
        let token = Arc::new(Registered);
        for fd in &fds {
            let weak: Weak<dyn registry::Revoke> = Arc::downgrade(&token) as _;
            registry::endpoint_opened(fd.raw(), weak);
        }
        Ok(PassedFds {
            fds,
            registered: Some(token),
        })
    }

    fn duplicate(&self) -> Result<PassedFds> {
        PassedFds::dup_all(&self.raw())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.fds.len()
    }

    /// The descriptors' numbers, for sending them.
    pub(crate) fn raw(&self) -> Vec<RawFd> {
        self.fds.iter().map(Fd::raw).collect()
    }

    /// Moves `other`'s descriptors to the end of these.
    pub(crate) fn append(&mut self, mut other: PassedFds) {
        if other.fds.is_empty() {
            return;
        }
        if self.registered.is_none() {
            self.registered.clone_from(&other.registered);
        }
        // Registered under `other`'s token, which the registry only
        // upgrades: keep it alive with these.
        if let (Some(mine), Some(theirs)) = (&self.registered, &other.registered) {
            if !Arc::ptr_eq(mine, theirs) {
                for fd in &other.fds {
                    let weak: Weak<dyn registry::Revoke> = Arc::downgrade(mine) as _;
                    registry::endpoint_opened(fd.raw(), weak);
                }
            }
        }
        self.fds.append(&mut other.fds);
    }

    /// The descriptors, owned by this process whichever created them (a
    /// fork child's copy), for `codec::fds::supply`.
    pub(crate) fn into_owned(mut self) -> Vec<Fd> {
        self.unregister();
        std::mem::take(&mut self.fds)
            .into_iter()
            .map(Fd::into_endpoint)
            .collect()
    }

    fn unregister(&mut self) {
        if self.registered.take().is_some() {
            for fd in &self.fds {
                registry::endpoint_closed(fd.raw());
            }
        }
    }
}

impl Drop for PassedFds {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl Serialize for PassedFds {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut idx = Vec::with_capacity(self.fds.len());
        for fd in &self.fds {
            idx.push(codec::fds::export(fd.raw()).map_err(S::Error::custom)?);
        }
        idx.serialize(s)
    }
}

impl<'de> Deserialize<'de> for PassedFds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<PassedFds, D::Error> {
        use serde::de::Error as _;
        let idx = Vec::<u32>::deserialize(d)?;
        let mut fds = Vec::with_capacity(idx.len());
        for i in idx {
            fds.push(codec::fds::import(i).map_err(D::Error::custom)?);
        }
        Ok(PassedFds { fds, registered: None })
    }
}

/// What a worker process receives at start.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) conn: Connection,
    pub(crate) init: Option<Init>,
    pub(crate) maxtasks: Option<usize>,
}

/// How a task message carries its arguments.
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
fn task_items(msg: &[u8]) -> Option<Vec<(usize, Range<usize>)>> {
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
    CodecError(format!("its {what} panicked: {}", target::payload_text(p)))
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

/// The non-generic signature of a batch trampoline: target address, an
/// encoded `Vec<A>`, the descriptors of the library objects in it and the
/// task message's id in, the chunk's reply message out.
///
/// # Safety
/// A batch trampoline monomorphised for `fn(A) -> R` must be called only
/// with the address of a function of exactly that type.
type BatchTrampoline = unsafe fn(usize, Vec<u8>, Vec<Fd>, u64) -> Vec<u8>;

/// # Safety
/// `target` must be the address of a `fn(A) -> R` (see
/// [`BatchTrampoline`]).
#[allow(unsafe_code)]
unsafe fn batch_trampoline<A: DeserializeOwned + 'static, R: Serialize + 'static>(
    target: usize,
    args: Vec<u8>,
    fds: Vec<Fd>,
    id: u64,
) -> Vec<u8> {
    // SAFETY: per this function's contract, `target` is a `fn(A) -> R`.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    run_batch(f, args, fds, id)
}

/// The (batch trampoline, target) offsets that name `f` for a chunk sent
/// as one encoded `Vec<A>`, or `None` when `f` lies outside the main
/// executable (see [`target::offsets_of`]).
pub(crate) fn batch_offsets_of<A: DeserializeOwned + 'static, R: Serialize + 'static>(
    f: fn(A) -> R,
) -> Option<(i64, i64)> {
    let tramp = batch_trampoline::<A, R> as BatchTrampoline as usize;
    let target = f as usize;
    (target::in_same_image(tramp) && target::in_same_image(target))
        .then(|| (target::offset_of(tramp), target::offset_of(target)))
}

/// Runs a batch named by offsets from [`batch_offsets_of`].
///
/// # Safety
/// `(tramp, target)` must come from [`batch_offsets_of`] in a process
/// running the same executable file.
#[allow(unsafe_code)]
unsafe fn run_batch_offsets(tramp: i64, target: i64, args: Vec<u8>, fds: Vec<Fd>, id: u64) -> Vec<u8> {
    // SAFETY: per the contract, `tramp` is the address of a batch
    // trampoline in this very image.
    let t = unsafe { std::mem::transmute::<usize, BatchTrampoline>(target::addr_of(tramp)) };
    // SAFETY: per the contract, `target` names the `fn(A) -> R` that `t`
    // was monomorphised for.
    unsafe { t(target::addr_of(target), args, fds, id) }
}

/// Runs a batch: decode the arguments (with the descriptors `fds` of the
/// library objects among them), call `f` on each (a panic fails only its
/// task, and so does an argument that does not decode), encode the
/// results together, or one by one when a task failed or the results do
/// not encode together. Returns the reply to the task message `id`.
pub(crate) fn run_batch<A: DeserializeOwned + 'static, R: Serialize + 'static>(
    f: fn(A) -> R,
    args: Vec<u8>,
    fds: Vec<Fd>,
    id: u64,
) -> Vec<u8> {
    let items = match codec::fds::supply(fds, || decode_seq_each::<A>(&args)) {
        Ok(items) => items,
        Err(CodecError(e)) => {
            let mut out = ReplyHead::message(ReplyKind::ArgsFailed, id);
            out.extend(Outcome::failed_args(e).to_bytes());
            return out;
        }
    };
    drop(args);
    let mut results: Vec<Result<R, Outcome>> = Vec::with_capacity(items.len());
    for a in items {
        let a = match a {
            Ok(a) => a,
            Err(CodecError(e)) => {
                results.push(Err(Outcome::failed_args(e)));
                continue;
            }
        };
        bootstrap::enter_target();
        let r = panic::catch_unwind(AssertUnwindSafe(|| f(a)));
        bootstrap::leave_target();
        results.push(r.map_err(|payload| Outcome::Panic(bootstrap::take_panic(target::payload_text(&*payload)))));
    }
    if results.iter().all(Result::is_ok) {
        let values: Vec<R> = results.into_iter().filter_map(Result::ok).collect();
        let mut out = ReplyHead::message(ReplyKind::Values, id);
        if encode_seq(&values, &mut out).is_ok() {
            return out;
        }
        results = values.into_iter().map(Ok).collect();
    }
    let mut out = ReplyHead::message(ReplyKind::Outcomes, id);
    for r in results {
        let outcome = match r {
            Ok(v) => {
                match panic::catch_unwind(AssertUnwindSafe(|| codec::encode(&v).map(std::borrow::Cow::into_owned))) {
                    Ok(Ok(b)) => Outcome::Value(b),
                    Ok(Err(CodecError(e))) => Outcome::failed_result(e),
                    Err(p) => Outcome::Panic(bootstrap::take_panic(target::payload_text(&*p))),
                }
            }
            Err(o) => o,
        };
        put(&mut out, &outcome.to_bytes());
    }
    out
}

/// The worker loop: run the initializer, then serve task messages until
/// the parent closes its end (or `maxtasks` chunks are done). A message
/// that is not a well-formed task message ends the worker (its parent
/// sees the end and replaces it).
pub(crate) fn worker_main(args: WorkerArgs) {
    let WorkerArgs { conn, init, maxtasks } = args;
    // Large arguments arrive in freshly allocated buffers that their task
    // drops: keep that memory for the next one.
    sys::retain_freed_memory();
    let first = match init {
        Some(i) => run_task(i.tramp, i.target, i.args, i.fds.into_owned()),
        None => Outcome::Value(Vec::new()),
    };
    let ok = matches!(first, Outcome::Value(_));
    let mut report = ReplyHead::message(ReplyKind::Init, 0);
    report.extend(first.to_bytes());
    if conn.send_bytes(&report).is_err() || !ok {
        return;
    }
    let me = sys::getpid();
    let mut done = 0usize;
    while let Ok((mut msg, fds)) = conn.recv_bytes_with_fds() {
        let Some(head) = TaskHead::decode(&msg) else {
            return;
        };
        let (tramp, target) = (head.tramp, head.target);
        let _span = crate::trace::task(done, head.id);
        let out = match head.mode {
            Mode::Large => {
                // One task whose argument is the next message.
                let Ok(data) = conn.recv_bytes() else {
                    return;
                };
                let mut out = ReplyHead::message(ReplyKind::Outcomes, head.id);
                put(&mut out, &run_task(tramp, target, data, fds).to_bytes());
                out
            }
            Mode::Batch => {
                // The arguments stay in the message's buffer (no new memory).
                msg.drain(..TaskHead::LEN);
                run_batch_task(tramp, target, msg, fds, head.id)
            }
            Mode::Each => {
                let Some(parts) = task_items(&msg) else {
                    return;
                };
                if parts.iter().map(|(n, _)| n).sum::<usize>() != fds.len() {
                    return;
                }
                let mut out = ReplyHead::message(ReplyKind::Outcomes, head.id);
                if let [(_, range)] = &parts[..] {
                    let range = range.clone();
                    msg.truncate(range.end);
                    msg.drain(..range.start);
                    put(&mut out, &run_task(tramp, target, msg, fds).to_bytes());
                } else {
                    let mut fds = fds.into_iter();
                    for (n, range) in parts {
                        let mine: Vec<Fd> = fds.by_ref().take(n).collect();
                        put(&mut out, &run_task(tramp, target, msg[range].to_vec(), mine).to_bytes());
                    }
                }
                out
            }
        };
        if sys::getpid() != me {
            // A task forked and its child returned into this loop: only the
            // worker answers its parent.
            sys::exit_now(0);
        }
        if conn.send_bytes(&out).is_err() {
            return;
        }
        done += 1;
        if maxtasks.is_some_and(|m| done >= m) {
            return;
        }
    }
}

#[allow(unsafe_code)]
fn run_batch_task(tramp: i64, target: i64, args: Vec<u8>, fds: Vec<Fd>, id: u64) -> Vec<u8> {
    // SAFETY: as in `run_task`; batch messages carry offsets from
    // `batch_offsets_of`.
    unsafe { run_batch_offsets(tramp, target, args, fds, id) }
}

#[allow(unsafe_code)]
fn run_task(tramp: i64, target: i64, args: Vec<u8>, fds: Vec<Fd>) -> Outcome {
    // SAFETY: task messages come only from the pool's parent over this
    // worker's private connection; it took both offsets from
    // `target::offsets_of`, which refuses code outside the main executable,
    // and this worker runs the same executable (spawn and forkserver check
    // its device and inode at start; fork copies the image).
    unsafe { target::run_offsets(tramp, target, args, fds) }
}
