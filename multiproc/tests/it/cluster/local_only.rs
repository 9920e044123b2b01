//! What cannot cross hosts says so: a task argument holding a local-only
//! object fails at submission, naming the problem.

use multiproc::{Connection, ErrorKind, Lock, Queue, SharedMemory};

use super::tcp;

fn queue_len(q: Queue<u32>) -> bool {
    q.put(1).is_ok()
}

fn take_lock(l: Lock) -> bool {
    l.acquire().is_ok()
}

fn segment_len(s: SharedMemory) -> usize {
    s.size()
}

fn conn_ok(c: Connection) -> bool {
    c.readable()
}

fn refused(e: &multiproc::Error) {
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("local-only object"), "{e}");
}

#[test]
fn local_only_objects_fail_at_submission() {
    let pool = tcp(1).build().unwrap();
    refused(&pool.apply(queue_len, Queue::new().unwrap()).unwrap_err());
    refused(&pool.apply(take_lock, Lock::new().unwrap()).unwrap_err());
    refused(&pool.apply(segment_len, SharedMemory::new(4096).unwrap()).unwrap_err());
    let (a, _b) = multiproc::pipe(true).unwrap();
    refused(&pool.map(conn_ok, vec![a]).unwrap_err());
    // The pool still serves plain values.
    assert!(pool.apply(super::square, 2).is_ok());
}
