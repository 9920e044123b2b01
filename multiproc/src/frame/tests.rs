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
    let mut r = Reader::default();
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
        let mut r = Reader::default();
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
    let mut r = Reader::default();
    r.feed(&header(OUTCOME, 0, usize::MAX >> 1, 0));
    let Err(err) = r.next() else { panic!("must be refused") };
    assert!(err.0.contains("exceeds"), "{err}");
}

#[test]
fn a_file_frame_without_its_descriptor_is_an_error() {
    let mut r = Reader::default();
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
    let mut r = Reader::default();
    let (t, p) = r.next_blocking(&b).ok().unwrap().unwrap();
    assert_eq!((t, p == big), (ARGS, true));
    let (t, p) = r.next_blocking(&b).ok().unwrap().unwrap();
    assert_eq!((t, p.len()), (READY, 0));
    assert!(r.next_blocking(&b).ok().unwrap().is_none());
}
