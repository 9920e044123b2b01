//! The lock a shared value is under: a caller's [`ValueLock`], and the
//! results of taking a lock before there is a guard.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::layout::{CALLERS_LOCK, CALLERS_RLOCK};
use crate::{
    Error, Result,
    sync::{AcquireError, Lock, RLock},
};

/// The caller's lock that a [`Value`](crate::Value) or [`Array`](crate::Array) built
/// [`with_lock`](crate::Value::with_lock) shares with others (Python's
/// `lock=L`); [`Value::get_lock`](crate::Value::get_lock) returns it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ValueLock {
    /// A [`Lock`]: not recursive; open values under a held one with
    /// [`Value::lock_in`](crate::Value::lock_in).
    Lock(Lock),
    /// An [`RLock`]: [`Value::lock`](crate::Value::lock) nests inside the caller's own
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
    pub(super) fn code(&self) -> u32 {
        match self {
            ValueLock::Lock(_) => CALLERS_LOCK,
            ValueLock::RLock(_) => CALLERS_RLOCK,
        }
    }

    pub(super) fn acquire(&self, t: Option<Duration>) -> std::result::Result<(), AcquireError<()>> {
        match self {
            ValueLock::Lock(l) => l.acquire_unguarded(t),
            ValueLock::RLock(l) => l.acquire_unguarded(t),
        }
    }

    pub(super) fn release(&self) -> Result<()> {
        match self {
            ValueLock::Lock(l) => l.release(),
            ValueLock::RLock(l) => l.release(),
        }
    }

    pub(super) fn owner_tid(&self) -> u32 {
        match self {
            ValueLock::Lock(l) => l.owner_tid(),
            ValueLock::RLock(l) => l.owner_tid(),
        }
    }
}

pub(super) enum LockFail {
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
pub(super) fn guard_result<G>(
    r: std::result::Result<bool, LockFail>,
    g: impl FnOnce() -> G,
) -> std::result::Result<G, AcquireError<G>> {
    match r {
        Ok(false) => Ok(g()),
        Ok(true) => Err(AcquireError::OwnerDied(g())),
        Err(f) => Err(from_fail(f)),
    }
}
