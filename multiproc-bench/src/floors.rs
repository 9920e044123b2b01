//! The machine's floors: what starting a process costs with no library at
//! all, measured on this very binary (same size, same shared libraries, same
//! constructors) so that a ratio to them is the library's own overhead.
//!
//! - spawn: `Command::new(current_exe())` re-executing this binary with
//!   [`FLOOR_ENV`] set, which `main` checks first and obeys at once, as in
//!   `shared/baselines/rust-raw`; with or without a 1-byte round trip over
//!   stdin/stdout (the smallest "send the task, get the result" exchange),
//!   or streaming a buffer through a pipe into a `Vec` in the child.
//! - fork: raw `fork()`, `_exit(0)` in the child, `waitpid` in the parent.
//! - channels: a bare socket pair or pipe between this process and a forked
//!   child, carrying the same traffic as a channel row ([`transport`]).

pub(crate) mod transport;

use std::{
    io::{self, Read, Write},
    os::fd::AsRawFd,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Set in a re-executed floor child: `exit`, `echo1` or `sink`.
pub(crate) const FLOOR_ENV: &str = "MULTIPROC_BENCH_FLOOR";

/// In a floor child, does its job and exits; elsewhere returns at once.
/// Must be the first thing `main` does.
#[allow(clippy::disallowed_methods)] // a floor child ends like any small program
pub(crate) fn child_entry() {
    let Some(job) = std::env::var_os(FLOOR_ENV) else {
        return;
    };
    let code = match job.to_str() {
        Some("exit") => 0,
        Some("echo1") => {
            let mut b = [0u8; 1];
            let echoed = io::stdin().read_exact(&mut b).and_then(|()| {
                let mut out = io::stdout().lock();
                out.write_all(&b)?;
                out.flush()
            });
            i32::from(echoed.is_err())
        }
        Some("sink") => match sink() {
            Ok(()) => 0,
            Err(_) => 1,
        },
        _ => 2,
    };
    std::process::exit(code)
}

/// Reads an 8-byte length and that many bytes from stdin into a `Vec`,
/// writes the length back to stdout.
fn sink() -> io::Result<()> {
    let mut stdin = io::stdin().lock();
    let mut len = [0u8; 8];
    stdin.read_exact(&mut len)?;
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(io::Error::other)?;
    let mut data = vec![0u8; len];
    stdin.read_exact(&mut data)?;
    let mut out = io::stdout().lock();
    out.write_all(&(std::hint::black_box(data).len() as u64).to_le_bytes())?;
    out.flush()
}

/// Re-executes `exe`, which exits at once; waits for it.
pub(crate) fn reexec_exit(exe: &Path) -> Result<Duration, String> {
    let t = Instant::now();
    let status = Command::new(exe)
        .env(FLOOR_ENV, "exit")
        .status()
        .map_err(|e| format!("re-exec failed: {e}"))?;
    let elapsed = t.elapsed();
    if !status.success() {
        return Err(format!("floor child ended with {status}"));
    }
    Ok(elapsed)
}

/// Re-executes `exe`, sends it one byte on stdin, reads it back from its
/// stdout, waits for it.
pub(crate) fn reexec_handshake(exe: &Path) -> Result<Duration, String> {
    let t = Instant::now();
    let mut child = Command::new(exe)
        .env(FLOOR_ENV, "echo1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("re-exec failed: {e}"))?;
    let mut b = [0u8; 1];
    let exchanged = child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(b"x")
        .and_then(|()| child.stdout.take().expect("stdout was piped").read_exact(&mut b));
    let status = child.wait().map_err(|e| format!("wait failed: {e}"))?;
    let elapsed = t.elapsed();
    exchanged.map_err(|e| format!("handshake failed: {e}"))?;
    if !status.success() || b != *b"x" {
        return Err(format!("floor child ended with {status}, echoed {b:?}"));
    }
    Ok(elapsed)
}

/// Re-executes `exe`, streams `data` (prefixed by its length) to it over a
/// pipe enlarged to 1 MiB, reads back the length the child received, waits:
/// the floor of handing a buffer to a fresh copy of this binary. `data` is
/// freed inside the timed span, as a by-value argument would be.
pub(crate) fn reexec_transfer(exe: &Path, data: Vec<u8>) -> Result<Duration, String> {
    const PIPE_BYTES: libc::c_int = 1 << 20;
    let t = Instant::now();
    let mut child = Command::new(exe)
        .env(FLOOR_ENV, "sink")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("re-exec failed: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own; failure (a lower
    // pipe-max-size) only leaves the default size.
    unsafe { libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    let size = data.len();
    let sent = stdin
        .write_all(&(size as u64).to_le_bytes())
        .and_then(|()| stdin.write_all(&data));
    drop(data);
    drop(stdin);
    let mut back = [0u8; 8];
    let got = sent.and_then(|()| child.stdout.take().expect("stdout was piped").read_exact(&mut back));
    let status = child.wait().map_err(|e| format!("wait failed: {e}"))?;
    let elapsed = t.elapsed();
    got.map_err(|e| format!("transfer failed: {e}"))?;
    if !status.success() || u64::from_le_bytes(back) != size as u64 {
        return Err(format!("floor child ended with {status}, received {back:?}"));
    }
    Ok(elapsed)
}

/// The raw shape of a 2-worker pool's life under fork, with no library:
/// two forked children, each given one byte over its own socket pair,
/// answering one byte, then reading the end of the stream and calling
/// `_exit(0)`; the parent sends both, reads both, closes both and reaps
/// both. It calls fork and _exit directly, as [`fork_exit`] does.
#[allow(clippy::disallowed_methods)]
pub(crate) fn fork_two_round_trips() -> Result<Duration, String> {
    let t = Instant::now();
    let mut ends = [[-1i32; 2]; 2];
    for pair in &mut ends {
        // SAFETY: `pair` is a valid out-array of two descriptors.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        } != 0
        {
            return Err(format!("socketpair failed: {}", io::Error::last_os_error()));
        }
    }
    let mut pids = [0; 2];
    for k in 0..2 {
        // SAFETY: the child below only calls close, read, write and _exit,
        // which are async-signal-safe and touch no lock or allocator state.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut byte = 0u8;
            for (j, pair) in ends.iter().enumerate() {
                // SAFETY: the parent's end, which this child does not use.
                unsafe { libc::close(pair[0]) };
                if j != k {
                    // SAFETY: the other child's end, unused here.
                    unsafe { libc::close(pair[1]) };
                }
            }
            let me = ends[k][1];
            // SAFETY: reads at most one byte into a stack variable.
            let ok = unsafe { libc::read(me, (&raw mut byte).cast(), 1) } == 1
                // SAFETY: writes one byte from a stack variable.
                && unsafe { libc::write(me, (&raw const byte).cast(), 1) } == 1
                // SAFETY: as the first read (this one sees the end).
                && unsafe { libc::read(me, (&raw mut byte).cast(), 1) } == 0;
            // SAFETY: ends the forked child without running anything of
            // the parent's (atexit handlers, destructors).
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        if pid < 0 {
            return Err(format!("fork failed: {}", io::Error::last_os_error()));
        }
        pids[k] = pid;
    }
    let mut ok = true;
    for pair in &ends {
        // SAFETY: the children's end of a pair made above, which the parent
        // does not use.
        unsafe { libc::close(pair[1]) };
    }
    for pair in &ends {
        // SAFETY: writes one byte of a static string to our open end.
        ok &= unsafe { libc::write(pair[0], b"x".as_ptr().cast(), 1) } == 1;
    }
    for pair in &ends {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a stack variable.
        ok &= unsafe { libc::read(pair[0], (&raw mut byte).cast(), 1) } == 1;
    }
    for pair in &ends {
        // SAFETY: our end, no longer used.
        unsafe { libc::close(pair[0]) };
    }
    for pid in pids {
        let status = reap(pid)?;
        ok &= libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    }
    let elapsed = t.elapsed();
    if !ok {
        return Err("a floor child or the parent's exchange failed".to_owned());
    }
    Ok(elapsed)
}

/// Waits for our own child `pid` (retrying on `EINTR`); its raw status.
fn reap(pid: libc::pid_t) -> Result<i32, String> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(format!("waitpid failed: {e}"));
        }
    }
}

/// `fork()`, `_exit(0)` in the child, `waitpid` in the parent: the floor
/// itself, so it calls fork and _exit directly.
#[allow(clippy::disallowed_methods)]
pub(crate) fn fork_exit() -> Result<Duration, String> {
    let t = Instant::now();
    // SAFETY: the child runs nothing but `_exit`, which is async-signal-safe
    // and touches no lock or allocator state, so forking is sound even if
    // another thread existed.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `_exit` ends the child at once, running no Rust code.
        unsafe { libc::_exit(0) }
    }
    if pid < 0 {
        return Err(format!("fork failed: {}", io::Error::last_os_error()));
    }
    let status = reap(pid)?;
    let elapsed = t.elapsed();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("fork child ended with raw status {status:#x}"));
    }
    Ok(elapsed)
}
