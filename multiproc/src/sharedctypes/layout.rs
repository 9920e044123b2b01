//! The layout of a shared value's memory file (see the parent module's
//! docs): offsets, the lock kinds and the header.

use crate::sys::MUTEX_SIZE;

pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"mpshval\0");
pub(super) const VERSION: u32 = 2;
/// The thread id of a guard's holder, under a caller's lock.
pub(super) const BORROW_OFF: usize = 48;
pub(super) const MUTEX_OFF: usize = 64;
pub(super) const HEADER_END: usize = 128;

const _: () = assert!(MUTEX_OFF + MUTEX_SIZE <= HEADER_END && BORROW_OFF + 4 <= MUTEX_OFF);

/// The lock of kind `locked` in the header.
pub(super) const RAW: u32 = 0;
pub(super) const OWN: u32 = 1;
pub(super) const CALLERS_LOCK: u32 = 2;
pub(super) const CALLERS_RLOCK: u32 = 3;

/// The header at the start of the memory file, as six words: magic,
/// version and lock flag, element size, element alignment, type hash,
/// element count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Header {
    pub(super) magic: u64,
    pub(super) version: u32,
    pub(super) locked: u32,
    pub(super) elem_size: u64,
    pub(super) elem_align: u64,
    pub(super) type_hash: u64,
    pub(super) len: u64,
}

impl Header {
    pub(super) fn to_words(self) -> [u64; 6] {
        [
            self.magic,
            u64::from(self.version) | u64::from(self.locked) << 32,
            self.elem_size,
            self.elem_align,
            self.type_hash,
            self.len,
        ]
    }

    pub(super) fn from_words(w: [u64; 6]) -> Header {
        Header {
            magic: w[0],
            version: w[1] as u32,
            locked: (w[1] >> 32) as u32,
            elem_size: w[2],
            elem_align: w[3],
            type_hash: w[4],
            len: w[5],
        }
    }
}

/// FNV-1a of the element type's name: tells `Value<u32>` from
/// `Value<f32>` across processes running the same executable.
pub(super) fn type_hash<T>() -> u64 {
    std::any::type_name::<T>().bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
