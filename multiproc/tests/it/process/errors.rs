//! How errors read: `Debug` (what `fn main() -> Result` prints) is short;
//! the remote backtrace is in `{:#?}` and `RemotePanic::backtrace`.

use multiproc::{ErrorKind, ProcessBuilder, StartMethod};

use crate::support::DEADLINE;

fn panics() {
    panic!("the input was empty");
}

fn debug_is_short_and_alternate_has_the_backtrace(m: StartMethod) {
    let mut p = ProcessBuilder::new()
        .name("parser")
        .start_method(m)
        .capture_backtrace(true)
        .target(panics);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked);
    let short = format!("{e:?}");
    assert!(short.contains("ChildPanicked"), "{short}");
    assert!(short.contains("the input was empty"), "{short}");
    assert!(short.contains("parser (pid "), "names the process: {short}");
    assert!(short.contains(file!()), "the panic's location: {short}");
    assert!(!short.contains("backtrace"), "no backtrace in the short form: {short}");
    let backtrace = e.panic().and_then(|p| p.backtrace()).expect("the child's backtrace");
    assert!(!backtrace.is_empty());
    let long = format!("{e:#?}");
    assert!(
        long.contains("backtrace") && long.contains(backtrace.lines().next().unwrap()),
        "{long}"
    );
}

/// The backtrace follows the environment (which a child inherits) unless
/// the builder decides.
fn backtrace_capture_follows_the_environment_or_the_builder(m: StartMethod) {
    let backtrace_of = |capture: Option<bool>| {
        let mut b = ProcessBuilder::new().start_method(m);
        if let Some(c) = capture {
            b = b.capture_backtrace(c);
        }
        let mut p = b.target(panics);
        p.start().unwrap();
        let e = p.join_timeout(DEADLINE).unwrap_err();
        e.panic().expect("a panic").backtrace().map(str::to_owned)
    };
    assert!(backtrace_of(Some(false)).is_none(), "turned off");
    assert!(backtrace_of(Some(true)).is_some(), "forced on");
    let env_says = std::backtrace::Backtrace::capture().status() == std::backtrace::BacktraceStatus::Captured;
    assert_eq!(
        backtrace_of(None).is_some(),
        env_says,
        "by default, as RUST_BACKTRACE says"
    );
}

/// Redirects this process's stderr into a pipe, runs a child named
/// "parser" that panics under `m`, and returns what was written there.
#[allow(unsafe_code)]
fn stderr_of_a_panicking_child(m: StartMethod) -> String {
    use std::{io::Read, os::fd::FromRawFd};
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: dup of the process's stderr, restored below.
    let saved = unsafe { libc::dup(2) };
    assert!(saved >= 0);
    // SAFETY: fds[1] is the pipe's write end, which this function owns.
    assert_eq!(unsafe { libc::dup2(fds[1], 2) }, 2);
    // SAFETY: fds[1] is ours, and now duplicated onto stderr.
    unsafe { libc::close(fds[1]) };
    let mut p = ProcessBuilder::new().name("parser").start_method(m).target(panics);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked);
    // The child has exited, so all it wrote is in the pipe. Read what is
    // there without waiting for the end: under the fork server the server
    // (started after the redirection) also holds the pipe.
    // SAFETY: restores the stderr saved above, a descriptor we own.
    assert_eq!(unsafe { libc::dup2(saved, 2) }, 2);
    // SAFETY: saved is ours and no longer needed.
    unsafe { libc::close(saved) };
    // SAFETY: fds[0] is the pipe's read end, ours from pipe2.
    assert_eq!(unsafe { libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK) }, 0);
    // SAFETY: fds[0] is ours and owned by nothing else; the File takes it.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("read the redirected stderr: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn a_childs_panic_names_the_process(m: StartMethod) {
    // In a process of its own: the redirection must not catch the
    // harness's other tests' output.
    let mut p = ProcessBuilder::new().target_with(stderr_of_a_panicking_child, m);
    p.start().unwrap();
    let out = p.join_timeout(DEADLINE).unwrap();
    assert!(
        out.contains("multiproc: the target of process parser (pid ") && out.contains("the input was empty"),
        "stderr names the process before its panic: {out}"
    );
}

per_method!(
    debug_is_short_and_alternate_has_the_backtrace,
    backtrace_capture_follows_the_environment_or_the_builder,
    a_childs_panic_names_the_process,
);

#[test]
fn io_errors_convert_with_their_source() {
    fn open() -> multiproc::Result<std::fs::File> {
        Ok(std::fs::File::open("/nonexistent/multiproc-test")?)
    }
    let e = open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    let source = std::error::Error::source(&e).expect("the io::Error");
    let io = source.downcast_ref::<std::io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(format!("{e:?}").contains("NotFound"));
}
