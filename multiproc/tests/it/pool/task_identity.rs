//! Every pool result answers the task it names: a frame that task code
//! writes onto its worker's socket (a stale descriptor number reused for
//! it, say) fails the tasks that worker held with `Protocol` and replaces
//! the worker; it never becomes a task's result nor shifts later results.
#![allow(unsafe_code)]

use multiproc::{ErrorKind, Pool, StartMethod};

use crate::support::{DEADLINE, open_fds};

/// The forgeries a task can write onto its worker's socket: each a
/// well-framed connection message.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Forgery {
    /// None: the task just answers.
    Nothing,
    /// A reply to an id nothing was sent with (kind: per-task outcomes).
    UnknownId,
    /// The initializer's report (id 0) while the worker runs tasks.
    InitReport,
    /// A reply of an unknown kind.
    UnknownKind,
    /// A message that is no reply at all (what a task meant for another
    /// peer).
    NotAReply,
}

/// A connection message (16-byte header: magic, version, flags,
/// descriptor count, length) holding `payload`.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = b"mp\x01\0\0\0\0\0".to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A reply header (`"mpr"`, kind, id) and `body`.
fn reply(kind: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = b"mpr".to_vec();
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Writes `frame` whole onto every stream socket of this process: the
/// worker's connection to the pool among them (the others are bootstrap
/// sockets, which the pool only reads at the worker's end).
fn write_to_every_stream_socket(frame: &[u8]) {
    for (fd, target) in open_fds() {
        if !target.starts_with("socket:") {
            continue;
        }
        let mut ty: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `ty` and `len` are valid out-pointers of the right size.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&raw mut ty).cast(), &mut len) };
        if r != 0 || ty != libc::SOCK_STREAM {
            continue;
        }
        // SAFETY: `frame` is a readable buffer of its length; the flags ask
        // for no signal on a closed peer.
        let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), libc::MSG_NOSIGNAL) };
        assert_eq!(n, frame.len() as isize, "the forged frame went out whole");
    }
}

/// Writes the forgery (if any), then answers `x * 10`.
fn forge_then_answer(arg: (Forgery, u64)) -> u64 {
    let (forgery, x) = arg;
    // A valid body for per-task outcomes: one outcome of any bytes.
    let one = {
        let mut b = 8u64.to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 1, 2, 3, 4, 5, 6, 7]);
        b
    };
    let payload = match forgery {
        Forgery::Nothing => None,
        // Ids start at a random point; this one is as good a guess as any.
        Forgery::UnknownId => Some(reply(1, 0x5eed, &one)),
        Forgery::InitReport => Some(reply(0, 0, &[0])),
        Forgery::UnknownKind => Some(reply(9, 1, &one)),
        Forgery::NotAReply => Some(42u64.to_le_bytes().to_vec()),
    };
    if let Some(p) = payload {
        write_to_every_stream_socket(&framed(&p));
    }
    x * 10
}

/// The reproduction: `apply_async` of four tasks on one worker,
/// the second writing a well-formed reply frame onto the worker's socket.
/// The second fails with `Protocol`, the others get their own values, and
/// the pool goes on with a new worker.
fn forged_reply_fails_only_the_task_that_held_the_worker(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    let before = p.pids();
    let handles: Vec<_> = (0..4u64)
        .map(|x| {
            let f = if x == 1 { Forgery::UnknownId } else { Forgery::Nothing };
            p.apply_async(forge_then_answer, (f, x)).unwrap()
        })
        .collect();
    let got: Vec<_> = handles
        .into_iter()
        .map(|mut h| h.get_timeout(DEADLINE).map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Ok(0), Err(ErrorKind::Protocol), Ok(20), Ok(30)]);
    assert_eq!(p.apply(forge_then_answer, (Forgery::Nothing, 7)).unwrap(), 70);
    let after = p.pids();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "the worker that carried the forged frame was replaced");
}

/// Every kind of message that answers nothing outstanding is a protocol
/// violation, with the worker's name in the error; the pool keeps working.
fn every_reply_that_answers_nothing_is_a_violation(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    for f in [
        Forgery::UnknownId,
        Forgery::InitReport,
        Forgery::UnknownKind,
        Forgery::NotAReply,
    ] {
        let e = p.apply(forge_then_answer, (f, 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{f:?}: {e}");
        assert!(e.to_string().contains("PoolWorker-"), "{f:?}: {e}");
        assert_eq!(p.apply(forge_then_answer, (Forgery::Nothing, 2)).unwrap(), 20, "{f:?}");
    }
}

/// In a `map` whose chunks queue up behind each other on each worker, a
/// forged frame fails the tasks its worker held; every value delivered is
/// the one its own task computed.
fn no_value_reaches_another_task(m: StartMethod) {
    let p = Pool::builder().processes(2).start_method(m).build().unwrap();
    let n = 64u64;
    let input = (0..n).map(|x| (if x == 9 { Forgery::UnknownId } else { Forgery::Nothing }, x));
    let got: Vec<_> = p.imap_chunked(forge_then_answer, input, 2).unwrap().collect();
    assert_eq!(got.len(), n as usize);
    for (x, r) in got.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, x as u64 * 10, "task {x} got another task's value"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Protocol, "task {x}: {e}"),
        }
    }
    assert!(got[9].is_err(), "the forging task's chunk was held by its worker");
    let again = p.map(forge_then_answer, (0..n).map(|x| (Forgery::Nothing, x))).unwrap();
    assert_eq!(again, (0..n).map(|x| x * 10).collect::<Vec<_>>());
}

/// A task that forks and whose child returns into the worker loop (a raw
/// `fork` without `_exit`): only the worker answers, once; no result is
/// duplicated or shifted.
fn a_task_whose_fork_child_returns_answers_once(m: StartMethod) {
    fn fork_and_return(x: u64) -> u64 {
        if x == 1 {
            // SAFETY: the worker is single-threaded; the child returns from
            // this function into the worker loop, which is what is tested
            // (the raw call is the point: the library's fork never returns).
            #[allow(clippy::disallowed_methods)]
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // The child's answer would be a wrong value.
                return x * 10 + 1;
            }
            let mut status = 0;
            // SAFETY: waits for the child just forked.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        x * 10
    }
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    let before = p.pids();
    let handles: Vec<_> = (0..4u64).map(|x| p.apply_async(fork_and_return, x).unwrap()).collect();
    let got: Vec<_> = handles
        .into_iter()
        .map(|mut h| h.get_timeout(DEADLINE).map_err(|e| e.kind()))
        .collect();
    assert_eq!(got, [Ok(0), Ok(10), Ok(20), Ok(30)]);
    assert_eq!(p.pids(), before, "no violation, no replacement");
}

per_method!(
    forged_reply_fails_only_the_task_that_held_the_worker,
    every_reply_that_answers_nothing_is_a_violation,
    no_value_reaches_another_task,
    a_task_whose_fork_child_returns_answers_once,
);
