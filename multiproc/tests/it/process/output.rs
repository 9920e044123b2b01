//! Where a child's standard output and error go (`ChildOutput`): lines
//! prefixed with the child's name, or captured for the parent; nothing
//! lost when the child crashes, nothing blocked when it writes a lot,
//! nothing left behind.
//!
//! A prefixed child writes to its parent's descriptors 1 and 2. To see
//! them, each scenario runs its children from an *observer*: a spawned
//! process whose own output is captured, so the test reads exactly what
//! the observer's relay wrote.

use std::io::Write;

use multiproc::{self as mp, ChildOutput, ErrorKind, ProcessBuilder, StartMethod};

use crate::support::{DEADLINE, Rendezvous, notify, open_fds};

per_method!(
    prefixed_lines_are_whole_and_attributed,
    prefixed_last_line_survives_a_crash,
    captured_output_is_complete_after_a_crash,
    a_child_writing_a_mebibyte_does_not_block,
    pool_workers_lines_are_prefixed,
    default_output_is_inherited,
);

/// Runs `scenario(m)` in a spawned observer whose output is captured;
/// returns what the observer wrote (its stdout, its stderr).
fn observe(scenario: fn(StartMethod), m: StartMethod) -> (String, String) {
    let mut observer = ProcessBuilder::new()
        .name("observer")
        .start_method(StartMethod::Spawn)
        .output(ChildOutput::Capture)
        .target_with(scenario, m);
    observer.start().expect("start the observer");
    let joined = observer.join_timeout(DEADLINE);
    let out = observer.output().expect("the observer's output");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8 output");
    let (stdout, stderr) = (text(out.stdout), text(out.stderr));
    if let Err(e) = joined {
        panic!("observer failed: {e}\n--- its stderr:\n{stderr}");
    }
    (stdout, stderr)
}

/// The threads of this process.
fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

const LINES: usize = 300;

/// Writes `LINES` lines to stdout and to stderr, each in three writes
/// (so that lines are split across writes), and a last line without
/// newline.
fn talk(who: String) {
    let mut out = std::io::stdout().lock();
    for i in 0..LINES {
        write!(out, "{who} out {i} ").unwrap();
        out.flush().unwrap();
        write!(out, "{}", "x".repeat(i % 97)).unwrap();
        out.flush().unwrap();
        writeln!(out, " end").unwrap();
        eprint!("{who} err {i} ");
        eprintln!("end");
    }
    write!(out, "{who} last").unwrap();
    out.flush().unwrap();
}

fn expected_out(who: &str) -> Vec<String> {
    let mut v: Vec<String> = (0..LINES)
        .map(|i| format!("{who} out {i} {} end", "x".repeat(i % 97)))
        .collect();
    v.push(format!("{who} last"));
    v
}

fn two_talkers(m: StartMethod) {
    // A first child starts what lives on (a fork server) before counting.
    let mut warm = ProcessBuilder::new().start_method(m).target(|| ());
    warm.start().unwrap();
    warm.join_timeout(DEADLINE).unwrap();
    drop(warm);
    let fds_before = open_fds();
    let mut children: Vec<_> = ["alpha", "beta"]
        .iter()
        .map(|who| {
            let mut p = ProcessBuilder::new()
                .name(*who)
                .start_method(m)
                .output(ChildOutput::Prefix)
                .target_with(talk, who.to_string());
            p.start().expect("start a talker");
            p
        })
        .collect();
    for p in &mut children {
        p.join_timeout(DEADLINE).expect("join a talker");
    }
    drop(children);
    // The relay's thread and descriptors are gone once the last prefixed
    // child is joined.
    assert_eq!(thread_count(), 1, "a thread outlived the prefixed children");
    assert_eq!(open_fds(), fds_before, "descriptors outlived the prefixed children");
}

fn prefixed_lines_are_whole_and_attributed(m: StartMethod) {
    let (stdout, stderr) = observe(two_talkers, m);
    for who in ["alpha", "beta"] {
        let tag = format!("[{who}] ");
        let outs: Vec<String> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&tag))
            .map(str::to_owned)
            .collect();
        assert_eq!(outs, expected_out(who), "stdout lines of {who}");
        let errs: Vec<String> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix(&tag))
            .map(str::to_owned)
            .collect();
        let expected: Vec<String> = (0..LINES).map(|i| format!("{who} err {i} end")).collect();
        assert_eq!(errs, expected, "stderr lines of {who}");
    }
    // Every line is someone's, whole: none lacks a prefix.
    for line in stdout.lines() {
        assert!(
            line.starts_with("[alpha] alpha ") || line.starts_with("[beta] beta "),
            "a line of mixed or unattributed output: {line:?}"
        );
    }
    assert!(stdout.ends_with('\n'), "the last line ends with a newline");
}

fn crash_after_partial_line() {
    println!("a whole line");
    print!("half a line");
    std::io::stdout().flush().unwrap();
    eprint!("an error without newline");
    // SAFETY: raising a signal on this process.
    unsafe { libc::raise(libc::SIGKILL) };
}

fn one_crasher(m: StartMethod) {
    let mut p = ProcessBuilder::new()
        .name("crasher")
        .start_method(m)
        .output(ChildOutput::Prefix)
        .target(crash_after_partial_line);
    p.start().expect("start the crasher");
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
}

fn prefixed_last_line_survives_a_crash(m: StartMethod) {
    let (stdout, stderr) = observe(one_crasher, m);
    assert_eq!(stdout, "[crasher] a whole line\n[crasher] half a line\n");
    assert!(
        stderr.contains("[crasher] an error without newline\n"),
        "stderr: {stderr:?}"
    );
}

/// Bytes that are not text: every byte value, repeated.
fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

fn write_binary_then_abort(len: usize) {
    let mut out = std::io::stdout().lock();
    out.write_all(&binary(len)).unwrap();
    out.flush().unwrap();
    eprintln!("about to abort");
    std::process::abort();
}

fn captured_output_is_complete_after_a_crash(m: StartMethod) {
    // More than a pipe holds: a capture never blocks the child.
    let len = 300 * 1024 + 17;
    let mut p = ProcessBuilder::new()
        .start_method(m)
        .output(ChildOutput::Capture)
        .target_with(write_binary_then_abort, len);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    let out = p.output().unwrap();
    assert!(out.stdout == binary(len), "stdout differs ({} bytes)", out.stdout.len());
    assert_eq!(out.stderr, b"about to abort\n");
    assert_eq!(p.stdout().unwrap(), out.stdout);
    assert_eq!(p.stderr().unwrap(), out.stderr);
    // Still readable once closed.
    p.close().unwrap();
    assert_eq!(p.stderr().unwrap(), b"about to abort\n");
}

const MIB: usize = 1024 * 1024;

/// Writes a mebibyte of lines (64 bytes each) to stdout, then says so.
fn write_mebibyte(addr: String) {
    let line = format!("{}\n", "m".repeat(63));
    let mut out = std::io::stdout().lock();
    for _ in 0..MIB / 64 {
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
    notify(&addr, "written");
}

fn big_writers(m: StartMethod) {
    for mode in [ChildOutput::Prefix, ChildOutput::Capture] {
        let rv = Rendezvous::new();
        let mut p = ProcessBuilder::new()
            .name("big")
            .start_method(m)
            .output(mode)
            .target_with(write_mebibyte, rv.addr());
        p.start().unwrap();
        // The child finishes writing while this process does nothing
        // with it (no join yet): nobody but the relay reads its pipe.
        assert_eq!(rv.recv(), "written", "{mode:?}");
        p.join_timeout(DEADLINE).unwrap();
        if mode == ChildOutput::Capture {
            let out = p.stdout().unwrap();
            assert_eq!(out.len(), MIB);
            assert!(
                out.chunks(64)
                    .all(|l| l[..63].iter().all(|&b| b == b'm') && l[63] == b'\n')
            );
        }
    }
}

fn a_child_writing_a_mebibyte_does_not_block(m: StartMethod) {
    let (stdout, _) = observe(big_writers, m);
    let expected = format!("[big] {}", "m".repeat(63));
    assert_eq!(stdout.lines().count(), MIB / 64);
    assert!(stdout.lines().all(|l| l == expected));
}

fn shout(x: u32) -> u32 {
    println!("task {x}");
    x
}

fn pool_talkers(m: StartMethod) {
    let pool = mp::Pool::builder()
        .processes(2)
        .start_method(m)
        .output(ChildOutput::Prefix)
        .build()
        .unwrap();
    let r = pool.map(shout, 0..20u32).unwrap();
    assert_eq!(r, (0..20).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
}

fn pool_workers_lines_are_prefixed(m: StartMethod) {
    let (stdout, _) = observe(pool_talkers, m);
    let mut seen: Vec<u32> = stdout
        .lines()
        .map(|l| {
            let rest = l
                .strip_prefix("[PoolWorker-")
                .and_then(|r| r.split_once("] task "))
                .unwrap_or_else(|| panic!("an unprefixed line: {l:?}"));
            rest.1.parse().unwrap()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
}

fn say_hello() {
    println!("hello");
}

fn inheriting(m: StartMethod) {
    let mut p = ProcessBuilder::new().name("plain").start_method(m).target(say_hello);
    p.start().unwrap();
    p.join_timeout(DEADLINE).unwrap();
    // Nothing is captured by default.
    let e = p.output().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
}

fn default_output_is_inherited(m: StartMethod) {
    // The child writes straight to the observer's descriptor 1 (a fork
    // server's child too: its server inherited the observer's).
    let (stdout, _) = observe(inheriting, m);
    assert_eq!(stdout, "hello\n");
}
