//! Workers lost mid-map: killed (connection reset), stopped (heartbeat
//! missed); their tasks retried elsewhere up to the pool's attempts, then
//! failed with an error that names the worker's host and the cause. A
//! launcher that exits before its workers connect fails `build` with its
//! standard error.
#![allow(unsafe_code)]

use std::{fs::OpenOptions, io::Write, path::PathBuf, time::Duration};

use multiproc::ErrorKind;

use super::{Scratch, all_gone, pid_of, script, square, tcp};

/// Appends `i` to the run log; on the first run of item `which` only,
/// `end` the worker (abort or stop it) before returning.
fn logged(dir: &std::path::Path, i: u32, which: u32, end: fn()) -> u32 {
    let mut log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("runs"))
        .unwrap();
    if i == which
        && OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join("first"))
            .is_ok()
    {
        end();
    }
    // One write per line: the workers append to the log at once.
    log.write_all(format!("{i}\n").as_bytes()).unwrap();
    i
}

#[allow(clippy::disallowed_methods)]
fn abort() {
    std::process::abort();
}

fn stop() {
    let me = std::process::id() as libc::pid_t;
    // SAFETY: signalling this very process.
    unsafe { libc::kill(me, libc::SIGSTOP) };
}

pub(crate) fn dies_once((dir, i): (PathBuf, u32)) -> u32 {
    logged(&dir, i, 7, abort)
}

fn stops_once((dir, i): (PathBuf, u32)) -> u32 {
    logged(&dir, i, 3, stop)
}

#[allow(clippy::disallowed_methods)]
fn always_dies(_: u32) -> u32 {
    std::process::abort();
}

/// Every item's completed runs, from the log.
fn runs(dir: &std::path::Path, n: u32) -> Vec<usize> {
    let text = std::fs::read_to_string(dir.join("runs")).unwrap_or_default();
    let mut count = vec![0; n as usize];
    for line in text.lines() {
        count[line.parse::<usize>().unwrap()] += 1;
    }
    count
}

#[test]
fn killed_worker_mid_map_loses_no_task() {
    let scratch = Scratch::new("killed");
    let pool = tcp(3).build().unwrap();
    let items: Vec<(PathBuf, u32)> = (0..40).map(|i| (scratch.path().to_owned(), i)).collect();
    let got = pool.tasks(dies_once).chunksize(1).map(items).unwrap();
    assert_eq!(got, (0..40).collect::<Vec<u32>>());
    // Each task ran to completion once: item 7's first run died before
    // it logged.
    assert_eq!(runs(scratch.path(), 40), vec![1; 40]);
    // The pool replaced the worker and goes on with three.
    assert_eq!(pool.pids().len(), 3);
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
}

#[test]
fn a_task_whose_worker_always_dies_fails_after_its_attempts() {
    let pool = tcp(2).attempts(2).build().unwrap();
    let e = pool.apply(always_dies, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    let msg = e.to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(msg.contains(&format!(" on {}", host.trim())), "{msg}");
    assert!(msg.contains("after 2 attempts"), "{msg}");
    assert!(msg.contains("SIGABRT"), "{msg}");
    // Only that task failed.
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

#[test]
fn a_stopped_worker_misses_its_heartbeat_and_its_task_moves() {
    let scratch = Scratch::new("stopped");
    let pool = tcp(2).heartbeat_timeout(Duration::from_millis(600)).build().unwrap();
    let first = pool.pids();
    let items: Vec<(PathBuf, u32)> = (0..12).map(|i| (scratch.path().to_owned(), i)).collect();
    let got = pool.tasks(stops_once).chunksize(1).map(items).unwrap();
    assert_eq!(got, (0..12).collect::<Vec<u32>>());
    assert_eq!(runs(scratch.path(), 12), vec![1; 12]);
    // The stopped worker was killed and reaped (SIGKILL ends a stopped
    // process), and replaced.
    let now = pool.pids();
    let lost: Vec<u32> = first.iter().copied().filter(|p| !now.contains(p)).collect();
    assert_eq!(lost.len(), 1, "{first:?} -> {now:?}");
    assert!(all_gone(&lost));
    assert_eq!(pool.map(pid_of, 0..4u32).unwrap().len(), 4);
}

#[test]
fn launcher_exiting_before_workers_connect_fails_build_with_its_stderr() {
    let e = script(2, "echo 'srun: error: no nodes available' >&2; exit 3", &[])
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Bootstrap, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("no nodes available"), "{msg}");
    assert!(msg.contains("exit code 3") || msg.contains('3'), "{msg}");
    assert!(msg.contains("before 2 of 2 workers connected"), "{msg}");
}

#[test]
fn launcher_that_starts_too_few_workers_fails_build() {
    // One worker of the two asked for; the launcher stays until it ends.
    let e = script(2, "\"$0\" & wait", &[])
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("only 1 of 2 pool workers connected"), "{e}");
}
