//! The process pool and the executor, by behaviour. The pool's failure
//! cases run under every start method; CPython 3.11's `multiprocessing.Pool`
//! and `concurrent.futures.ProcessPoolExecutor` behaviours are pinned where
//! they apply, and the documented differences are said in each test.
//!
//! This module holds the helpers several of the files use.

mod apply_async;
mod batches;
mod call_options;
mod callbacks;
mod deaths;
mod done_callbacks;
mod executor;
mod executor_async;
mod executor_map_buffered;
mod executor_on_demand;
mod fork_child;
mod futures;
mod imap;
mod initializer;
mod input_panics;
mod large_arguments;
mod library_objects;
mod map;
mod map_results;
mod maxtasks;
mod pids;
mod start_up;
mod task_failures;
mod task_identity;
mod terminate;
mod timeouts;
// Pidfds are Linux-only.
#[cfg(target_os = "linux")]
mod unsignalled;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use multiproc::{Callbacks, Executor, Pool, PoolBuilder, StartMethod};

use crate::support::{DEADLINE, PidWatch, block_forever, ready_then_wait};

pub(super) fn pool(m: StartMethod, n: usize) -> PoolBuilder {
    Pool::builder().processes(n).start_method(m)
}

pub(super) fn square(x: u64) -> u64 {
    x * x
}

pub(super) fn own_pid(_: u32) -> u32 {
    std::process::id()
}

#[allow(unsafe_code)]
pub(super) fn killed_at(x: u32) -> u32 {
    if x == 7 {
        // SAFETY: the worker kills itself, the behaviour under test.
        unsafe { libc::kill(std::process::id() as libc::pid_t, libc::SIGKILL) };
    }
    x
}

pub(super) fn forever(_: u32) -> u32 {
    block_forever()
}

pub(super) fn assert_gone(pids: &[u32]) {
    for &pid in pids {
        let watch = PidWatch::try_open(pid);
        if let Some(w) = watch {
            assert!(w.ended_within(DEADLINE), "worker {pid} still runs");
        }
    }
}

/// Records what the callbacks saw.
#[derive(Clone, Default)]
pub(super) struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn sorted(&self) -> Vec<String> {
        let mut v = self.0.lock().unwrap().clone();
        v.sort();
        v
    }
}

pub(super) fn both<T: ?Sized + std::fmt::Debug>(seen: &Seen, tag: &'static str) -> Callbacks<T> {
    let (a, b) = (seen.clone(), seen.clone());
    Callbacks::new()
        .callback(move |v: &T| a.push(format!("{tag} ok {v:?}")))
        .error_callback(move |e| b.push(format!("{tag} err {:?}", e.kind())))
}

/// Reports ready to the rendezvous `addr`, then waits (bounded) for its
/// "go".
pub(super) fn wait_for_gate(addr: String) -> bool {
    ready_then_wait(&addr);
    true
}

pub(super) fn checksum(v: Vec<u8>) -> (usize, u64) {
    (v.len(), v.iter().map(|&b| u64::from(b)).sum())
}

/// Holds its worker until the test opens the gate.
pub(super) fn held(addr: String) -> bool {
    ready_then_wait(&addr);
    true
}

/// A task with a side effect only: creates the file at `path`.
pub(super) fn touch(path: String) -> bool {
    std::fs::write(&path, b"").is_ok()
}

pub(super) fn marker(tag: &str, m: StartMethod, i: usize) -> PathBuf {
    let p = std::env::temp_dir().join(format!("multiproc-conf-{tag}-{}-{m:?}-{i}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

pub(super) fn executor(m: StartMethod, n: usize) -> Executor {
    Executor::from_builder(Pool::builder().processes(n).start_method(m)).unwrap()
}

/// `false` at once, or (given a rendezvous address) `true` once the test
/// opens the gate.
pub(super) fn held_or_not(gate: Option<String>) -> bool {
    match gate {
        Some(addr) => {
            ready_then_wait(&addr);
            true
        }
        None => false,
    }
}

pub(super) fn panics(_: Option<String>) -> bool {
    panic!("raised in the task")
}
