//! The worker side of the pool, and the task and result messages.
//!
//! Task message (parent → worker): trampoline offset (i64 LE), target
//! offset (i64 LE), a mode byte, then either (mode 0) per task its encoded
//! argument as length (u64 LE) + bytes, or (mode 1, a `map` chunk) the
//! encoded `Vec<A>` for a batch trampoline, or (mode 2, one large
//! argument) nothing: the argument is the next message. Result message (worker →
//! parent): a tag byte, then (0) per task, in order, the task's
//! [`Outcome`] bytes as length (u64 LE) + bytes; (1) the encoded `Vec<R>`
//! when every task of a batch returned and the results encode together;
//! (2) one outcome for every task of the chunk (its arguments did not
//! decode). The
//! first message a worker sends is the outcome of its initializer (an empty
//! value when there is none).

use std::panic::{self, AssertUnwindSafe};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    bootstrap::{self, Outcome},
    codec::{self, CodecError},
    connection::Connection,
    sys, target,
};

/// An initializer named by code offsets, with its encoded argument.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Init {
    pub(crate) tramp: i64,
    pub(crate) target: i64,
    pub(crate) args: Vec<u8>,
}

/// What a worker process receives at start.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) conn: Connection,
    pub(crate) init: Option<Init>,
    pub(crate) maxtasks: Option<usize>,
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

/// The header of a task message.
pub(crate) fn task_header(tramp: i64, target: i64, mode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&tramp.to_le_bytes());
    out.extend_from_slice(&target.to_le_bytes());
    out.push(mode);
    out
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

/// Runs a batch: decode the arguments, call `f` on each (a panic fails
/// only its task, and so does an argument that does not decode), encode
/// the results together, or one by one when a task failed or the results
/// do not encode together.
pub(crate) fn run_batch<A: DeserializeOwned + 'static, R: Serialize + 'static>(
    f: fn(A) -> R,
    args: Vec<u8>,
) -> Vec<u8> {
    let items = match decode_seq_each::<A>(&args) {
        Ok(items) => items,
        Err(CodecError(e)) => {
            let mut out = vec![2];
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
        let mut out = vec![1];
        if encode_seq(&values, &mut out).is_ok() {
            return out;
        }
        results = values.into_iter().map(Ok).collect();
    }
    let mut out = vec![0];
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
/// the parent closes its end (or `maxtasks` chunks are done).
pub(crate) fn worker_main(args: WorkerArgs) {
    let WorkerArgs { conn, init, maxtasks } = args;
    // Large arguments arrive in freshly allocated buffers that their task
    // drops: keep that memory for the next one.
    sys::retain_freed_memory();
    let first = match init {
        Some(i) => run_task(i.tramp, i.target, i.args),
        None => Outcome::Value(Vec::new()),
    };
    let ok = matches!(first, Outcome::Value(_));
    if conn.send_bytes(&first.to_bytes()).is_err() || !ok {
        return;
    }
    let mut done = 0usize;
    while let Ok(msg) = conn.recv_bytes() {
        let Some((head, tasks)) = msg.split_first_chunk::<17>() else {
            return;
        };
        let tramp = i64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        let target = i64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
        let batch = head[16] == 1;
        let Some(parts) = (head[16] == 0).then(|| items(tasks)).map_or(Some(Vec::new()), |p| p) else {
            return;
        };
        let out = if head[16] == 2 {
            // One task whose argument is the next message.
            let Ok(data) = conn.recv_bytes() else {
                return;
            };
            let mut out = vec![0];
            put(&mut out, &run_task(tramp, target, data).to_bytes());
            out
        } else if batch {
            // The arguments stay in the message's buffer (no new memory).
            let mut msg = msg;
            msg.drain(..17);
            run_batch_task(tramp, target, msg)
        } else if parts.len() == 1 {
            let mut msg = msg;
            msg.drain(..17 + 8);
            let mut out = vec![0];
            put(&mut out, &run_task(tramp, target, msg).to_bytes());
            out
        } else {
            let mut out = vec![0];
            for args in parts {
                put(&mut out, &run_task(tramp, target, args.to_vec()).to_bytes());
            }
            out
        };
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
fn run_batch_task(tramp: i64, target: i64, args: Vec<u8>) -> Vec<u8> {
    // SAFETY: as in `run_task`; mode 1 messages carry offsets from
    // `target::batch_offsets_of`.
    unsafe { target::run_batch_offsets(tramp, target, args) }
}

#[allow(unsafe_code)]
fn run_task(tramp: i64, target: i64, args: Vec<u8>) -> Outcome {
    // SAFETY: task messages come only from the pool's parent over this
    // worker's private connection; it took both offsets from
    // `target::offsets_of`, which refuses code outside the main executable,
    // and this worker runs the same executable (spawn and forkserver check
    // its device and inode at start; fork copies the image).
    unsafe { target::run_offsets(tramp, target, args) }
}
