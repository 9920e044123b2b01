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
    cell::Cell,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    RemotePanic, codec,
    error::Location,
    frame::{self, Tag},
    registry::{self, Me, ParentRecord},
    start::StartMethod,
    sys::{self, Fd, ParentWatch},
    target,
};

/// Environment variable that marks a spawned child; its value is
/// `PROTOCOL:FD:PARENT_PID`. A process whose parent is not `PARENT_PID`
/// (a descendant that inherited the variable, a user who set it) is not a
/// spawned child and ignores it.
pub(crate) const MARKER: &str = "__MULTIPROC_CHILD";

/// The marker's value for a child of this process.
pub(crate) fn marker_value() -> String {
    format!("{PROTOCOL}:{}:{}", sys::BOOT_FD, sys::getpid())
}

/// Set when this process entered as a spawned child.
static ENTRY_RAN: AtomicBool = AtomicBool::new(false);

/// `true` when this process was spawned by the library: the marker is
/// well formed and descriptor 3 is a socket created by the process the
/// marker names (a descendant that inherited the variable has no such
/// descriptor: the child makes it close-on-exec). The parent may have died
/// since; the entry then ends the process rather than run `main`.
fn is_spawned_child() -> bool {
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
/// Version of the frames exchanged at start; parent and child are the same
/// binary, so this only guards against a stray variable.
pub(crate) const PROTOCOL: u32 = 1;

/// Everything a spawned child needs to become the parent's child.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Boot {
    pub(crate) protocol: u32,
    pub(crate) exe: (u64, u64),
    /// The parent's GNU build id (empty if it has none): a child running
    /// another file (`set_executable`) must have the same.
    pub(crate) build_id: Vec<u8>,
    pub(crate) trampoline: i64,
    pub(crate) target: i64,
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) authkey: [u8; 32],
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    /// The parent's default start method, which the child adopts (as
    /// Python's spawn children do), so grandchildren start the same way.
    pub(crate) default_method: StartMethod,
    /// Whether to capture a backtrace at a panic of the target: forced on
    /// or off, or (`None`) as the environment says.
    pub(crate) backtrace: Option<bool>,
    /// Two descriptors came with this frame, to become the child's 1 and 2
    /// (`crate::output`).
    pub(crate) output: bool,
}

/// How a target ended, as the child reports it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The encoded return value.
    Value(Vec<u8>),
    Panic(RemotePanic),
    Failed(Failure, String),
}

/// What failed in a child before or after the target ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Failure {
    Bootstrap,
    DecodeArgs,
    EncodeResult,
}

impl Outcome {
    pub(crate) fn failed_args(message: String) -> Outcome {
        Outcome::Failed(Failure::DecodeArgs, message)
    }

    pub(crate) fn failed_result(message: String) -> Outcome {
        Outcome::Failed(Failure::EncodeResult, message)
    }

    /// The exit code a child uses after this outcome (Python's: 1 for an
    /// exception).
    fn exit_code(&self) -> i32 {
        match self {
            Outcome::Value(_) => 0,
            _ => 1,
        }
    }

    /// Wire form: a tag byte, then the value's bytes or an encoded record.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        match self {
            Outcome::Value(v) => {
                let mut out = Vec::with_capacity(1 + v.len());
                out.push(0);
                out.extend_from_slice(v);
                out
            }
            Outcome::Panic(p) => prefixed(1, p),
            Outcome::Failed(kind, msg) => prefixed(2, &(kind, msg)),
        }
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<OutcomeRef<'_>, String> {
        let (&tag, rest) = bytes.split_first().ok_or("empty outcome")?;
        match tag {
            0 => Ok(OutcomeRef::Value(rest)),
            1 => codec::decode_record(rest).map(OutcomeRef::Panic).map_err(|e| e.0),
            2 => codec::decode_record::<(Failure, String)>(rest)
                .map(|(k, m)| OutcomeRef::Failed(k, m))
                .map_err(|e| e.0),
            t => Err(format!("unknown outcome tag {t}")),
        }
    }
}

fn prefixed(tag: u8, value: &impl Serialize) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(codec::encode_record(value));
    out
}

/// A decoded outcome borrowing the received payload.
pub(crate) enum OutcomeRef<'a> {
    Value(&'a [u8]),
    Panic(RemotePanic),
    Failed(Failure, String),
}

// ---------------------------------------------------------------------
// Panic capture.

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

fn capture_backtrace() -> Option<String> {
    use std::backtrace::{Backtrace, BacktraceStatus};
    let bt = match BACKTRACE.load(Ordering::Relaxed) {
        ALWAYS => Backtrace::force_capture(),
        NEVER => return None,
        _ => Backtrace::capture(),
    };
    (bt.status() == BacktraceStatus::Captured).then(|| bt.to_string())
}

static LAST_PANIC: Mutex<Option<Captured>> = Mutex::new(None);
/// A copy of the outcome socket, for the `panic = "abort"` path.
static OUTCOME_SOCK: Mutex<Option<Fd>> = Mutex::new(None);

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

/// Records location and backtrace of panics on the target's thread, then
/// lets the previous hook print as usual.
fn install_panic_hook() {
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
                let message = target::payload_text(info.payload());
                let outcome = Outcome::Panic(RemotePanic::new(message, location.clone(), backtrace.clone()));
                if let Some(sock) = &*OUTCOME_SOCK.lock().unwrap_or_else(|e| e.into_inner()) {
                    // The process aborts next whatever happens here.
                    let _ = frame::send(sock, Tag::Outcome, &outcome.to_bytes());
                }
            }
            *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(Captured { location, backtrace });
        }
        previous(info);
    }));
}

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
    let mode = match backtrace {
        None => FOLLOW_ENV,
        Some(true) => ALWAYS,
        Some(false) => NEVER,
    };
    BACKTRACE.store(mode, Ordering::Relaxed);
    if !AVOID_STD_LOCKS.load(Ordering::Relaxed) {
        *WHO.lock().unwrap_or_else(|e| e.into_inner()) = format!("process {name} (pid {})", sys::getpid());
    }
    if cfg!(panic = "abort") {
        let copy = sock.try_clone().ok();
        if let Some(c) = &copy {
            registry::adopt_own_fd(c.raw());
        }
        *OUTCOME_SOCK.lock().unwrap_or_else(|e| e.into_inner()) = copy;
    }
    if !AVOID_STD_LOCKS.load(Ordering::Relaxed) {
        install_panic_hook();
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
    let code = match frame::send(sock, Tag::Outcome, &outcome.to_bytes()) {
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
// Spawned children.

/// The entry point of a spawned child. In any other process it returns at
/// once; in a spawned child it never returns.
pub(crate) fn spawned_entry(from_constructor: bool) {
    if !is_spawned_child() {
        return;
    }
    ENTRY_RAN.store(true, Ordering::Relaxed);
    if from_constructor {
        // SAFETY: a constructor runs before `main`, while the process has a
        // single thread; nothing reads the environment concurrently. (Through
        // `init`, other threads may exist, so the variable stays: it names
        // this process's parent, which makes it inert in any descendant.)
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var(MARKER)
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
        Ok(Some((Tag::Boot, boot))) => run_child(sock, reader, boot, None),
        Ok(Some((tag, _))) => finish(
            &sock,
            Outcome::Failed(Failure::Bootstrap, format!("unexpected first frame {tag:?}")),
        ),
        Ok(None) | Err(frame::ReadError::Io(_)) => sys::exit_now(1),
        Err(frame::ReadError::Protocol(e)) => finish(&sock, Outcome::Failed(Failure::Bootstrap, e.0)),
    }
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
    match reader.next_blocking(&sock) {
        Ok(Some((Tag::Boot, boot))) => run_child(sock, reader, boot, Some(served)),
        Ok(Some((tag, _))) => finish(
            &sock,
            Outcome::Failed(Failure::Bootstrap, format!("unexpected first frame {tag:?}")),
        ),
        Ok(None) | Err(frame::ReadError::Io(_)) => sys::exit_now(1),
        Err(frame::ReadError::Protocol(e)) => finish(&sock, Outcome::Failed(Failure::Bootstrap, e.0)),
    }
}

/// Runs a child described by its `Boot` record: reads its arguments,
/// becomes the child, runs the target and leaves. Never returns. `served`
/// is set in a fork server's child, `None` in a spawned one.
fn run_child(sock: Fd, mut reader: frame::Reader, boot: Vec<u8>, served: Option<ServedBy>) -> ! {
    let (boot, args, fds, output) = match read_boot(&sock, &mut reader, &boot) {
        Ok(x) => x,
        Err(BootError::ParentGone) => sys::exit_now(1),
        Err(BootError::Invalid(msg)) => finish(&sock, Outcome::Failed(Failure::Bootstrap, msg)),
    };
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
    let _ = frame::send(&sock, Tag::Ready, &[]);
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

enum BootError {
    ParentGone,
    Invalid(String),
}

/// The boot record, the encoded arguments, the descriptors of the
/// endpoints among them (they arrive with the `Args` frame) and those of
/// the output, if redirected (they arrive with the `Boot` frame).
type BootParts = (Boot, Vec<u8>, Vec<Fd>, Option<Vec<Fd>>);

fn read_boot(sock: &Fd, reader: &mut frame::Reader, boot: &[u8]) -> Result<BootParts, BootError> {
    let mut next = |want: Tag| match reader.next_blocking(sock) {
        Ok(Some((tag, payload))) if tag == want => Ok(payload),
        Ok(Some((tag, _))) => Err(BootError::Invalid(format!("expected a {want:?} frame, got {tag:?}"))),
        Ok(None) | Err(frame::ReadError::Io(_)) => Err(BootError::ParentGone),
        Err(frame::ReadError::Protocol(e)) => Err(BootError::Invalid(e.0)),
    };
    let boot: Boot = codec::decode_record(boot).map_err(|e| BootError::Invalid(format!("bad boot record: {}", e.0)))?;
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
    let args = next(Tag::Args)?;
    // The Boot frame's descriptors arrived first.
    let mut fds = reader.take_fds();
    let output = boot.output.then(|| fds.drain(..fds.len().min(2)).collect());
    Ok((boot, args, fds, output))
}

/// How long a spawned child may take to reach the entry point by default.
pub(crate) const DEFAULT_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);
