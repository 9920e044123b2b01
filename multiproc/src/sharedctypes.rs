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
//! 0    header: magic, version, lock kind, element size and alignment,
//!      a hash of the element type's name, element count
//! 48   the thread holding a guard, under a caller's lock (0: none)
//! 64   pthread_mutex_t (robust, process-shared, error-checking), unused
//!      under a caller's lock
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
//! and the bulk operations copy with relaxed atomics of one size per `T`
//! (the widest of 8, 4, 2 or 1 bytes that tiles it and that its alignment
//! allows), so threads of one process may use a value at once without a
//! data race, and a `T` of at most a machine word is never torn (a wider
//! one can be read half-updated). No reference to the shared data is ever
//! handed out.
//!
//! **With a caller's lock** ([`Value::with_lock`], [`Array::with_lock`]:
//! Python's `Value(t, v, lock=L)`). Several values share one
//! [`Lock`](crate::Lock) or [`RLock`](crate::RLock) of the caller's
//! instead of a lock of their own: holding it for one excludes the holders
//! of the others, in every process, so one critical section can update
//! several values consistently. The lock travels with each value (its
//! descriptor beside the value's), and [`Value::get_lock`] returns it.
//! Under an `RLock` (Python's default kind), [`Value::lock`] nests inside
//! the caller's own acquisition (`with lock: a.value += 1; b.value += 1`);
//! a `Lock` does not nest, so values under a held `Lock` are opened with
//! [`Value::lock_in`], which takes the lock's guard as proof. A value never
//! hands out two guards at once (two `&mut T`): the header records the
//! thread that holds a guard on it, and a second guard from that thread is
//! refused with [`ErrorKind::InvalidState`]. `lock=True` is [`Value::new`],
//! `lock=False` is [`RawValue`].
//!
//! A leaked guard (`mem::forget`) keeps the lock held forever, as with any
//! mutex (and a value under a caller's lock borrowed by its thread); dropping the last handle of a value whose lock a thread of this
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
    sync::{AcquireError, Lock, LockGuard, RLock},
    sys::{self, Fd, LockError, Locked, MUTEX_SIZE, Mapping, MutexKind, RobustMutex, unit_of},
};

const MAGIC: u64 = u64::from_le_bytes(*b"mpshval\0");
const VERSION: u32 = 2;
/// The thread id of a guard's holder, under a caller's lock.
const BORROW_OFF: usize = 48;
const MUTEX_OFF: usize = 64;
const HEADER_END: usize = 128;

const _: () = assert!(MUTEX_OFF + MUTEX_SIZE <= HEADER_END && BORROW_OFF + 4 <= MUTEX_OFF);

/// The lock of kind `locked` in the header.
const RAW: u32 = 0;
const OWN: u32 = 1;
const CALLERS_LOCK: u32 = 2;
const CALLERS_RLOCK: u32 = 3;

/// The caller's lock that a [`Value`] or [`Array`] built
/// [`with_lock`](Value::with_lock) shares with others (Python's
/// `lock=L`); [`Value::get_lock`] returns it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ValueLock {
    /// A [`Lock`]: not recursive; open values under a held one with
    /// [`Value::lock_in`].
    Lock(Lock),
    /// An [`RLock`]: [`Value::lock`] nests inside the caller's own
    /// acquisition.
    RLock(RLock),
}

impl From<Lock> for ValueLock {
    fn from(l: Lock) -> ValueLock {
        ValueLock::Lock(l)
    }
}

impl From<RLock> for ValueLock {
    fn from(l: RLock) -> ValueLock {
        ValueLock::RLock(l)
    }
}

impl ValueLock {
    fn code(&self) -> u32 {
        match self {
            ValueLock::Lock(_) => CALLERS_LOCK,
            ValueLock::RLock(_) => CALLERS_RLOCK,
        }
    }

    fn acquire(&self, t: Option<Duration>) -> std::result::Result<(), AcquireError<()>> {
        match self {
            ValueLock::Lock(l) => l.acquire_unguarded(t),
            ValueLock::RLock(l) => l.acquire_unguarded(t),
        }
    }

    fn release(&self) -> Result<()> {
        match self {
            ValueLock::Lock(l) => l.release(),
            ValueLock::RLock(l) => l.release(),
        }
    }

    fn owner_tid(&self) -> u32 {
        match self {
            ValueLock::Lock(l) => l.owner_tid(),
            ValueLock::RLock(l) => l.owner_tid(),
        }
    }
}

/// What guards an object's elements.
enum Guarding {
    /// Nothing (`RawValue`, `RawArray`).
    Raw,
    /// Its own mutex in the same memory.
    Own(RobustMutex),
    /// A caller's lock, shared with other objects.
    Callers(ValueLock),
}

/// How to make or receive an object.
enum Mode {
    Raw,
    Own,
    Callers(ValueLock),
}

impl Mode {
    fn code(&self) -> u32 {
        match self {
            Mode::Raw => RAW,
            Mode::Own => OWN,
            Mode::Callers(l) => l.code(),
        }
    }
}

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
    guarding: Guarding,
    _t: PhantomData<T>,
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // A lock still held by a thread of this process (a leaked guard)
        // is on that thread's robust list: its memory must stay mapped.
        if let Guarding::Own(m) = &self.guarding
            && m.held_by_this_process()
        {
            self.map.keep_mapped();
        }
    }
}

impl<T: Pod> Shared<T> {
    fn header(len: usize, locked: u32) -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            locked,
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

    fn new(len: usize, mode: Mode) -> Result<Shared<T>> {
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
        map.copy_in(0, bytemuck::bytes_of(&Self::header(len, mode.code()).to_words()));
        let guarding = match mode {
            Mode::Raw => Guarding::Raw,
            Mode::Own => Guarding::Own(
                RobustMutex::init(&map, MUTEX_OFF, MutexKind::ErrorCheck)
                    .map_err(|e| Error::io("failed to initialise a shared lock", e))?,
            ),
            Mode::Callers(l) => Guarding::Callers(l),
        };
        Ok(Shared {
            map,
            fd: fd.into_endpoint(),
            len,
            data,
            guarding,
            _t: PhantomData,
        })
    }

    /// The object another process passed: checks size, seals and header.
    fn from_fd(fd: Fd, len: u64, mode: Mode) -> std::result::Result<Shared<T>, String> {
        let data = Self::data_offset().map_err(|e| e.to_string())?;
        let size = sys::file_size(&fd).map_err(|e| format!("not a shared value: {e}"))?;
        let want = usize::try_from(len)
            .ok()
            .and_then(|n| n.checked_mul(size_of::<T>()))
            .and_then(|n| n.checked_add(data));
        let Some(want) = want.filter(|&w| sys::size_matches(size, w as u64)) else {
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
        let expected = Self::header(len as usize, mode.code());
        if got != expected {
            let what = if got.magic != MAGIC || got.version != VERSION {
                "it is not a multiproc shared value".to_owned()
            } else if got.locked != expected.locked {
                "a locked value was received as a raw one, or the reverse, or with another lock".to_owned()
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
        let guarding = match mode {
            Mode::Raw => Guarding::Raw,
            Mode::Own => Guarding::Own(RobustMutex::attach(&map, MUTEX_OFF)),
            Mode::Callers(l) => Guarding::Callers(l),
        };
        Ok(Shared {
            map,
            fd: fd.into_endpoint(),
            len: len as usize,
            data,
            guarding,
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
        self.map
            .copy_out_units(self.data, bytemuck::cast_slice_mut(out), unit_of::<T>());
    }

    fn copy_in(&self, src: &[T]) {
        self.map
            .copy_in_units(self.data, bytemuck::cast_slice(src), unit_of::<T>());
    }

    fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.copy_out(&mut v);
        v
    }

    fn ptr(&self) -> *mut T {
        self.map.as_ptr().wrapping_add(self.data).cast()
    }

    /// Takes the lock; `Ok(true)` when its previous holder died.
    fn lock(&self, timeout: Option<Duration>) -> std::result::Result<bool, LockFail> {
        let m = match &self.guarding {
            Guarding::Own(m) => m,
            Guarding::Callers(l) => return self.lock_callers(l, timeout),
            Guarding::Raw => unreachable!("only locked objects are locked"),
        };
        match m.lock(timeout.map(sys::deadline_after)) {
            Ok(Locked::Clean) => Ok(false),
            Ok(Locked::OwnerDied) => Ok(true),
            Err(LockError::Timeout) => Err(LockFail::Timeout),
            Err(LockError::Deadlock) => Err(LockFail::Failed(Error::new(
                ErrorKind::InvalidState,
                "this thread already holds the shared value's lock",
            ))),
            Err(e) => Err(LockFail::Failed(Error::io(
                "failed to take the shared value's lock",
                e.into(),
            ))),
        }
    }

    /// Takes a caller's lock, then marks this thread as the holder of the
    /// (one) guard; a second guard from the same thread is refused (an
    /// `RLock` would nest, and two `&mut T` must never exist).
    fn lock_callers(&self, l: &ValueLock, timeout: Option<Duration>) -> std::result::Result<bool, LockFail> {
        let died = match l.acquire(timeout) {
            Ok(()) => false,
            Err(AcquireError::OwnerDied(())) => true,
            Err(AcquireError::Timeout) => return Err(LockFail::Timeout),
            Err(AcquireError::Failed(e)) => return Err(LockFail::Failed(e)),
        };
        if let Err(e) = self.borrow(l) {
            // Cannot fail: this thread holds the level it just took.
            let _ = l.release();
            return Err(LockFail::Failed(e));
        }
        Ok(died)
    }

    /// Records this thread (the holder of the caller's lock `l`) as the
    /// holder of the value's guard, unless it holds one already. A stale
    /// id (a holder that died) is overwritten.
    fn borrow(&self, l: &ValueLock) -> Result<()> {
        let me = l.owner_tid();
        if me != 0 && self.map.load::<u32>(BORROW_OFF) == me {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "this thread already holds a guard on this shared value",
            ));
        }
        self.map.store(BORROW_OFF, me);
        Ok(())
    }

    /// Ends a guard: clears the borrow mark, and releases the lock when
    /// the guard took it.
    fn unlock(&self, release: bool) {
        match &self.guarding {
            Guarding::Own(m) => {
                // Cannot fail: this thread holds it (guards are not Send).
                let unlocked = m.unlock();
                debug_assert!(unlocked.is_ok(), "unlocking a mutex this thread holds");
            }
            Guarding::Callers(l) => {
                self.map.store(BORROW_OFF, 0u32);
                if release {
                    // Cannot fail: this thread holds the level the guard
                    // took (guards are not Send).
                    let _ = l.release();
                }
            }
            Guarding::Raw => {}
        }
    }

    fn callers_lock(&self) -> Option<&ValueLock> {
        match &self.guarding {
            Guarding::Callers(l) => Some(l),
            _ => None,
        }
    }

    /// Checks that `held` guards this object's caller's `Lock` and marks
    /// the object borrowed by this thread.
    fn open_in(&self, held: &LockGuard<'_>) -> Result<()> {
        match &self.guarding {
            Guarding::Callers(l @ ValueLock::Lock(lock)) if lock.is_same_lock(held.lock()) => self.borrow(l),
            Guarding::Callers(ValueLock::Lock(_)) => Err(Error::new(
                ErrorKind::InvalidInput,
                "the guard is of another lock than the shared value's",
            )),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                "lock_in opens values made with a caller's Lock (use lock() for the others)",
            )),
        }
    }

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
        Self::make(v, Mode::Own)
    }

    /// A new shared value holding `v`, guarded by the caller's `lock`
    /// (a [`Lock`] or an [`RLock`]) instead of a lock of its own (Python's
    /// `Value(t, v, lock=L)`): every value made with the same lock is
    /// excluded by holding it once. The lock travels with the value to
    /// other processes; [`get_lock`](Self::get_lock) returns it.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use multiproc::{RLock, Value};
    ///
    /// let lock = RLock::new()?;
    /// let (a, b) = (Value::with_lock(0u32, lock.clone())?, Value::with_lock(0u32, lock.clone())?);
    /// {
    ///     // Python's `with lock: a.value += 1; b.value += 1`.
    ///     let _held = lock.acquire()?;
    ///     *a.lock()? += 1;
    ///     *b.lock()? += 1;
    /// }
    /// assert_eq!((a.load()?, b.load()?), (1, 1));
    /// assert!(a.get_lock().is_some());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    #[doc(alias = "Value(typecode, v, lock)")]
    pub fn with_lock(v: T, lock: impl Into<ValueLock>) -> Result<Value<T>> {
        Self::make(v, Mode::Callers(lock.into()))
    }

    fn make(v: T, mode: Mode) -> Result<Value<T>> {
        let shared = Shared::new(1, mode)?;
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
            release: true,
            _not_send: PhantomData,
        })
    }

    /// Opens a value made [`with_lock`](Self::with_lock) of a [`Lock`]
    /// under that lock, held by `held`: one critical section for several
    /// values (a `Lock` does not nest, so [`lock`](Self::lock) would be
    /// refused). The guard does not release the lock; it cannot outlive
    /// `held`.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use multiproc::{Lock, Value};
    ///
    /// let lock = Lock::new()?;
    /// let (a, b) = (Value::with_lock(10i64, lock.clone())?, Value::with_lock(0i64, lock.clone())?);
    /// {
    ///     // Move 3 from a to b: nobody sees one without the other.
    ///     let held = lock.acquire()?;
    ///     *a.lock_in(&held)? -= 3;
    ///     *b.lock_in(&held)? += 3;
    /// }
    /// assert_eq!((a.load()?, b.load()?), (7, 3));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when the value is not under `held`'s
    /// lock; [`ErrorKind::InvalidState`] when this thread holds a guard
    /// on the value already.
    pub fn lock_in<'a>(&'a self, held: &'a LockGuard<'_>) -> Result<ValueGuard<'a, T>> {
        self.shared.open_in(held)?;
        Ok(ValueGuard {
            shared: &self.shared,
            release: false,
            _not_send: PhantomData,
        })
    }

    /// The caller's lock the value was made with
    /// ([`with_lock`](Self::with_lock), Python's `get_lock()`); `None`
    /// for a value with a lock of its own, taken only through
    /// [`lock`](Self::lock).
    pub fn get_lock(&self) -> Option<&ValueLock> {
        self.shared.callers_lock()
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
    /// The guard took the lock (not one of [`Value::lock_in`]).
    release: bool,
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
        self.shared.unlock(self.release);
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
            shared: std::sync::Arc::new(Shared::new(len, Mode::Own)?),
        })
    }

    /// A new array of `len` zeroed elements guarded by the caller's `lock`
    /// (Python's `Array(t, n, lock=L)`; see [`Value::with_lock`]).
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    #[doc(alias = "Array(typecode, n, lock)")]
    pub fn with_lock(len: usize, lock: impl Into<ValueLock>) -> Result<Array<T>> {
        Ok(Array {
            shared: std::sync::Arc::new(Shared::new(len, Mode::Callers(lock.into()))?),
        })
    }

    /// A new array holding a copy of `items`, guarded by the caller's
    /// `lock` (see [`with_lock`](Self::with_lock)).
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn from_slice_with_lock(items: &[T], lock: impl Into<ValueLock>) -> Result<Array<T>> {
        let shared = Shared::new(items.len(), Mode::Callers(lock.into()))?;
        shared.copy_in(items);
        Ok(Array {
            shared: std::sync::Arc::new(shared),
        })
    }

    /// A new array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn from_slice(items: &[T]) -> Result<Array<T>> {
        let shared = Shared::new(items.len(), Mode::Own)?;
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
            release: true,
            _not_send: PhantomData,
        })
    }

    /// Opens an array made [`with_lock`](Self::with_lock) of a [`Lock`]
    /// under that lock, held by `held` (see [`Value::lock_in`]).
    ///
    /// # Errors
    ///
    /// As for [`Value::lock_in`].
    pub fn lock_in<'a>(&'a self, held: &'a LockGuard<'_>) -> Result<ArrayGuard<'a, T>> {
        self.shared.open_in(held)?;
        Ok(ArrayGuard {
            shared: &self.shared,
            release: false,
            _not_send: PhantomData,
        })
    }

    /// The caller's lock the array was made with (see
    /// [`Value::get_lock`]).
    pub fn get_lock(&self) -> Option<&ValueLock> {
        self.shared.callers_lock()
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
    /// The guard took the lock (not one of [`Array::lock_in`]).
    release: bool,
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
        self.shared.unlock(self.release);
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
/// access is a relaxed atomic copy, in units of the widest of 8, 4, 2 or 1
/// bytes that tiles `T` within its alignment, so threads may share it and
/// a `T` of at most a machine word is never torn.
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
        let shared = Shared::new(1, Mode::Raw)?;
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
            shared: std::sync::Arc::new(Shared::new(len, Mode::Raw)?),
        })
    }

    /// A new array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As for [`Array::new`].
    pub fn from_slice(items: &[T]) -> Result<RawArray<T>> {
        let shared = Shared::new(items.len(), Mode::Raw)?;
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
