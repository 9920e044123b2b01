//! A shared value on the wire: its descriptor, element count and caller's
//! lock, checked against the receiver's type on arrival.

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    array::Array,
    lock::ValueLock,
    raw::{RawArray, RawValue},
    shared::{Mode, Shared},
    value::Value,
};
use crate::codec;

impl<T: Pod> Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        PassedRef {
            fd: codec::fds::export(self.fd.raw()).map_err(S::Error::custom)?,
            len: self.len as u64,
            lock: self.callers_lock(),
        }
        .serialize(s)
    }

    fn deserialize<'de, D: Deserializer<'de>>(d: D, locked: bool) -> std::result::Result<Shared<T>, D::Error> {
        use serde::de::Error as _;
        let p = Passed::deserialize(d)?;
        let fd = codec::fds::import(p.fd).map_err(D::Error::custom)?;
        let mode = match (locked, p.lock) {
            (false, None) => Mode::Raw,
            (true, None) => Mode::Own,
            (true, Some(l)) => Mode::Callers(l),
            (false, Some(_)) => return Err(D::Error::custom("a locked value was received as a raw one")),
        };
        Shared::from_fd(fd, p.len, mode).map_err(D::Error::custom)
    }
}

/// What a shared value becomes on the wire: the index of its descriptor
/// (see `crate::codec::fds`), its element count and the caller's lock it
/// shares, if any.
#[derive(Deserialize)]
struct Passed {
    fd: u32,
    len: u64,
    lock: Option<ValueLock>,
}

/// [`Passed`], borrowing the lock.
#[derive(Serialize)]
struct PassedRef<'a> {
    fd: u32,
    len: u64,
    lock: Option<&'a ValueLock>,
}

macro_rules! passable {
    ($($ty:ident: $locked:expr),*) => {$(
        impl<T: Pod> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.shared.serialize(s)
            }
        }

        impl<'de, T: Pod> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<$ty<T>, D::Error> {
                Ok($ty { shared: std::sync::Arc::new(Shared::deserialize(d, $locked)?) })
            }
        }
    )*};
}

passable!(Value: true, Array: true, RawValue: false, RawArray: false);
