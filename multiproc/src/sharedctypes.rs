//! Typed values and arrays in shared memory (Python's
//! `multiprocessing.sharedctypes`: `Value`, `Array`, `RawValue`,
//! `RawArray`).
//!
//! # Design
//!
//! Each object is one anonymous memory file (`memfd`, sealed at its size),
//! passed to other processes by descriptor like a [`Queue`](crate::Queue),
//! holding a header, a lock and the data:
//!
//! ```text
//! 0    header: magic, version, lock flag, element size and alignment,
//!      a hash of the element type's name, element count
//! 64   pthread_mutex_t (robust, process-shared, error-checking)
//! 128  the elements (aligned for T)
//! ```
//!
//! The element type is any [`bytemuck::Pod`]: plain data for which every
//! bit pattern is valid, so whatever another process (or a holder killed
//! mid-write) leaves in the memory is a valid `T`. A handle received by
//! another process checks the header against its own `T` (size, alignment,
//! type name) and reports a mismatch as a deserialisation error.
//!
//! **Locked ([`Value`], [`Array`]).** Every access goes through the lock:
//! [`Value::lock`] returns a guard that dereferences to the value (an
//! [`ArrayGuard`] to a slice), so holding `&mut T` is sound: no other
//! process touches the data without the lock. The lock is a robust
//! process-shared `pthread_mutex_t` in the same memory file, kept
//! self-contained (not a general [`Lock`](https://docs.python.org/3/library/multiprocessing.html#multiprocessing.Lock)
//! object). When a holder dies holding it, the next locker gets
//! [`AcquireError::OwnerDied`] *with the guard*: the lock is already usable
//! again, the data is whatever the dead holder left (any bit pattern is a
//! valid `T`, but an update may be half done). Only that one locker is
//! told, not every later one (unlike std's `Mutex` poisoning, which stays).
//! [`AcquireError::recover`] turns it into the guard for callers that do not
//! care. Relocking from the thread that holds the lock is an error, not a
//! deadlock. `+=` through a guard is atomic with respect to other lockers
//! (Python's `v.value += 1` is not, without `get_lock()`).
//!
//! **Raw ([`RawValue`], [`RawArray`]).** No lock: `load`/`store`/`get`/`set`
//! are single volatile accesses (a `T` wider than a machine word can be
//! read half-updated), bulk operations are raw copies. No reference to the
//! shared data is ever handed out.
//!
//! A leaked guard (`mem::forget`) keeps the lock held forever, as with any
//! mutex; dropping the last handle of a value whose lock a thread of this
//! process still holds leaves its memory mapped until the process exits
//! (glibc keeps the held mutex's address on the thread's robust list).

use std::{
    fmt,
    marker::PhantomData,
    ops::{Deref, DerefMut},
    time::Duration,
};

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    Error, ErrorKind, Result, codec,
    sync::AcquireError,
    sys::{self, Fd, Locked, MUTEX_SIZE, Mapping, RobustMutex},
};

const MAGIC: u64 = u64::from_le_bytes(*b"mpshval\0");
const VERSION: u32 = 1;
const MUTEX_OFF: usize = 64;
const HEADER_END: usize = 128;

const _: () = assert!(MUTEX_OFF + MUTEX_SIZE <= HEADER_END);

/// The header at the start of the memory file, as six words: magic,
/// version and lock flag, element size, element alignment, type hash,
/// element count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Header {
    magic: u64,
    version: u32,
    locked: u32,
    elem_size: u64,
    elem_align: u64,
    type_hash: u64,
    len: u64,
}

impl Header {
    fn to_words(self) -> [u64; 6] {
        [
            self.magic,
            u64::from(self.version) | u64::from(self.locked) << 32,
            self.elem_size,
            self.elem_align,
            self.type_hash,
            self.len,
        ]
    }

    fn from_words(w: [u64; 6]) -> Header {
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
fn type_hash<T>() -> u64 {
    std::any::type_name::<T>().bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The shared memory behind all four types.
struct Shared<T> {
    map: Mapping,
    fd: Fd,
    len: usize,
    data: usize,
    mutex: Option<RobustMutex>,
    _t: PhantomData<T>,
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // A lock still held by a thread of this process (a leaked guard)
        // is on that thread's robust list: its memory must stay mapped.
        if self.mutex.as_ref().is_some_and(RobustMutex::held_by_this_process) {
            self.map.keep_mapped();
        }
    }
}

impl<T: Pod> Shared<T> {
    fn header(len: usize, locked: bool) -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            locked: u32::from(locked),
            elem_size: size_of::<T>() as u64,
            elem_align: align_of::<T>() as u64,
            type_hash: type_hash::<T>(),
            len: len as u64,
        }
    }

    /// Where the elements start; the mapping is page-aligned.
    fn data_offset() -> Result<usize> {
        if align_of::<T>() > 4096 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "shared values support element alignments up to 4096 bytes",
            ));
        }
        Ok(HEADER_END.next_multiple_of(align_of::<T>()))
    }

    fn new(len: usize, locked: bool) -> Result<Shared<T>> {
        let data = Self::data_offset()?;
        let size = len
            .checked_mul(size_of::<T>())
            .and_then(|n| n.checked_add(data))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("an array of {len} elements is too large"),
                )
            })?;
        let fd = sys::memfd_sealed(size).map_err(|e| Error::io("failed to create shared memory for a value", e))?;
        let map = Mapping::new(&fd, size).map_err(|e| Error::io("failed to map shared memory for a value", e))?;
        map.copy_in(0, bytemuck::bytes_of(&Self::header(len, locked).to_words()));
        let mutex = if locked {
            Some(RobustMutex::init(&map, MUTEX_OFF).map_err(|e| Error::io("failed to initialise a shared lock", e))?)
        } else {
            None
        };
        Ok(Shared {
            map,
            fd: fd.into_endpoint(),
            len,
            data,
            mutex,
            _t: PhantomData,
        })
    }

    /// The object another process passed: checks size, seals and header.
    fn from_fd(fd: Fd, len: u64, locked: bool) -> std::result::Result<Shared<T>, String> {
        let data = Self::data_offset().map_err(|e| e.to_string())?;
        let size = sys::file_size(&fd).map_err(|e| format!("not a shared value: {e}"))?;
        let want = usize::try_from(len)
            .ok()
            .and_then(|n| n.checked_mul(size_of::<T>()))
            .and_then(|n| n.checked_add(data));
        let Some(want) = want.filter(|&w| w as u64 == size) else {
            return Err(format!(
                "size mismatch: the shared memory has {size} bytes, {len} elements of {} need {}",
                std::any::type_name::<T>(),
                want.map_or_else(|| "more".to_owned(), |w| w.to_string())
            ));
        };
        if !sys::is_size_sealed(&fd) {
            return Err("the received shared value's memory is not sealed at its size".to_owned());
        }
        let map = Mapping::new(&fd, want).map_err(|e| format!("failed to map a shared value: {e}"))?;
        let mut words = [0u64; 6];
        map.copy_out(0, bytemuck::bytes_of_mut(&mut words));
        let got = Header::from_words(words);
        let expected = Self::header(len as usize, locked);
        if got != expected {
            let what = if got.magic != MAGIC || got.version != VERSION {
                "it is not a multiproc shared value".to_owned()
            } else if got.locked != expected.locked {
                "a locked value was received as a raw one, or the reverse".to_owned()
            } else if got.len != expected.len {
                format!("size mismatch: it holds {} elements, not {}", got.len, expected.len)
            } else {
                format!(
                    "type mismatch: its elements are not {} ({} bytes, aligned to {})",
                    std::any::type_name::<T>(),
                    got.elem_size,
                    got.elem_align
                )
            };
            return Err(format!("cannot use the received shared value: {what}"));
        }
        let mutex = locked.then(|| RobustMutex::attach(&map, MUTEX_OFF));
        Ok(Shared {
            map,
            fd: fd.into_endpoint(),
            len: len as usize,
            data,
            mutex,
            _t: PhantomData,
        })
    }

    fn offset(&self, i: usize) -> usize {
        self.data + i * size_of::<T>()
    }

    fn load(&self, i: usize) -> T {
        self.map.load(self.offset(i))
    }

    fn store(&self, i: usize, v: T) {
        self.map.store(self.offset(i), v)
    }

    fn copy_out(&self, out: &mut [T]) {
        self.map.copy_out(self.data, bytemuck::cast_slice_mut(out));
    }

    fn copy_in(&self, src: &[T]) {
        self.map.copy_in(self.data, bytemuck::cast_slice(src));
    }

    fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.copy_out(&mut v);
        v
    }

    fn ptr(&self) -> *mut T {
        self.map.as_ptr().wrapping_add(self.data).cast()
    }

    fn mutex(&self) -> &RobustMutex {
        self.mutex.as_ref().expect("locked objects have a mutex")
    }

    /// Takes the lock; `Ok(true)` when its previous holder died.
    fn lock(&self, timeout: Option<Duration>) -> std::result::Result<bool, LockFail> {
        match self.mutex().lock(timeout) {
            Ok(Locked::Yes) => Ok(false),
            Ok(Locked::OwnerDied) => Ok(true),
            Ok(Locked::Busy) => Err(LockFail::Timeout),
            Err(e) if e.raw_os_error() == Some(libc::EDEADLK) => Err(LockFail::Failed(Error::new(
                ErrorKind::InvalidState,
                "this thread already holds the shared value's lock",
            ))),
            Err(e) => Err(LockFail::Failed(Error::io("failed to take the shared value's lock", e))),
        }
    }

    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        Passed {
            fd: codec::fds::export(self.fd.raw()).map_err(S::Error::custom)?,
            len: self.len as u64,
        }
        .serialize(s)
    }

    fn deserialize<'de, D: Deserializer<'de>>(d: D, locked: bool) -> std::result::Result<Shared<T>, D::Error> {
        use serde::de::Error as _;
        let p = Passed::deserialize(d)?;
        let fd = codec::fds::import(p.fd).map_err(D::Error::custom)?;
        Shared::from_fd(fd, p.len, locked).map_err(D::Error::custom)
    }
}

/// What a shared value becomes on the wire: the index of its descriptor
/// (see `crate::codec::fds`) and its element count.
#[derive(Serialize, Deserialize)]
struct Passed {
    fd: u32,
    len: u64,
}

enum LockFail {
    Timeout,
    Failed(Error),
}

/// A lock failure without a guard yet.
fn from_fail<G>(f: LockFail) -> AcquireError<G> {
    match f {
        LockFail::Timeout => AcquireError::Timeout,
        LockFail::Failed(e) => AcquireError::Failed(e),
    }
}

/// A guard's result.
fn guard_result<G>(
    r: std::result::Result<bool, LockFail>,
    g: impl FnOnce() -> G,
) -> std::result::Result<G, AcquireError<G>> {
    match r {
        Ok(false) => Ok(g()),
        Ok(true) => Err(AcquireError::OwnerDied(g())),
        Err(f) => Err(from_fail(f)),
    }
}

// ---------------------------------------------------------------------
// Value

/// One `T` in shared memory with a lock (Python's `Value(t, v)`).
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// use multiproc::{ProcessBuilder, Value};
///
/// fn add(v: Value<u64>) {
///     for _ in 0..1000 {
///         *v.lock().expect("nobody dies holding it") += 1;
///     }
/// }
///
/// let v = Value::new(0u64)?;
/// let mut p = ProcessBuilder::new().target_with(add, v.clone());
/// p.start()?;
/// add(v.clone());
/// p.join()?;
/// assert_eq!(v.load()?, 2000);
/// # Ok(()) }
/// ```
pub struct Value<T> {
    shared: std::sync::Arc<Shared<T>>,
}

impl<T> Clone for Value<T> {
    /// Another handle on the same value.
    fn clone(&self) -> Self {
        Value {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Pod> Value<T> {
    /// A new shared value holding `v`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the system refuses the memory.
    pub fn new(v: T) -> Result<Value<T>> {
        let shared = Shared::new(1, true)?;
        shared.store(0, v);
        Ok(Value {
            shared: std::sync::Arc::new(shared),
        })
    }

    /// Takes the lock, waiting as long as it takes; the guard dereferences
    /// to the value and unlocks when dropped.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] (with the guard) when the previous holder
    /// died holding the lock; [`AcquireError::Failed`] when this thread
    /// already holds it.
    #[doc(alias = "get_lock")]
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_with(None)
    }

    /// Like [`lock`](Self::lock), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for `lock`, and [`AcquireError::Timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_with(Some(timeout))
    }

    /// Like [`lock`](Self::lock), without waiting.
    ///
    /// # Errors
    ///
    /// As for `lock`, and [`AcquireError::Timeout`] when the lock is busy.
    pub fn try_lock(&self) -> std::result::Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_with(Some(Duration::ZERO))
    }

    fn lock_with(
        &self,
        t: Option<Duration>,
    ) -> std::result::Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        guard_result(self.shared.lock(t), || ValueGuard {
            shared: &self.shared,
            _not_send: PhantomData,
        })
    }

    /// The value, read under the lock (Python's `v.value`). A dead
    /// previous holder is not an error here.
    ///
    /// # Errors
    ///
    /// As for [`lock`](Self::lock), except `OwnerDied`.
    pub fn load(&self) -> Result<T> {
        Ok(*self.lock().or_else(AcquireError::recover)?)
    }

    /// Replaces the value under the lock (Python's `v.value = x`).
    ///
    /// # Errors
    ///
    /// As for [`load`](Self::load).
    pub fn store(&self, v: T) -> Result<()> {
        *self.lock().or_else(AcquireError::recover)? = v;
        Ok(())
    }
}

impl<T> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value<{}>", std::any::type_name::<T>())
    }
}

/// The lock of a [`Value`], held; dereferences to the value.
pub struct ValueGuard<'a, T: Pod> {
    shared: &'a Shared<T>,
    /// The mutex must be unlocked by the thread that locked it.
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    #[allow(unsafe_code)]
    fn deref(&self) -> &T {
        // SAFETY: the element is in bounds and aligned for T, any bits are
        // a valid T (Pod), and this guard holds the lock that every access
        // to a locked value takes, so nothing writes it while `&T` lives.
        unsafe { &*self.shared.ptr() }
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    #[allow(unsafe_code)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the lock gives this guard exclusive access.
        unsafe { &mut *self.shared.ptr() }
    }
}

impl<T: Pod> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.shared.mutex().unlock();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// ---------------------------------------------------------------------
// Array

/// A fixed number of `T` in shared memory with a lock (Python's
/// `Array(t, n)`).
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let a = multiproc::Array::from_slice(&[680, 626, 934, 821u32])?;
/// let mut g = a.lock()?;
/// assert_eq!(g[3], 821);
/// g[0] += 1;
/// assert_eq!(g.get(9), None);
/// drop(g);
/// assert_eq!(a.to_vec()?, [681, 626, 934, 821]);
/// # Ok(()) }
/// ```
pub struct Array<T> {
    shared: std::sync::Arc<Shared<T>>,
}

impl<T> Clone for Array<T> {
    /// Another handle on the same array.
    fn clone(&self) -> Self {
        Array {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Pod> Array<T> {
    /// A new array of `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the system refuses the memory,
    /// [`ErrorKind::InvalidInput`] when `len` elements do not fit memory.
    pub fn new(len: usize) -> Result<Array<T>> {
        Ok(Array {
            shared: std::sync::Arc::new(Shared::new(len, true)?),
        })
    }

    /// A new array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn from_slice(items: &[T]) -> Result<Array<T>> {
        let shared = Shared::new(items.len(), true)?;
        shared.copy_in(items);
        Ok(Array {
            shared: std::sync::Arc::new(shared),
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shared.len
    }

    /// `true` for an array of no elements.
    pub fn is_empty(&self) -> bool {
        self.shared.len == 0
    }

    /// Takes the lock; the guard dereferences to the elements as a slice
    /// (indexing past the end panics, [`slice::get`] returns `None`).
    ///
    /// # Errors
    ///
    /// As for [`Value::lock`].
    #[doc(alias = "get_lock")]
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_with(None)
    }

    /// Like [`lock`](Self::lock), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for `lock`, and [`AcquireError::Timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_with(Some(timeout))
    }

    /// Like [`lock`](Self::lock), without waiting.
    ///
    /// # Errors
    ///
    /// As for `lock`, and [`AcquireError::Timeout`] when the lock is busy.
    pub fn try_lock(&self) -> std::result::Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_with(Some(Duration::ZERO))
    }

    fn lock_with(
        &self,
        t: Option<Duration>,
    ) -> std::result::Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        guard_result(self.shared.lock(t), || ArrayGuard {
            shared: &self.shared,
            _not_send: PhantomData,
        })
    }

    /// A copy of the elements, taken under the lock. A dead previous
    /// holder is not an error here.
    ///
    /// # Errors
    ///
    /// As for [`Value::load`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock().or_else(AcquireError::recover)?.to_vec())
    }
}

impl<T> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array<{}>[{}]", std::any::type_name::<T>(), self.shared.len)
    }
}

/// The lock of an [`Array`], held; dereferences to the elements.
pub struct ArrayGuard<'a, T: Pod> {
    shared: &'a Shared<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    #[allow(unsafe_code)]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements of T, aligned, lie in the mapping; any
        // bits are valid (Pod); the held lock excludes every writer.
        unsafe { std::slice::from_raw_parts(self.shared.ptr(), self.shared.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    #[allow(unsafe_code)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; the lock gives this guard exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.shared.ptr(), self.shared.len) }
    }
}

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.shared.mutex().unlock();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// ---------------------------------------------------------------------
// Raw variants

/// One `T` in shared memory without a lock (Python's `RawValue`): every
/// access is one volatile load or store.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let v = multiproc::RawValue::new(3.625f64)?;
/// v.store(-4.25);
/// assert_eq!(v.load(), -4.25);
/// # Ok(()) }
/// ```
pub struct RawValue<T> {
    shared: std::sync::Arc<Shared<T>>,
}

impl<T> Clone for RawValue<T> {
    /// Another handle on the same value.
    fn clone(&self) -> Self {
        RawValue {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Pod> RawValue<T> {
    /// A new shared value holding `v`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the system refuses the memory.
    pub fn new(v: T) -> Result<RawValue<T>> {
        let shared = Shared::new(1, false)?;
        shared.store(0, v);
        Ok(RawValue {
            shared: std::sync::Arc::new(shared),
        })
    }

    /// The value (torn if another process writes a `T` wider than a
    /// machine word at the same moment).
    pub fn load(&self) -> T {
        self.shared.load(0)
    }

    /// Replaces the value.
    pub fn store(&self, v: T) {
        self.shared.store(0, v)
    }

    /// The value's address in this process.
    pub fn as_ptr(&self) -> *mut T {
        self.shared.ptr()
    }
}

impl<T> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawValue<{}>", std::any::type_name::<T>())
    }
}

/// A fixed number of `T` in shared memory without a lock (Python's
/// `RawArray`).
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let a = multiproc::RawArray::<i32>::new(10)?;
/// a.set(3, 821)?;
/// assert_eq!(a.get(3), Some(821));
/// assert_eq!(a.get(10), None);
/// assert!(a.set(10, 1).is_err());
/// # Ok(()) }
/// ```
pub struct RawArray<T> {
    shared: std::sync::Arc<Shared<T>>,
}

impl<T> Clone for RawArray<T> {
    /// Another handle on the same array.
    fn clone(&self) -> Self {
        RawArray {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Pod> RawArray<T> {
    /// A new array of `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// As for [`Array::new`].
    pub fn new(len: usize) -> Result<RawArray<T>> {
        Ok(RawArray {
            shared: std::sync::Arc::new(Shared::new(len, false)?),
        })
    }

    /// A new array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As for [`Array::new`].
    pub fn from_slice(items: &[T]) -> Result<RawArray<T>> {
        let shared = Shared::new(items.len(), false)?;
        shared.copy_in(items);
        Ok(RawArray {
            shared: std::sync::Arc::new(shared),
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shared.len
    }

    /// `true` for an array of no elements.
    pub fn is_empty(&self) -> bool {
        self.shared.len == 0
    }

    /// Element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        (i < self.shared.len).then(|| self.shared.load(i))
    }

    /// Replaces element `i`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when `i` is past the end.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.check_index(i)?;
        self.shared.store(i, v);
        Ok(())
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i < self.shared.len {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "index {i} is out of range for a shared array of {} elements",
                    self.shared.len
                ),
            ))
        }
    }

    /// A copy of the elements.
    pub fn to_vec(&self) -> Vec<T> {
        self.shared.to_vec()
    }

    /// Copies `items` over the elements.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] unless `items` has exactly
    /// [`len`](Self::len) elements.
    pub fn copy_from_slice(&self, items: &[T]) -> Result<()> {
        if items.len() != self.shared.len {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "cannot copy {} elements into a shared array of {}",
                    items.len(),
                    self.shared.len
                ),
            ));
        }
        self.shared.copy_in(items);
        Ok(())
    }

    /// The first element's address in this process.
    pub fn as_ptr(&self) -> *mut T {
        self.shared.ptr()
    }
}

impl<T> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawArray<{}>[{}]", std::any::type_name::<T>(), self.shared.len)
    }
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
