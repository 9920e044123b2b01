//! [`AcquireError`]: why an acquisition of a lock or semaphore did not
//! simply succeed. It lives with the crate's other error types so that
//! the error layer depends on nothing above it; `sync` re-exports it.

use std::fmt;

use super::{Error, ErrorKind};

/// Why an acquisition did not simply succeed.
///
/// `G` is what a successful acquisition returns (a guard, or `()` and
/// `bool` for the unguarded and condition calls).
pub enum AcquireError<G> {
    /// A process or thread died holding the lock (or the permits this
    /// acquisition reclaimed). The acquisition *succeeded*: here is its
    /// result. Take it with [`recover`](Self::recover) once the protected
    /// state is known to be usable.
    OwnerDied(G),
    /// The timeout passed (or, for a `try_` call, it was not free).
    Timeout,
    /// Anything else: acquiring a `Lock` again from its holder thread, a
    /// system error.
    Failed(Error),
}

impl<G> AcquireError<G> {
    /// The result of an acquisition whose previous holder died; for the
    /// other variants, the error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`], or the error of [`Failed`](Self::Failed).
    pub fn recover(self) -> Result<G, Error> {
        match self {
            AcquireError::OwnerDied(g) => Ok(g),
            other => Err(other.into()),
        }
    }

    /// The kind: [`ErrorKind::OwnerDied`], [`ErrorKind::Timeout`] or that
    /// of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AcquireError::OwnerDied(_) => ErrorKind::OwnerDied,
            AcquireError::Timeout => ErrorKind::Timeout,
            AcquireError::Failed(e) => e.kind(),
        }
    }

    /// `true` for [`OwnerDied`](Self::OwnerDied).
    pub fn is_owner_died(&self) -> bool {
        matches!(self, AcquireError::OwnerDied(_))
    }

    /// `true` for [`Timeout`](Self::Timeout).
    pub fn is_timeout(&self) -> bool {
        matches!(self, AcquireError::Timeout)
    }

    /// Applies `f` to the result held by [`OwnerDied`](Self::OwnerDied).
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> AcquireError<H> {
        match self {
            AcquireError::OwnerDied(g) => AcquireError::OwnerDied(f(g)),
            AcquireError::Timeout => AcquireError::Timeout,
            AcquireError::Failed(e) => AcquireError::Failed(e),
        }
    }
}

impl<G> fmt::Debug for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            AcquireError::Timeout => f.write_str("Timeout"),
            AcquireError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(_) => f.write_str(OWNER_DIED),
            AcquireError::Timeout => f.write_str("timed out waiting to acquire"),
            AcquireError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for AcquireError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcquireError::Failed(e) => e.source(),
            _ => None,
        }
    }
}

/// The message of [`ErrorKind::OwnerDied`].
const OWNER_DIED: &str = "a process or thread died holding the lock; it is held now and its data may be inconsistent";

impl<G> From<AcquireError<G>> for Error {
    /// Drops the result held by [`AcquireError::OwnerDied`] (releasing a
    /// guard).
    fn from(e: AcquireError<G>) -> Error {
        match e {
            AcquireError::OwnerDied(_) => Error::new(ErrorKind::OwnerDied, OWNER_DIED),
            AcquireError::Timeout => Error::new(ErrorKind::Timeout, "timed out waiting to acquire"),
            AcquireError::Failed(e) => e,
        }
    }
}
