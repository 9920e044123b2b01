//! Failures that stay with their task: a task's panic, and a panic or a
//! refusal of a value's `Serialize` or `Deserialize` on either side.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::mpsc,
};

use multiproc::{Callbacks, ErrorKind, Pool, StartMethod};
use serde::{Serialize, Serializer};

use crate::support::DEADLINE;

use super::{executor, pool};

const PANIC_LINE: u32 = line!() + 3;
pub(super) fn panics_on_odd(x: u32) -> u32 {
    if x % 2 == 1 {
        panic!("odd {x}");
    }
    x
}

#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to serialize"))
    }
}

impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unserializable)
    }
}

fn bad_result(x: u32) -> Result<u32, Unserializable> {
    if x == 2 { Err(Unserializable) } else { Ok(x) }
}

fn panics_and_codec_failures_stay_per_task(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let results: Vec<_> = p.imap(panics_on_odd, 0..10u32).unwrap().collect();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v as usize, i),
            Err(e) => {
                assert_eq!(i % 2, 1);
                assert_eq!(e.kind(), ErrorKind::ChildPanicked);
                let panic = e.panic().unwrap();
                assert_eq!(panic.message(), format!("odd {i}"));
                let loc = panic.location().unwrap();
                assert_eq!((loc.file.as_str(), loc.line), (file!(), PANIC_LINE));
            }
        }
    }
    let e = p.map(panics_on_odd, 0..10u32).unwrap_err();
    assert_eq!(e.panic().unwrap().message(), "odd 1");
    let results: Vec<_> = p.imap(bad_result, 0..4u32).unwrap().collect();
    assert_eq!(results[2].as_ref().unwrap_err().kind(), ErrorKind::Serialize);
    for i in [0, 1, 3] {
        assert!(matches!(results[i], Ok(Ok(v)) if v == i as u32));
    }
    // The same through map's batches: the batch falls back to one result
    // per task, and only task 2 fails.
    let e = p.map_chunked(bad_result, 0..8u32, 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
    let ok: Vec<_> = p.map_chunked(bad_result, [0u32, 1, 3, 4], 4).unwrap();
    assert!(ok.iter().all(Result::is_ok));
    let r = p.map_async(panics_on_odd, 0..6u32, Some(3)).unwrap();
    assert_eq!(r.get().unwrap_err().panic().unwrap().message(), "odd 1");
    assert_eq!(p.pids().len(), 2);
}

/// An argument whose `Serialize` panics on 13.
#[derive(Debug, serde::Deserialize)]
struct Prickly(u64);

impl serde::Serialize for Prickly {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert_ne!(self.0, 13, "unlucky argument");
        s.serialize_u64(self.0)
    }
}

fn prickly_square(p: Prickly) -> u64 {
    p.0 * p.0
}

/// A panic of an argument's `Serialize` fails that task alone, with a
/// `Serialize` error; the items around it (in its chunk too) run.
fn serialize_panic_fails_only_its_task(m: StartMethod) {
    let p = Pool::builder().processes(2).start_method(m).build().unwrap();
    let input = [1u64, 2, 13, 4, 5, 6].into_iter().map(Prickly);
    let got: Vec<_> = p
        .imap_chunked(prickly_square, input, 3)
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Ok(1), Ok(4), Err(ErrorKind::Serialize), Ok(16), Ok(25), Ok(36)]);
    let one: Vec<_> = p
        .imap(prickly_square, [Prickly(13), Prickly(3)])
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(one, [Err(ErrorKind::Serialize), Ok(9)]);
    let e = p.apply(prickly_square, Prickly(13)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize);
    assert!(e.to_string().contains("unlucky argument"), "{e}");
    // A result's `Serialize` panicking in the worker, in a batch of a
    // `map` chunk: that task panicked; the worker and the others go on.
    let pids = p.pids();
    let got = p
        .map_async(prickly, [12u64, 13, 14], Some(3))
        .unwrap()
        .get()
        .map(|v| v.into_iter().map(|x| x.0).collect::<Vec<_>>())
        .map_err(|e| (e.kind(), e.to_string()));
    let (kind, text) = got.unwrap_err();
    assert_eq!(kind, ErrorKind::ChildPanicked);
    assert!(text.contains("unlucky argument") || text.contains("panicked"), "{text}");
    let each: Vec<_> = p
        .imap_chunked(prickly, [12u64, 13, 14], 3)
        .unwrap()
        .map(|r| r.map(|x| x.0).map_err(|e| e.kind()))
        .collect();
    assert_eq!(each, [Ok(12), Err(ErrorKind::ChildPanicked), Ok(14)]);
    assert_eq!(p.pids(), pids, "no worker died");
}

/// A `Prickly` result (its `Serialize` panics in the worker on 13).
fn prickly(x: u64) -> Prickly {
    Prickly(x)
}

/// A panic of a result's `Deserialize` is a `Deserialize` error of its
/// task alone, in a batch reply (one chunk's results in one message) too.
fn deserialize_panic_fails_only_its_task(m: StartMethod) {
    let ex = executor(m, 1);
    let got: Vec<_> = ex
        .map_chunked(touchy, [12u64, 13, 14], Some(DEADLINE), 3)
        .unwrap()
        .map(|r| r.map(|t| t.0).map_err(|e| (e.kind(), e.to_string())))
        .collect();
    assert_eq!(got[0], Ok(12));
    let (kind, text) = got[1].clone().unwrap_err();
    assert_eq!(kind, ErrorKind::Deserialize);
    assert!(text.contains("unlucky"), "{text}");
    assert_eq!(got[2], Ok(14));
    // Results that come one per message fail alone.
    let got: Vec<_> = ex
        .map_chunked(touchy, [12u64, 13, 14], Some(DEADLINE), 1)
        .unwrap()
        .map(|r| r.map(|t| t.0).map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Ok(12), Err(ErrorKind::Deserialize), Ok(14)]);
    let mut all = ex.pool().map_async(touchy, [12u64, 13, 14], Some(3)).unwrap();
    assert_eq!(all.get_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::Deserialize);
    let p = ex.pool();
    let got: Vec<_> = p
        .imap(touchy, [13u64, 14])
        .unwrap()
        .map(|r| r.map(|t| t.0).map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Err(ErrorKind::Deserialize), Ok(14)]);
    let e = p.apply(touchy, 13).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deserialize);
    assert!(e.to_string().contains("unlucky"), "{e}");
}

/// A `Serialize` panic of a `map`'s first argument (encoded once more to
/// judge whether the arguments are large) is a `Serialize` error of its
/// task too, not a panic out of the call.
fn map_with_a_first_argument_whose_serialize_panics(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    // Not first: a codec error of its task (as documented).
    let r = catch_unwind(AssertUnwindSafe(|| {
        p.map(prickly_square, [Prickly(2), Prickly(13)]).map_err(|e| e.kind())
    }));
    assert_eq!(r.ok(), Some(Err(ErrorKind::Serialize)));
    // First: the same, not a panic out of `map`.
    let r = catch_unwind(AssertUnwindSafe(|| {
        p.map(prickly_square, [Prickly(13), Prickly(2)]).map_err(|e| e.kind())
    }));
    assert_eq!(
        r.ok(),
        Some(Err(ErrorKind::Serialize)),
        "Pool::map panicked on the first argument's Serialize"
    );
    let ex = executor(m, 1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        ex.map(prickly_square, [Prickly(13), Prickly(2)], Some(DEADLINE))
            .map(|it| it.map(|r| r.map_err(|e| e.kind())).collect::<Vec<_>>())
            .map_err(|e| e.kind())
    }));
    assert_eq!(
        r.ok(),
        Some(Ok(vec![Err(ErrorKind::Serialize), Ok(4)])),
        "Executor::map panicked on the first argument's Serialize"
    );
}

/// The task of an argument whose `Deserialize` panics on 13 (in the
/// worker).
fn touchy_arg(t: Touchy) -> u64 {
    t.0
}

/// An argument's `Deserialize` panicking in the worker fails its task
/// alone, one per message or in a batch (a `map` chunk).
fn worker_side_argument_deserialize_panic_fails_only_its_task(m: StartMethod) {
    let ex = executor(m, 1);
    for chunksize in [1, 3] {
        let got: Vec<_> = ex
            .map_chunked(
                touchy_arg,
                [Touchy(12), Touchy(13), Touchy(14)],
                Some(DEADLINE),
                chunksize,
            )
            .unwrap()
            .map(|r| r.map_err(|e| e.kind()))
            .collect();
        assert!(
            got[0] == Ok(12) && got[1].is_err() && got[2] == Ok(14),
            "chunk size {chunksize}: {got:?}"
        );
    }
    let e = ex.pool().map(touchy_arg, [Touchy(12), Touchy(13)]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deserialize, "{e}");
}

/// A result type whose `Deserialize` panics on 13.
#[derive(Debug, serde::Serialize)]
struct Touchy(u64);

impl<'de> serde::Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Touchy, D::Error> {
        let v = u64::deserialize(d)?;
        assert_ne!(v, 13, "unlucky");
        Ok(Touchy(v))
    }
}

fn touchy(x: u64) -> Touchy {
    Touchy(x)
}

/// A result's deserializer that panics while callbacks decode it: the
/// panic reaches the driving caller, the future fails with
/// `Deserialize`, and nothing stays stuck.
fn deserializer_panic_under_callbacks_fails_only_its_task(m: StartMethod) {
    let ex = executor(m, 2);
    let (tx, rx) = mpsc::channel();
    let cb = Callbacks::new()
        .callback(|_: &Touchy| unreachable!("no value"))
        .error_callback(move |e| tx.send(e.kind()).unwrap());
    // The deserializer's panic comes out of whichever call drives the pool
    // when the result is in: the submission itself (a quick worker), or
    // the wait.
    let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ex.submit_with(touchy, 13, cb).unwrap()));
    if let Ok(mut f) = submitted {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.result(Some(DEADLINE))));
        if let Ok(r) = caught {
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Deserialize);
        } else {
            assert_eq!(f.result(Some(DEADLINE)).unwrap_err().kind(), ErrorKind::Deserialize);
        }
        assert!(f.done());
    }
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), ErrorKind::Deserialize);
    assert_eq!(ex.submit(touchy, 12).unwrap().result(Some(DEADLINE)).unwrap().0, 12);
    // The same for a map's callbacks.
    let (tx, rx) = mpsc::channel();
    let cb = Callbacks::new().error_callback(move |e| tx.send(e.kind()).unwrap());
    let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ex.pool().map_async_with(touchy, [12u64, 13], None, cb).unwrap()
    }));
    if let Ok(mut r) = submitted {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.wait(Some(DEADLINE))));
        assert_eq!(r.get_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::Deserialize);
    }
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), ErrorKind::Deserialize);
    assert_eq!(ex.submit(touchy, 12).unwrap().result(Some(DEADLINE)).unwrap().0, 12);
}

per_method!(
    panics_and_codec_failures_stay_per_task,
    serialize_panic_fails_only_its_task,
    deserialize_panic_fails_only_its_task,
    map_with_a_first_argument_whose_serialize_panics,
    worker_side_argument_deserialize_panic_fails_only_its_task,
    deserializer_panic_under_callbacks_fails_only_its_task,
);
