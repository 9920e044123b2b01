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

#[test]
fn a_batch_arrives_as_separate_messages_in_order() {
    let (a, b) = pipe(true).unwrap();
    // Empty, small, large, and more parts than one sendmsg takes.
    let mut msgs: Vec<Vec<u8>> = vec![Vec::new(), b"x".to_vec(), vec![3u8; 200_000], vec![4u8; 1 << 20]];
    msgs.extend((0..100u8).map(|i| vec![i; usize::from(i)]));
    let expected = msgs.clone();
    let reader = std::thread::spawn(move || (0..expected.len()).map(|_| b.recv_bytes().unwrap()).collect::<Vec<_>>());
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    a.send_bytes_batch(&refs).unwrap();
    assert_eq!(reader.join().unwrap(), msgs);
}

#[test]
fn a_failed_batch_says_how_many_messages_went_out_whole() {
    // A closed peer: none.
    let (a, b) = pipe(true).unwrap();
    drop(b);
    let (whole, e) = a.send_bytes_batch(&[b"one", b"two"]).unwrap_err();
    assert_eq!((whole, e.kind()), (0, ErrorKind::Disconnected));
    // A peer that reads one message and closes while a large one is on
    // its way: the small one went out whole, the large one did not.
    let (a, b) = pipe(true).unwrap();
    let reader = std::thread::spawn(move || {
        let first = b.recv_bytes().unwrap();
        drop(b);
        first
    });
    let large = vec![9u8; 16 << 20];
    let (whole, e) = a.send_bytes_batch(&[b"small", &large]).unwrap_err();
    assert_eq!(reader.join().unwrap(), b"small");
    assert_eq!((whole, e.kind()), (1, ErrorKind::Disconnected));
}
