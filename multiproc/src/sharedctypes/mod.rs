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

mod array;
mod layout;
mod lock;
mod raw;
mod shared;
mod value;
mod wire;

pub use self::{
    array::{Array, ArrayGuard},
    lock::ValueLock,
    raw::{RawArray, RawValue},
    value::{Value, ValueGuard},
};
