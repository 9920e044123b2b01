//! The messages a remote worker and the pool exchange once the key has
//! been proven (nothing is deserialized before that): the worker's
//! [`Hello`] (who it is, which build), the pool's [`Welcome`].

use serde::{Deserialize, Serialize};

use crate::{
    codec::{self, CodecError},
    error::{Error, ErrorKind, Result},
    process::executable,
};

/// The version of these messages and of the pool's task protocol.
pub(super) const VERSION: u32 = 1;

/// The worker's first message.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Hello {
    pub(super) version: u32,
    /// The executable's identity ([`identity`]).
    pub(super) build: Vec<u8>,
    /// Its executable's path, for messages.
    pub(super) exe: String,
    pub(super) host: String,
    pub(super) pid: u32,
    /// Its rank in the launcher's numbering, if the launcher numbers.
    pub(super) rank: Option<u64>,
}

/// The pool's answer.
#[derive(Serialize, Deserialize, Debug)]
pub(super) enum Welcome {
    /// Serve: the initializer (code offsets and encoded arguments) and
    /// `maxtasksperchild`.
    Accepted {
        init: Option<(i64, i64, Vec<u8>)>,
        maxtasks: Option<u64>,
    },
    /// Leave, for this reason.
    Refused(String),
}

/// This executable's identity: its GNU build id, or else its size and
/// modification time (a build without a build id).
pub(super) fn identity() -> Vec<u8> {
    if let Ok(Some(id)) = executable::own_build_id() {
        let mut out = b"gnu:".to_vec();
        out.extend_from_slice(id);
        return out;
    }
    let meta = std::fs::metadata("/proc/self/exe");
    let (len, mtime) = meta.map_or((0, 0), |m| {
        use std::os::unix::fs::MetadataExt;
        (m.len(), m.mtime())
    });
    format!("file:{len}:{mtime}").into_bytes()
}

/// An identity as text.
pub(super) fn show(identity: &[u8]) -> String {
    match identity.strip_prefix(b"gnu:") {
        Some(id) => format!("build id {}", executable::hex(id)),
        None => String::from_utf8_lossy(identity).into_owned(),
    }
}

/// This host's name (the UTS name).
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "?".to_owned(), |h| h.trim().to_owned())
}

pub(super) fn encode<T: Serialize + 'static>(value: &T) -> Result<Vec<u8>> {
    codec::encode(value)
        .map(std::borrow::Cow::into_owned)
        .map_err(|CodecError(e)| Error::new(ErrorKind::Serialize, format!("failed to encode a worker message: {e}")))
}

pub(super) fn decode<T: serde::de::DeserializeOwned + 'static>(bytes: &[u8], what: &str) -> Result<T> {
    codec::decode(bytes).map_err(|CodecError(e)| Error::new(ErrorKind::Protocol, format!("a malformed {what}: {e}")))
}
