//! How a target ended, as the process that ran it reports it: the leaf
//! record that a child, a fork server's child and a pool worker all send,
//! and that [`Process::join`](crate::Process::join) and the pool decode.

use serde::{Deserialize, Serialize};

use crate::{codec, error::RemotePanic};

/// How a target ended, as the child reports it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The encoded return value.
    Value(Vec<u8>),
    Panic(RemotePanic),
    Failed(Failure, String),
}

/// What failed in a child before or after the target ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Failure {
    Bootstrap,
    DecodeArgs,
    EncodeResult,
}

impl Outcome {
    pub(crate) fn failed_args(message: String) -> Outcome {
        Outcome::Failed(Failure::DecodeArgs, message)
    }

    pub(crate) fn failed_result(message: String) -> Outcome {
        Outcome::Failed(Failure::EncodeResult, message)
    }

    /// The exit code a child uses after this outcome (Python's: 1 for an
    /// exception).
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Outcome::Value(_) => 0,
            _ => 1,
        }
    }

    /// Wire form: a tag byte, then the value's bytes or an encoded record.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        match self {
            Outcome::Value(v) => {
                let mut out = Vec::with_capacity(1 + v.len());
                out.push(0);
                out.extend_from_slice(v);
                out
            }
            Outcome::Panic(p) => prefixed(1, p),
            Outcome::Failed(kind, msg) => prefixed(2, &(kind, msg)),
        }
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<OutcomeRef<'_>, String> {
        let (&tag, rest) = bytes.split_first().ok_or("empty outcome")?;
        match tag {
            0 => Ok(OutcomeRef::Value(rest)),
            1 => codec::decode_record(rest).map(OutcomeRef::Panic).map_err(|e| e.0),
            2 => codec::decode_record::<(Failure, String)>(rest)
                .map(|(k, m)| OutcomeRef::Failed(k, m))
                .map_err(|e| e.0),
            t => Err(format!("unknown outcome tag {t}")),
        }
    }
}

fn prefixed(tag: u8, value: &impl Serialize) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(codec::encode_record(value));
    out
}

/// A decoded outcome borrowing the received payload.
pub(crate) enum OutcomeRef<'a> {
    Value(&'a [u8]),
    Panic(RemotePanic),
    Failed(Failure, String),
}
