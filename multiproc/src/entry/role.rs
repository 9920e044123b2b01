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

/// The marker's value for a child of this process.
fn marker_value() -> String {
    format!("{PROTOCOL}:{}:{}", sys::BOOT_FD, sys::getpid())
}

/// Set when this process entered as a spawned child.
static ENTRY_RAN: AtomicBool = AtomicBool::new(false);

/// Records that the entry point ran in this process.
pub(crate) fn mark_entered() {
    ENTRY_RAN.store(true, Ordering::Relaxed);
}

/// `true` when this process was spawned by the library: the marker is
/// well formed and descriptor 3 is a socket created by the process the
/// marker names (a descendant that inherited the variable has no such
/// descriptor: the child makes it close-on-exec). The parent may have died
/// since; the entry then ends the process rather than run `main`.
pub(crate) fn is_spawned_child() -> bool {
    let Some(value) = std::env::var_os(MARKER) else {
        return false;
    };
    let Some(parent) = value
        .to_str()
        .and_then(|v| v.strip_prefix(&format!("{PROTOCOL}:{}:", sys::BOOT_FD)))
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    sys::socket_peer_pid(sys::BOOT_FD).is_ok_and(|peer| peer == parent)
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
    let marker = (MARKER, marker_value());
    let marker = (marker.0, marker.1.as_str());
    let handle = match program {
        Some(p) => sys::spawn_program(&theirs, marker, Some(p))?,
        None => sys::spawn_self(&theirs, marker)?,
    };
    Ok((handle, ours))
}
