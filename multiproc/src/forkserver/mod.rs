//! The fork server: fork-speed starts without forking this process.
//!
//! A server is this executable spawned once (lazily, on the first
//! `ForkServer` start) and told to serve instead of running a target. It is
//! single-threaded and small, so forking it is cheap and safe whatever this
//! process's size and threads. One server serves one owner, over a
//! socketpair: nothing can connect to it, and it exits when the owner's end
//! closes (the owner exited, however).
//!
//! ```text
//! owner                                   server                 child
//! Fork frame + [boot socket,  ──────────▶ fork() ──────────────▶ reads Boot, Args from
//!   status socket, owner pidfd]           Pid frame + pidfd ─┐   the boot socket, runs,
//!                     ◀───────────────────────────────────────┘   sends Ready/Outcome
//! Boot, Args ────────────────────────────────────────────────▶   to the owner directly
//!                                         pidfd readable: reap,
//!                     ◀─────────────────  8-byte exit status
//! ```
//!
//! Results never pass through the server. If the server dies, its
//! children's statuses are lost (`ExitStatus::Unknown`, never a hang) and
//! the next start launches a new server; the children themselves go on
//! (a daemonic one keeps dying with its owner, see `sys::arm_parent_death`).
//!
//! **Every answer names its request.** Several requests can be outstanding
//! (a pool sends all its workers' requests before reading any answer). Each
//! `Fork` frame carries a request number unique in the owner, and the
//! server answers on that request's own status socket with a `Pid` frame
//! that repeats the number (number, pid, and the child's pidfd); the exit
//! status it writes later names the child's pid. The owner takes a `Pid`
//! frame only if it names the request asked on that socket, and only alone
//! (anything after it other than the exit status record is refused): any
//! other answer is a broken server, which is stopped and replaced (the
//! request is asked once more of the new server), never a pid handed to the
//! wrong `Process`.

use std::{
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

pub(crate) mod protocol;

use self::protocol::{FORK_FDS, Message};
use crate::{
    Error, ErrorKind, Result, at_fork, child,
    entry::protocol as bootstrap,
    entry::role::{self, Role},
    frame, registry,
    sys::{self, ChildHandle, Fd, ForkSide, ParentWatch},
};

/// The running server of this process, if any.
pub(crate) struct Server {
    handle: ChildHandle,
    control: Fd,
    /// The process that started it: a fork child inherits a copy of this
    /// record and must start its own server.
    owner: u32,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// The number of the next request (unique in this process; a fork child
/// asks its own server).
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// The code offset of the preload function for servers started from now
/// on, if any.
static PRELOAD: AtomicI64 = AtomicI64::new(NO_PRELOAD);
const NO_PRELOAD: i64 = i64::MIN;

/// Locks the server record. It is held across the library's forks (see
/// `at_fork`), so that a fork child never inherits it locked by a thread
/// that did not come along; it is only ever held briefly (never while
/// waiting for the server).
fn lock_server() -> MutexGuard<'static, Option<Server>> {
    at_fork::hold_across_fork("forkserver", || {
        Box::new(SERVER.lock().unwrap_or_else(|e| e.into_inner()))
    });
    SERVER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the function new fork servers run before serving (Python's
/// `set_forkserver_preload`).
pub(crate) fn set_preload(preload: Option<fn()>) -> Result<()> {
    let offset = match preload {
        Some(f) => {
            let addr = f as usize;
            if !crate::target::in_same_image(addr) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "the preload function lives in a shared library; the fork server can only run functions of the main executable",
                ));
            }
            Some(crate::target::offset_of(addr))
        }
        None => None,
    };
    PRELOAD.store(offset.unwrap_or(NO_PRELOAD), Ordering::Relaxed);
    Ok(())
}

/// Starts this process's fork server if it does not run yet.
pub(crate) fn ensure_running() -> Result<()> {
    let mut guard = lock_server();
    replace_if_stale(&mut guard)
}

fn replace_if_stale(guard: &mut Option<Server>) -> Result<()> {
    let stale = match &*guard {
        Some(s) => s.owner != sys::getpid() || !matches!(s.handle.try_reap(), Ok(None)),
        None => true,
    };
    if stale {
        if let Some(old) = guard.take() {
            retire(old);
        }
        *guard = Some(start_server().map_err(|e| Error::io("failed to start the fork server", e))?);
    }
    Ok(())
}

/// Drops a server record: a copy inherited through fork is forgotten (the
/// fork closed its descriptors), this process's own releases its
/// descriptors from the registry before closing them.
fn retire(old: Server) {
    if old.owner != sys::getpid() {
        std::mem::forget(old);
        return;
    }
    registry::release_own_fd(old.control.raw());
    registry::release_own_fd(old.handle.raw_fd());
    // A server still running sees EOF and exits; reap it if it has.
    let _ = old.handle.try_reap();
}

fn start_server() -> std::io::Result<Server> {
    // The program set by `set_executable`, checked to be this build (the
    // server calls the preload function by its offset).
    let program = crate::process::executable::checked().map_err(std::io::Error::other)?;
    let (handle, ours) = role::spawn(Role::ForkServer, program.as_deref())?;
    let preload = PRELOAD.load(Ordering::Relaxed);
    bootstrap::send_serve(&ours, (preload != NO_PRELOAD).then_some(preload))?;
    // A fork child of this process must not keep the server's descriptors.
    registry::adopt_own_fd(ours.raw());
    registry::adopt_own_fd(handle.raw_fd());
    Ok(Server {
        handle,
        control: ours,
        owner: sys::getpid(),
    })
}

/// Asks the server (started or restarted as needed) for a new child.
/// Returns the child's handle and this side of its bootstrap socket.
pub(crate) fn request_child(timeout: Duration) -> Result<(ChildHandle, Fd)> {
    finish_request(send_request()?, timeout)
}

/// A child asked of the fork server, whose answer is still to be read: a
/// caller starting several children sends every request before it reads
/// any answer (one round trip to the server for all, not one each). If it
/// is dropped unread, the child the server forks sees its bootstrap socket
/// end before any `Boot` frame and exits; the server reaps it.
pub(crate) struct Requested {
    /// The request's number, which the answer must repeat.
    id: u64,
    ours: Fd,
    status: Fd,
    server_pid: u32,
    server_pidfd: Fd,
    /// The request reached the server's socket.
    sent: bool,
}

/// Sends one request for a child to the server (started or restarted as
/// needed). An error here is local (no descriptor to spare, no server
/// could be started); a request the server did not take is retried by
/// [`finish_request`].
pub(crate) fn send_request() -> Result<Requested> {
    let io = |what: &'static str| move |e| Error::io(what, e);
    let (ours, theirs) = sys::socketpair().map_err(io("failed to create the bootstrap socket"))?;
    // See frame::SOCKET_BUFFER; a smaller buffer is not fatal.
    let _ = theirs.set_send_buffer(frame::SOCKET_BUFFER);
    let (status, status_theirs) = sys::socketpair().map_err(io("failed to create the status socket"))?;
    let me = ParentWatch::of_self().map_err(io("failed to open a pidfd of this process"))?;
    // The lock covers only finding the server and sending the request:
    // the answer comes on this request's own status socket, so other
    // threads (and forks) need not wait for it.
    let mut guard = lock_server();
    replace_if_stale(&mut guard)?;
    let server = guard.as_ref().expect("set just above");
    let id = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
    let sent = Message::Fork { id }
        .send(&server.control, &[theirs.raw(), status_theirs.raw(), me.raw()])
        .is_ok();
    Ok(Requested {
        id,
        ours,
        status,
        server_pid: server.handle.pid(),
        server_pidfd: server.handle.pidfd_copy().map_err(io("failed to copy a pidfd"))?,
        sent,
    })
}

/// Reads the answer to `req`: the child's handle and this side of its
/// bootstrap socket. A server found dead or hung is replaced and asked once
/// more.
pub(crate) fn finish_request(mut req: Requested, timeout: Duration) -> Result<(ChildHandle, Fd)> {
    for attempt in 0..2 {
        if req.sent {
            match read_pid(&req.status, &req.server_pidfd, req.id, timeout) {
                Ok((pid, pidfd, leftover)) => {
                    return Ok((ChildHandle::remote(pid, pidfd, req.status, leftover), req.ours));
                }
                Err(e) if attempt == 1 => return Err(e),
                Err(_) => {}
            }
        }
        // The server is gone (or hung): stop it, unless another thread
        // already replaced it, and try once more.
        stop_server(req.server_pid);
        if attempt == 0 {
            req = send_request()?;
        }
    }
    Err(Error::new(ErrorKind::Bootstrap, "the fork server failed twice"))
}

/// Stops and forgets the server `pid`, if it is still this process's.
fn stop_server(pid: u32) {
    let mut guard = lock_server();
    if guard
        .as_ref()
        .is_some_and(|s| s.handle.pid() == pid && s.owner == sys::getpid())
    {
        let old = guard.take().expect("checked just above");
        let _ = old.handle.signal(sys::SIGKILL);
        let _ = old.handle.poll_exit(Some(Duration::from_secs(5)));
        let _ = old.handle.try_reap();
        retire(old);
    }
}

/// Reads the server's answer to request `id`: the pid, with the child's
/// pidfd attached, and any bytes that followed it (the start of the exit
/// status, if the child has already ended).
fn read_pid(status: &Fd, server: &Fd, id: u64, timeout: Duration) -> Result<(u32, Fd, Vec<u8>)> {
    let deadline = Instant::now().checked_add(timeout);
    let mut reader = frame::Reader::control();
    let broken = |what: String| {
        Error::new(
            ErrorKind::Bootstrap,
            format!("the fork server broke the protocol: {what}"),
        )
    };
    loop {
        let at_end = reader_at_end(&mut reader, status)?;
        match protocol::next_buffered(&mut reader) {
            Ok(Some(Ok(Message::Pid { id: answered, pid }))) => {
                if answered != id {
                    return Err(broken(format!("it answered request {answered} where {id} was asked")));
                }
                let mut fds = reader.take_fds();
                if fds.len() != 1 {
                    return Err(broken(format!(
                        "a pid came with {} descriptors, not its pidfd",
                        fds.len()
                    )));
                }
                let leftover = reader.into_leftover();
                // Only the 12-byte exit status may follow the answer.
                if leftover.len() > ChildHandle::STATUS_LEN {
                    return Err(broken(format!("{} unexpected bytes followed the pid", leftover.len())));
                }
                return Ok((pid, fds.remove(0), leftover));
            }
            Ok(Some(Ok(other))) => {
                return Err(broken(format!("it sent {other:?}, which answers no request")));
            }
            Ok(Some(Err(what))) => {
                return Err(broken(format!("it sent {what}, which answers no request")));
            }
            Ok(None) => {}
            Err(e) => return Err(broken("its answer is not a frame".into()).with_source(e)),
        }
        if at_end {
            return Err(Error::new(
                ErrorKind::Bootstrap,
                "the fork server died before starting the child",
            ));
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Err(Error::new(
                ErrorKind::Bootstrap,
                "the fork server did not answer in time",
            ));
        }
        // Wake on the answer or on the server's death (whose end also
        // closes the status socket: the next round sees EOF).
        status
            .poll_readable_or(server.raw(), left)
            .map_err(|e| Error::io("failed to wait for the fork server", e))?;
    }
}

fn reader_at_end(reader: &mut frame::Reader, sock: &Fd) -> Result<bool> {
    reader
        .drain(sock)
        .map_err(|e| Error::io("failed to read from the fork server", e))?;
    Ok(reader.at_end_empty())
}

// ---------------------------------------------------------------------
// The server.

/// The server's loop, on `control` and what `reader` already holds of it,
/// after running the preload function named by `preload` (the `Serve`
/// frame's payload: a code offset, or nothing). Never returns: exits when
/// its owner's end closes.
pub(crate) fn serve(control: Fd, mut reader: frame::Reader, preload: Option<i64>) -> ! {
    if let Some(offset) = preload {
        // SAFETY: the owner runs the same executable (this server was
        // spawned from /proc/self/exe) and took the offset from a `fn()`
        // in the main executable (`set_preload`).
        #[allow(unsafe_code)]
        let f = unsafe { crate::target::fn_at(offset) };
        if std::panic::catch_unwind(f).is_err() {
            // The owner's next request sees the server gone: a clear
            // Bootstrap error, not a server missing its set-up.
            sys::exit_now(1);
        }
    }
    // Ctrl-C in a terminal reaches the whole process group: the owner
    // decides what to do about it, not its server.
    sys::set_sigint_ignored(true);
    // The owner (this process's parent) is watched as well as its end of
    // the control socket: a copy of that end kept by a process the owner
    // forked behind the library's back would otherwise keep the server,
    // and the daemons whose death signal its exit sends, alive.
    let Ok(owner_watch) = ParentWatch::open_parent(sys::getppid()) else {
        sys::exit_now(0);
    };
    // Children being served: handle (pidfd, reaping) and status socket.
    let mut children: Vec<(ChildHandle, Fd)> = Vec::new();
    let mut pending = true;
    loop {
        let mut fds = vec![control.raw(), owner_watch.raw_fd()];
        fds.extend(children.iter().map(|(h, _)| h.raw_fd()));
        let ready = match sys::poll_readable_set(&fds, if pending { Some(Duration::ZERO) } else { None }) {
            Ok(r) => r,
            Err(_) => sys::exit_now(1),
        };
        if ready[1] {
            // The owner is gone: nobody is left to serve or to tell.
            sys::exit_now(0);
        }
        if ready[0] || std::mem::take(&mut pending) {
            if reader.drain(&control).is_err() {
                sys::exit_now(1);
            }
            loop {
                let message = match protocol::next_buffered(&mut reader) {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    // The owner is this library: a broken stream means
                    // something is badly wrong; stop serving.
                    Err(_) => sys::exit_now(1),
                };
                // Several requests may arrive in one read: each takes its own
                // three descriptors, in order.
                let passed = reader.take_n_fds(FORK_FDS);
                let Ok(Message::Fork { id }) = message else {
                    // Not from our owner's library: ignore the request (its
                    // status socket closes: the owner sees EOF).
                    continue;
                };
                if passed.len() != FORK_FDS {
                    continue;
                }
                let mut passed = passed.into_iter();
                let (boot, status, owner) = (
                    passed.next().expect("3 fds"),
                    passed.next().expect("3 fds"),
                    passed.next().expect("3 fds"),
                );
                // Descriptors of requests still queued belong to other
                // children: the one forked now must not keep them.
                let queued = reader.pending_fds();
                let own = [control.raw(), owner_watch.raw_fd()];
                fork_one(&own, &mut children, &queued, id, (boot, status, owner));
            }
            if reader.at_end_empty() {
                // The owner is gone: so is the reason to serve.
                sys::exit_now(0);
            }
        }
        children.retain(|(handle, status)| match handle.try_reap() {
            Ok(Some(s)) => {
                // An owner that went away cannot be told.
                let _ = status.send_some(&ChildHandle::encode_status(handle.pid(), s));
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
    }
}

/// Forks the child of one request. `own` are the server's own descriptors
/// (its control socket, its watch on the owner), which the child closes.
/// `id` is the request's number, repeated in the answer.
fn fork_one(
    own: &[i32],
    children: &mut Vec<(ChildHandle, Fd)>,
    queued: &[i32],
    id: u64,
    (boot, status, owner): (Fd, Fd, Fd),
) {
    // The child's real parent, taken before the fork: read in the child, a
    // `getppid()` would name a reaper if this server died meanwhile. A
    // daemonic child dies with its owner: through this server's exit when
    // the owner ends, through its socket to the owner when this server
    // was killed first (see `sys::arm_parent_death`).
    let server = sys::getpid();
    // SAFETY: the server is single-threaded; the child only closes
    // descriptors and then runs the child path, which leaves through
    // `_exit`.
    #[allow(unsafe_code)]
    let side = unsafe { sys::fork_child() };
    match side {
        Ok(ForkSide::Child) => {
            // The server's own descriptors must not live on in the child.
            let mut server_fds = own.to_vec();
            server_fds.push(status.raw());
            server_fds.extend_from_slice(queued);
            for (h, s) in children.iter() {
                server_fds.extend([h.raw_fd(), s.raw()]);
            }
            sys::close_inherited(&server_fds);
            sys::set_sigint_ignored(false);
            let served = child::ServedBy {
                owner: ParentWatch::from_pidfd(owner),
                server,
            };
            child::forked_by_server(boot, served)
        }
        Ok(ForkSide::Parent(handle)) => {
            let pidfd = handle.pidfd_copy();
            let answer = Message::Pid { id, pid: handle.pid() };
            let sent = match &pidfd {
                Ok(fd) => answer.send(&status, &[fd.raw()]),
                Err(_) => Err(std::io::ErrorKind::Other.into()),
            };
            if sent.is_err() {
                // The owner cannot reach this child: stop it.
                let _ = handle.signal(sys::SIGKILL);
            }
            children.push((handle, status));
        }
        // Fork failed: closing the status socket tells the owner (EOF).
        Err(_) => drop(status),
    }
}

/// The pid of this process's fork server, if one runs (for tests and
/// diagnostics).
pub(crate) fn server_pid() -> Option<u32> {
    let guard = lock_server();
    guard
        .as_ref()
        .filter(|s| s.owner == sys::getpid())
        .map(|s| s.handle.pid())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame a fake server sends: kind, payload, descriptor count.
    type Sent = (u8, Vec<u8>, usize);

    /// A fake server's answer on a fresh status socket, read as the answer
    /// to request 7.
    fn answer(frames: &[Sent], extra: &[u8]) -> Result<(u32, Fd, Vec<u8>)> {
        let (ours, theirs) = sys::socketpair().unwrap();
        let some_fd = sys::socketpair().unwrap().0;
        for (kind, payload, nfds) in frames {
            let fds = vec![some_fd.raw(); *nfds];
            frame::send_with_fds(&theirs, *kind, payload, &fds).unwrap();
        }
        if !extra.is_empty() {
            theirs.send_some(extra).unwrap();
        }
        drop(theirs);
        // This process's own pidfd stands for the server: never readable.
        let server = ParentWatch::of_self().unwrap();
        read_pid(&ours, &server, 7, Duration::from_secs(5))
    }

    fn pid_frame(id: u64, pid: u32) -> Vec<u8> {
        [&id.to_le_bytes()[..], &pid.to_le_bytes()].concat()
    }

    const PID: u8 = protocol::PID;

    #[test]
    fn an_answer_to_the_request_asked_is_taken() {
        let (pid, _fd, rest) = answer(&[(PID, pid_frame(7, 1234), 1)], &[]).unwrap();
        assert_eq!((pid, rest.len()), (1234, 0));
        // With the exit status record right behind it.
        let status = ChildHandle::encode_status(1234, sys::RawStatus::Exited(3));
        let (_, _, rest) = answer(&[(PID, pid_frame(7, 1234), 1)], &status).unwrap();
        assert_eq!(rest, status);
    }

    #[test]
    fn an_answer_to_no_outstanding_request_is_a_broken_server() {
        let cases: Vec<(&str, Vec<Sent>)> = vec![
            ("another request's answer", vec![(PID, pid_frame(8, 1234), 1)]),
            (
                "a pid without request number",
                vec![(PID, 1234u32.to_le_bytes().to_vec(), 1)],
            ),
            ("a pid without pidfd", vec![(PID, pid_frame(7, 1234), 0)]),
            ("a pid with two descriptors", vec![(PID, pid_frame(7, 1234), 2)]),
            ("a request", vec![(protocol::FORK, 7u64.to_le_bytes().to_vec(), 0)]),
            ("another protocol's frame", vec![(3, vec![], 0)]),
            (
                "two answers",
                vec![(PID, pid_frame(7, 1234), 1), (PID, pid_frame(7, 1235), 1)],
            ),
            ("nothing (EOF)", vec![]),
        ];
        for (what, frames) in cases {
            let err = answer(&frames, &[]).err().unwrap_or_else(|| panic!("{what} was taken"));
            assert_eq!(err.kind(), ErrorKind::Bootstrap, "{what}: {err}");
        }
    }

    #[test]
    fn an_exit_status_names_its_child() {
        let rec = ChildHandle::encode_status(1234, sys::RawStatus::Signaled(9));
        let (ours, theirs) = sys::socketpair().unwrap();
        drop(theirs);
        let pidfd = ParentWatch::of_self().unwrap();
        // A record for another pid is not this child's status.
        let other = ChildHandle::remote(
            1235,
            pidfd.try_clone().unwrap(),
            ours.try_clone().unwrap(),
            rec.to_vec(),
        );
        let mine = ChildHandle::remote(1234, pidfd, ours, rec.to_vec());
        assert_eq!(other.status_for_test(), sys::RawStatus::Unknown);
        assert_eq!(mine.status_for_test(), sys::RawStatus::Signaled(9));
    }
}
