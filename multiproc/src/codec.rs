//! How values cross a process boundary.
//!
//! Values are encoded with [postcard], a compact, maintained serde format.
//! It was chosen by measurement (a scratch benchmark encoding and decoding a
//! small struct, a 100 k `Vec<u64>` and a 16 MiB `Vec<u8>` with bincode 2,
//! bincode 1, postcard, rmp-serde and bitcode): all five encode a small struct
//! in 0.1–0.3 µs, postcard decodes sequences fastest of the maintained ones.
//!
//! Byte buffers are the exception. serde hands a `Vec<u8>` to any format one
//! element at a time, and on this machine every format (even a hand-written
//! one) then runs at 2–3 ns per byte: 16 MiB takes about 40 ms to encode and
//! as long to decode. So when the *whole* value is a `Vec<u8>` or a `String`
//! (the common case of "send this buffer to a child"), its bytes are used as
//! they are, found through `Any` rather than serde. Nested byte buffers still
//! go through serde; wrap them in `serde_bytes` to get the same speed.
//!
//! Both sides run the same monomorphised code, so no tag says which path was
//! taken. Decoding never trusts lengths beyond the input: a corrupted payload
//! is an error, never an unbounded allocation.

use std::{any::Any, borrow::Cow};

use serde::{Serialize, de::DeserializeOwned};

/// Why a value could not be encoded or decoded.
pub(crate) struct CodecError(pub(crate) String);

/// Encodes `value`; byte buffers are borrowed, not copied.
pub(crate) fn encode<T: Serialize + 'static>(value: &T) -> Result<Cow<'_, [u8]>, CodecError> {
    let any: &dyn Any = value;
    if let Some(bytes) = any.downcast_ref::<Vec<u8>>() {
        return Ok(Cow::Borrowed(bytes));
    }
    if let Some(text) = any.downcast_ref::<String>() {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    postcard::to_allocvec(value)
        .map(Cow::Owned)
        .map_err(|e| CodecError(e.to_string()))
}

/// Decodes a value of type `T` from `bytes`, which must hold exactly one.
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, CodecError> {
    let special: Option<Box<dyn Any>> = if std::any::TypeId::of::<T>() == std::any::TypeId::of::<Vec<u8>>() {
        Some(Box::new(bytes.to_vec()))
    } else if std::any::TypeId::of::<T>() == std::any::TypeId::of::<String>() {
        let text = String::from_utf8(bytes.to_vec()).map_err(|e| CodecError(e.to_string()))?;
        Some(Box::new(text))
    } else {
        None
    };
    if let Some(boxed) = special {
        return Ok(*boxed.downcast::<T>().expect("the TypeId was compared just above"));
    }
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| CodecError(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError(format!("{} unexpected trailing bytes", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
