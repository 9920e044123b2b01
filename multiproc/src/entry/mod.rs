//! The entry point of every process the library spawns from its own
//! executable, and the dispatch to the role it was spawned for.
//!
//! ```text
//! spawned_entry (constructor before main, or init())
//!   MULTIPROC_WORKER_ADDR set ──▶ pool::remote::serve   a remote pool worker
//!                                  (started by a launcher), never main
//!   not spawned by the library ──▶ return: this is an ordinary process
//!   first frame on descriptor 3:
//!     Boot  ──▶ child::run_spawned     runs a target, never main
//!     Serve ──▶ forkserver::serve      forks children on request
//!     Track ──▶ tracker::serve         unlinks a dead owner's segments
//! ```
//!
//! [`role`] holds what the parent side needs (the marker, the spawning
//! function, [`role::Role`]) and [`protocol`] the messages of the
//! bootstrap socket; this module sits above every role it dispatches to.
//! A new role (a pool worker on another host, reached over TCP) is one
//! more `Role`, one more first message, and one more arm here.

pub(crate) mod protocol;
pub(crate) mod role;

use self::protocol::{Message, RecvError};
use crate::{
    child, frame,
    outcome::{Failure, Outcome},
    sys::{self, Fd},
};

/// The entry point of a spawned child. In any other process it returns at
/// once; in a spawned child it never returns.
pub(crate) fn spawned_entry(from_constructor: bool) {
    #[cfg(unix)]
    if crate::pool::remote::serve::is_remote_worker() && !role::is_spawned_child() {
        role::mark_entered();
        crate::pool::remote::serve::enter(from_constructor);
    }
    let Some((channel, parent)) = role::spawned_channel() else {
        return;
    };
    role::mark_entered();
    if from_constructor {
        // SAFETY: a constructor runs before `main`, while the process has a
        // single thread; nothing reads the environment concurrently. (Through
        // `init`, other threads may exist, so the variable stays: it names
        // this process's parent, which makes it inert in any descendant.)
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var(role::MARKER)
        };
    }
    sys::ignore_sigpipe();
    // SAFETY: the parent placed the bootstrap socket at `channel` (checked
    // by `spawned_channel`: created by the parent the marker names); nothing
    // in this fresh process owns that descriptor.
    #[allow(unsafe_code)]
    let sock = unsafe { Fd::from_raw(channel) };
    if let Err(e) = sock
        .set_cloexec()
        .and_then(|()| sys::set_channel_peer_pid(&sock, parent))
    {
        eprintln!("multiproc: child bootstrap failed: {e}");
        sys::exit_now(1);
    }
    let mut reader = frame::Reader::trusting_large_frames();
    match protocol::recv(&mut reader, &sock) {
        Ok(Message::Serve { preload }) => crate::forkserver::serve(sock, reader, preload),
        Ok(Message::Track) => crate::shared_memory::tracker::serve(reader.take_fds()),
        Ok(Message::Boot(boot)) => child::run_spawned(sock, reader, boot),
        Ok(other) => child::finish(
            &sock,
            Outcome::Failed(Failure::Bootstrap, format!("unexpected first frame {}", other.name())),
        ),
        Err(RecvError::Gone) => sys::exit_now(1),
        Err(RecvError::Protocol(e)) => child::finish(&sock, Outcome::Failed(Failure::Bootstrap, e)),
    }
}
