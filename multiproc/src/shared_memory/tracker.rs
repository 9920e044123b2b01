//! The cleanup tracker: unlinks the named segments a process created when
//! that process dies without unlinking them (killed, `process::exit`, a
//! segment leaked with `mem::forget`).
//!
//! ```text
//! owner                                        tracker (spawned lazily)
//! Track frame + [seqpacket socket, own pidfd] ─▶ poll(socket, owner pidfd)
//! "R<name>" ──────────────────────────────────▶ remember name
//!            ◀──────────────────────────────── "k" (registered)
//! "U<name>" ──────────────────────────────────▶ forget name
//! (owner dies: pidfd readable) ───────────────▶ shm_unlink every name, exit
//! ```
//!
//! One tracker serves one owner process, like the fork server: it is this
//! executable spawned with a `Track` frame instead of `Boot`, never runs
//! `main`, ignores `SIGINT` and `SIGTERM` (a Ctrl-C reaches the whole
//! process group, and the tracker must outlive its owner), and exits once
//! its owner has died and the names are cleaned. It watches the owner's
//! *pidfd*, not the socket: a fork child may keep a copy of the owner's
//! end open after the owner died.
//!
//! `create` returns only after the tracker acknowledged the name, so a
//! creator killed at any later instruction does not leak it. Unregistering
//! needs no answer: the owner unlinks first and unregisters second, so a
//! death between the two only makes the tracker unlink a name that is
//! already gone (or, with odds of one in 2^64 per name, a namesake another
//! process created in that instant).
//!
//! The tracker unlinks by name without checking that the name still names
//! its owner's segment (the owner's own drop compares device and inode
//! first): when someone else unlinked a name and created a namesake while
//! the owner lived, the owner's death removes the namesake. Closing this
//! gap would take passing each segment's descriptor to the tracker.
//!
//! The owner keeps the list of its live names too: a tracker found dead
//! (killed) is replaced and told every name again. A fork child starts with
//! no tracker and no names (its parent's segments are its parent's), and
//! starts its own tracker when it creates a segment.

use std::{
    collections::BTreeSet,
    io,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    bootstrap,
    frame::{self, Tag},
    registry,
    sys::{self, ChildHandle, Fd, ParentWatch, RecvSome},
};

/// How long an owner waits for the tracker to acknowledge a name.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest datagram: an operation byte and a name (`NAME_MAX`).
const MAX_MESSAGE: usize = 1 + 255;

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

/// Registers `name` with this process's tracker (started if needed) and
/// returns once the tracker has acknowledged it.
pub(crate) fn register(name: &str) -> io::Result<()> {
    with_state(|st| {
        st.names.insert(name.to_owned());
        let mut last = None;
        // One retry: a tracker found dead is replaced and told every name.
        for _ in 0..2 {
            let res = match &st.tracker {
                Some(t) => send_register(&t.sock, name),
                None => start(&st.names).map(|t| st.tracker = Some(t)),
            };
            match res {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if let Some(old) = st.tracker.take() {
                        retire(old);
                    }
                    last = Some(e);
                }
            }
        }
        st.names.remove(name);
        Err(last.expect("the loop ran"))
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
            let msg = message(b'U', name);
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

fn message(op: u8, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + name.len());
    m.push(op);
    m.extend_from_slice(name.as_bytes());
    m
}

/// Sends one registration and waits for its acknowledgement.
fn send_register(sock: &Fd, name: &str) -> io::Result<()> {
    let msg = message(b'R', name);
    let deadline = Instant::now() + ACK_TIMEOUT;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "the shared memory tracker did not answer");
    while !sock.try_send_datagram(&msg, &[])? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        sock.poll_writable_or(-1, Some(left))?;
    }
    let mut buf = Vec::with_capacity(8);
    let mut fds = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !sock.poll_readable(Some(left))? {
            return Err(timed_out());
        }
        buf.clear();
        match sock.recv_some(&mut buf, &mut fds, true)? {
            RecvSome::Data(_) if buf.as_slice() == b"k" => return Ok(()),
            RecvSome::Data(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the shared memory tracker sent an unexpected answer",
                ));
            }
            RecvSome::Eof => {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the shared memory tracker is gone",
                ));
            }
            RecvSome::WouldBlock => {}
        }
    }
}

/// Starts a tracker and registers every name of `names` with it.
fn start(names: &BTreeSet<String>) -> io::Result<Tracker> {
    let (boot, boot_theirs) = sys::socketpair()?;
    let (sock, sock_theirs) = sys::seqpacket_pair()?;
    let me = ParentWatch::of_self()?;
    let handle = sys::spawn_self(&boot_theirs, (bootstrap::MARKER, &bootstrap::marker_value()))?;
    drop(boot_theirs);
    // A fork child of this process must not keep the tracker's descriptors.
    registry::adopt_own_fd(sock.raw());
    registry::adopt_own_fd(handle.raw_fd());
    let t = Tracker { handle, sock };
    let sent = frame::send_with_fds(&boot, Tag::Track, &[], &[sock_theirs.raw(), me.raw()]);
    drop((sock_theirs, me, boot));
    let res = sent.and_then(|()| names.iter().try_for_each(|n| send_register(&t.sock, n)));
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
                Ok(RecvSome::Data(_)) => match buf.split_first() {
                    Some((b'R', name)) => {
                        names.insert(name.to_vec());
                        // The owner waits for this; if it is gone, the
                        // pidfd says so next.
                        let _ = sock.try_send_datagram(b"k", &[]);
                    }
                    Some((b'U', name)) => {
                        names.remove(name);
                    }
                    _ => {}
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
