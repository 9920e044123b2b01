//! The cleanup tracker: creates the named segments of one process and
//! unlinks those that process leaves behind when it dies without unlinking
//! them (killed, `process::exit`, a segment leaked with `mem::forget`).
//!
//! ```text
//! owner                                        tracker (spawned lazily)
//! Track frame + [seqpacket socket, own pidfd] ─▶ poll(socket, owner pidfd)
//! Create(size, name) ─────────────────────────▶ shm_open(O_CREAT|O_EXCL), size,
//!                                                remember name
//!            ◀──────────────────────────────── Created(name) + the descriptor
//!            ◀──────────────────────────────── or Failed(errno, name)
//! Register(name) (re-telling a new tracker) ──▶ remember name
//!            ◀──────────────────────────────── Registered(name)
//! Unregister(name) ───────────────────────────▶ forget name
//! (owner dies: pidfd readable) ───────────────▶ shm_unlink every name, exit
//! ```
//!
//! The messages and their bytes are in [`protocol`].
//!
//! One tracker serves one owner process, like the fork server: it is this
//! executable spawned with a `Track` frame instead of `Boot`, never runs
//! `main`, ignores `SIGINT` and `SIGTERM` (a Ctrl-C reaches the whole
//! process group, and the tracker must outlive its owner), and exits once
//! its owner has died and the names are cleaned. It watches the owner's
//! *pidfd*, not the socket: a fork child may keep a copy of the owner's
//! end open after the owner died.
//!
//! **A name never exists untracked.** The tracker itself creates the
//! segment (`O_EXCL`) and remembers the name in the same step, then passes
//! the descriptor to the owner: an owner killed at any instruction of
//! `create_named` leaves either no segment or one its tracker unlinks.
//! (When the owner created the file and told the tracker afterwards, a
//! `SIGKILL` between the two leaked the name for good: 4 to 13 of 60 kills
//! at random points.) A name that was taken fails in the tracker, which then
//! does not remember it: a namesake someone else created is never unlinked
//! on the owner's behalf. The segment belongs to the tracker's user and
//! group, which are the owner's as they were when the tracker started.
//!
//! Every answer names the request it answers (its operation and the name),
//! and the owner has at most one request outstanding (it asks under its
//! state's lock): an answer that does not match is a broken tracker, which
//! is replaced, never taken for another name's answer.
//!
//! Unregistering needs no answer: the owner unlinks first and unregisters
//! second, so a death between the two only makes the tracker unlink a name
//! that is already gone (or, with odds of one in 2^64 per name, a namesake
//! another process created in that instant).
//!
//! The tracker unlinks by name without checking that the name still names
//! its owner's segment (the owner's own drop compares device and inode
//! first): when someone else unlinked a name and created a namesake while
//! the owner lived, the owner's death removes the namesake. Closing this
//! gap would take keeping each segment's descriptor in the tracker.
//!
//! The owner keeps the list of its live names too: a tracker found dead
//! (killed) is replaced and told every name again. A tracker killed while
//! it creates a segment may leave that one name behind (its outcome is
//! unknown to the owner, which reports the error and does not guess). A
//! fork child starts with no tracker and no names (its parent's segments
//! are its parent's), and starts its own tracker when it creates a segment.

use std::{
    collections::BTreeSet,
    io,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    entry::protocol as bootstrap,
    entry::role::{self, Role},
    registry,
    sys::{self, ChildHandle, Fd, ParentWatch, RecvSome},
};

mod protocol;

use self::protocol::{MAX_MESSAGE, Reply, Request};

/// How long an owner waits for the tracker to acknowledge a name.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// This process's tracker and the names it must clean up.
struct State {
    /// The process this record belongs to (a fork child inherits a copy).
    owner: u32,
    tracker: Option<Tracker>,
    names: BTreeSet<String>,
}

struct Tracker {
    handle: ChildHandle,
    sock: Fd,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Runs `f` on this process's record, replacing one inherited through
/// fork.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let me = sys::getpid();
    if guard.as_ref().is_some_and(|s| s.owner != me) {
        // The parent's tracker and names: its descriptors were closed by
        // the fork (they are registered as the library's own), so the
        // copy is forgotten, not dropped.
        if let Some(old) = guard.take() {
            std::mem::forget(old);
        }
    }
    let state = guard.get_or_insert_with(|| State {
        owner: me,
        tracker: None,
        names: BTreeSet::new(),
    });
    f(state)
}

/// Why [`create`] failed.
#[derive(Debug)]
pub(crate) enum CreateError {
    /// The tracker could not be started or did not answer.
    Tracker(io::Error),
    /// The tracker could not create the segment (the name is taken, no
    /// memory, ...).
    Segment(io::Error),
}

/// Has this process's tracker (started if needed) create the named segment
/// `name` of `size` bytes and remember the name; returns the segment's
/// descriptor. The name is tracked from the instant the segment exists.
pub(crate) fn create(name: &str, size: usize) -> Result<Fd, CreateError> {
    let msg = Request::Create {
        size: size as u64,
        name: name.as_bytes(),
    };
    with_state(|st| {
        // One retry: a tracker found dead before it took the request is
        // replaced (and told every name) once.
        for attempt in 0..2 {
            if st.tracker.is_none() {
                st.tracker = Some(start(&st.names).map_err(CreateError::Tracker)?);
            }
            let t = st.tracker.as_ref().expect("set just above");
            match ask(&t.sock, &msg) {
                Ok(Answer::Created(fd)) => {
                    st.names.insert(name.to_owned());
                    return Ok(fd);
                }
                Ok(Answer::Failed(e)) => return Err(CreateError::Segment(e)),
                Ok(Answer::Registered) => unreachable!("ask checks the answer's operation"),
                Err(failure) => {
                    if let Some(old) = st.tracker.take() {
                        retire(old);
                    }
                    if failure.taken || attempt == 1 {
                        // Taken: the dead tracker may have created the
                        // segment; another try would find the name taken by
                        // it and say so wrongly.
                        return Err(CreateError::Tracker(failure.error));
                    }
                }
            }
        }
        unreachable!("the second attempt returns")
    })
}

/// Tells the tracker that `name` no longer needs cleaning up.
pub(crate) fn unregister(name: &str) {
    with_state(|st| {
        if !st.names.remove(name) {
            return;
        }
        if let Some(t) = &st.tracker {
            // Best effort: a tracker that cannot be told (dead, or its
            // socket full for a whole second) at worst unlinks a name that
            // no longer exists.
            let msg = Request::Unregister { name: name.as_bytes() }.encode();
            let deadline = Instant::now() + Duration::from_secs(1);
            while let Ok(false) = t.sock.try_send_datagram(&msg, &[]) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !matches!(t.sock.poll_writable_or(-1, Some(left)), Ok((true, _))) {
                    break;
                }
            }
        }
    });
}

/// The pid of this process's tracker, if one runs (tests, diagnostics).
pub(crate) fn pid() -> Option<u32> {
    with_state(|st| st.tracker.as_ref().map(|t| t.handle.pid()))
}

/// What the tracker answered.
#[derive(Debug)]
enum Answer {
    /// Created, with its descriptor.
    Created(Fd),
    /// Not created.
    Failed(io::Error),
    /// Remembered.
    Registered,
}

/// A request that got no valid answer.
#[derive(Debug)]
struct AskFailure {
    error: io::Error,
    /// The tracker took the request (so it may have acted on it).
    taken: bool,
}

/// Sends one request (create or register) and waits for its answer,
/// which must name the same operation and name.
fn ask(sock: &Fd, request: &Request<'_>) -> Result<Answer, AskFailure> {
    let msg = request.encode();
    let deadline = Instant::now() + ACK_TIMEOUT;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "the shared memory tracker did not answer");
    let before = |error| AskFailure { error, taken: false };
    let after = |error| AskFailure { error, taken: true };
    while !sock.try_send_datagram(&msg, &[]).map_err(before)? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(before(timed_out()));
        }
        sock.poll_writable_or(-1, Some(left)).map_err(before)?;
    }
    let mut buf = Vec::with_capacity(MAX_MESSAGE + 1);
    let mut fds = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !sock.poll_readable(Some(left)).map_err(after)? {
            return Err(after(timed_out()));
        }
        buf.clear();
        fds.clear();
        match sock.recv_some(&mut buf, &mut fds, true).map_err(after)? {
            RecvSome::Data(_) => return parse_answer(request, &buf, fds).map_err(after),
            RecvSome::Eof => {
                return Err(after(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the shared memory tracker is gone",
                )));
            }
            RecvSome::WouldBlock => {}
        }
    }
}

/// Checks that `answer` answers `request`.
fn parse_answer(request: &Request<'_>, answer: &[u8], mut fds: Vec<Fd>) -> io::Result<Answer> {
    let unexpected = || {
        let (op, name) = match request {
            Request::Create { name, .. } => ("create", name),
            Request::Register { name } => ("register", name),
            Request::Unregister { name } => ("unregister", name),
        };
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the shared memory tracker sent an answer to no outstanding request (asked to {op} {:?})",
                String::from_utf8_lossy(name)
            ),
        )
    };
    let reply = Reply::decode(answer)
        .filter(|r| request.is_answered_by(r))
        .ok_or_else(unexpected)?;
    match reply {
        Reply::Created { .. } if fds.len() == 1 => Ok(Answer::Created(fds.remove(0))),
        Reply::Failed { errno, .. } if fds.is_empty() => Ok(Answer::Failed(match errno {
            0 => io::Error::other("the shared memory tracker refused the name or size"),
            e => io::Error::from_raw_os_error(e),
        })),
        Reply::Registered { .. } if fds.is_empty() => Ok(Answer::Registered),
        _ => Err(unexpected()),
    }
}

/// Starts a tracker and registers every name of `names` with it.
fn start(names: &BTreeSet<String>) -> io::Result<Tracker> {
    let (sock, sock_theirs) = sys::seqpacket_pair()?;
    let me = ParentWatch::of_self()?;
    let (handle, boot) = role::spawn(Role::Tracker, None)?;
    // A fork child of this process must not keep the tracker's descriptors.
    registry::adopt_own_fd(sock.raw());
    registry::adopt_own_fd(handle.raw_fd());
    let t = Tracker { handle, sock };
    let sent = bootstrap::send_track(&boot, &[sock_theirs.raw(), me.raw()]);
    drop((sock_theirs, me, boot));
    let res = sent.and_then(|()| {
        names
            .iter()
            .try_for_each(|n| match ask(&t.sock, &Request::Register { name: n.as_bytes() }) {
                Ok(Answer::Registered) => Ok(()),
                Ok(_) => unreachable!("ask checks the answer's operation"),
                Err(f) => Err(f.error),
            })
    });
    match res {
        Ok(()) => Ok(t),
        Err(e) => {
            retire(t);
            Err(e)
        }
    }
}

/// Stops and forgets a tracker that failed.
fn retire(t: Tracker) {
    let _ = t.handle.signal(sys::SIGKILL);
    // Reap it if it ended; a tracker that takes longer becomes a zombie
    // until this process exits, which is harmless.
    let _ = t.handle.poll_exit(Some(Duration::from_millis(100)));
    let _ = t.handle.try_reap();
    registry::release_own_fd(t.sock.raw());
    registry::release_own_fd(t.handle.raw_fd());
}

// ---------------------------------------------------------------------
// The tracker process.

/// The tracker's loop, on the descriptors of the `Track` frame (the
/// sequenced-packet socket and a pidfd of the owner). Never returns.
pub(crate) fn serve(fds: Vec<Fd>) -> ! {
    sys::ignore_group_signals();
    let mut fds = fds.into_iter();
    let (Some(sock), Some(owner), None) = (fds.next(), fds.next(), fds.next()) else {
        sys::exit_now(1)
    };
    let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut open = true;
    let mut buf = Vec::with_capacity(MAX_MESSAGE + 1);
    let mut passed = Vec::new();
    loop {
        let watched = [if open { sock.raw() } else { -1 }, owner.raw()];
        let Ok(ready) = sys::poll_readable_set(&watched, None) else {
            sys::exit_now(1)
        };
        // Messages first: an owner that unregistered a name and then died
        // has both ready, and the name must not be unlinked twice.
        while open && ready[0] {
            buf.clear();
            passed.clear();
            match sock.recv_some(&mut buf, &mut passed, true) {
                // The owner waits for each answer; if it is gone, the pidfd
                // says so next.
                Ok(RecvSome::Data(_)) => match Request::decode(&buf) {
                    Some(Request::Create { size, name }) => {
                        let (answer, fd) = create_here(&mut names, name, size);
                        let fds: &[i32] = match &fd {
                            Some(fd) => &[fd.raw()],
                            None => &[],
                        };
                        let _ = sock.try_send_datagram(&answer, fds);
                    }
                    Some(Request::Register { name }) => {
                        names.insert(name.to_vec());
                        let _ = sock.try_send_datagram(&Reply::Registered { name }.encode(), &[]);
                    }
                    Some(Request::Unregister { name }) => {
                        names.remove(name);
                    }
                    None => {}
                },
                Ok(RecvSome::WouldBlock) => break,
                Ok(RecvSome::Eof) | Err(_) => open = false,
            }
        }
        if ready[1] {
            for name in &names {
                if let Ok(name) = std::str::from_utf8(name) {
                    // A name already removed by someone else is fine.
                    let _ = sys::shm_unlink(name);
                }
            }
            sys::exit_now(0);
        }
    }
}

/// Creates the segment `name` of `size` bytes for the owner and remembers
/// the name before anything else can happen: the answer (created, with
/// the descriptor, or the error) and the descriptor to pass.
fn create_here(names: &mut BTreeSet<Vec<u8>>, name: &[u8], size: u64) -> (Vec<u8>, Option<Fd>) {
    let invalid = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
    let created = std::str::from_utf8(name)
        .map_err(|_| invalid("the name is not UTF-8"))
        .and_then(|n| {
            let size = usize::try_from(size).map_err(|_| invalid("the size does not fit"))?;
            sys::shm_create(n, size)
        });
    match created {
        Ok(fd) => {
            names.insert(name.to_vec());
            (Reply::Created { name }.encode(), Some(fd))
        }
        Err(e) => {
            // 0: not an OS error (the owner checked name and size first).
            let errno = e.raw_os_error().unwrap_or(0);
            (Reply::Failed { errno, name }.encode(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Fd, Fd) {
        sys::seqpacket_pair().unwrap()
    }

    #[test]
    fn an_answer_must_name_its_request() {
        let (a, b) = pair();
        let fd = || vec![a.try_clone().unwrap()];
        let (x, y) = (&b"x"[..], &b"y"[..]);
        let create = Request::Create { size: 1, name: x };
        let register = Request::Register { name: x };
        // The right answers.
        let created = Reply::Created { name: x }.encode();
        assert!(matches!(parse_answer(&create, &created, fd()), Ok(Answer::Created(_))));
        let registered = Reply::Registered { name: x }.encode();
        assert!(matches!(
            parse_answer(&register, &registered, vec![]),
            Ok(Answer::Registered)
        ));
        let failed = parse_answer(&create, &Reply::Failed { errno: 17, name: x }.encode(), vec![]);
        assert!(matches!(failed, Ok(Answer::Failed(e)) if e.kind() == io::ErrorKind::AlreadyExists));
        // Answers to another name, another operation, or without (or with an
        // extra) descriptor answer nothing outstanding; so does garbage.
        for (request, answer, fds) in [
            (create, Reply::Created { name: y }.encode(), fd()),
            (create, Reply::Created { name: b"xx" }.encode(), fd()),
            (create, Reply::Created { name: x }.encode(), vec![]),
            (create, Reply::Registered { name: x }.encode(), vec![]),
            (register, Reply::Created { name: x }.encode(), fd()),
            (register, Reply::Registered { name: x }.encode(), fd()),
            (register, Reply::Registered { name: y }.encode(), vec![]),
            (create, Reply::Failed { errno: 17, name: y }.encode(), vec![]),
            (
                create,
                Reply::Failed { errno: 17, name: x }.encode()[..2].to_vec(),
                vec![],
            ),
            (create, Vec::new(), vec![]),
            (register, vec![0xff], vec![]),
        ] {
            let err = parse_answer(&request, &answer, fds).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{answer:?}");
        }
        drop(b);
    }

    #[test]
    fn a_stray_answer_is_refused_not_taken() {
        // A peer that answers with another name's reply: the request
        // fails as a broken tracker, after the tracker took it.
        let (owner, tracker) = pair();
        let stray = Reply::Registered { name: b"other" }.encode();
        assert!(tracker.try_send_datagram(&stray, &[]).unwrap());
        let failure = ask(&owner, &Request::Register { name: b"mine" }).unwrap_err();
        assert!(failure.taken);
        assert_eq!(failure.error.kind(), io::ErrorKind::InvalidData);
    }
}
