//! The worker side of the pool, and the task and result messages.
//!
//! Task message (parent → worker): trampoline offset (i64 LE), target
//! offset (i64 LE), task count (u32 LE), then per task its encoded argument
//! as length (u32 LE) + bytes. Result message (worker → parent): per task,
//! in order, the task's [`Outcome`] bytes as length (u32 LE) + bytes. The
//! first message a worker sends is the outcome of its initializer (an empty
//! value when there is none).

use serde::{Deserialize, Serialize};

use crate::{bootstrap::Outcome, connection::Connection, target};

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
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Splits a sequence of length-prefixed items; `None` if malformed.
pub(crate) fn items(mut buf: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (len, rest) = buf.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        out.push(&rest[..len]);
        buf = &rest[len..];
    }
    Some(out)
}

/// The header of a task message.
pub(crate) fn task_header(tramp: i64, target: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&tramp.to_le_bytes());
    out.extend_from_slice(&target.to_le_bytes());
    out
}

/// The worker loop: run the initializer, then serve task messages until
/// the parent closes its end (or `maxtasks` chunks are done).
pub(crate) fn worker_main(args: WorkerArgs) {
    let WorkerArgs { conn, init, maxtasks } = args;
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
        let Some((head, tasks)) = msg.split_first_chunk::<16>() else {
            return;
        };
        let tramp = i64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        let target = i64::from_le_bytes(head[8..].try_into().unwrap_or_default());
        let Some(tasks) = items(tasks) else {
            return;
        };
        let mut out = Vec::new();
        for args in tasks {
            put(&mut out, &run_task(tramp, target, args.to_vec()).to_bytes());
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
fn run_task(tramp: i64, target: i64, args: Vec<u8>) -> Outcome {
    // SAFETY: task messages come only from the pool's parent over this
    // worker's private connection; it took both offsets from
    // `target::offsets_of`, which refuses code outside the main executable,
    // and this worker runs the same executable (spawn and forkserver check
    // its device and inode at start; fork copies the image).
    unsafe { target::run_offsets(tramp, target, args) }
}
