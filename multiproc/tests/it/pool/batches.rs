//! Batches (one chunk's arguments or results in one message) never yield
//! a value read from the wrong offset or across elements.

use multiproc::{ErrorKind, Pool, StartMethod};

use crate::support::DEADLINE;

use super::executor;

/// A result whose `Deserialize` reads fewer bytes than its `Serialize`
/// wrote (`skip_deserializing`: a broken round trip, which a single result
/// reports as trailing bytes).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Lossy {
    a: u8,
    #[serde(skip_deserializing)]
    b: u8,
}

fn lossy(x: u8) -> Lossy {
    Lossy { a: x, b: x + 100 }
}

/// A batch reply that does not decode (here: trailing bytes) never yields
/// a value read from the wrong offset.
fn batch_reply_decoded_by_element_never_yields_a_wrong_value(m: StartMethod) {
    let ex = executor(m, 1);
    // One result: a Deserialize error (trailing bytes).
    let e = ex.pool().apply(lossy, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deserialize, "{e}");
    // One batch (one chunk of three), in an executor's map.
    let got: Vec<_> = ex
        .map_chunked(lossy, [1u8, 2, 3], Some(DEADLINE), 3)
        .unwrap()
        .map(|r| r.map(|l| l.a).map_err(|e| e.kind()))
        .collect();
    for (x, r) in [1u8, 2, 3].iter().zip(&got) {
        assert!(
            r.as_ref().is_err() || r.as_ref().ok() == Some(x),
            "task of {x}: a wrong value came back: {got:?}"
        );
    }
    // Each result read from its own bytes fails alone (a byte is left
    // over in each), the same as one result does.
    assert_eq!(got, [Err(ErrorKind::Deserialize); 3]);
}

/// The same through a pool's `map` of one and of several batches.
fn map_of_several_batches_never_yields_wrong_values(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    let one = p.map_chunked(lossy, [1u8, 2, 3, 4], 4).map_err(|e| e.kind());
    assert_eq!(one.err(), Some(ErrorKind::Deserialize));
    let r = p
        .map_chunked(lossy, [1u8, 2, 3, 4], 2)
        .map(|v| v.into_iter().map(|l| l.a).collect::<Vec<_>>());
    assert!(r.is_err(), "map of two batches returned wrong values: {r:?}");
}

/// A value whose `Serialize` skips `b` when it is `None` (postcard does
/// not support `skip_serializing_if`): a broken round trip, which one
/// value alone reports as an error.
#[derive(Debug, PartialEq, Clone, serde::Serialize, serde::Deserialize)]
struct Skippy {
    a: u8,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    b: Option<u8>,
}

fn skippy(x: u8) -> Skippy {
    if x == 0 {
        Skippy { a: 5, b: None }
    } else {
        Skippy { a: 0, b: Some(0) }
    }
}

fn skippy_back(s: Skippy) -> (u8, Option<u8>) {
    (s.a, s.b)
}

/// A batch (a `map` chunk) of results or of arguments never yields a
/// value other than the one sent (decoded as one `Vec`, these bytes give
/// `[Skippy{5,None}, Skippy{1,None}]`); the value that cannot travel
/// fails alone.
fn batch_never_decodes_a_value_across_elements(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    // Arguments, one chunk of two: the worker's target must not be
    // called with a value that was not sent.
    match p.map_chunked(skippy_back, [skippy(0), skippy(1)], 2) {
        Err(_) => {}
        Ok(v) => assert_eq!(v, [(5, None), (0, Some(0))], "the target got wrong arguments"),
    }
    // Results, one chunk of two.
    match p.map_chunked(skippy, [0u8, 1], 2) {
        Err(_) => {}
        Ok(v) => assert_eq!(v, [skippy(0), skippy(1)], "map returned wrong results"),
    }
    // Each task on its own: the first fails, the second comes through.
    let got: Vec<_> = p
        .imap_chunked(skippy, [0u8, 1], 2)
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Err(ErrorKind::Deserialize), Ok(skippy(1))]);
    let got: Vec<_> = p
        .imap_chunked(skippy_back, [skippy(0), skippy(1)], 2)
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Err(ErrorKind::Deserialize), Ok((0, Some(0)))]);
}

per_method!(
    batch_reply_decoded_by_element_never_yields_a_wrong_value,
    map_of_several_batches_never_yields_wrong_values,
    batch_never_decodes_a_value_across_elements,
);
