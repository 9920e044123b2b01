//! The child side: how a started process becomes the child the parent
//! described, runs the target, reports how it ended and leaves.
//!
//! # Spawn protocol
//!
//! ```text
//! parent                                   child (same executable)
//! socketpair(p, c)
//! posix_spawn(/proc/self/exe)  ───────────▶ fd 3 = c, stdin = /dev/null,
//!   env __MULTIPROC_CHILD=1:3                 every other fd closed
//! send Boot, Args  ───────────────────────▶ constructor before main sees the
//!                                            variable, removes it, reads Boot
//!                                            and Args from fd 3
//!                  ◀─────────────────────── Ready
//!                                            runs the target (never main)
//!                  ◀─────────────────────── Outcome (value, panic or failure)
//!                                            flush stdout, exit routine, _exit
//! pidfd readable → reap, read Outcome
//! ```
//!
//! A child killed by a signal before `Ready` is `ChildKilled`; one that
//! exits before `Ready` is a bootstrap error with its exit
//! status; one that does not send `Ready` within the bootstrap timeout (it
//! is running `main` because the automatic entry is disabled and `init()`
//! was not called) is killed and reported the same way. The parent never
//! waits on the socket for the end of the child: the pidfd says when the
//! child has exited, and everything it sent is then in the socket buffer.
//!
//! # Fork
//!
//! The child continues from `fork()` inside `Process::start` with the
//! target already in memory: no Boot, Args or Ready frames. It leaves
//! through the same [`finish`] as a spawned child.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

pub(crate) use crate::entry::protocol::Boot;
use crate::{
    entry::protocol::{self, Message, PROTOCOL, RecvError},
    frame,
    outcome::{Failure, Outcome},
    registry::{self, Me, ParentRecord},
    start::StartMethod,
    sys::{self, Fd, ParentWatch},
    target,
};

pub(crate) mod panic;

// ---------------------------------------------------------------------
// The common tail of every child.

/// Set in a fork child of a multithreaded parent: see `fork_child_main`.
static AVOID_STD_LOCKS: AtomicBool = AtomicBool::new(false);

/// Sets up the child side (panic hook; for a daemon, its death with its
/// parent). `real_parent` is the process that created this one (its
/// `getppid()` at creation): the logical parent, or the fork server (then
/// `server_child` names the owner's pidfd and this child's socket to it,
/// so that the daemon dies with its owner and not with its server).
pub(crate) fn prepare_child(
    sock: &Fd,
    (name, daemon, backtrace): (&str, bool, Option<bool>),
    real_parent: u32,
    server_child: Option<sys::ServerChild>,
) {
    panic::set_backtrace(backtrace);
    if !AVOID_STD_LOCKS.load(Ordering::Relaxed) {
        panic::set_who(format!("process {name} (pid {})", sys::getpid()));
    }
    if cfg!(panic = "abort") {
        let copy = sock.try_clone().ok();
        if let Some(c) = &copy {
            registry::adopt_own_fd(c.raw());
        }
        panic::set_outcome_socket(copy);
    }
    if !AVOID_STD_LOCKS.load(Ordering::Relaxed) {
        panic::install_hook();
    }
    if daemon {
        die_with_parent(real_parent, server_child);
    }
}

/// Reports `outcome`, waits for or terminates this child's own children,
/// and exits. Never returns.
pub(crate) fn finish(sock: &Fd, outcome: Outcome) -> ! {
    // A parent that went away cannot be told; a result that could not be
    // sent (no memory for its file) must not read as a clean exit.
    let code = match protocol::send_outcome(sock, &outcome) {
        Ok(()) => outcome.exit_code(),
        Err(_) => 1,
    };
    flush_std_streams();
    registry::exit_routine();
    crate::output::drain_at_exit();
    sys::exit_now(code)
}

pub(crate) fn flush_std_streams() {
    if AVOID_STD_LOCKS.load(Ordering::Relaxed) {
        return;
    }
    // Errors (a closed stdout) must not change how the child exits.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// A daemonic child dies with its parent, however the parent ends (even
/// SIGKILL): the kernel's parent-death signal, filtered by a handler
/// (`sys::arm_parent_death`, whose module docs explain the design), and a
/// thread watching the parent's pidfd only if that cannot be armed.
fn die_with_parent(real_parent: u32, server_child: Option<sys::ServerChild>) {
    let Some(parent) = registry::with_me(|me| me.parent.clone()) else {
        return;
    };
    // Opened here, before the target runs: a parent that is already gone
    // ends the daemon at once (and `parent_process()` finds it open).
    if parent.watch().is_none() {
        sys::exit_now(1);
    }
    match sys::arm_parent_death(real_parent, server_child) {
        Ok(true) => {}
        // Gone before the signal was armed.
        Ok(false) => sys::exit_now(1),
        Err(_) => start_watch_thread(parent),
    }
}

/// The fallback of [`die_with_parent`]: a thread waits on the logical
/// parent's pidfd and exits the process when it ends.
fn start_watch_thread(parent: Arc<ParentRecord>) {
    let spawned = std::thread::Builder::new()
        .name("multiproc-parent-watch".into())
        .spawn(move || {
            if let Some(w) = parent.watch() {
                // Ok(false) cannot happen without a timeout; an error means
                // the watch is unusable, and a daemon that cannot watch its
                // parent must not outlive it.
                while let Ok(false) = w.wait(None) {}
            }
            // No flush: a target thread blocked on a full stdout pipe holds
            // its lock, and the daemon must not outlive its parent for that.
            sys::exit_now(1);
        });
    if spawned.is_err() {
        // Without a watcher the promise "dies with its parent" cannot be
        // kept: refuse to run rather than risk an orphan.
        sys::exit_now(1);
    }
}

/// The body of a fork child: become the child, run the target, leave.
/// Never returns, and never unwinds into the parent's frames above it.
///
/// `after_threads`: the parent ran other threads (through the unsafe
/// opt-in). Locks of std that one of them may have held stay locked here,
/// so the child then takes none of them: it neither installs the panic hook
/// (a panic keeps its message but loses location and backtrace) nor flushes
/// stdout/stderr on the way out.
pub(crate) fn fork_child_main(
    lock: registry::ForkLock,
    mut me: Me,
    parent: (u32, String),
    (ours, theirs, devnull): (Fd, Fd, Fd),
    call: Box<dyn target::Call>,
    (after_threads, keep, backtrace): (bool, Option<Vec<i32>>, Option<bool>),
) -> ! {
    let body = std::panic::AssertUnwindSafe(move || {
        ours.close_now();
        me.parent = Some(Arc::new(ParentRecord::new(parent.0, parent.1)));
        let (daemon, name) = (me.daemon, me.name.clone());
        lock.become_fork_child(me, theirs.raw(), keep.as_deref());
        // Python gives children /dev/null as stdin; if that fails the
        // inherited stdin stays, which is harmless.
        let _ = sys::redirect(&devnull, 0);
        devnull.close_now();
        if after_threads {
            AVOID_STD_LOCKS.store(true, Ordering::Relaxed);
        }
        prepare_child(&theirs, (&name, daemon, backtrace), parent.0, None);
        let outcome = call.run_here();
        finish(&theirs, outcome)
    });
    let _ = std::panic::catch_unwind(body);
    // Only a bug in this library gets here.
    sys::exit_now(70)
}

// ---------------------------------------------------------------------
// Children of a spawn or of a fork server.

/// A spawned child whose first message was `boot`: runs it. Never
/// returns.
pub(crate) fn run_spawned(sock: Fd, reader: frame::Reader, boot: Result<Box<Boot>, String>) -> ! {
    run_child(sock, reader, boot, None)
}

/// A fork server's side of its child, passed to the child.
pub(crate) struct ServedBy {
    /// A pidfd of the owner (the child's logical parent).
    pub(crate) owner: ParentWatch,
    /// The fork server's pid, taken before the fork: the child's real
    /// parent.
    pub(crate) server: u32,
}

/// A child forked by a fork server: `sock` is its bootstrap socket to its
/// owner (its logical parent).
pub(crate) fn forked_by_server(sock: Fd, served: ServedBy) -> ! {
    let mut reader = frame::Reader::trusting_large_frames();
    match protocol::recv(&mut reader, &sock) {
        Ok(Message::Boot(boot)) => run_child(sock, reader, boot, Some(served)),
        Ok(other) => finish(
            &sock,
            Outcome::Failed(Failure::Bootstrap, format!("unexpected first frame {}", other.name())),
        ),
        Err(RecvError::Gone) => sys::exit_now(1),
        Err(RecvError::Protocol(e)) => finish(&sock, Outcome::Failed(Failure::Bootstrap, e)),
    }
}

/// Runs a child described by its `Boot` record: reads its arguments,
/// becomes the child, runs the target and leaves. Never returns. `served`
/// is set in a fork server's child, `None` in a spawned one.
fn run_child(sock: Fd, mut reader: frame::Reader, boot: Result<Box<Boot>, String>, served: Option<ServedBy>) -> ! {
    let (boot, args, mut fds) = match read_boot(&sock, &mut reader, boot) {
        Ok(x) => x,
        Err(BootError::ParentGone) => sys::exit_now(1),
        Err(BootError::Invalid(msg)) => finish(&sock, Outcome::Failed(Failure::Bootstrap, msg)),
    };
    // The output descriptors came with the Boot frame, before the Args
    // frame's.
    let output: Option<Vec<Fd>> = boot.output.then(|| fds.drain(..fds.len().min(2)).collect());
    let (method, real_parent) = match &served {
        Some(s) => (StartMethod::ForkServer, s.server),
        None => (StartMethod::Spawn, boot.parent_pid),
    };
    let owner_fd = served.as_ref().map(|s| s.owner.raw_fd());
    let parent = Arc::new(match served {
        Some(s) => ParentRecord::with_watch(boot.parent_pid, boot.parent_name, s.owner),
        None => ParentRecord::new(boot.parent_pid, boot.parent_name),
    });
    crate::context::force_start_method(Some(boot.default_method));
    let name = boot.name.clone();
    registry::become_child(
        Me {
            name: boot.name,
            identity: boot.identity,
            daemon: boot.daemon,
            start_method: Some(method),
            authkey: boot.authkey,
            parent: Some(parent),
        },
        sock.raw(),
    );
    if let Some(fd) = owner_fd {
        registry::adopt_own_fd(fd);
    }
    if let Some(fds) = output {
        if let Err(e) = crate::output::install(fds) {
            finish(
                &sock,
                Outcome::Failed(Failure::Bootstrap, format!("cannot redirect the output: {e}")),
            );
        }
    }
    // A parent that died meanwhile is noticed when the outcome is sent.
    let _ = protocol::send_ready(&sock);
    let server_child = owner_fd.map(|owner_pidfd| sys::ServerChild {
        owner_pidfd,
        sock: sock.raw(),
    });
    prepare_child(&sock, (&name, boot.daemon, boot.backtrace), real_parent, server_child);
    // SAFETY: `read_boot` checked that this process runs the parent's
    // executable file, so the offset names the trampoline the parent chose.
    #[allow(unsafe_code)]
    let trampoline = unsafe { target::trampoline_at(boot.trampoline) };
    let target_addr = target::addr_of(boot.target);
    // SAFETY: as above: the parent named the target's offset with the
    // trampoline monomorphised for its type.
    #[allow(unsafe_code)]
    let outcome = unsafe { trampoline(target_addr, args, fds) };
    finish(&sock, outcome)
}

/// A child's boot record, its encoded arguments and the descriptors of
/// the endpoints among them.
type Started = (Box<Boot>, Vec<u8>, Vec<Fd>);

enum BootError {
    ParentGone,
    Invalid(String),
}

/// The boot record, the encoded arguments and the descriptors of the
/// endpoints among them (they arrive with the `Args` frame).
fn read_boot(sock: &Fd, reader: &mut frame::Reader, boot: Result<Box<Boot>, String>) -> Result<Started, BootError> {
    let boot = boot.map_err(BootError::Invalid)?;
    if boot.protocol != PROTOCOL {
        return Err(BootError::Invalid(format!(
            "protocol {} from parent, {PROTOCOL} here",
            boot.protocol
        )));
    }
    match sys::exe_identity() {
        Ok(id) if id == boot.exe => {}
        Ok(_) => {
            // Another file (set_executable): it must be the same build.
            let mine = crate::process::executable::own_build_id();
            if !matches!(mine, Ok(Some(id)) if !boot.build_id.is_empty() && id == boot.build_id) {
                return Err(BootError::Invalid(format!(
                    "the child's executable {} is not the parent's build (build id {} here, {} in the parent)",
                    crate::process::executable::own_path(),
                    match mine {
                        Ok(Some(id)) => crate::process::executable::hex(id),
                        Ok(None) => "none".to_owned(),
                        Err(e) => format!("unreadable: {e}"),
                    },
                    crate::process::executable::hex(&boot.build_id),
                )));
            }
        }
        Err(e) => {
            return Err(BootError::Invalid(format!(
                "cannot identify the running executable: {e}"
            )));
        }
    }
    let args = match protocol::recv(reader, sock) {
        Ok(Message::Args(args)) => args,
        Ok(other) => {
            return Err(BootError::Invalid(format!(
                "expected an Args frame, got {}",
                other.name()
            )));
        }
        Err(RecvError::Gone) => return Err(BootError::ParentGone),
        Err(RecvError::Protocol(e)) => return Err(BootError::Invalid(e)),
    };
    Ok((boot, args, reader.take_fds()))
}
