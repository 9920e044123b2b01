use std::time::Duration;

use super::{JoinableQueue, Queue, SimpleQueue};
use crate::ErrorKind;

#[test]
fn fifo_len_and_bound() {
    let q: Queue<u32> = Queue::bounded(3).unwrap();
    assert!(q.is_empty() && !q.is_full());
    for i in 0..3 {
        q.try_put(i).unwrap();
    }
    assert_eq!(q.len(), 3);
    assert!(q.is_full());
    assert_eq!(q.try_put(9).unwrap_err().into_inner(), 9);
    assert!(q.put_timeout(9, Duration::from_millis(20)).unwrap_err().is_timeout());
    assert_eq!(q.get().unwrap(), 0);
    q.put(3).unwrap();
    assert_eq!((1..4).map(|_| q.try_get().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(q.try_get().unwrap_err().is_empty());
    assert!(q.get_timeout(Duration::from_millis(20)).unwrap_err().is_timeout());
}

#[test]
fn zero_bound_is_refused() {
    assert_eq!(Queue::<u8>::bounded(0).unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn large_and_empty_items() {
    let q: Queue<Vec<u8>> = Queue::new().unwrap();
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| i as u8).collect();
    q.put(Vec::new()).unwrap();
    q.put(big.clone()).unwrap();
    q.put(vec![1]).unwrap();
    assert_eq!(q.get().unwrap(), b"");
    assert!(q.get().unwrap() == big);
    assert_eq!(q.get().unwrap(), [1]);
}

#[test]
fn closed_queue_refuses_use() {
    let q: SimpleQueue<u8> = SimpleQueue::new().unwrap();
    q.put(1).unwrap();
    q.close();
    q.close();
    assert_eq!(q.put(2).unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(q.get().unwrap_err().kind(), ErrorKind::InvalidState);
}

#[test]
fn task_done_counts() {
    let q: JoinableQueue<u8> = JoinableQueue::new().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(
        q.join_timeout(Duration::from_millis(10)).unwrap_err().kind(),
        ErrorKind::Timeout
    );
    q.get().unwrap();
    q.task_done().unwrap();
    q.get().unwrap();
    q.task_done().unwrap();
    q.join_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(q.task_done().unwrap_err().kind(), ErrorKind::InvalidState);
}

#[test]
fn connections_travel_through_a_queue() {
    let q: Queue<crate::Connection> = Queue::new().unwrap();
    let (a, b) = crate::pipe(true).unwrap();
    q.put(b).unwrap();
    let b = q.get().unwrap();
    a.send(5u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 5);
}

/// A getter that died after taking an item's descriptors (simulated by
/// taking the datagram here) costs that item only, not the items behind.
#[test]
fn a_lost_datagram_costs_one_item_only() {
    let q: Queue<crate::Connection> = Queue::new().unwrap();
    let (a1, b1) = crate::pipe(true).unwrap();
    let (a2, b2) = crate::pipe(true).unwrap();
    q.put(b1).unwrap();
    q.put(b2).unwrap();
    let mut buf = Vec::with_capacity(16);
    let mut fds = Vec::new();
    q.core.side_rx.recv_upto(&mut buf, 16, &mut fds, true).unwrap();
    assert_eq!(fds.len(), 1, "took the first item's datagram");
    let e = q.try_get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    let b2 = q.try_get().unwrap();
    a2.send(2u8).unwrap();
    assert_eq!(b2.recv::<u8>().unwrap(), 2);
    drop(a1);
}

fn signalled(q: &Queue<u32>) -> bool {
    crate::sys::poll_readable_set(&[q.ready_fd()], Some(Duration::ZERO)).unwrap()[0]
}

#[test]
fn a_put_signals_the_eventfd_only_while_watched() {
    let q: Queue<u32> = Queue::new().unwrap();
    q.put(1).unwrap();
    assert!(!signalled(&q), "nobody watches: a put costs no signal");
    q.watch();
    // Not empty: rearm resets the eventfd and signals it again.
    assert!(q.rearm());
    assert!(signalled(&q));
    assert_eq!(q.try_get().unwrap(), 1);
    // Empty: rearm resets it, and a later put signals it.
    assert!(!q.rearm());
    assert!(!signalled(&q));
    q.clone().put(2).unwrap();
    assert!(signalled(&q));
    q.unwatch();
    assert_eq!(q.try_get().unwrap(), 2);
    assert!(!q.rearm());
    q.put(3).unwrap();
    assert!(!signalled(&q), "the watch ended");
}

#[test]
fn unwatch_never_goes_below_zero() {
    let q: Queue<u32> = Queue::new().unwrap();
    q.unwatch();
    q.watch();
    q.unwatch();
    q.put(1).unwrap();
    assert!(!signalled(&q));
}

fn room_signalled(q: &Queue<u32>) -> bool {
    crate::sys::poll_readable_set(&[q.room_fd()], Some(Duration::ZERO)).unwrap()[0]
}

#[test]
fn a_get_signals_room_only_while_watched() {
    let q: Queue<u32> = Queue::bounded(1).unwrap();
    q.put(1).unwrap();
    assert_eq!(q.try_get().unwrap(), 1);
    assert!(!room_signalled(&q), "nobody waits for room: a get costs no signal");
    q.put(1).unwrap();
    q.watch_room();
    // Full: rearm resets the eventfd, and a later get signals it.
    assert!(!q.rearm_room());
    assert!(!room_signalled(&q));
    assert_eq!(q.clone().try_get().unwrap(), 1);
    assert!(room_signalled(&q));
    // Room: rearm resets it and signals it again.
    assert!(q.rearm_room());
    assert!(room_signalled(&q));
    q.unwatch_room();
    q.put(2).unwrap();
    assert!(!q.rearm_room());
    assert_eq!(q.try_get().unwrap(), 2);
    assert!(!room_signalled(&q), "the watch ended");
    // The end wakes room watchers too (a put then fails at once).
    q.put(3).unwrap();
    q.watch_room();
    assert!(!q.rearm_room());
    q.close_for_all().unwrap();
    assert!(room_signalled(&q));
    q.unwatch_room();
}

#[cfg(feature = "async")]
#[test]
fn a_dropped_async_put_stops_watching_room() {
    use std::{
        future::Future,
        pin::pin,
        task::{Context, Waker},
    };
    let q: Queue<u32> = Queue::bounded(1).unwrap();
    q.put(1).unwrap();
    {
        let mut put = pin!(q.put_async(2));
        assert!(put.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
        assert!(q.core.ring.has_room_watchers());
    }
    assert!(!q.core.ring.has_room_watchers());
    assert_eq!(q.try_get().unwrap(), 1);
    assert!(q.try_get().unwrap_err().is_empty(), "a dropped put puts nothing");
}
