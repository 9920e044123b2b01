use super::*;

const READY: u8 = 3;
const OUTCOME: u8 = 4;
const ARGS: u8 = 2;

fn inline(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = header(kind, 0, payload.len(), 0).to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn frames_are_cut_at_their_boundaries_and_empty_ones_survive() {
    let mut r = Reader::control();
    let mut stream = inline(READY, &[]);
    stream.extend(inline(OUTCOME, b"hello"));
    // Deliver one byte at a time: no frame may appear before it is whole.
    let mut seen = Vec::new();
    for b in stream {
        r.feed(&[b]);
        while let Some((tag, p)) = r.next().unwrap() {
            seen.push((tag, p));
        }
    }
    assert_eq!(seen, vec![(READY, vec![]), (OUTCOME, b"hello".to_vec())]);
}

#[test]
fn dirty_headers_are_errors() {
    // Magic, version, kind 0 (a connection's message), unknown flag,
    // the zero byte, too many descriptors.
    for (at, byte) in [(0, b'x'), (2, 9), (3, 0), (6, 0x80), (7, 1), (5, 0xff)] {
        let mut r = Reader::control();
        let mut h = header(1, 0, 0, 0);
        h[at] = byte;
        r.feed(&h);
        assert!(r.next().is_err(), "byte {at} = {byte}");
    }
}

#[test]
fn a_connection_header_keeps_its_bytes() {
    // The header of a connection's message is what it was before the
    // framings were one: "mp", version 1, kind 0, descriptors, length.
    let h = Header::message(5, 2).encode();
    assert_eq!(h, *b"mp\x01\x00\x02\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00");
    assert_eq!(Header::decode(&h), Ok(Header::message(5, 2)));
}

#[test]
fn an_oversized_inline_length_is_refused_before_allocating() {
    let mut r = Reader::control();
    r.feed(&header(OUTCOME, 0, usize::MAX >> 1, 0));
    let Err(err) = r.next() else { panic!("must be refused") };
    assert!(err.0.contains("exceeds"), "{err}");
}

#[test]
fn a_file_frame_without_its_descriptor_is_an_error() {
    let mut r = Reader::control();
    r.feed(&header(ARGS, FLAG_FILE, 10, 1));
    assert!(r.next().is_err());
}

#[test]
fn frames_cross_a_real_socket_inline_and_through_a_file() {
    let (a, b) = crate::sys::socketpair().unwrap();
    let big: Vec<u8> = (0..INLINE_MAX * 3 + 7).map(|i| i as u8).collect();
    send(&a, ARGS, &big).unwrap();
    send(&a, READY, &[]).unwrap();
    drop(a);
    let mut r = Reader::control();
    let (t, p) = r.next_blocking(&b).ok().unwrap().unwrap();
    assert_eq!((t, p == big), (ARGS, true));
    let (t, p) = r.next_blocking(&b).ok().unwrap().unwrap();
    assert_eq!((t, p.len()), (READY, 0));
    assert!(r.next_blocking(&b).ok().unwrap().is_none());
}

#[test]
fn each_framing_refuses_the_other_framings_frames() {
    // A connection's message (kind 0) on a control socket, and a control
    // frame (kind 3, or the file flag) on a connection, break the stream.
    let mut control = Reader::control();
    control.feed(&Header::message(0, 0).encode());
    assert!(control.next().is_err());
    for h in [header(READY, 0, 0, 0), header(0, FLAG_FILE, 0, 1)] {
        let mut messages = Reader::new(Framing::Messages);
        messages.feed(&h);
        assert!(matches!(messages.next_buffered(), Err(ReadFailure::Broken(_))));
        // Broken for good: the bytes behind are never read as frames.
        assert!(matches!(messages.next_buffered(), Err(ReadFailure::WasBroken(_))));
    }
}

#[test]
fn the_leftover_is_what_follows_the_last_frame_taken() {
    // The fork server hands a reader's unread bytes on: they must start
    // exactly after the frames taken, however the buffer was cut.
    let mut r = Reader::control();
    let mut stream = inline(READY, b"one");
    stream.extend(inline(OUTCOME, b"two"));
    let second = stream.len();
    stream.extend(inline(ARGS, b"three"));
    r.feed(&stream[..second + 5]);
    assert_eq!(r.next().unwrap(), Some((READY, b"one".to_vec())));
    assert_eq!(r.next().unwrap(), Some((OUTCOME, b"two".to_vec())));
    assert_eq!(r.next().unwrap(), None);
    assert_eq!(r.into_leftover(), stream[second..second + 5]);
}

#[test]
fn a_large_inline_frame_reaches_a_trusting_reader_through_its_own_buffer() {
    let (a, b) = crate::sys::socketpair().unwrap();
    let big: Vec<u8> = (0..INLINE_MAX * 40 + 3).map(|i| (i % 251) as u8).collect();
    let sent = big.clone();
    let writer = std::thread::spawn(move || {
        a.send_frame(&header(ARGS, 0, sent.len(), 0), &sent, &[]).unwrap();
        a.send_frame(&header(READY, 0, 0, 0), &[], &[]).unwrap();
    });
    let mut r = Reader::trusting_large_frames();
    let (t, p) = r.next_blocking(&b).ok().unwrap().unwrap();
    assert_eq!((t, p.len(), p == big), (ARGS, big.len(), true));
    assert_eq!(r.next_blocking(&b).ok().unwrap(), Some((READY, Vec::new())));
    writer.join().unwrap();
    assert!(r.next_blocking(&b).ok().unwrap().is_none());
    // The default control reader refuses such a frame before allocating.
    let (a, b) = crate::sys::socketpair().unwrap();
    a.send_frame(&header(ARGS, 0, INLINE_MAX + 1, 0), &[], &[]).unwrap();
    assert!(matches!(
        Reader::control().next_blocking(&b),
        Err(ReadError::Protocol(ProtocolError(why))) if why.contains("exceeds")
    ));
}
