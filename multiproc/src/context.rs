//! The process-wide default start method and contexts: Python's
//! `set_start_method`, `get_start_method`, `get_context`.
//!
//! The default is chosen once per process. Until then it is unset, and
//! the first start (or [`get_start_method`]) fixes it to
//! [`StartMethod::default`]. A child starts with its parent's default, as
//! in Python (a spawned child is told it, a forked one has a copy), so a
//! whole tree of processes starts the same way; it also knows the method
//! that made it ([`current_process`](crate::current_process)).

use std::sync::Mutex;

use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, ErrorKind, Process, ProcessBuilder, Result, StartMethod};

/// `None` until set or first used.
static DEFAULT: Mutex<Option<StartMethod>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<StartMethod>> {
    DEFAULT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the default start method of this process (Python's
/// `set_start_method`). It can be set once; use [`force_start_method`] to
/// change it later.
///
/// ```
/// use multiproc::{self as mp, StartMethod};
/// # fn main() -> mp::Result<()> {
/// mp::set_start_method(StartMethod::Spawn)?;
/// assert_eq!(mp::get_start_method(), StartMethod::Spawn);
/// let again = mp::set_start_method(StartMethod::Fork).unwrap_err();
/// assert_eq!(again.kind(), mp::ErrorKind::InvalidState);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`ErrorKind::InvalidState`] if the default was already set or fixed by
/// use.
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let mut default = lock();
    if default.is_some() {
        return Err(Error::new(
            ErrorKind::InvalidState,
            "context has already been set; use force_start_method to change it",
        ));
    }
    *default = Some(method);
    Ok(())
}

/// Sets, changes or (with `None`) resets the default start method, whether
/// or not it was set before (Python's `set_start_method(m, force=True)`).
pub fn force_start_method(method: Option<StartMethod>) {
    *lock() = method;
}

/// The default start method, fixing it if it was not set (Python's
/// `get_start_method()`).
pub fn get_start_method() -> StartMethod {
    *lock().get_or_insert_with(StartMethod::default)
}

/// The default start method if it was set or fixed by use, without fixing
/// it (Python's `get_start_method(allow_none=True)`).
pub fn start_method_if_set() -> Option<StartMethod> {
    *lock()
}

/// Every start method available here, the default first (Python's
/// `get_all_start_methods()`).
pub fn get_all_start_methods() -> &'static [StartMethod] {
    StartMethod::all()
}

/// A start method to create processes with (Python's `get_context(m)`).
///
/// ```
/// use multiproc::{self as mp, StartMethod};
///
/// fn triple(x: u32) -> u32 {
///     3 * x
/// }
///
/// # fn main() -> mp::Result<()> {
/// let ctx = mp::get_context(Some(StartMethod::Spawn));
/// let mut p = ctx.process_with(triple, 5);
/// p.start()?;
/// assert_eq!(p.join()?, 15);
/// assert_eq!(p.start_method(), StartMethod::Spawn);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// A context for `method`, or for the default start method (fixing it) when
/// `None`. Method names parse: `"fork".parse::<StartMethod>()?`.
pub fn get_context(method: Option<StartMethod>) -> Context {
    Context {
        method: method.unwrap_or_else(get_start_method),
    }
}

impl Context {
    /// The context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A builder whose processes use this context's start method.
    pub fn builder(&self) -> ProcessBuilder {
        ProcessBuilder::new().start_method(self.method)
    }

    /// A process running `target()` under this context's start method.
    pub fn process<R>(&self, target: fn() -> R) -> Process<R>
    where
        R: Serialize + DeserializeOwned + 'static,
    {
        self.builder().target(target)
    }

    /// A pool builder whose workers use this context's start method
    /// (Python's `ctx.Pool(...)`).
    pub fn pool_builder(&self) -> crate::PoolBuilder {
        crate::Pool::builder().start_method(self.method)
    }

    /// A pool of `processes` workers started with this context's method.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// fn square(x: u32) -> u32 {
    ///     x * x
    /// }
    /// let ctx = multiproc::get_context(Some(multiproc::StartMethod::ForkServer));
    /// let pool = ctx.pool(2)?;
    /// assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`](crate::PoolBuilder::build).
    pub fn pool(&self, processes: usize) -> Result<crate::Pool> {
        self.pool_builder().processes(processes).build()
    }

    /// A process running `target(args)` under this context's start method.
    pub fn process_with<A, R>(&self, target: fn(A) -> R, args: A) -> Process<R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.builder().target_with(target, args)
    }
}
