use serde::{Deserialize, Serialize};

use super::*;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Sample {
    id: u64,
    name: String,
    data: Vec<u32>,
    nested: Option<(i8, f64)>,
}

#[test]
fn round_trips_structs() {
    let v = Sample {
        id: 7,
        name: "x".into(),
        data: vec![1, 2, 3],
        nested: Some((-1, 2.5)),
    };
    let bytes = encode(&v).ok().unwrap();
    assert_eq!(decode::<Sample>(&bytes).ok(), Some(v));
}

#[test]
fn byte_buffers_are_borrowed_as_is() {
    let v = vec![1u8, 2, 3, 255];
    let bytes = encode(&v).ok().unwrap();
    assert!(matches!(bytes, Cow::Borrowed(b) if b == [1, 2, 3, 255]));
    assert_eq!(decode::<Vec<u8>>(&bytes).ok(), Some(v));
    let s = String::from("héllo");
    assert_eq!(decode::<String>(&encode(&s).ok().unwrap()).ok(), Some(s));
}

#[test]
fn invalid_utf8_is_an_error_for_strings() {
    assert!(decode::<String>(&[0xff, 0xfe]).is_err());
}

#[test]
fn truncated_or_trailing_input_is_an_error() {
    let bytes = encode(&(1u64, 2u64, "abc".to_string())).ok().unwrap().into_owned();
    assert!(decode::<(u64, u64, String)>(&bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode::<(u64, u64, String)>(&longer).is_err());
}

#[test]
fn a_huge_length_prefix_does_not_allocate_unboundedly() {
    // A Vec<u64> claiming 2^32-1 elements (bincode's varint: 252 then a
    // u32) with only three bytes behind it.
    let bytes = [252, 0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    let Err(CodecError(e)) = decode::<Vec<u64>>(&bytes) else {
        panic!("must be refused")
    };
    assert!(
        e.contains("nexpected") || e.contains("end"),
        "refused for running out of input: {e}"
    );
}
