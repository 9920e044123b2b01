use std::time::Duration;

use super::{pipe, wire};
use crate::ErrorKind;

#[test]
fn messages_keep_their_boundaries() {
    let (a, b) = pipe(true).unwrap();
    for m in [&b""[..], b"x", b"hello", &[7u8; 100_000][..], b""] {
        a.send_bytes(m).unwrap();
    }
    assert_eq!(b.recv_bytes().unwrap(), b"");
    assert_eq!(b.recv_bytes().unwrap(), b"x");
    assert_eq!(b.recv_bytes().unwrap(), b"hello");
    assert_eq!(b.recv_bytes().unwrap(), vec![7u8; 100_000]);
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"");
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn corrupted_header_breaks_the_connection() {
    let mut rx = super::Rx::default();
    wire::feed_for_test(&mut rx, b"garbage-garbage-garbage");
    let (a, _b) = pipe(true).unwrap();
    let e = rx
        .next_message(a.fd.as_ref().unwrap(), Some(std::time::Instant::now()), None)
        .unwrap_err();
    let super::RecvFailure::Failed(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!(e.kind(), ErrorKind::Protocol);
}

#[test]
fn huge_announced_length_allocates_only_what_arrives() {
    let (a, b) = pipe(true).unwrap();
    // A header claiming an exabyte, then the writer goes away.
    a.fd.as_ref()
        .unwrap()
        .send_frame(&wire::header(1 << 60, 0), b"abc", &[])
        .unwrap();
    drop(a);
    let e = b.recv_bytes().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    // Broken from now on.
    assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Protocol);
}
