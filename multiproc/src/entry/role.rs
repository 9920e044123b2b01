//! How a process of this executable is started in a role, and how it
//! knows it was: the marker variable and the one spawning function.
//!
//! Every process the library starts from its own executable (a spawned
//! child, a fork server, a shared-memory tracker) is spawned by [`spawn`]
//! with the marker variable set and its bootstrap socket at descriptor 3;
//! the first frame on that socket names its role (see [`crate::entry`]).

use std::{
    io,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use super::protocol::PROTOCOL;
use crate::{
    frame,
    sys::{self, ChildHandle, Fd},
};

/// Environment variable that marks a spawned child; its value is
/// `PROTOCOL:FD:PARENT_PID`. A process whose parent is not `PARENT_PID`
/// (a descendant that inherited the variable, a user who set it) is not a
/// spawned child and ignores it.
pub(crate) const MARKER: &str = "__MULTIPROC_CHILD";

/// How long a spawned child may take to reach the entry point by default.
pub(crate) const DEFAULT_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);

/// The roles a process spawned from this executable can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A child that runs a target (spawn start method).
    Child,
    /// A fork server.
    ForkServer,
    /// A shared-memory cleanup tracker.
    Tracker,
}

/// The marker's value for a child of this process whose bootstrap
/// channel is `theirs`.
fn marker_value(theirs: &Fd) -> String {
    format!("{PROTOCOL}:{}:{}", sys::boot_channel_number(theirs), sys::getpid())
}

/// Set when this process entered as a spawned child.
static ENTRY_RAN: AtomicBool = AtomicBool::new(false);

/// Records that the entry point ran in this process.
pub(crate) fn mark_entered() {
    ENTRY_RAN.store(true, Ordering::Relaxed);
}

/// The bootstrap channel's number when this process was spawned by the
/// library: the marker is well formed, names a number where the backend
/// places a bootstrap channel (descriptor 3 on Unix, the inherited pipe's
/// handle on Windows), and that channel was created by the process the
/// marker names (a descendant that inherited the variable has no such
/// channel: the child makes it close-on-exec, non-inheritable). The parent
/// may have died since; the entry then ends the process rather than run
/// `main`.
pub(crate) fn spawned_channel() -> Option<(sys::RawFd, u32)> {
    let value = std::env::var_os(MARKER)?;
    let (number, parent) = value.to_str()?.strip_prefix(&format!("{PROTOCOL}:"))?.split_once(':')?;
    let number = number
        .parse::<sys::RawFd>()
        .ok()
        .filter(|&n| sys::is_boot_channel_number(n))?;
    let parent = parent.parse::<u32>().ok()?;
    sys::socket_peer_pid(number)
        .is_ok_and(|peer| peer == parent)
        .then_some((number, parent))
}

/// `true` when this process was spawned by the library
/// ([`spawned_channel`]).
pub(crate) fn is_spawned_child() -> bool {
    spawned_channel().is_some()
}

/// `true` in a spawned child that is running `main` because its entry point
/// never ran (no `auto-entry`, no `init()`): starting a child from there
/// would run `main` again, without end.
pub(crate) fn entry_was_skipped() -> bool {
    !ENTRY_RAN.load(Ordering::Relaxed) && is_spawned_child()
}

/// Spawns this executable (or `program`, another path of the same build)
/// to take `role`: returns its handle and this side of its bootstrap
/// socket, on which the caller sends the frame that names the role.
pub(crate) fn spawn(role: Role, program: Option<&Path>) -> io::Result<(ChildHandle, Fd)> {
    let (ours, theirs) = sys::socketpair()?;
    if role == Role::Child {
        // A smaller buffer only risks blocking a writer that is not read;
        // the frames are small enough in practice.
        let _ = theirs.set_send_buffer(frame::SOCKET_BUFFER);
    }
    let marker = (MARKER, marker_value(&theirs));
    let marker = (marker.0, marker.1.as_str());
    let handle = match program {
        Some(p) => sys::spawn_program(&theirs, marker, Some(p))?,
        None => sys::spawn_self(&theirs, marker)?,
    };
    if let Err(e) = sys::set_channel_peer(&ours, &handle) {
        let _ = handle.signal(sys::SIGKILL);
        return Err(e);
    }
    Ok((handle, ours))
}
