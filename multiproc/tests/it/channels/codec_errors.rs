//! The message of a custom serde error raised deep inside a value (a field
//! of an enum variant inside an `Option` inside a `Vec` inside a struct)
//! reaches the caller whichever side refuses: the codec's format drops
//! such messages, the library keeps them.

use multiproc::{ErrorKind, ProcessBuilder, StartMethod};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::support::DEADLINE;

/// Refuses to serialise `13`, and to deserialise `14` (which serialises).
#[derive(Debug, PartialEq)]
struct Picky(u8);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            13 => Err(serde::ser::Error::custom("picky: 13 does not serialise")),
            n => s.serialize_u8(n),
        }
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            14 => Err(serde::de::Error::custom("picky: 14 does not deserialise")),
            n => Ok(Picky(n)),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Slot {
    Empty,
    Held { tag: String, value: Picky },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Report {
    id: u64,
    slots: Vec<Option<Slot>>,
}

fn report(n: u8) -> Report {
    Report {
        id: 1,
        slots: vec![
            None,
            Some(Slot::Empty),
            Some(Slot::Held {
                tag: "t".into(),
                value: Picky(n),
            }),
        ],
    }
}

fn builder(m: StartMethod) -> ProcessBuilder {
    ProcessBuilder::new().start_method(m)
}

fn take_report(r: Report) -> u64 {
    r.id + r.slots.len() as u64
}

fn nested_refusals_keep_their_message(m: StartMethod) {
    // A result that does not deserialise in the parent.
    let mut p = builder(m).target_with(report, 14);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deserialize, "{e}");
    assert!(e.to_string().contains("picky: 14 does not deserialise"), "{e}");

    // A result that does not serialise in the child.
    let mut p = builder(m).target_with(report, 13);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
    assert!(e.to_string().contains("picky: 13 does not serialise"), "{e}");

    // Arguments: refused at start where they are serialised, in the child
    // where they are deserialised (fork copies them: nothing to refuse).
    let mut p = builder(m).target_with(take_report, report(13));
    let mut q = builder(m).target_with(take_report, report(14));
    if m == StartMethod::Fork {
        p.start().unwrap();
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), 4);
        q.start().unwrap();
        assert_eq!(q.join_timeout(DEADLINE).unwrap(), 4);
    } else {
        let e = p.start().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
        assert!(e.to_string().contains("picky: 13 does not serialise"), "{e}");
        q.start().unwrap();
        let e = q.join_timeout(DEADLINE).unwrap_err();
        assert!(e.to_string().contains("picky: 14 does not deserialise"), "{e}");
    }

    // A value that crosses is unchanged.
    let mut p = builder(m).target_with(report, 12);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), report(12));
}

per_method!(nested_refusals_keep_their_message);
