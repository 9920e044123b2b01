//! [`Shared`]: the memory file behind all four types, its header checks,
//! element copies and locking.

use std::{marker::PhantomData, time::Duration};

use bytemuck::Pod;

use super::{
    layout::{BORROW_OFF, HEADER_END, Header, MAGIC, MUTEX_OFF, OWN, RAW, VERSION, type_hash},
    lock::{LockFail, ValueLock},
};
use crate::{
    Error, ErrorKind, Result,
    sync::{AcquireError, LockGuard},
    sys::{self, Fd, LockError, Locked, Mapping, MutexKind, RobustMutex, unit_of},
};

/// What guards an object's elements.
pub(super) enum Guarding {
    /// Nothing (`RawValue`, `RawArray`).
    Raw,
    /// Its own mutex in the same memory.
    Own(RobustMutex),
    /// A caller's lock, shared with other objects.
    Callers(ValueLock),
}

/// How to make or receive an object.
pub(super) enum Mode {
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

/// The shared memory behind all four types.
pub(super) struct Shared<T> {
    pub(super) map: Mapping,
    pub(super) fd: Fd,
    pub(super) len: usize,
    pub(super) data: usize,
    pub(super) guarding: Guarding,
    pub(super) _t: PhantomData<T>,
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

    pub(super) fn new(len: usize, mode: Mode) -> Result<Shared<T>> {
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
    pub(super) fn from_fd(fd: Fd, len: u64, mode: Mode) -> std::result::Result<Shared<T>, String> {
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

    pub(super) fn load(&self, i: usize) -> T {
        self.map.load(self.offset(i))
    }

    pub(super) fn store(&self, i: usize, v: T) {
        self.map.store(self.offset(i), v)
    }

    fn copy_out(&self, out: &mut [T]) {
        self.map
            .copy_out_units(self.data, bytemuck::cast_slice_mut(out), unit_of::<T>());
    }

    pub(super) fn copy_in(&self, src: &[T]) {
        self.map
            .copy_in_units(self.data, bytemuck::cast_slice(src), unit_of::<T>());
    }

    pub(super) fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.copy_out(&mut v);
        v
    }

    pub(super) fn ptr(&self) -> *mut T {
        self.map.as_ptr().wrapping_add(self.data).cast()
    }

    /// Takes the lock; `Ok(true)` when its previous holder died.
    pub(super) fn lock(&self, timeout: Option<Duration>) -> std::result::Result<bool, LockFail> {
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
    pub(super) fn unlock(&self, release: bool) {
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

    pub(super) fn callers_lock(&self) -> Option<&ValueLock> {
        match &self.guarding {
            Guarding::Callers(l) => Some(l),
            _ => None,
        }
    }

    /// Checks that `held` guards this object's caller's `Lock` and marks
    /// the object borrowed by this thread.
    pub(super) fn open_in(&self, held: &LockGuard<'_>) -> Result<()> {
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
}
