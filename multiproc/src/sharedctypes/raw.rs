//! [`RawValue`] and [`RawArray`]: shared values without a lock, copied
//! with relaxed atomics.

use std::fmt;

use bytemuck::Pod;

use super::shared::{Mode, Shared};
use crate::{Error, ErrorKind, Result};

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
    pub(super) shared: std::sync::Arc<Shared<T>>,
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
    pub(super) shared: std::sync::Arc<Shared<T>>,
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
    /// As for [`Array::new`](crate::Array::new).
    pub fn new(len: usize) -> Result<RawArray<T>> {
        Ok(RawArray {
            shared: std::sync::Arc::new(Shared::new(len, Mode::Raw)?),
        })
    }

    /// A new array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As for [`Array::new`](crate::Array::new).
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
