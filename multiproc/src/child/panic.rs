//! Panic capture on the target's thread: where the target panicked and
//! its backtrace, for the [`RemotePanic`] the parent receives.
//!
//! The hook records only panics raised while a target runs (between
//! [`enter_target`] and [`leave_target`] on that thread) and then lets the
//! previous hook print as usual. Under `panic = "abort"` no unwinding
//! brings the runner back, so the hook sends the outcome itself on the
//! socket [`set_outcome_socket`] gave it.

use std::{
    any::Any,
    cell::Cell,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
};

use crate::{
    entry::protocol,
    error::{Location, RemotePanic},
    outcome::Outcome,
    sys::Fd,
};

thread_local! {
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
}

struct Captured {
    location: Option<Location>,
    backtrace: Option<String>,
}

/// Whether a panic of the target captures a backtrace: `FOLLOW_ENV`, or
/// forced (`ALWAYS`, `NEVER`).
static BACKTRACE: AtomicU8 = AtomicU8::new(FOLLOW_ENV);
const FOLLOW_ENV: u8 = 0;
const ALWAYS: u8 = 1;
const NEVER: u8 = 2;

/// This process's name and pid as its panic message names them, set once
/// the child knows who it is (and replaced in each fork child).
static WHO: Mutex<String> = Mutex::new(String::new());

static LAST_PANIC: Mutex<Option<Captured>> = Mutex::new(None);
/// A copy of the outcome socket, for the `panic = "abort"` path.
static OUTCOME_SOCK: Mutex<Option<Fd>> = Mutex::new(None);

/// Sets whether a panic of the target captures a backtrace: forced on or
/// off, or (`None`) as the environment says.
pub(crate) fn set_backtrace(backtrace: Option<bool>) {
    let mode = match backtrace {
        None => FOLLOW_ENV,
        Some(true) => ALWAYS,
        Some(false) => NEVER,
    };
    BACKTRACE.store(mode, Ordering::Relaxed);
}

/// Names this process in the line the hook adds to a target's panic.
pub(crate) fn set_who(who: String) {
    *WHO.lock().unwrap_or_else(|e| e.into_inner()) = who;
}

/// The socket on which the hook reports a panic itself when the process
/// aborts on panic.
pub(crate) fn set_outcome_socket(sock: Option<Fd>) {
    *OUTCOME_SOCK.lock().unwrap_or_else(|e| e.into_inner()) = sock;
}

fn capture_backtrace() -> Option<String> {
    use std::backtrace::{Backtrace, BacktraceStatus};
    let bt = match BACKTRACE.load(Ordering::Relaxed) {
        ALWAYS => Backtrace::force_capture(),
        NEVER => return None,
        _ => Backtrace::capture(),
    };
    (bt.status() == BacktraceStatus::Captured).then(|| bt.to_string())
}

pub(crate) fn enter_target() {
    IN_TARGET.with(|t| t.set(true));
}

pub(crate) fn leave_target() {
    IN_TARGET.with(|t| t.set(false));
}

/// The panic just caught on the target's thread.
pub(crate) fn take_panic(message: String) -> RemotePanic {
    let captured = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
    match captured {
        Some(c) => RemotePanic::new(message, c.location, c.backtrace),
        None => RemotePanic::new(message, None, None),
    }
}

/// The message of a panic payload.
pub(crate) fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Records location and backtrace of panics on the target's thread, then
/// lets the previous hook print as usual.
pub(crate) fn install_hook() {
    // Once per process image: a fork child inherits both the hook and this
    // flag, and a second hook would capture every panic twice.
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_TARGET.with(Cell::get) {
            let location = info.location().map(|l| Location {
                file: l.file().to_owned(),
                line: l.line(),
                column: l.column(),
            });
            let backtrace = capture_backtrace();
            let who = WHO.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if !who.is_empty() {
                // The default hook names the thread ('<unnamed>' for a
                // spawned child's target); say which process it is.
                eprintln!("multiproc: the target of {who} panicked");
            }
            if cfg!(panic = "abort") {
                // No unwinding will bring us back to `run_caught`: report now.
                let message = payload_text(info.payload());
                let outcome = Outcome::Panic(RemotePanic::new(message, location.clone(), backtrace.clone()));
                if let Some(sock) = &*OUTCOME_SOCK.lock().unwrap_or_else(|e| e.into_inner()) {
                    // The process aborts next whatever happens here.
                    let _ = protocol::send_outcome(sock, &outcome);
                }
            }
            *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(Captured { location, backtrace });
        }
        previous(info);
    }));
}
