//! The `tracing` feature's spans, seen by a small recording subscriber:
//! `start` and `join` in the parent, `task` in a pool worker.
#![cfg(feature = "tracing")]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
};

use multiproc::{self as mp, ProcessBuilder, StartMethod};
use tracing::{
    Event, Id, Metadata, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Record},
};

use crate::support::DEADLINE;

per_method!(start_and_join_have_spans, each_pool_task_has_a_span);

/// A span as recorded: its name and its fields, values as text.
type Seen = (String, BTreeMap<String, String>);

/// Records every span and the values recorded on it later.
#[derive(Clone, Default)]
struct Recorder(Arc<Inner>);

#[derive(Default)]
struct Inner {
    spans: Mutex<Vec<Seen>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Recorder {
    fn spans(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let spans = self.0.spans.lock().unwrap();
        spans
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.spans.lock().unwrap();
        spans.push((attrs.metadata().name().to_owned(), fields));
        // Ids start at 1: the span's index plus one.
        Id::from_u64(spans.len() as u64)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut spans = self.0.spans.lock().unwrap();
        if let Some((_, fields)) = spans.get_mut(id.into_u64() as usize - 1) {
            values.record(&mut Fields(fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn forty_two() -> u32 {
    42
}

fn start_and_join_have_spans(m: StartMethod) {
    // tracing caches whether anyone wants a span once per call site, in the
    // first thread that reaches it: a call site reached first by another
    // test while this test's subscriber is being set up can be cached as
    // unwanted. Reach the call sites here first (their registration is
    // then complete), and have the cache rebuilt once the subscriber is in.
    let mut warm = ProcessBuilder::new().start_method(m).target(forty_two);
    warm.start().unwrap();
    warm.join_timeout(DEADLINE).unwrap();
    let rec = Recorder::default();
    let pid = tracing::subscriber::with_default(rec.clone(), || {
        tracing::callsite::rebuild_interest_cache();
        let mut p = ProcessBuilder::new().name("traced").start_method(m).target(forty_two);
        p.start().unwrap();
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), 42);
        p.pid().unwrap().to_string()
    });
    let expected = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    assert_eq!(
        rec.spans("start"),
        [expected(&[
            ("process", "traced"),
            ("method", &m.to_string()),
            ("pid", &pid)
        ])]
    );
    assert_eq!(
        rec.spans("join"),
        [expected(&[("process", "traced"), ("pid", &pid), ("exitcode", "0")])]
    );
}

/// The worker's recorder, installed by the pool's initializer.
static WORKER: OnceLock<Recorder> = OnceLock::new();

fn install_recorder(_: ()) {
    let rec = WORKER.get_or_init(Recorder::default).clone();
    tracing::subscriber::set_global_default(rec).expect("the worker's first subscriber");
}

/// This worker's pid and the `task` spans it has seen, this task's last.
fn task_spans(_: u32) -> (u32, Vec<BTreeMap<String, String>>) {
    let rec = WORKER.get().expect("installed by the initializer");
    (std::process::id(), rec.spans("task"))
}

fn each_pool_task_has_a_span(m: StartMethod) {
    let pool = mp::Pool::builder()
        .processes(1)
        .start_method(m)
        .initializer(install_recorder, ())
        .build()
        .unwrap();
    for i in 0..3u32 {
        let (pid, spans) = pool.apply(task_spans, i).unwrap();
        assert_eq!(spans.len(), i as usize + 1, "one span per task so far: {spans:?}");
        let last = spans.last().unwrap();
        assert_eq!(last["process"], "PoolWorker-1");
        assert_eq!(last["pid"], pid.to_string());
        assert_eq!(last["task"], i.to_string(), "the worker's task number");
        assert!(last["id"].parse::<u64>().is_ok(), "{last:?}");
    }
    pool.close();
    pool.join().unwrap();
}
