//! The entry point of every process the library spawns from its own
//! executable, and the dispatch to the role it was spawned for.
//!
//! ```text
//! spawned_entry (constructor before main, or init())
//!   not spawned by the library ──▶ return: this is an ordinary process
//!   first frame on descriptor 3:
//!     Boot  ──▶ child::run_spawned     runs a target, never main
//!     Serve ──▶ forkserver::serve      forks children on request
//!     Track ──▶ tracker::serve         unlinks a dead owner's segments
//! ```
//!
//! [`role`] holds what the parent side needs (the marker, the spawning
//! function); this module sits above every role it dispatches to.

pub(crate) mod role;

use crate::{
    child,
    frame::{self, Tag},
    outcome::{Failure, Outcome},
    sys::{self, Fd},
};

/// The entry point of a spawned child. In any other process it returns at
/// once; in a spawned child it never returns.
pub(crate) fn spawned_entry(from_constructor: bool) {
    if !role::is_spawned_child() {
        return;
    }
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
    // SAFETY: the parent placed the bootstrap socket at BOOT_FD; nothing in
    // this fresh process owns that descriptor.
    #[allow(unsafe_code)]
    let sock = unsafe { Fd::from_raw(sys::BOOT_FD) };
    if let Err(e) = sock.set_cloexec() {
        eprintln!("multiproc: child bootstrap failed: {e}");
        sys::exit_now(1);
    }
    let mut reader = frame::Reader::trusting_large_frames();
    match reader.next_blocking(&sock) {
        Ok(Some((Tag::Serve, preload))) => crate::forkserver::serve(sock, reader, &preload),
        Ok(Some((Tag::Track, _))) => crate::shared_memory::tracker::serve(reader.take_fds()),
        Ok(Some((Tag::Boot, boot))) => child::run_spawned(sock, reader, boot),
        Ok(Some((tag, _))) => child::finish(
            &sock,
            Outcome::Failed(Failure::Bootstrap, format!("unexpected first frame {tag:?}")),
        ),
        Ok(None) | Err(frame::ReadError::Io(_)) => sys::exit_now(1),
        Err(frame::ReadError::Protocol(e)) => child::finish(&sock, Outcome::Failed(Failure::Bootstrap, e.0)),
    }
}
