//! Task arguments on their way out: encoding them (with the descriptors
//! of the library objects among them) into task messages, and the
//! initializer that every worker runs first.

use std::{
    any::Any,
    panic::{self, AssertUnwindSafe},
    sync::{Arc, Weak},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::protocol::{self, Mode, TaskHead};
use crate::{
    codec::{self, CodecError},
    error::{Error, ErrorKind, Result},
    registry,
    sys::{Fd, MAX_FDS, RawFd},
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

/// A chunk's encoded payload and task indexes, or the tasks whose
/// arguments failed to encode. Built without the pool's lock.
pub(super) struct Encoded {
    /// The indexes of the tasks it carries.
    pub(super) idx: Vec<usize>,
    /// How its task message carries the arguments.
    pub(super) mode: Mode,
    /// The task message (its id is set when it is sent).
    pub(super) payload: Vec<u8>,
    /// A large argument, sent as a message of its own after `payload`.
    pub(super) data: Option<Vec<u8>>,
    /// The descriptors of the library objects among the arguments.
    pub(super) fds: PassedFds,
    /// The tasks whose arguments failed to encode, with their errors.
    pub(super) failed: Vec<(usize, Error)>,
}

/// An argument whose encoding is at least this large travels as a message
/// of its own (the worker receives it as its buffer: no shift past a
/// header, no copy for a byte buffer).
pub(super) const LARGE_ARG: usize = 64 * 1024;

/// Encodes the single argument of a chunk. A byte buffer or a string of
/// [`LARGE_ARG`] or more is taken over as it is (no copy) and sent as a
/// message of its own, which the worker receives as the argument's own
/// buffer; any other value is encoded into a buffer of its own and, if
/// that comes to [`LARGE_ARG`] or more, sent the same way (the worker
/// decodes it in place); a smaller one is copied into the task message.
pub(super) fn encode_one<A: Serialize + 'static>(offs: (i64, i64), i: usize, a: A) -> Encoded {
    let mut slot = Some(a);
    let any: &mut dyn Any = &mut slot;
    let taken = if let Some(v) = any.downcast_mut::<Option<Vec<u8>>>() {
        v.take_if(|v| v.len() >= LARGE_ARG)
    } else if let Some(text) = any.downcast_mut::<Option<String>>() {
        text.take_if(|t| t.len() >= LARGE_ARG).map(String::into_bytes)
    } else {
        None
    };
    let (data, fds) = match (taken, slot) {
        (Some(data), _) => (data, PassedFds::default()),
        (None, Some(a)) => {
            let mut data = Vec::new();
            let fds = match encode_with_fds(&a, &mut data) {
                Ok(fds) => fds,
                Err(CodecError(e)) => {
                    return Encoded {
                        idx: Vec::new(),
                        mode: Mode::Each,
                        payload: Vec::new(),
                        data: None,
                        fds: PassedFds::default(),
                        failed: vec![(i, arg_error(&e))],
                    };
                }
            };
            if data.len() < LARGE_ARG {
                let mut payload = TaskHead::message(offs.0, offs.1, Mode::Each);
                let at = protocol::start_task_item(&mut payload);
                payload.extend_from_slice(&data);
                protocol::end_task_item(&mut payload, at, fds.len());
                return Encoded {
                    idx: vec![i],
                    mode: Mode::Each,
                    payload,
                    data: None,
                    fds,
                    failed: Vec::new(),
                };
            }
            (data, fds)
        }
        (None, None) => return encode_items::<A>(offs, Vec::new()),
    };
    Encoded {
        idx: vec![i],
        mode: Mode::Large,
        payload: TaskHead::message(offs.0, offs.1, Mode::Large),
        data: Some(data),
        fds,
        failed: Vec::new(),
    }
}

/// [`codec::encode_into`] for the caller's values: a panic of their
/// `Serialize` is an encoding error (what was written is taken back), so
/// it fails the tasks concerned alone.
pub(super) fn encode_caught<T: Serialize + 'static>(
    value: &T,
    out: &mut Vec<u8>,
) -> std::result::Result<(), CodecError> {
    let start = out.len();
    panic::catch_unwind(AssertUnwindSafe(|| codec::encode_into(value, out))).unwrap_or_else(|p| {
        out.truncate(start);
        Err(CodecError(format!(
            "its Serialize panicked: {}",
            crate::child::panic::payload_text(&*p)
        )))
    })
}

/// [`encode_caught`] for a value that may hold library objects (locks,
/// queues, connections, shared memory...): returns duplicates of their
/// descriptors, which outlive the value and travel with its message. On an
/// error, `out` is left as it was.
pub(super) fn encode_with_fds<T: Serialize + 'static>(
    value: &T,
    out: &mut Vec<u8>,
) -> std::result::Result<PassedFds, CodecError> {
    let start = out.len();
    let (r, exported) = codec::fds::collect(|| encode_caught(value, out));
    r?;
    if exported.fds.is_empty() {
        return Ok(PassedFds::default());
    }
    match PassedFds::dup_all(&exported.fds) {
        Ok(fds) => {
            // The encoding carries what the objects had to hand over (a
            // connection's undelivered bytes).
            exported.sent();
            Ok(fds)
        }
        Err(e) => {
            out.truncate(start);
            Err(CodecError(e.to_string()))
        }
    }
}

/// The error of a task whose argument does not serialize.
fn arg_error(e: &str) -> Error {
    Error::new(
        ErrorKind::Serialize,
        format!("failed to serialize the task's argument: {e}"),
    )
}

/// Encodes `items` as one per-task chunk; an argument that fails to
/// serialize fails its task alone, and so does one whose descriptors would
/// take the chunk's past what one message carries.
pub(super) fn encode_items<A: Serialize + 'static>(offs: (i64, i64), items: Vec<(usize, A)>) -> Encoded {
    let mut enc = Encoded {
        idx: Vec::with_capacity(items.len()),
        mode: Mode::Each,
        payload: TaskHead::message(offs.0, offs.1, Mode::Each),
        data: None,
        fds: PassedFds::default(),
        failed: Vec::new(),
    };
    for (i, a) in items {
        // Encoded straight into the message, behind its length.
        let at = protocol::start_task_item(&mut enc.payload);
        match encode_with_fds(&a, &mut enc.payload) {
            Ok(fds) if enc.fds.len() + fds.len() <= MAX_FDS => {
                protocol::end_task_item(&mut enc.payload, at, fds.len());
                enc.fds.append(fds);
                enc.idx.push(i);
            }
            Ok(_) => {
                protocol::drop_task_item(&mut enc.payload, at);
                let e = format!(
                    "the chunk's arguments hold more than {MAX_FDS} descriptors, what one message carries: use a \
                     smaller chunk size"
                );
                enc.failed.push((i, arg_error(&e)));
            }
            Err(CodecError(e)) => {
                protocol::drop_task_item(&mut enc.payload, at);
                enc.failed.push((i, arg_error(&e)));
            }
        }
    }
    enc
}

/// Encodes a `map` chunk as one `Vec<A>` for the batch trampoline; falls
/// back to [`encode_items`] when there is none or the batch does not
/// encode.
pub(super) fn encode_batch<A: Serialize + 'static>(
    offs: (i64, i64),
    batch_offs: Option<(i64, i64)>,
    start: usize,
    items: Vec<A>,
) -> Encoded {
    if let Some(bo) = batch_offs {
        let mut payload = TaskHead::message(bo.0, bo.1, Mode::Batch);
        let (r, exported) = codec::fds::collect(|| protocol::encode_seq(&items, &mut payload));
        let fds = match r {
            Ok(()) => PassedFds::dup_all(&exported.fds).ok().inspect(|_| exported.sent()),
            Err(_) => None,
        };
        if let Some(fds) = fds {
            return Encoded {
                idx: (start..start + items.len()).collect(),
                mode: Mode::Batch,
                payload,
                data: None,
                fds,
                failed: Vec::new(),
            };
        }
    }
    encode_items(
        offs,
        items.into_iter().enumerate().map(|(k, a)| (start + k, a)).collect(),
    )
}
