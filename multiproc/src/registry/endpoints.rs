//! The connections this process holds, by descriptor, so that a fork
//! child keeps only those it was given (see `ForkLock::become_fork_child`).

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, Weak},
};

use crate::sys;

/// What a fork child does to a connection it was not given.
pub(crate) trait Revoke: Send + Sync {
    /// Marks the connection unusable and closes the descriptors it holds
    /// besides its own (those it received and buffered). Runs in the fork
    /// child, with no other thread.
    fn revoke(&self);
}

/// Live connections' descriptors and their revocation flags.
static ENDPOINTS: Mutex<Option<HashMap<i32, Weak<dyn Revoke>>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent even if a holder panicked: every update is
    // a single assignment or push.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_endpoints<T>(f: impl FnOnce(&mut HashMap<i32, Weak<dyn Revoke>>) -> T) -> T {
    f(lock(&ENDPOINTS).get_or_insert_with(HashMap::new))
}

/// The map, locked: for the duration of a fork.
pub(super) fn locked() -> MutexGuard<'static, Option<HashMap<i32, Weak<dyn Revoke>>>> {
    lock(&ENDPOINTS)
}

/// In a fork child: revokes every connection not in `keep` and closes its
/// descriptor.
pub(super) fn keep_only(map: &mut Option<HashMap<i32, Weak<dyn Revoke>>>, keep: &[i32]) {
    let Some(map) = map else { return };
    let mut closing = Vec::new();
    map.retain(|fd, owner| {
        if keep.contains(fd) {
            return true;
        }
        if let Some(owner) = owner.upgrade() {
            owner.revoke();
            closing.push(*fd);
        }
        false
    });
    // The numbers stay taken (by /dev/null) while the revoked objects
    // exist, so that nothing else gets them: the objects still answer
    // `as_raw_fd`.
    sys::reserve_closed(&closing);
}

/// Records a live connection's descriptor; `owner` is revoked in a fork
/// child that was not given it, whose descriptor is then closed.
pub(crate) fn endpoint_opened(fd: i32, owner: Weak<dyn Revoke>) {
    with_endpoints(|e| e.insert(fd, owner));
}

/// `true` while this process holds any connection.
pub(crate) fn any_endpoints() -> bool {
    with_endpoints(|e| !e.is_empty())
}

/// Forgets a connection's descriptor before it is closed.
pub(crate) fn endpoint_closed(fd: i32) {
    with_endpoints(|e| e.remove(&fd));
}
