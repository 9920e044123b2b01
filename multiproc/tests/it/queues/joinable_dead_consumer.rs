//! A `JoinableQueue` consumer killed while it holds an item it took but
//! did not mark done: the other consumers go on, and `join` keeps waiting
//! for that item (Python's semantics: the count is shared and anonymous,
//! so no process can tell whose item it was), so a supervisor bounds it
//! with `join_timeout` and accounts for the lost item itself.

use std::time::Duration;

use multiproc::{ErrorKind, JoinableQueue, StartMethod};

use crate::support::{DEADLINE, Rendezvous, block_forever, notify, start};

/// Takes one item, says which, then hangs (never calls `task_done`).
fn take_one_then_hang((q, addr): (JoinableQueue<u32>, String)) {
    let item = q.get_timeout(DEADLINE).expect("an item");
    notify(&addr, &format!("took {item}"));
    block_forever()
}

fn a_dead_consumers_item_stays_owed(m: StartMethod) {
    let q: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    q.put(1).unwrap();
    let r = Rendezvous::new();
    let mut victim = start(m, take_one_then_hang, (q.clone(), r.addr()));
    assert_eq!(r.recv(), "took 1");
    victim.kill().unwrap();
    assert_eq!(
        victim.join_timeout(DEADLINE).unwrap_err().kind(),
        ErrorKind::ChildKilled
    );
    // The others are not blocked: puts, gets and task_done go on.
    q.put(2).unwrap();
    assert_eq!(q.get_timeout(DEADLINE).unwrap(), 2);
    q.task_done().unwrap();
    // The dead consumer's item is never done: join waits for it.
    let e = q.join_timeout(Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    // The supervisor, which saw the consumer die, marks its item done.
    q.task_done().unwrap();
    q.join_timeout(DEADLINE).unwrap();
    assert_eq!(q.task_done().unwrap_err().kind(), ErrorKind::InvalidState);
}

per_method!(a_dead_consumers_item_stays_owed);
