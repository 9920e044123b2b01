//! Process-wide state, one module per concern, each behind its own lock:
//!
//! - [`identity`]: who this process is, the counter that names its
//!   children, the descriptors of its own identity;
//! - [`children`]: the children it started, and the exit routine;
//! - [`endpoints`]: the connections it holds, by descriptor.
//!
//! No code holds two of these locks at once, except a fork: the forking
//! thread holds all of them across `fork` ([`fork_locked`], after the
//! subsystems' locks registered in `at_fork`), so at the instant of the
//! fork no other thread holds one and the child may use them.

pub(crate) mod children;
pub(crate) mod endpoints;
pub(crate) mod identity;

use std::{
    collections::HashMap,
    sync::{Arc, MutexGuard, Weak},
};

pub(crate) use self::{
    children::{ChildCore, exit_routine, reap_finished, register, unregister},
    endpoints::{Revoke, any_endpoints, endpoint_closed, endpoint_opened},
    identity::{Me, ParentRecord, adopt_own_fd, become_child, next_identity, release_own_fd, with_me},
};
use crate::{at_fork, sys};

/// The registry, locked, for the duration of a fork, with every lock
/// registered to be held across forks (`at_fork::hold_across_fork`).
pub(crate) struct ForkLock {
    identity: MutexGuard<'static, Option<identity::Identity>>,
    children: MutexGuard<'static, Vec<Arc<ChildCore>>>,
    endpoints: MutexGuard<'static, Option<HashMap<i32, Weak<dyn Revoke>>>>,
    // Declared last, dropped last: released after the registry.
    _others: at_fork::Fork,
}

/// Locks the registry so that no other thread holds it across a fork.
pub(crate) fn fork_locked() -> ForkLock {
    // Same order as everywhere else: the subsystems' locks (the fork
    // server's record), then the registry's.
    let others = at_fork::lock_for_fork();
    ForkLock {
        identity: identity::locked(),
        children: children::locked(),
        endpoints: endpoints::locked(),
        _others: others,
    }
}

impl ForkLock {
    /// In a fork child: close the descriptors of the parent's other
    /// children, forget those children, and become `me`.
    ///
    /// With `keep` (the descriptors of the connections among the target's
    /// arguments), also close every other connection this process holds:
    /// its copy in the child would otherwise keep the peer from ever seeing
    /// the end of the stream. Without it (a closure, whose captures cannot
    /// be listed), every connection stays, as in Python.
    pub(crate) fn become_fork_child(mut self, me: Me, own_fd: i32, keep: Option<&[i32]>) {
        if let Some(keep) = keep {
            endpoints::keep_only(&mut self.endpoints, keep);
        }
        let mut inherited: Vec<i32> = self
            .children
            .iter()
            .flat_map(|c| std::iter::once(c.sock.raw()).chain(c.handle.raw_fds()))
            .collect();
        let identity = self.identity.as_mut().expect("initialised by fork_locked");
        inherited.append(&mut identity.own_fds);
        sys::close_inherited(&inherited);
        // The `Fd`s that owned these see a foreign pid and will not close
        // the numbers again.
        self.children.clear();
        identity.become_fork_child(me, own_fd);
    }

    /// The identity of the process holding the lock.
    pub(crate) fn me(&self) -> &Me {
        &self.identity.as_ref().expect("initialised by fork_locked").me
    }
}
