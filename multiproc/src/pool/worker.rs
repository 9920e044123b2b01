//! The worker loop: the code a pool worker process runs, and the batch
//! trampoline that runs a `map` chunk sent as one encoded `Vec<A>`.

use std::panic::{self, AssertUnwindSafe};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{
    encode::Init,
    protocol::{self, Mode, ReplyHead, ReplyKind, TaskHead, decode_seq_each, encode_seq, put},
};
use crate::{
    child::panic::{enter_target, leave_target, payload_text, take_panic},
    codec::{self, CodecError},
    connection::Connection,
    outcome::Outcome,
    sys::{self, Fd},
    target,
};

/// What a worker process receives at start.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) conn: Connection,
    pub(crate) init: Option<Init>,
    pub(crate) maxtasks: Option<usize>,
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
        enter_target();
        let r = panic::catch_unwind(AssertUnwindSafe(|| f(a)));
        leave_target();
        results.push(r.map_err(|payload| Outcome::Panic(take_panic(payload_text(&*payload)))));
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
                    Err(p) => Outcome::Panic(take_panic(payload_text(&*p))),
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
    serve(&conn, init, maxtasks);
}

/// The worker loop over `conn` (a local worker's private connection, or a
/// remote worker's TCP connection): see [`worker_main`].
pub(crate) fn serve(conn: &Connection, init: Option<Init>, maxtasks: Option<usize>) {
    // Large arguments arrive in freshly allocated buffers that their task
    // drops: keep that memory for the next one.
    sys::retain_freed_memory();
    let first = match init {
        Some(i) => run_task(i.tramp, i.target, i.args, i.fds.into_owned()),
        None => Outcome::Value(Vec::new()),
    };
    let ok = matches!(first, Outcome::Value(_));
    if conn.send_bytes(&protocol::init_report(&first)).is_err() || !ok {
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
                protocol::outcomes_reply(head.id, [run_task(tramp, target, data, fds)])
            }
            Mode::Batch => {
                // The arguments stay in the message's buffer (no new memory).
                msg.drain(..TaskHead::LEN);
                run_batch_task(tramp, target, msg, fds, head.id)
            }
            Mode::Each => {
                let Some(parts) = protocol::task_items(&msg) else {
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
