use serde::{Deserialize, Serialize};

use super::*;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
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
    // A Vec<(u64, u8)> claiming 2^32-1 elements (a LEB128 varint) with
    // only three bytes behind it.
    let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3];
    let Err(CodecError(e)) = decode::<Vec<(u64, u8)>>(&bytes) else {
        panic!("must be refused")
    };
    assert!(e.contains("end of buffer"), "refused for running out of input: {e}");
    // The same for a string claiming u64::MAX bytes, and 2^40.
    let mut bytes = vec![0xff; 9];
    bytes.extend_from_slice(&[0x01, b'a', b'b']);
    assert!(decode::<(String,)>(&bytes).is_err());
    let bytes = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, b'a'];
    let Err(CodecError(e)) = decode::<(String,)>(&bytes) else {
        panic!("must be refused")
    };
    assert!(e.contains("end of buffer"), "{e}");
}

#[test]
fn number_vectors_travel_as_their_bytes() {
    let v: Vec<u64> = vec![0, 1, u64::MAX, 1 << 40];
    let bytes = encode(&v).ok().unwrap();
    assert!(matches!(bytes, Cow::Borrowed(b) if b.len() == 32));
    assert_eq!(decode::<Vec<u64>>(&bytes).ok(), Some(v.clone()));
    assert_eq!(decode_owned::<Vec<u64>>(bytes.into_owned()).ok(), Some(v));
    let f = vec![1.5f64, f64::NAN, -0.0];
    let back = decode::<Vec<f64>>(&encode(&f).ok().unwrap()).ok().unwrap();
    assert_eq!(
        back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        f.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    // Unaligned input decodes (it is copied into aligned memory).
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&encode(&vec![7i32, -7]).ok().unwrap());
    assert_eq!(decode::<Vec<i32>>(&shifted[1..]).ok(), Some(vec![7, -7]));
    let mut out = vec![9u8];
    encode_into(&vec![3u16, 4], &mut out).ok().unwrap();
    assert_eq!(out, [9, 3, 0, 4, 0]);
    // Empty, and a length that is not whole elements.
    assert_eq!(decode::<Vec<u32>>(&[]).ok(), Some(Vec::new()));
    let Err(CodecError(e)) = decode::<Vec<u32>>(&[1, 2, 3]) else {
        panic!("must be refused")
    };
    assert!(e.contains("whole number"), "{e}");
    // Nested vectors still go through serde.
    let nested = (5u8, vec![1u64, 2]);
    assert_eq!(
        decode::<(u8, Vec<u64>)>(&encode(&nested).ok().unwrap()).ok(),
        Some(nested)
    );
}

#[test]
fn an_indexed_sequence_holds_the_vec_encoding_and_each_element_alone() {
    let items = vec![
        Sample {
            id: 1,
            name: "a".into(),
            data: vec![],
            nested: None,
        },
        Sample {
            id: 300,
            name: "bcd".into(),
            data: vec![7, 8],
            nested: Some((3, 0.5)),
        },
    ];
    let mut out = vec![9];
    encode_indexed(&items, &mut out).ok().unwrap();
    assert_eq!(out[0], 9, "appended");
    let bytes = &out[1..];
    // The body is the `Vec`'s own encoding, as plain postcard writes it.
    let plain = postcard::to_allocvec(&items).unwrap();
    assert!(bytes.ends_with(&plain));
    assert_eq!(decode_indexed::<Sample>(bytes).ok(), Some(items.clone()));
    let parts = indexed_elements(bytes).ok().unwrap();
    assert_eq!(parts.len(), 2);
    for (part, item) in parts.iter().zip(&items) {
        assert_eq!(decode_element::<Sample>(part).ok().as_ref(), Some(item));
    }
    // Empty.
    let mut out = Vec::new();
    encode_indexed::<Sample>(&[], &mut out).ok().unwrap();
    assert_eq!(decode_indexed::<Sample>(&out).ok(), Some(Vec::new()));
}

#[test]
fn a_malformed_indexed_sequence_is_an_error() {
    let mut out = Vec::new();
    encode_indexed(&[1u32, 2, 3], &mut out).ok().unwrap();
    for cut in 0..out.len() {
        assert!(decode_indexed::<u32>(&out[..cut]).is_err(), "cut at {cut}");
        assert!(indexed_elements(&out[..cut]).is_err(), "cut at {cut}");
    }
    // Offsets out of order.
    let mut bad = out.clone();
    bad[8..12].copy_from_slice(&100u32.to_le_bytes());
    assert!(indexed_elements(&bad).is_err());
    // A count that does not match the table.
    let mut bad = out;
    bad[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode_indexed::<u32>(&bad).is_err());
}

/// One element that does not decode leaves the others readable.
#[test]
fn indexed_elements_decode_alone() {
    #[derive(Serialize)]
    struct Wide(u32, u32);
    #[derive(Deserialize, Debug, PartialEq)]
    struct Narrow(u32);
    let mut out = Vec::new();
    encode_indexed(&[Wide(1, 2), Wide(3, 4)], &mut out).ok().unwrap();
    // Decoding as `Narrow` leaves a byte over in each element: an error
    // for each, never a value read across elements.
    assert!(decode_indexed::<Narrow>(&out).is_err());
    for part in indexed_elements(&out).ok().unwrap() {
        assert!(decode_element::<Narrow>(part).is_err());
    }
}

/// A type whose `Deserialize` reads other bytes than its `Serialize` wrote
/// (`skip_serializing_if`, which a format without field names cannot carry): the sequence
/// decodes as one `Vec` into a wrong second value, but an indexed sequence
/// never does.
#[test]
fn an_indexed_sequence_never_reads_across_elements() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Skippy {
        a: u8,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        b: Option<u8>,
    }
    let items = [Skippy { a: 5, b: None }, Skippy { a: 0, b: Some(0) }];
    let mut out = Vec::new();
    encode_indexed(&items, &mut out).ok().unwrap();
    assert!(decode_indexed::<Skippy>(&out).is_err());
    let parts = indexed_elements(&out).ok().unwrap();
    assert!(decode_element::<Skippy>(parts[0]).is_err());
    assert_eq!(
        decode_element::<Skippy>(parts[1]).ok(),
        Some(Skippy { a: 0, b: Some(0) })
    );
}

/// A value whose `Serialize` fails with its own message, or not.
#[derive(Debug, PartialEq, Clone)]
struct Picky(Option<&'static str>);

impl Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(why) => Err(serde::ser::Error::custom(why)),
            None => s.serialize_u8(7),
        }
    }
}

/// Refuses to deserialise the number 13, with its own message.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Serialize)]
struct NotThirteen(u8);

impl<'de> Deserialize<'de> for NotThirteen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            13 => Err(serde::de::Error::custom("13 is unlucky")),
            n => Ok(NotThirteen(n)),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Holder<T> {
    Unit,
    Newtype(T),
    Tuple(u8, T),
    Struct { a: u8, t: T },
}

fn encode_err<T: Serialize + 'static>(v: &T) -> String {
    match encode(v) {
        Ok(b) => panic!("encoded as {b:?}"),
        Err(CodecError(e)) => e,
    }
}

/// The message of a custom `Serialize` error reaches the caller, wherever
/// the value sits (postcard itself only says "Serde Serialization Error").
#[test]
fn custom_serialize_errors_keep_their_message() {
    let bad = || Picky(Some("picky says why"));
    let good = Picky(None);
    assert_eq!(encode_err(&bad()), "picky says why");
    assert_eq!(encode_err(&(1u8, bad())), "picky says why");
    assert_eq!(encode_err(&vec![good.clone(), bad()]), "picky says why");
    assert_eq!(encode_err(&Some(bad())), "picky says why");
    assert_eq!(encode_err(&Holder::Newtype(bad())), "picky says why");
    assert_eq!(encode_err(&Holder::Tuple(1, bad())), "picky says why");
    assert_eq!(encode_err(&Holder::Struct { a: 1, t: bad() }), "picky says why");
    let map: std::collections::BTreeMap<u8, Picky> = [(1, good.clone()), (2, bad())].into();
    assert_eq!(encode_err(&map), "picky says why");
    let nested = vec![Some(Holder::Struct {
        a: 0,
        t: vec![(good.clone(), bad())],
    })];
    assert_eq!(encode_err(&nested), "picky says why");
    // The first failure is the one reported; nothing is left behind.
    let mut out = vec![1, 2];
    let Err(CodecError(e)) = encode_into(&vec![Picky(Some("first")), Picky(Some("second"))], &mut out) else {
        panic!("must fail")
    };
    assert_eq!((e.as_str(), &out[..]), ("first", &[1u8, 2][..]));
    let Err(CodecError(e)) = encode_indexed(&[good.clone(), bad()], &mut out) else {
        panic!("must fail")
    };
    assert_eq!((e.as_str(), &out[..]), ("picky says why", &[1u8, 2][..]));
    // A value that serialises is not affected, and its bytes are postcard's.
    let fine = (good.clone(), Holder::Struct { a: 3, t: good }, Some("s".to_string()));
    assert_eq!(
        encode(&fine).ok().unwrap().as_ref(),
        postcard::to_allocvec(&fine).unwrap()
    );
}

/// The message of a custom `Deserialize` error reaches the caller,
/// wherever the value sits; serde's own errors say what was wrong; and
/// postcard's own errors keep their text.
#[test]
fn custom_deserialize_errors_keep_their_message() {
    fn decode_err<T: DeserializeOwned + 'static + std::fmt::Debug>(bytes: &[u8]) -> String {
        match decode::<T>(bytes) {
            Ok(v) => panic!("decoded {v:?}"),
            Err(CodecError(e)) => e,
        }
    }
    fn bytes<T: Serialize + 'static>(v: T) -> Vec<u8> {
        encode(&v).ok().unwrap().into_owned()
    }
    let why = "13 is unlucky";
    assert_eq!(decode_err::<NotThirteen>(&bytes(NotThirteen(13))), why);
    assert_eq!(decode_err::<(u8, NotThirteen)>(&bytes((1u8, NotThirteen(13)))), why);
    assert_eq!(
        decode_err::<Vec<NotThirteen>>(&bytes(vec![NotThirteen(1), NotThirteen(13)])),
        why
    );
    assert_eq!(decode_err::<Option<NotThirteen>>(&bytes(Some(NotThirteen(13)))), why);
    for h in [
        Holder::Newtype(NotThirteen(13)),
        Holder::Tuple(1, NotThirteen(13)),
        Holder::Struct {
            a: 1,
            t: NotThirteen(13),
        },
    ] {
        assert_eq!(decode_err::<Holder<NotThirteen>>(&bytes(h)), why);
    }
    let map: std::collections::BTreeMap<u8, NotThirteen> = [(1, NotThirteen(2)), (2, NotThirteen(13))].into();
    assert_eq!(
        decode_err::<std::collections::BTreeMap<u8, NotThirteen>>(&bytes(map)),
        why
    );
    let keys: std::collections::BTreeMap<NotThirteen, u8> = [(NotThirteen(13), 1)].into();
    assert_eq!(
        decode_err::<std::collections::BTreeMap<NotThirteen, u8>>(&bytes(keys)),
        why
    );
    // serde's derived code: a variant index out of range.
    let e = decode_err::<Holder<u8>>(&[7]);
    assert!(e.contains("variant index"), "{e}");
    // postcard's own: the input ends.
    let e = decode_err::<(u64, NotThirteen)>(&[1]);
    assert!(e.contains("end of buffer"), "{e}");
    // A value that decodes is not affected.
    let ok = (NotThirteen(12), Holder::Tuple(2, NotThirteen(14)));
    assert_eq!(
        decode::<(NotThirteen, Holder<NotThirteen>)>(&bytes(ok))
            .ok()
            .map(|v| v.1),
        Some(Holder::Tuple(2, NotThirteen(14)))
    );
}
