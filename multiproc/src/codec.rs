//! How values cross a process boundary.
//!
//! Values are encoded with [postcard] 1 through serde (varint integers and
//! lengths, no field names or tags beyond an enum's variant index), behind
//! a thin adapter that keeps the messages of custom serde errors
//! ([`messages`]).
//!
//! # Why postcard
//!
//! - **Maintained, no advisory.** bincode, used before, was ended by its
//!   authors (RUSTSEC-2025-0141, "no safe upgrade"; 3.0.0 is a deliberate
//!   compile error), so `cargo audit` and `cargo deny` failed for every
//!   user of this crate. postcard 1 is maintained and has no RustSec
//!   advisory; it needs no default feature (no `heapless`).
//! - **Safe on hostile input.** It never allocates ahead of the input: a
//!   string or a byte buffer is taken from the input once its length was
//!   checked against what is left, and serde's own collections reserve at
//!   most 1 MiB from an announced length, then grow as elements decode. So
//!   it needs no allocation limit (bincode 2 needed one, claimed against
//!   16 times the input). A truncated input, a bad varint, bool or UTF-8,
//!   or bytes left over are errors, never a panic.
//! - **Fast where the library's values are.** A scratch benchmark of the
//!   candidates (encode + decode, release build, this 2-vCPU machine):
//!
//!   | value | bincode 2 (with its limit) | postcard | bitcode 0.6 (serde) |
//!   |---|---|---|---|
//!   | a small struct, one of 100 k encoded alone (the pool's batches) | 9 + 86–139 ns | 9 + 92–148 ns | 335–675 + 148–284 ns |
//!   | a nested struct, about 190 bytes | 336 + 900 ns | 220 + 620 ns | 2200 + 2100 ns |
//!   | the same with 30 000 items, about 1 MiB | 1.1 + 5–15 ms | 1.0 + 2.7–7.7 ms | 0.7 + 2.8–6.0 ms |
//!
//!   bitcode's columnar format pays a fixed cost per call that dominates
//!   small values, and it drops error messages in release builds.
//!   wincode has no serde support of its own; `serde-wincode` (a separate
//!   0.1 crate) cannot serialise recursive types (its serializer type grows
//!   at each level and does not compile), and wincode 0.5+ needs Rust 1.89.
//! - **Messages of custom errors.** postcard's error is a fixed enum: a
//!   user's `Error::custom("why")` becomes "Serde Serialization Error". The
//!   adapter in [`messages`] restores "why" (and serde's own messages, such
//!   as "invalid value: integer `7`, expected variant index 0 <= i < 3").
//!   It forwards every call unchanged, so the bytes are postcard's; it costs
//!   about 10 % of a nested struct's decoding (650–670 ns against 605) and
//!   nothing measurable on encoding, once its error was boxed to one word.
//!
//! The library's rows with bincode 2 and with postcard (`multiproc-bench`,
//! the two builds run alternately six times, 30 samples a row; medians of
//! the runs' medians, and the median of the six runs' new/old ratios):
//!
//! | row | bincode 2 | postcard | new/old |
//! |---|---:|---:|---:|
//! | `pool/map_100k_structs/fork` | 0.247 µs/task | 0.218 µs/task | 0.90 |
//! | `pool/map_100k_structs/spawn` | 0.236 µs/task | 0.219 µs/task | 0.91 |
//! | `pool/map_100k_structs/forkserver` | 0.243 µs/task | 0.208 µs/task | 0.82 |
//! | `pipe/nested_struct/fork` (about 190 bytes) | 3.53 µs | 2.88 µs | 0.80 |
//! | `pipe/nested_1MiB/fork` | 7.04 ms | 5.59 ms | 0.80 |
//! | `process/transfer_16MiB/spawn` (raw bytes, no serde) | 8.10 ms | 7.88 ms | 1.01 |
//!
//! No other row moved beyond this machine's noise; those that compare
//! with a floor measured in the same run kept their ratio (spawn start +
//! join: 0.96 of a bare re-exec with either codec).
//!
//! # Raw fast paths
//!
//! Byte buffers are the exception. serde hands a `Vec<u8>` to any format one
//! element at a time, and on this machine every format (even a hand-written
//! one) then runs at 2–3 ns per byte: 16 MiB takes about 40 ms to encode and
//! as long to decode. So when the *whole* value is a `Vec<u8>` or a `String`
//! (the common case of "send this buffer to a child"), its bytes are used as
//! they are, found through `Any` rather than serde. Nested byte buffers still
//! go through serde; wrap them in `serde_bytes` to get the same speed.
//! Whole vectors of fixed-size numbers (`Vec<u16>` ... `Vec<u128>`, the
//! signed ones, `Vec<f32>`, `Vec<f64>`) are the same case one size up: they
//! travel as their in-memory bytes (this machine's byte order; both ends
//! run the same binary), copied whole instead of varint-encoded one by one
//! (a `map` chunk of numbers, and its results, are such vectors). A length
//! that is not a multiple of the element size is an error.
//!
//! # Batches
//!
//! The pool's batches (a `map` chunk's arguments or results) of serde
//! values are *indexed* sequences ([`encode_indexed`]): the `Vec`'s own
//! encoding behind a table of each element's end, so that when the whole
//! does not decode, each element still can, from its exact bytes.
//!
//! # Limits
//!
//! Both sides run the same monomorphised code, so no tag says which path was
//! taken. Decoding never trusts lengths beyond the input: a corrupted payload
//! is an error, never an unbounded allocation. A value nested thousands of
//! levels deep (a long recursive list) can still overflow the receiving
//! thread's stack, as with most serde formats: postcard has no depth limit.
//! A sequence whose elements encode to nothing (a struct whose fields are
//! all `#[serde(skip)]`) may announce any length and grow without reading
//! input, as it could with bincode's limit; a sequence of zero-sized
//! values (`Vec<()>`) costs nothing.
//! postcard, like bincode, cannot carry what needs a self-describing
//! format: `skip_serializing_if`, `flatten`, untagged and internally tagged
//! enums, `deserialize_any`.

use std::{any::Any, borrow::Cow};

use serde::{Serialize, de::DeserializeOwned};

use self::messages::{De, Msg, Ser, Slot};

mod messages;

/// Encodes a record of the library's own (boot data, panics): these always
/// encode.
pub(crate) fn encode_record<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(CodecError(e)) = serialize_into(value, &mut out) {
        unreachable!("the library's records always encode: {e}");
    }
    out
}

/// Encodes `value` at the end of `out` (what [`encode`] would give, without
/// a buffer of its own). On an error, `out` is left as it was.
pub(crate) fn encode_into<T: Serialize + 'static>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let any: &dyn Any = value;
    if let Some(bytes) = any.downcast_ref::<Vec<u8>>() {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    if let Some(text) = any.downcast_ref::<String>() {
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    if let Some(bytes) = numbers_as_bytes(any) {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    serialize_into(value, out)
}

/// Decodes a record of the library's own.
pub(crate) fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_serde(bytes)
}

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
    if let Some(bytes) = numbers_as_bytes(any) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    serialize_into(value, &mut out)?;
    Ok(Cow::Owned(out))
}

/// Decodes a value of type `T` from `bytes`, which must hold exactly one.
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, CodecError> {
    if is::<T, Vec<u8>>() || is::<T, String>() {
        return decode_owned(bytes.to_vec());
    }
    if let Some(v) = numbers_from_bytes::<T>(bytes) {
        return v;
    }
    decode_serde(bytes)
}

/// Calls `$m!(T)` for each number type whose whole vectors travel as bytes.
macro_rules! for_each_number {
    ($m:ident) => {
        $m!(u16);
        $m!(u32);
        $m!(u64);
        $m!(u128);
        $m!(i8);
        $m!(i16);
        $m!(i32);
        $m!(i64);
        $m!(i128);
        $m!(f32);
        $m!(f64);
    };
}

/// The in-memory bytes of `value` if it is a vector of numbers.
fn numbers_as_bytes(value: &dyn Any) -> Option<&[u8]> {
    macro_rules! try_as {
        ($t:ty) => {
            if let Some(v) = value.downcast_ref::<Vec<$t>>() {
                return Some(bytemuck::cast_slice(v));
            }
        };
    }
    for_each_number!(try_as);
    None
}

/// `bytes` as a `T`, if `T` is a vector of numbers (see
/// [`numbers_as_bytes`]); `None` for any other type.
fn numbers_from_bytes<T: 'static>(bytes: &[u8]) -> Option<Result<T, CodecError>> {
    fn copy<N: bytemuck::Pod>(bytes: &[u8]) -> Result<Vec<N>, CodecError> {
        let size = std::mem::size_of::<N>();
        if bytes.len() % size != 0 {
            return Err(CodecError(format!(
                "{} bytes are not a whole number of {size}-byte elements",
                bytes.len()
            )));
        }
        // Copied into memory aligned for `N` (the input need not be).
        let mut v = vec![N::zeroed(); bytes.len() / size];
        bytemuck::cast_slice_mut::<N, u8>(&mut v).copy_from_slice(bytes);
        Ok(v)
    }
    macro_rules! try_from {
        ($t:ty) => {
            if is::<T, Vec<$t>>() {
                let boxed: Result<Box<dyn Any>, CodecError> = copy::<$t>(bytes).map(|v| Box::new(v) as Box<dyn Any>);
                return Some(boxed.map(|b| *b.downcast::<T>().expect("the type was compared just above")));
            }
        };
    }
    for_each_number!(try_from);
    None
}

/// Like [`decode`], but a byte buffer or string takes over `bytes` instead
/// of copying it.
pub(crate) fn decode_owned<T: DeserializeOwned + 'static>(bytes: Vec<u8>) -> Result<T, CodecError> {
    let special: Box<dyn Any> = if is::<T, Vec<u8>>() {
        Box::new(bytes)
    } else if is::<T, String>() {
        Box::new(String::from_utf8(bytes).map_err(|e| CodecError(e.to_string()))?)
    } else if let Some(v) = numbers_from_bytes::<T>(&bytes) {
        return v;
    } else {
        return decode_serde(&bytes);
    };
    Ok(*special.downcast::<T>().expect("the type was compared just above"))
}

/// postcard's output, appended to a `Vec`.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the postcard encoding of `value` to `out` (through the adapter
/// that keeps the messages of custom errors, see [`messages`]). On an
/// error, `out` is left as it was.
fn serialize_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    let slot = Slot::default();
    let mut ser = postcard::Serializer { output: Append(out) };
    match value.serialize(Ser {
        inner: &mut ser,
        slot: &slot,
    }) {
        Ok(()) => Ok(()),
        Err(Msg(e)) => {
            out.truncate(start);
            Err(CodecError(*e))
        }
    }
}

/// Decodes a `T` from the start of `bytes` (through the adapter that keeps
/// the messages of custom errors); returns it and the bytes it did not use.
///
/// postcard never allocates ahead of the input: a string or a byte buffer
/// is taken from the input after its length was checked against what is
/// left, and serde's own collections reserve at most 1 MiB from an
/// announced length (`size_hint::cautious`), then grow as elements
/// actually decode, each from at least one byte of input (but see the
/// module docs' limits for elements that encode to nothing). A corrupted
/// length is an error at the end of the input, never an allocation of
/// that length.
fn deserialize_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    let slot = Slot::default();
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let value = T::deserialize(De {
        inner: &mut de,
        slot: &slot,
    })
    .map_err(|Msg(e)| CodecError(*e))?;
    let rest = de.finalize().map_err(|e| CodecError(e.to_string()))?;
    Ok((value, rest))
}

/// Whether `T` is encoded through serde rather than as raw bytes (see the
/// module docs).
pub(crate) fn by_serde<T: 'static>() -> bool {
    !(is::<T, Vec<u8>>() || is::<T, String>() || numbers_from_bytes::<T>(&[]).is_some())
}

/// Encodes `items` as an *indexed* sequence: `n` (a little-endian `u32`),
/// `n + 1` offsets (`u32`, into the body: the end of its length prefix, then
/// the end of each element), then the body, which is exactly the serde
/// encoding of `items` as a `Vec<T>`. It decodes whole
/// ([`decode_indexed`]) or, when that fails, element by element
/// ([`indexed_elements`]); either way each element from exactly its own
/// bytes: one element that does not decode fails alone, and no element
/// is ever read from another's bytes. The pool's batches of serde values travel so. On an
/// error, `out` is left as it was.
pub(crate) fn encode_indexed<T: Serialize>(items: &[T], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    let r = (|| {
        let n = u32::try_from(items.len()).map_err(|_| CodecError("too many elements".into()))?;
        out.extend_from_slice(&n.to_le_bytes());
        let table = out.len();
        out.resize(table + 4 * (items.len() + 1), 0);
        let body = out.len();
        let put_end = |out: &mut Vec<u8>, k: usize| -> Result<(), CodecError> {
            let end = u32::try_from(out.len() - body).map_err(|_| CodecError("a batch over 4 GiB".into()))?;
            out[table + 4 * k..table + 4 * k + 4].copy_from_slice(&end.to_le_bytes());
            Ok(())
        };
        // A `Vec`'s length is encoded as a `usize` (a varint, as a `u64`).
        serialize_into(&items.len(), out)?;
        put_end(out, 0)?;
        for (k, item) in items.iter().enumerate() {
            serialize_into(item, out)?;
            put_end(out, k + 1)?;
        }
        Ok(())
    })();
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// The body's length prefix of an indexed sequence, and each element's
/// bytes (checked: in order, within the body).
fn indexed_parts(bytes: &[u8]) -> Result<(&[u8], Vec<&[u8]>), CodecError> {
    let bad = || CodecError("malformed indexed sequence".into());
    let n = bytes.get(..4).ok_or_else(bad)?;
    let n = u32::from_le_bytes(n.try_into().map_err(|_| bad())?) as usize;
    let table_len = n.checked_add(1).and_then(|k| k.checked_mul(4)).ok_or_else(bad)?;
    let table = bytes.get(4..4 + table_len).ok_or_else(bad)?;
    let body = &bytes[4 + table_len..];
    let ends: Vec<usize> = table
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let mut parts = Vec::with_capacity(n);
    for w in ends.windows(2) {
        parts.push(body.get(w[0]..w[1]).ok_or_else(bad)?);
    }
    if ends.last() != Some(&body.len()) {
        return Err(bad());
    }
    let prefix = body.get(..ends[0]).ok_or_else(bad)?;
    Ok((prefix, parts))
}

/// Decodes an indexed sequence whole (see [`encode_indexed`]), each
/// element from exactly its own bytes: a type whose `Deserialize` reads
/// other than what its `Serialize` wrote (`skip_serializing_if`, which a
/// format without field names cannot carry) is an error, never a value
/// read across elements, as decoding the body as one `Vec` could give.
pub(crate) fn decode_indexed<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, CodecError> {
    let (prefix, parts) = indexed_parts(bytes)?;
    let len: u64 = decode_serde(prefix)?;
    if len != parts.len() as u64 {
        return Err(CodecError("an indexed sequence of the wrong length".into()));
    }
    parts.into_iter().map(decode_serde).collect()
}

/// Each element's bytes of an indexed sequence, for decoding one by one
/// with [`decode_element`].
pub(crate) fn indexed_elements(bytes: &[u8]) -> Result<Vec<&[u8]>, CodecError> {
    indexed_parts(bytes).map(|(_, parts)| parts)
}

/// Decodes one element of an indexed sequence: all its bytes, no more.
pub(crate) fn decode_element<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_serde(bytes)
}

fn is<T: 'static, U: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()
}

fn decode_serde<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = deserialize_prefix::<T>(bytes)?;
    if !rest.is_empty() {
        return Err(CodecError(format!("{} unexpected trailing bytes", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;

/// Descriptors that travel beside an encoded value.
///
/// An endpoint (a `Connection`, a `Queue`) serialises as the *index* of its
/// descriptor in a side list, and the list travels as `SCM_RIGHTS` with the
/// bytes (or, under `fork`, needs no travel at all). The list exists only
/// while this module encodes or decodes a value for the library, held in a
/// thread-local: an endpoint serialised by anything else (a JSON file, say)
/// fails with an error that says where it can go instead. Nested use (a
/// `Serialize` impl that itself sends through the library) saves and
/// restores the outer list.
pub(crate) mod fds {
    use std::cell::RefCell;

    use crate::sys::{Fd, MAX_FDS, RawFd};

    /// The descriptors an encoded value refers to, and what to do once the
    /// value has really been sent.
    #[derive(Default)]
    pub(crate) struct Exported {
        /// Borrowed from the value: send them before it is dropped.
        pub(crate) fds: Vec<RawFd>,
        on_sent: Vec<Box<dyn FnOnce() + Send>>,
    }

    impl Exported {
        /// The value was sent: run the deferred effects of its endpoints
        /// (a passed connection forgets the bytes it had buffered, which
        /// the message now carries). Dropping an `Exported` instead leaves
        /// every endpoint as it was, so a failed send loses nothing.
        pub(crate) fn sent(self) {
            for f in self.on_sent {
                f();
            }
        }
    }

    thread_local! {
        static DRY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        static OUT: RefCell<Option<Exported>> = const { RefCell::new(None) };
        static IN: RefCell<Option<Vec<Option<Fd>>>> = const { RefCell::new(None) };
    }

    const NOT_HERE: &str = "multiproc endpoints (Connection, Queue, ...) can only be serialized by multiproc itself: \
                            pass them as process arguments or send them through a Connection or Queue";

    /// Puts a thread-local back as it was on drop, so that a panicking
    /// `Serialize` or `Deserialize` does not leave this call's list behind.
    struct Restore<T: 'static> {
        key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
        saved: Option<Option<T>>,
    }

    impl<T: 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            if let Some(saved) = self.saved.take() {
                self.key.with(|k| *k.borrow_mut() = saved);
            }
        }
    }

    /// Runs `f` with an export list; returns its value and what the encoded
    /// value refers to.
    pub(crate) fn collect<R>(f: impl FnOnce() -> R) -> (R, Exported) {
        let saved = OUT.with(|o| o.borrow_mut().replace(Exported::default()));
        let restore = Restore {
            key: &OUT,
            saved: Some(saved),
        };
        let r = f();
        let list = OUT.with(|o| o.borrow_mut().take()).unwrap_or_default();
        drop(restore);
        (r, list)
    }

    /// Lists the descriptors a value refers to without sending it: `f`
    /// encodes the value and says whether that worked. Endpoints serialise
    /// without side effects then.
    pub(crate) fn list(f: impl FnOnce() -> bool) -> Option<Vec<RawFd>> {
        let was = DRY.with(|d| d.replace(true));
        let (ok, list) = collect(f);
        DRY.with(|d| d.set(was));
        ok.then_some(list.fds)
    }

    /// `true` while [`list`] runs.
    pub(crate) fn dry_run() -> bool {
        DRY.with(|d| d.get())
    }

    /// Runs `f` with `fds` available to [`import`]; descriptors it did not
    /// take are closed.
    pub(crate) fn supply<R>(fds: Vec<Fd>, f: impl FnOnce() -> R) -> R {
        let saved = IN.with(|i| i.borrow_mut().replace(fds.into_iter().map(Some).collect()));
        let restore = Restore {
            key: &IN,
            saved: Some(saved),
        };
        let r = f();
        drop(restore);
        r
    }

    /// Defers `f` until the value being encoded has been sent (see
    /// [`Exported::sent`]).
    pub(crate) fn on_sent(f: Box<dyn FnOnce() + Send>) {
        OUT.with(|o| {
            if let Some(list) = &mut *o.borrow_mut() {
                list.on_sent.push(f);
            }
        });
    }

    /// Registers `fd` for the value being encoded; returns its index.
    pub(crate) fn export(fd: RawFd) -> Result<u32, String> {
        OUT.with(|o| match &mut *o.borrow_mut() {
            None => Err(NOT_HERE.to_owned()),
            Some(list) if list.fds.len() >= MAX_FDS => Err(format!(
                "one message can carry at most {MAX_FDS} endpoints' descriptors"
            )),
            Some(list) => {
                list.fds.push(fd);
                Ok((list.fds.len() - 1) as u32)
            }
        })
    }

    /// Takes the descriptor at `index` of the list that came with the value
    /// being decoded.
    pub(crate) fn import(index: u32) -> Result<Fd, String> {
        IN.with(|i| match &mut *i.borrow_mut() {
            None => Err(NOT_HERE.to_owned()),
            Some(list) => list
                .get_mut(index as usize)
                .and_then(Option::take)
                .map(Fd::into_endpoint)
                .ok_or_else(|| format!("descriptor {index} of the message is missing or was taken twice")),
        })
    }
}
