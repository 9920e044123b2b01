//! The async receive's wake by a receive that leaves a message buffered:
//! no descriptor reports such a message, so without that wake an async
//! receive waiting on the socket would sleep beside it.

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    time::{Duration, Instant},
};

use super::{lock, pipe};

struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_receive_that_leaves_a_message_buffered_wakes_the_async_receives() {
    let (a, b) = pipe(true).expect("pipe");
    a.send(1u32).expect("send");
    a.send(2u32).expect("send");
    // A receive in another thread has the turn and has read both messages
    // into the buffer: the socket is empty.
    let turn = b.turn.take(None).expect("the turn is free");
    let fd = b.fd().expect("fd");
    let deadline = Instant::now() + Duration::from_secs(60);
    assert!(lock(&b.shared.rx).poll(fd, Some(deadline)).expect("poll"));
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut recv = pin!(b.recv_async::<u32>());
    assert!(recv.as_mut().poll(&mut cx).is_pending(), "the turn is taken");
    assert_eq!(count.0.load(Ordering::SeqCst), 0);
    // That receive ends, with both messages still buffered.
    b.release(Some(turn), lock(&b.shared.rx));
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "the async receive was not woken");
    match recv.as_mut().poll(&mut cx) {
        Poll::Ready(r) => assert_eq!(r.expect("recv"), 1),
        Poll::Pending => panic!("a whole message is buffered"),
    }
    assert_eq!(b.try_recv::<u32>().expect("the second"), 2);
}
