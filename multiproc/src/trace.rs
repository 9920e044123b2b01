//! Spans of the `tracing` feature: a process's start and join, and each
//! pool task in its worker. Without the feature every call here is a
//! no-op that compiles away.
//!
//! All spans have the target `multiproc` and level INFO (a span prints
//! nothing by itself; it gives the events inside it their context):
//!
//! - `start` (in the parent, made by `Process::start` and closed when it
//!   returns, never entered: a fork child, which never returns from
//!   `start`, would run its target inside it): `process` (name), `method`,
//!   and `pid` once the child exists.
//! - `join` (in the parent, around `Process::join`): `process`, `pid`, and
//!   `exitcode` once the child has ended.
//! - `task` (in a pool worker, around each task message it runs: one
//!   task, or a chunk of them): `process` (the worker's name), `pid` (the
//!   worker's), `task` (how many task messages the worker ran before this
//!   one: 0, 1, 2...) and `id` (the task message's id, unique in the
//!   pool's process; not `message`, which formatters take for an event's
//!   text).

#[cfg(feature = "tracing")]
mod imp {
    use tracing::field::Empty;

    /// An entered span.
    pub(crate) struct Entered(tracing::span::EnteredSpan);

    /// A span that is never entered: a fork child, which never returns
    /// from `start`, would otherwise run its target inside it.
    pub(crate) struct Started(tracing::Span);

    pub(crate) fn start(process: &str, method: crate::StartMethod) -> Started {
        Started(tracing::info_span!(target: "multiproc", "start", process, method = %method, pid = Empty))
    }

    impl Started {
        pub(crate) fn record_pid(&self, pid: u32) {
            self.0.record("pid", pid);
        }
    }

    pub(crate) fn join(process: &str, pid: Option<u32>) -> Entered {
        Entered(tracing::info_span!(target: "multiproc", "join", process, pid, exitcode = Empty).entered())
    }

    pub(crate) fn task(index: usize, message: u64) -> Entered {
        // The fields are only computed when a subscriber wants the span.
        let span = tracing::info_span!(
            target: "multiproc",
            "task",
            process = crate::registry::with_me(|me| me.name.clone()),
            pid = crate::sys::getpid(),
            task = index,
            id = message
        );
        Entered(span.entered())
    }

    impl Entered {
        pub(crate) fn record_exitcode(&self, code: i32) {
            self.0.record("exitcode", code);
        }
    }
}

#[cfg(not(feature = "tracing"))]
mod imp {
    /// Nothing: the `tracing` feature is off.
    pub(crate) struct Entered;

    /// Nothing: the `tracing` feature is off.
    pub(crate) struct Started;

    pub(crate) fn start(_process: &str, _method: crate::StartMethod) -> Started {
        Started
    }

    impl Started {
        pub(crate) fn record_pid(&self, _pid: u32) {}
    }

    pub(crate) fn join(_process: &str, _pid: Option<u32>) -> Entered {
        Entered
    }

    pub(crate) fn task(_index: usize, _message: u64) -> Entered {
        Entered
    }

    impl Entered {
        pub(crate) fn record_exitcode(&self, _code: i32) {}
    }
}

pub(crate) use imp::{join, start, task};
