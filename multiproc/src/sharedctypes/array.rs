//! [`Array`]: `T`s in shared memory with a lock, and its guard.

use std::{
    fmt,
    marker::PhantomData,
    ops::{Deref, DerefMut},
    time::Duration,
};

use bytemuck::Pod;

use super::{
    lock::{ValueLock, guard_result},
    shared::{Mode, Shared},
};
use crate::{
    Result,
    sync::{AcquireError, LockGuard},
};

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
    pub(super) shared: std::sync::Arc<Shared<T>>,
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
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the system refuses the memory,
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when `len` elements do not fit memory.
    pub fn new(len: usize) -> Result<Array<T>> {
        Ok(Array {
            shared: std::sync::Arc::new(Shared::new(len, Mode::Own)?),
        })
    }

    /// A new array of `len` zeroed elements guarded by the caller's `lock`
    /// (Python's `Array(t, n, lock=L)`; see [`Value::with_lock`](crate::Value::with_lock)).
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
    /// As for [`Value::lock`](crate::Value::lock).
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

    /// Opens an array made [`with_lock`](Self::with_lock) of a [`Lock`](crate::Lock)
    /// under that lock, held by `held` (see [`Value::lock_in`](crate::Value::lock_in)).
    ///
    /// # Errors
    ///
    /// As for [`Value::lock_in`](crate::Value::lock_in).
    pub fn lock_in<'a>(&'a self, held: &'a LockGuard<'_>) -> Result<ArrayGuard<'a, T>> {
        self.shared.open_in(held)?;
        Ok(ArrayGuard {
            shared: &self.shared,
            release: false,
            _not_send: PhantomData,
        })
    }

    /// The caller's lock the array was made with (see
    /// [`Value::get_lock`](crate::Value::get_lock)).
    pub fn get_lock(&self) -> Option<&ValueLock> {
        self.shared.callers_lock()
    }

    /// A copy of the elements, taken under the lock. A dead previous
    /// holder is not an error here.
    ///
    /// # Errors
    ///
    /// As for [`Value::load`](crate::Value::load).
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
