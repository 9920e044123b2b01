//! The strategies: types, operations, values, payloads, and streams of
//! valid, mutated and cut frames.

use proptest::{prelude::*, sample::Index};

use super::model::{DIRECT_MIN, HEADER, MAX_FDS, Op, Rec, Shape, TRUSTED_LEN, Ty, encode, frame, pattern};

pub(super) fn ty() -> impl Strategy<Value = Ty> {
    prop_oneof![
        Just(Ty::U64),
        Just(Ty::Str),
        Just(Ty::Bytes),
        Just(Ty::Rec),
        Just(Ty::Conn)
    ]
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Bytes),
        1 => Just(Op::Blocking),
        4 => ty().prop_map(Op::Value),
        1 => ty().prop_map(Op::BlockingValue),
        2 => ty().prop_map(Op::Try),
        1 => prop_oneof![0..64usize, 0..300usize, Just(DIRECT_MIN)].prop_map(Op::Max),
        1 => (0..400usize, 0..420usize).prop_map(|(len, offset)| Op::Into { len, offset }),
        // Large enough for a message to be read straight into the buffer.
        1 => (DIRECT_MIN..200_000usize, 0..64usize).prop_map(|(len, offset)| Op::Into { len, offset }),
        1 => Just(Op::Poll),
        1 => Just(Op::Wait),
    ]
}

pub(super) fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Empty),
        any::<u16>().prop_map(Shape::Small),
        (any::<i32>(), any::<Option<u8>>()).prop_map(|(a, b)| Shape::Pair(a, b)),
        (any::<u64>(), prop::collection::vec(any::<bool>(), 0..5)).prop_map(|(id, flags)| Shape::Named { id, flags }),
    ]
}

pub(super) fn rec() -> impl Strategy<Value = Rec> {
    (
        (any::<u32>(), any::<i64>(), any::<f64>(), any::<char>(), "\\PC{0,6}"),
        shape(),
        prop::option::of(prop::collection::vec(shape(), 0..4)),
        prop::collection::vec((any::<u8>(), any::<Option<i16>>()), 0..6),
        prop::collection::vec(prop::collection::vec(any::<u32>(), 0..4), 0..4),
        any::<u128>(),
    )
        .prop_map(
            |((id, delta, ratio, letter, name), shape, maybe, items, nested, wide)| Rec {
                id,
                delta,
                ratio,
                letter,
                name,
                shape,
                maybe,
                items,
                nested,
                wide,
            },
        )
}

/// A payload: random, a value's encoding, text, or (rarely) larger than
/// the direct-read threshold.
pub(super) fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..48),
        2 => prop::collection::vec(any::<u8>(), 0..600),
        2 => any::<u64>().prop_map(|v| encode(&v)),
        3 => rec().prop_map(|r| encode(&r)),
        1 => "\\PC{0,24}".prop_map(String::into_bytes),
        1 => Just(Vec::new()),
        1 => (DIRECT_MIN - 20..DIRECT_MIN + 90_000, any::<u64>()).prop_map(|(n, s)| pattern(n, s)),
    ]
}

#[derive(Clone, Debug)]
pub(super) enum Len {
    Abs(u64),
    Rel(i8),
}

/// A change to a frame's header.
#[derive(Clone, Debug)]
pub(super) enum HeaderChange {
    Len(Index, Len),
    Nfds(Index, u16),
    Byte(Index, usize, u8),
}

/// A change to the whole stream.
#[derive(Clone, Debug)]
pub(super) enum ByteChange {
    Flip(Index, u8),
    Truncate(Index),
    Append(Vec<u8>),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
}

pub(super) fn header_change() -> impl Strategy<Value = HeaderChange> {
    let len = prop_oneof![
        3 => (-3i8..=3).prop_map(Len::Rel),
        1 => (0u64..200).prop_map(Len::Abs),
        1 => prop_oneof![
            Just(u64::MAX),
            Just(u64::MAX / 2),
            Just(1u64 << 40),
            Just(TRUSTED_LEN),
            Just(TRUSTED_LEN + 1),
            Just(DIRECT_MIN as u64 - 1),
            Just(DIRECT_MIN as u64),
            any::<u64>(),
        ]
        .prop_map(Len::Abs),
    ];
    let nfds = prop_oneof![
        Just(1u16),
        Just(2),
        Just(MAX_FDS as u16),
        Just(MAX_FDS as u16 + 1),
        Just(u16::MAX),
        any::<u16>()
    ];
    prop_oneof![
        3 => (any::<Index>(), len).prop_map(|(i, l)| HeaderChange::Len(i, l)),
        1 => (any::<Index>(), nfds).prop_map(|(i, n)| HeaderChange::Nfds(i, n)),
        2 => (any::<Index>(), 0..HEADER, any::<u8>()).prop_map(|(i, at, v)| HeaderChange::Byte(i, at, v)),
    ]
}

pub(super) fn byte_change() -> impl Strategy<Value = ByteChange> {
    prop_oneof![
        3 => (any::<Index>(), 0..8u8).prop_map(|(i, bit)| ByteChange::Flip(i, bit)),
        2 => any::<Index>().prop_map(ByteChange::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..40).prop_map(ByteChange::Append),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..20)).prop_map(|(i, b)| ByteChange::Insert(i, b)),
        1 => (any::<Index>(), 1..20usize).prop_map(|(i, n)| ByteChange::Remove(i, n)),
    ]
}

/// Mostly none or one, sometimes a few.
pub(super) fn changes<S: Strategy + 'static>(s: fn() -> S) -> impl Strategy<Value = Vec<S::Value>> {
    prop_oneof![
        2 => prop::collection::vec(s(), 0),
        2 => prop::collection::vec(s(), 1),
        1 => prop::collection::vec(s(), 2..4),
    ]
}

/// Valid frames, then corrupted.
pub(super) fn mutated_frames() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(payload(), 0..6),
        changes(header_change),
        changes(byte_change),
    )
        .prop_map(|(payloads, header_changes, byte_changes)| {
            let mut frames: Vec<Vec<u8>> = payloads.iter().map(|p| frame(p)).collect();
            if !frames.is_empty() {
                for c in header_changes {
                    let (HeaderChange::Len(i, _) | HeaderChange::Nfds(i, _) | HeaderChange::Byte(i, ..)) = &c;
                    let n = frames.len();
                    let f = &mut frames[i.index(n)];
                    match c {
                        HeaderChange::Len(_, l) => {
                            let old = u64::from_le_bytes(f[8..16].try_into().unwrap());
                            let new = match l {
                                Len::Abs(v) => v,
                                Len::Rel(d) => old.saturating_add_signed(d.into()),
                            };
                            f[8..16].copy_from_slice(&new.to_le_bytes());
                        }
                        HeaderChange::Nfds(_, n) => f[4..6].copy_from_slice(&n.to_le_bytes()),
                        HeaderChange::Byte(_, at, v) => f[at] = v,
                    }
                }
            }
            let mut s = frames.concat();
            for c in byte_changes {
                match c {
                    ByteChange::Flip(i, bit) if !s.is_empty() => {
                        let i = i.index(s.len());
                        s[i] ^= 1 << bit;
                    }
                    ByteChange::Truncate(i) => s.truncate(i.index(s.len() + 1)),
                    ByteChange::Append(b) => s.extend_from_slice(&b),
                    ByteChange::Insert(i, b) => {
                        let at = i.index(s.len() + 1);
                        s.splice(at..at, b);
                    }
                    ByteChange::Remove(i, n) if !s.is_empty() => {
                        let at = i.index(s.len());
                        s.drain(at..(at + n).min(s.len()));
                    }
                    _ => {}
                }
            }
            s
        })
}

pub(super) fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..512),
        // Past the magic more often than chance.
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| [&b"mp\x01\x00"[..], &b].concat()),
        6 => mutated_frames(),
    ]
}
