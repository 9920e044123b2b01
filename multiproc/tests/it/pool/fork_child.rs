//! A pool used in a child forked from its owner: refused, clearly.

use std::sync::Arc;

use multiproc::{ErrorKind, StartMethod};

use crate::support::DEADLINE;

use super::{own_pid, pool, square};

fn pool_in_a_fork_child(m: StartMethod) {
    let p = Arc::new(pool(m, 1).build().unwrap());
    assert_eq!(p.apply(square, 2).unwrap(), 4);
    let inner = p.clone();
    let mut child = multiproc::Process::from_closure(move || {
        let e = inner.apply(square, 1000).unwrap_err();
        (e.kind() == ErrorKind::InvalidState, e.to_string())
    });
    child.start().unwrap();
    let (refused, message) = child.join_timeout(DEADLINE).unwrap();
    assert!(refused, "{message}");
    // Nor may a result handle drive the parent's workers from there.
    let r = p.apply_async(square, 7).unwrap();
    let mut child = multiproc::Process::from_closure(move || r.get().map_err(|e| e.kind()));
    child.start().unwrap();
    assert_eq!(child.join_timeout(DEADLINE).unwrap(), Err(ErrorKind::InvalidState));
    // The parent's pool is unharmed.
    assert_eq!(p.apply(square, 5).unwrap(), 25);
    if m == StartMethod::Fork {
        // Replacement workers of a fork pool, once the program has
        // threads (fork is refused there): the fork server starts them.
        let p = Arc::new(pool(m, 2).maxtasksperchild(1).build().unwrap());
        let q = p.clone();
        let pids = std::thread::spawn(move || q.map_chunked(own_pid, 0..6u32, 1))
            .join()
            .unwrap()
            .unwrap();
        let mut distinct = pids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 6, "{pids:?}");
    }
}

#[test]
fn pool_in_a_fork_child_spawn() {
    crate::support::run_isolated(pool_in_a_fork_child, StartMethod::Spawn);
}

#[test]
fn pool_in_a_fork_child_fork() {
    crate::support::run_isolated(pool_in_a_fork_child, StartMethod::Fork);
}

#[test]
fn pool_in_a_fork_child_forkserver() {
    crate::support::run_isolated(pool_in_a_fork_child, StartMethod::ForkServer);
}
