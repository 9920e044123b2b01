//! [`Value`]: one `T` in shared memory with a lock, and its guard.

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
    pub(super) shared: std::sync::Arc<Shared<T>>,
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
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the system refuses the memory.
    pub fn new(v: T) -> Result<Value<T>> {
        Self::make(v, Mode::Own)
    }

    /// A new shared value holding `v`, guarded by the caller's `lock`
    /// (a [`Lock`](crate::Lock) or an [`RLock`](crate::RLock)) instead of a lock of its own (Python's
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

    /// Opens a value made [`with_lock`](Self::with_lock) of a [`Lock`](crate::Lock)
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
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when the value is not under `held`'s
    /// lock; [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) when this thread holds a guard
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
