use super::*;

fn inline(tag: Tag, payload: &[u8]) -> Vec<u8> {
    let mut v = header(tag, 0, payload.len()).to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn frames_are_cut_at_their_boundaries_and_empty_ones_survive() {
    let mut r = Reader::default();
    let mut stream = inline(Tag::Ready, &[]);
    stream.extend(inline(Tag::Outcome, b"hello"));
    // Deliver one byte at a time: no frame may appear before it is whole.
    let mut seen = Vec::new();
    for b in stream {
        r.feed(&[b]);
        while let Some((tag, p)) = r.next().unwrap() {
            seen.push((tag, p));
        }
    }
    assert_eq!(seen, vec![(Tag::Ready, vec![]), (Tag::Outcome, b"hello".to_vec())]);
}

#[test]
fn unknown_tags_and_dirty_headers_are_errors() {
    let mut r = Reader::default();
    let mut h = header(Tag::Boot, 0, 0);
    h[0] = 99;
    r.feed(&h);
    assert!(r.next().is_err());

    let mut r = Reader::default();
    let mut h = header(Tag::Boot, 0, 0);
    h[1] = 0x80;
    r.feed(&h);
    assert!(r.next().is_err());
}

#[test]
fn an_oversized_inline_length_is_refused_before_allocating() {
    let mut r = Reader::default();
    r.feed(&header(Tag::Outcome, 0, usize::MAX >> 1));
    let Err(err) = r.next() else { panic!("must be refused") };
    assert!(err.0.contains("exceeds"), "{err}");
}

#[test]
fn a_file_frame_without_its_descriptor_is_an_error() {
    let mut r = Reader::default();
    r.feed(&header(Tag::Args, FLAG_FILE, 10));
    assert!(r.next().is_err());
}

#[test]
fn frames_cross_a_real_socket_inline_and_through_a_file() {
    let (a, b) = crate::sys::socketpair().unwrap();
    let big: Vec<u8> = (0..INLINE_MAX * 3 + 7).map(|i| i as u8).collect();
    send(&a, Tag::Args, &big).unwrap();
    send(&a, Tag::Ready, &[]).unwrap();
    drop(a);
    let mut r = Reader::default();
    let (t, p) = r.next_blocking(&b).ok().unwrap().unwrap();
    assert_eq!((t, p == big), (Tag::Args, true));
    let (t, p) = r.next_blocking(&b).ok().unwrap().unwrap();
    assert_eq!((t, p.len()), (Tag::Ready, 0));
    assert!(r.next_blocking(&b).ok().unwrap().is_none());
}
