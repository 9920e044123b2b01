//! Results on their way in: a task's outcome, a batch reply and a job's
//! whole output decoded into the caller's types.

use std::panic::{self, AssertUnwindSafe};

use serde::de::DeserializeOwned;

use super::{
    job::{Output, TaskResult},
    protocol,
};
use crate::{
    codec::{self, CodecError},
    error::{Error, ErrorKind, Result},
};

/// Decodes a task's outcome into its value or error.
pub(super) fn decode<R: DeserializeOwned + 'static>(r: TaskResult) -> Result<R> {
    let bytes = r?;
    let v = protocol::task_result(&bytes)?;
    decode_caught_panic::<R>(v).map_err(result_error)
}

/// [`codec::decode`] for the caller's types: a panic of their
/// `Deserialize` is a decoding error, which fails the tasks concerned
/// alone.
pub(super) fn decode_caught_panic<R: DeserializeOwned + 'static>(bytes: &[u8]) -> std::result::Result<R, CodecError> {
    panic::catch_unwind(AssertUnwindSafe(|| codec::decode::<R>(bytes))).unwrap_or_else(|p| {
        Err(CodecError(format!(
            "its Deserialize panicked: {}",
            crate::child::panic::payload_text(&*p)
        )))
    })
}

/// Decodes a finished job's `n` results, in order; the first error in
/// input order, if any.
pub(super) fn decode_output<R: DeserializeOwned + 'static>(out: Output, len: usize) -> Result<Vec<R>> {
    let Output { results, batches } = out;
    let got = results.len() + batches.iter().map(|b| b.0.len()).sum::<usize>();
    if got != len || (got == 0 && len == 1) {
        return Err(Error::new(ErrorKind::InvalidState, "the result was already taken"));
    }
    if results.is_empty() && batches.len() <= 1 {
        // The common case: one batch, or none for an empty input.
        return match batches.into_iter().next() {
            None => Ok(Vec::new()),
            Some((_, bytes)) => decode_batch::<R>(&bytes, len),
        };
    }
    let mut slots: Vec<Option<Result<R>>> = (0..len).map(|_| None).collect();
    for (i, r) in results {
        slots[i] = Some(decode::<R>(r));
    }
    for (idx, bytes) in batches {
        let values = decode_batch_each::<R>(&bytes, idx.len());
        for (i, v) in idx.into_iter().zip(values) {
            slots[i] = Some(v);
        }
    }
    slots
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Err(Error::new(ErrorKind::Protocol, "a task's result is missing"))))
        .collect()
}

fn result_error(CodecError(e): CodecError) -> Error {
    Error::new(
        ErrorKind::Deserialize,
        format!("failed to deserialize the task's result: {e}"),
    )
}

fn wrong_count() -> Error {
    Error::new(ErrorKind::Protocol, "a pool worker sent the wrong number of results")
}

/// Decodes a batch reply of `n` results, one `Result` per task: a result
/// that does not decode fails its task alone (the reply carries each
/// result's bytes: see `protocol::encode_seq`).
pub(super) fn decode_batch_each<R: DeserializeOwned + 'static>(bytes: &[u8], n: usize) -> Vec<Result<R>> {
    each_of(protocol::decode_seq_each::<R>(bytes), n)
}

fn each_of<R>(
    decoded: std::result::Result<Vec<std::result::Result<R, CodecError>>, CodecError>,
    n: usize,
) -> Vec<Result<R>> {
    match decoded {
        Ok(values) if values.len() == n => values.into_iter().map(|r| r.map_err(result_error)).collect(),
        Ok(_) => (0..n).map(|_| Err(wrong_count())).collect(),
        Err(e) => {
            let e = result_error(e);
            (0..n).map(|_| Err(e.duplicate())).collect()
        }
    }
}

/// Decodes a batch reply of `n` results; the first error in input order.
pub(super) fn decode_batch<R: DeserializeOwned + 'static>(bytes: &[u8], n: usize) -> Result<Vec<R>> {
    match protocol::decode_seq::<R>(bytes) {
        Ok(values) if values.len() == n => Ok(values),
        Ok(_) => Err(wrong_count()),
        Err(e) => each_of(protocol::decode_seq_elements::<R>(bytes, e), n)
            .into_iter()
            .collect(),
    }
}
