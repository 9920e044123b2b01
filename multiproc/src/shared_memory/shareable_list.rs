//! [`ShareableList`]: Python's `multiprocessing.shared_memory.ShareableList`.
//!
//! # Layout
//!
//! CPython's own (3.9 and later), so that a Python process can attach to a
//! list made here by name, and the reverse. All numbers are native-endian
//! 64-bit words:
//!
//! ```text
//! 0                 n, the number of items
//! 8                 n + 1 offsets of the items' slots from the data area
//!                   (0, then each slot's end)
//! 8 (n + 2)         the data area: slot i is offsets[i]..offsets[i + 1];
//!                   8 bytes for a number, bool or None, a multiple of 8
//!                   for str and bytes
//! data + offsets[n] n packing formats, 8 bytes each, NUL-padded: "q",
//!                   "d", "xxxxxxx?" (bool), "xxxxxx?x" (None), "<k>s"
//! ... + 8 n         n back-transform codes, one byte each: 0 as is,
//!                   1 str, 2 bytes, 3 None
//! ```
//!
//! A slot's size is fixed at creation: a `str` or `bytes` item gets its
//! length rounded up to the next multiple of 8 (at least one byte more, as
//! Python does), and a later item stored there must fit. A slot of any
//! size takes a number, bool or None.
//!
//! # Concurrent access
//!
//! Like Python's, the list has no lock. Every access is a copy through the
//! segment's copy paths ([`SharedMemory::read_at`] and
//! [`write_at`](SharedMemory::write_at), relaxed atomic byte copies); no
//! reference to the shared bytes is ever made, so a process or thread
//! writing while another reads is not undefined behaviour: the reader may see a mix of old and new bytes (a
//! torn item), which decodes to some value of the slot or to an
//! [`ErrorKind::InvalidState`] error (a format or text that a concurrent
//! write left half done), never outside its slot. Guard the list with a
//! [`Lock`](crate::Lock) when processes write while others read.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SharedMemory;
use crate::{Error, ErrorKind, Result};

const WORD: usize = 8;
const FMT_INT: &[u8] = b"q";
const FMT_FLOAT: &[u8] = b"d";
const FMT_BOOL: &[u8] = b"xxxxxxx?";
const FMT_NONE: &[u8] = b"xxxxxx?x";
const CODE_AS_IS: u8 = 0;
const CODE_STR: u8 = 1;
const CODE_BYTES: u8 = 2;
const CODE_NONE: u8 = 3;
/// The largest str or bytes slot: its format ("9999999s") fills 8 bytes.
const MAX_SLOT: usize = 9_999_999;

/// An item of a [`ShareableList`]: the types Python's allows.
#[derive(Clone, Debug, PartialEq)]
pub enum ListItem {
    /// Python's `int` (64 bits, as in Python's list).
    Int(i64),
    /// Python's `float`.
    Float(f64),
    /// Python's `bool`.
    Bool(bool),
    /// Python's `str`.
    Str(String),
    /// Python's `bytes`.
    Bytes(Vec<u8>),
    /// Python's `None`.
    None,
}

macro_rules! item_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {$(
        impl From<$t> for ListItem {
            fn from($v: $t) -> ListItem {
                $e
            }
        }
    )*};
}

item_from!(
    i64 => |v| ListItem::Int(v),
    i32 => |v| ListItem::Int(v.into()),
    u32 => |v| ListItem::Int(v.into()),
    f64 => |v| ListItem::Float(v),
    bool => |v| ListItem::Bool(v),
    String => |v| ListItem::Str(v),
    &str => |v| ListItem::Str(v.to_owned()),
    Vec<u8> => |v| ListItem::Bytes(v),
    &[u8] => |v| ListItem::Bytes(v.to_vec()),
    () => |_v| ListItem::None,
);

impl<T: Into<ListItem>> From<Option<T>> for ListItem {
    fn from(v: Option<T>) -> ListItem {
        v.map_or(ListItem::None, Into::into)
    }
}

impl ListItem {
    /// The bytes of a str or bytes item.
    fn text(&self) -> Option<&[u8]> {
        match self {
            ListItem::Str(s) => Some(s.as_bytes()),
            ListItem::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// A fixed-length list of numbers, bools, strings, bytes and Nones in a
/// named [`SharedMemory`] segment, which other processes attach to by name
/// (Python's `multiprocessing.shared_memory.ShareableList`, with its
/// layout: Python processes can attach to it too).
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// use multiproc::{ListItem, ShareableList};
///
/// let list = ShareableList::new([ListItem::from("howdy"), 7.into(), 2.5.into(), true.into(), ().into()])?;
/// let other = ShareableList::attach(list.name())?;
/// other.set(1, 42)?;
/// assert_eq!(list.get(1)?, ListItem::Int(42));
/// assert_eq!(list.get(0)?, ListItem::Str("howdy".into()));
/// // "howdy" got a slot of 8 bytes: "partner" fits, a longer text does not.
/// other.set(0, "partner")?;
/// assert!(other.set(0, "a much longer string").is_err());
/// assert_eq!(list.index(&ListItem::Bool(true))?, Some(3));
/// assert_eq!(list.len(), 5);
/// # Ok(()) }
/// ```
///
/// The creating handle owns the name and unlinks it when dropped (see
/// [`SharedMemory`]); attached handles never do. Passed to another process
/// as an argument (or through a channel), the list travels as its
/// segment's descriptor, like a `SharedMemory`.
///
/// # Differences from Python
///
/// - Items are [`ListItem`]s, compared by type and value: `count` and
///   `index` do not take `True` for `1` as Python does.
/// - A str or bytes slot is sized by its UTF-8 byte length (Python counts
///   characters, which truncates non-ASCII text silently).
/// - A str or bytes item ending in a NUL byte is refused: the layout
///   cannot keep trailing NULs (Python strips them silently on reading).
/// - Indexes are `usize`: no negative indexing.
///
/// There is no lock (as in Python); see the module docs' note on
/// concurrent access.
pub struct ShareableList {
    shm: SharedMemory,
    /// The `n + 1` slot offsets from the data area; fixed at creation.
    offsets: Vec<usize>,
}

impl ShareableList {
    /// A new list holding `items`, in a new named segment owned by this
    /// handle (Python's `ShareableList(sequence)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a str or bytes item ending in a NUL
    /// byte or longer than 9,999,999 bytes; as for
    /// [`SharedMemory::create`].
    pub fn new<I>(items: I) -> Result<ShareableList>
    where
        I: IntoIterator,
        I::Item: Into<ListItem>,
    {
        let items: Vec<ListItem> = items.into_iter().map(Into::into).collect();
        let mut offsets = Vec::with_capacity(items.len() + 1);
        offsets.push(0usize);
        for item in &items {
            let slot = match item.text() {
                Some(t) => {
                    check_text(t)?;
                    (t.len() / WORD + 1) * WORD
                }
                None => WORD,
            };
            if slot > MAX_SLOT {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "a shareable list item can hold at most {MAX_SLOT} bytes, not {}",
                        slot - 1
                    ),
                ));
            }
            let end = offsets.last().copied().unwrap_or(0) + slot;
            offsets.push(end);
        }
        let n = items.len();
        let data = data_start(n);
        let size = data + offsets[n] + WORD * n + n;
        let shm = SharedMemory::create(size)?;
        let mut head = Vec::with_capacity(WORD * (n + 2));
        head.extend_from_slice(&(n as i64).to_ne_bytes());
        for o in &offsets {
            head.extend_from_slice(&(*o as i64).to_ne_bytes());
        }
        shm.write_at(0, &head)?;
        let list = ShareableList { shm, offsets };
        for (i, item) in items.iter().enumerate() {
            list.store(i, item)?;
        }
        Ok(list)
    }

    /// Attaches to the list in the segment `name` (Python's
    /// `ShareableList(name=name)`); this handle never unlinks the name.
    ///
    /// # Errors
    ///
    /// As for [`SharedMemory::attach`]; [`ErrorKind::InvalidInput`] when
    /// the segment does not hold a shareable list.
    pub fn attach(name: &str) -> Result<ShareableList> {
        ShareableList::from_shm(SharedMemory::attach(name)?)
    }

    /// The list in `shm`, checked: a count and offsets that fit.
    fn from_shm(shm: SharedMemory) -> Result<ShareableList> {
        let bad = |what: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "shared memory segment {:?} does not hold a shareable list: {what}",
                    shm.name().unwrap_or("(anonymous)")
                ),
            )
        };
        if shm.name().is_none() {
            return Err(bad("it is anonymous (a shareable list lives in a named segment)"));
        }
        let size = shm.size();
        let n = read_word(&shm, 0)?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n < size / WORD)
            .ok_or_else(|| bad("its item count is out of range"))?;
        let mut raw = vec![0u8; WORD * (n + 1)];
        shm.read_at(WORD, &mut raw).map_err(|_| bad("it is too small"))?;
        let offsets: Vec<usize> = raw
            .chunks_exact(WORD)
            .map(|w| usize::try_from(i64::from_ne_bytes(w.try_into().expect("8 bytes"))).unwrap_or(usize::MAX))
            .collect();
        let steps_ok = offsets[0] == 0 && offsets.windows(2).all(|w| w[1] >= w[0].saturating_add(WORD));
        let end = data_start(n)
            .checked_add(offsets[n])
            .and_then(|e| e.checked_add(WORD * n + n));
        if !steps_ok || end.is_none_or(|e| e > size) {
            return Err(bad("its slot offsets are inconsistent"));
        }
        Ok(ShareableList { shm, offsets })
    }

    /// The number of items (Python's `len`).
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// `true` for a list of no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.shm.name().expect("a shareable list lives in a named segment")
    }

    /// The segment holding the list (Python's `shm`).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// The segment, mutably: for [`SharedMemory::unlink`] and
    /// [`SharedMemory::persist`].
    pub fn shm_mut(&mut self) -> &mut SharedMemory {
        &mut self.shm
    }

    /// The list's segment, giving the list up.
    pub fn into_shm(self) -> SharedMemory {
        self.shm
    }

    /// How many bytes item `i`'s slot holds (the most a str or bytes item
    /// stored there may have), `None` past the end.
    pub fn capacity(&self, i: usize) -> Option<usize> {
        (i < self.len()).then(|| self.offsets[i + 1] - self.offsets[i])
    }

    /// Item `i` (Python's `list[i]`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when `i` is out of range (Python's
    /// `IndexError`); [`ErrorKind::InvalidState`] when the slot does not
    /// decode (a write in progress in another process, or a foreign
    /// writer).
    pub fn get(&self, i: usize) -> Result<ListItem> {
        self.check_index(i)?;
        let (fmt, code) = self.slot_format(i)?;
        let at = self.data(i);
        let corrupt = |what: &str| {
            Error::new(
                ErrorKind::InvalidState,
                format!("item {i} of shareable list {:?} does not decode: {what}", self.name()),
            )
        };
        if code == CODE_NONE {
            return Ok(ListItem::None);
        }
        match (&fmt[..], code) {
            (FMT_INT, CODE_AS_IS) => Ok(ListItem::Int(read_word(&self.shm, at)?)),
            (FMT_FLOAT, CODE_AS_IS) => Ok(ListItem::Float(f64::from_bits(read_word(&self.shm, at)? as u64))),
            (FMT_BOOL, CODE_AS_IS) => {
                let mut b = [0u8; 8];
                self.shm.read_at(at, &mut b)?;
                Ok(ListItem::Bool(b[7] != 0))
            }
            (f, CODE_STR | CODE_BYTES) if f.ends_with(b"s") => {
                let len = text_len(f)
                    .filter(|&l| l <= self.capacity(i).unwrap_or(0))
                    .ok_or_else(|| corrupt("a text format that does not fit its slot"))?;
                let mut b = vec![0u8; len];
                self.shm.read_at(at, &mut b)?;
                let keep = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                b.truncate(keep);
                if code == CODE_BYTES {
                    Ok(ListItem::Bytes(b))
                } else {
                    String::from_utf8(b)
                        .map(ListItem::Str)
                        .map_err(|_| corrupt("a str that is not UTF-8"))
                }
            }
            _ => Err(corrupt(&format!(
                "unknown format {:?} with code {code}",
                String::from_utf8_lossy(&fmt)
            ))),
        }
    }

    /// Replaces item `i` (Python's `list[i] = v`). Any item fits a slot's
    /// 8 bytes but str and bytes, which must fit the slot's
    /// [`capacity`](Self::capacity).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when `i` is out of range, or for a str
    /// or bytes item longer than the slot (Python's "bytes/str item
    /// exceeds available storage") or ending in a NUL byte.
    pub fn set(&self, i: usize, v: impl Into<ListItem>) -> Result<()> {
        self.check_index(i)?;
        self.store(i, &v.into())
    }

    fn store(&self, i: usize, v: &ListItem) -> Result<()> {
        let cap = self.offsets[i + 1] - self.offsets[i];
        let at = self.data(i);
        let (fmt, code): (Vec<u8>, u8) = match v {
            ListItem::Int(x) => {
                self.shm.write_at(at, &x.to_ne_bytes())?;
                (FMT_INT.to_vec(), CODE_AS_IS)
            }
            ListItem::Float(x) => {
                self.shm.write_at(at, &x.to_ne_bytes())?;
                (FMT_FLOAT.to_vec(), CODE_AS_IS)
            }
            ListItem::Bool(b) => {
                self.shm.write_at(at, &[0, 0, 0, 0, 0, 0, 0, u8::from(*b)])?;
                (FMT_BOOL.to_vec(), CODE_AS_IS)
            }
            ListItem::None => {
                self.shm.write_at(at, &[0; 8])?;
                (FMT_NONE.to_vec(), CODE_NONE)
            }
            ListItem::Str(_) | ListItem::Bytes(_) => {
                let t = v.text().expect("a text item");
                check_text(t)?;
                if t.len() > cap {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "a {}-byte item exceeds the {cap} bytes of slot {i} of shareable list {:?} \
                             (a slot's size is fixed when the list is made)",
                            t.len(),
                            self.name()
                        ),
                    ));
                }
                let mut padded = vec![0u8; cap];
                padded[..t.len()].copy_from_slice(t);
                self.shm.write_at(at, &padded)?;
                let code = if matches!(v, ListItem::Str(_)) {
                    CODE_STR
                } else {
                    CODE_BYTES
                };
                (format!("{cap}s").into_bytes(), code)
            }
        };
        let mut slot = [0u8; WORD];
        slot[..fmt.len()].copy_from_slice(&fmt);
        self.shm.write_at(self.formats() + WORD * i, &slot)?;
        self.shm.write_at(self.codes() + i, &[code])?;
        Ok(())
    }

    /// Every item, in order.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<ListItem>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// How many items equal `v` (Python's `count`).
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub fn count(&self, v: &ListItem) -> Result<usize> {
        Ok(self.to_vec()?.iter().filter(|x| *x == v).count())
    }

    /// The position of the first item equal to `v`, `None` if there is
    /// none (Python's `index`, which raises `ValueError` then).
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub fn index(&self, v: &ListItem) -> Result<Option<usize>> {
        for i in 0..self.len() {
            if self.get(i)? == *v {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The packing formats of all items, concatenated (Python's `format`).
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub fn format(&self) -> Result<String> {
        let mut all = String::new();
        for i in 0..self.len() {
            all.push_str(&String::from_utf8_lossy(&self.slot_format(i)?.0));
        }
        Ok(all)
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i < self.len() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "index {i} is out of range for shareable list {:?} of {} items",
                self.name(),
                self.len()
            ),
        ))
    }

    /// Where item `i`'s slot starts in the segment.
    fn data(&self, i: usize) -> usize {
        data_start(self.len()) + self.offsets[i]
    }

    fn formats(&self) -> usize {
        data_start(self.len()) + self.offsets[self.len()]
    }

    fn codes(&self) -> usize {
        self.formats() + WORD * self.len()
    }

    /// Item `i`'s packing format (without its NUL padding) and code.
    fn slot_format(&self, i: usize) -> Result<(Vec<u8>, u8)> {
        let mut fmt = [0u8; WORD];
        self.shm.read_at(self.formats() + WORD * i, &mut fmt)?;
        let mut code = [0u8];
        self.shm.read_at(self.codes() + i, &mut code)?;
        let len = fmt.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
        Ok((fmt[..len].to_vec(), code[0]))
    }
}

/// Where the data area starts in a list of `n` items.
fn data_start(n: usize) -> usize {
    WORD * (n + 2)
}

fn read_word(shm: &SharedMemory, at: usize) -> Result<i64> {
    let mut w = [0u8; WORD];
    shm.read_at(at, &mut w)?;
    Ok(i64::from_ne_bytes(w))
}

/// The length in a `"<k>s"` format.
fn text_len(fmt: &[u8]) -> Option<usize> {
    std::str::from_utf8(fmt.strip_suffix(b"s")?).ok()?.parse().ok()
}

fn check_text(t: &[u8]) -> Result<()> {
    if t.last() == Some(&0) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "a shareable list cannot keep a str or bytes item ending in a NUL byte (its layout strips trailing NULs)",
        ));
    }
    Ok(())
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_struct("ShareableList");
        l.field("name", &self.shm.name());
        match self.to_vec() {
            Ok(items) => l.field("items", &items),
            Err(_) => l.field("items", &"(torn)"),
        };
        l.finish()
    }
}

impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<ShareableList, D::Error> {
        use serde::de::Error as _;
        ShareableList::from_shm(SharedMemory::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_up_to_8_bytes_with_room_for_one_more() {
        let l = ShareableList::new([ListItem::from(""), "1234567".into(), "12345678".into(), 1.into()]).unwrap();
        assert_eq!(
            (0..4).map(|i| l.capacity(i).unwrap()).collect::<Vec<_>>(),
            [8, 8, 16, 8]
        );
        assert_eq!(l.format().unwrap(), "8s8s16sq");
        assert_eq!(l.capacity(4), None);
    }

    #[test]
    fn every_type_round_trips_and_a_slot_may_change_type() {
        let items = vec![
            ListItem::Int(-3),
            ListItem::Float(2.5),
            ListItem::Bool(true),
            ListItem::Bool(false),
            ListItem::Str("héllo".into()),
            ListItem::Bytes(vec![0, 1, 2]),
            ListItem::None,
        ];
        let l = ShareableList::new(items.clone()).unwrap();
        assert_eq!(l.to_vec().unwrap(), items);
        l.set(4, 7).unwrap();
        l.set(0, "abcdefg").unwrap();
        l.set(6, b"x".as_slice()).unwrap();
        assert_eq!(l.get(4).unwrap(), ListItem::Int(7));
        assert_eq!(l.get(0).unwrap(), ListItem::Str("abcdefg".into()));
        assert_eq!(l.get(6).unwrap(), ListItem::Bytes(b"x".to_vec()));
        assert_eq!(l.count(&ListItem::Bool(false)).unwrap(), 1);
        assert_eq!(l.index(&ListItem::Float(2.5)).unwrap(), Some(1));
        assert_eq!(l.index(&ListItem::Int(99)).unwrap(), None);
    }

    #[test]
    fn nul_endings_and_oversized_items_are_refused() {
        let l = ShareableList::new([ListItem::from("ab")]).unwrap();
        assert_eq!(l.set(0, "ab\0").unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(
            ShareableList::new([ListItem::from(&b"a\0"[..])]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let e = l.set(0, "123456789").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("exceeds the 8 bytes"), "{e}");
        assert_eq!(
            l.get(0).unwrap(),
            ListItem::Str("ab".into()),
            "a refused item changes nothing"
        );
    }

    /// SHM-09 (CPython's `test_shared_memory_ShareableList_basics`).
    #[test]
    fn cpython_basics() {
        let items = [
            ListItem::from("howdy"),
            b"HoWdY".as_slice().into(),
            (-273.154).into(),
            100.into(),
            ().into(),
            true.into(),
            42.into(),
        ];
        let sl = ShareableList::new(items.clone()).unwrap();
        assert!(format!("{sl:?}").contains(sl.name()) && format!("{sl:?}").contains("howdy"));
        assert_eq!(sl.get(7).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(sl.set(7, 2).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(sl.format().unwrap(), "8s8sdqxxxxxx?xxxxxxxx?q");
        assert_eq!(sl.len(), 7);
        assert_eq!(sl.index(&ListItem::from("100")).unwrap(), None);
        assert_eq!(sl.index(&ListItem::Int(100)).unwrap(), Some(3));
        assert_eq!(sl.to_vec().unwrap(), items);
        sl.set(3, 42).unwrap();
        sl.set(4, "some").unwrap();
        assert_eq!(sl.format().unwrap(), "8s8sdq8sxxxxxxx?q");
        let e = sl.set(4, "far too many").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert_eq!(sl.get(4).unwrap(), ListItem::from("some"));
        sl.set(0, "encodés").unwrap(); // 8 bytes of UTF-8
        assert_eq!(sl.get(0).unwrap(), ListItem::from("encodés"));
        assert_eq!(sl.set(0, "encodéss").unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(
            sl.set(1, b"123456789".as_slice()).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(sl.count(&ListItem::Int(42)).unwrap(), 2);
        // A copy under a new name is independent; a second handle shares.
        let copy = ShareableList::new(sl.to_vec().unwrap()).unwrap();
        assert_ne!(copy.name(), sl.name());
        copy.set(3, 0).unwrap();
        assert_eq!(sl.get(3).unwrap(), ListItem::Int(42));
        let same = ShareableList::attach(sl.name()).unwrap();
        same.set(3, 7).unwrap();
        assert_eq!(sl.get(3).unwrap(), ListItem::Int(7));
        let empty = ShareableList::new(Vec::<ListItem>::new()).unwrap();
        assert_eq!(empty.format().unwrap(), "");
        assert_eq!(empty.index(&ListItem::None).unwrap(), None);
    }

    #[test]
    fn an_empty_list_and_a_foreign_segment() {
        let l = ShareableList::new(Vec::<ListItem>::new()).unwrap();
        assert!(l.is_empty());
        assert!(ShareableList::attach(l.name()).unwrap().is_empty());
        let shm = SharedMemory::create(64).unwrap();
        shm.write_at(0, &1000i64.to_ne_bytes()).unwrap();
        let e = ShareableList::attach(shm.name().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
}
