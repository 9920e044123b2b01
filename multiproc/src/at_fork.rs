//! What subsystems need done around a fork: one registration point.
//!
//! Two kinds of hook, registered by the subsystem that needs them:
//!
//! - **Held across the library's forks** ([`hold_across_fork`]): a
//!   function that takes one of the subsystem's locks and returns its
//!   guard. Every fork the library makes (`Process::start` under the fork
//!   method) takes all of them first, in registration order, and releases
//!   them on both sides after the fork, so that a fork child never inherits
//!   one locked by a thread that did not come along. The process registry
//!   takes its own lock last (see `registry::fork_locked`).
//! - **Run in the child after every fork**: the only state a child must
//!   forget at once is the backend's cache of thread and process ids,
//!   which the backend resets itself through its own
//!   `after_fork_in_child` (that cache lives below this layer). A
//!   subsystem that needs such a hook later registers it through that same
//!   backend call: one mechanism, `pthread_atfork` on Unix.

use std::{
    any::Any,
    sync::{Mutex, MutexGuard},
};

/// A lock's guard, held for the duration of a fork.
pub(crate) type Held = Box<dyn Any>;

/// A function that takes a subsystem's lock for a fork.
pub(crate) type Take = fn() -> Held;

/// The functions registered by [`hold_across_fork`], by name.
static HOLDERS: Mutex<Vec<(&'static str, Take)>> = Mutex::new(Vec::new());

/// Registers `take` (under `name`, once: a second registration of the
/// same name is ignored) to run before every fork the library makes; the
/// guard it returns is held until the fork is over.
///
/// Call it before the first use of the lock it takes: a fork in progress
/// holds the registration list, so a registration waits for it, and the
/// lock registered is never held by a thread that is not forking.
pub(crate) fn hold_across_fork(name: &'static str, take: Take) {
    let mut holders = lock(&HOLDERS);
    if !holders.iter().any(|(n, _)| *n == name) {
        holders.push((name, take));
    }
}

/// Every registered lock, taken, and the registration list itself.
pub(crate) struct Fork {
    /// Released last: declared last.
    held: Vec<Held>,
    _list: MutexGuard<'static, Vec<(&'static str, Take)>>,
}

impl std::fmt::Debug for Fork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fork").field("held", &self.held.len()).finish()
    }
}

/// Takes every registered lock, in registration order, for a fork.
pub(crate) fn lock_for_fork() -> Fork {
    let list = lock(&HOLDERS);
    let held = list.iter().map(|(_, take)| take()).collect();
    Fork { held, _list: list }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single push or increment: consistent after a
    // holder's panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static TAKEN: AtomicUsize = AtomicUsize::new(0);

    fn take_counting() -> Held {
        TAKEN.fetch_add(1, Ordering::SeqCst);
        Box::new(())
    }

    #[test]
    fn a_holder_registered_twice_is_taken_once() {
        hold_across_fork("at_fork::tests", take_counting);
        hold_across_fork("at_fork::tests", take_counting);
        let before = TAKEN.load(Ordering::SeqCst);
        drop(lock_for_fork());
        assert_eq!(TAKEN.load(Ordering::SeqCst), before + 1);
    }
}
