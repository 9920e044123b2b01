//! Large arguments round trip, and one that cannot travel fails alone.

use multiproc::{ErrorKind, StartMethod};
use serde::{Serialize, Serializer};

use super::{checksum, pool};

fn large_arguments_round_trip(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let inputs: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8 + 1; 300_000 + i]).collect();
    let expected: Vec<(usize, u64)> = inputs.iter().cloned().map(checksum).collect();
    // Automatic chunk size: each large argument on its own.
    assert_eq!(p.map(checksum, inputs.clone()).unwrap(), expected);
    // Several large arguments in one chunk, and in one batch.
    assert_eq!(p.map_chunked(checksum, inputs.clone(), 4).unwrap(), expected);
    let small: Vec<Vec<u8>> = inputs.iter().map(|v| v[..1000].to_vec()).collect();
    let small_expected: Vec<(usize, u64)> = small.iter().cloned().map(checksum).collect();
    assert_eq!(p.map_chunked(checksum, small, 3).unwrap(), small_expected);
    let got: Vec<(usize, u64)> = p.imap(checksum, inputs).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, expected);
    // One large argument as a message of its own: bytes, a string, any
    // other type.
    let big = vec![7u8; 1 << 20];
    assert_eq!(p.apply(checksum, big.clone()).unwrap(), checksum(big));
    let text = "é".repeat(100_000);
    assert_eq!(p.apply(char_count, text.clone()).unwrap(), 100_000);
    let words: Vec<Vec<u16>> = (0..4).map(|i| vec![i; 200_000]).collect();
    let sums: Vec<u64> = words.iter().map(|w| w.iter().map(|&x| u64::from(x)).sum()).collect();
    assert_eq!(p.map(sum_u16, words).unwrap(), sums);
    // A large argument that refuses to serialize fails its task alone; the
    // large arguments around it arrive whole.
    let mixed: Vec<Option<Vec<u16>>> = vec![Some(vec![1; 100_000]), None, Some(vec![2; 100_000])];
    let got: Vec<_> = p
        .imap(sum_or_refuse, mixed.into_iter().map(Refusing::from))
        .unwrap()
        .collect();
    assert_eq!(got[0].as_ref().unwrap(), &100_000);
    let e = got[1].as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
    assert!(e.to_string().contains("refuses to serialize"), "{e}");
    assert_eq!(got[2].as_ref().unwrap(), &200_000);
}

/// The sum of a large argument; `None` stands for one that refuses to
/// serialize (see [`Refusing`]).
fn sum_or_refuse(v: Refusing) -> u64 {
    v.0.map_or(0, sum_u16)
}

/// `Some` serializes as its vector; `None` refuses to serialize.
#[derive(Debug)]
struct Refusing(Option<Vec<u16>>);

impl From<Option<Vec<u16>>> for Refusing {
    fn from(v: Option<Vec<u16>>) -> Refusing {
        Refusing(v)
    }
}

impl Serialize for Refusing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(v) => v.serialize(s),
            None => Err(serde::ser::Error::custom("refuses to serialize")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Refusing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<u16>::deserialize(d).map(|v| Refusing(Some(v)))
    }
}

fn char_count(s: String) -> usize {
    s.chars().count()
}

fn sum_u16(v: Vec<u16>) -> u64 {
    v.iter().map(|&x| u64::from(x)).sum()
}

per_method!(large_arguments_round_trip);
