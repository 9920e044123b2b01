//! Process-wide state: who this process is, and the children it started.
//!
//! One mutex guards both. It is held across `fork` by the forking thread
//! ([`fork_locked`]), so at the instant of the fork no other thread can hold
//! it and the child may use it.
//!
//! Children are shared between their [`Process`](crate::Process) handle and
//! this registry (`Arc<ChildCore>`). Whoever reaps a child first (its handle,
//! `active_children`, the next `start`, or the exit routine) records the
//! status in the core, so the others see it. A core leaves the registry once
//! it is reaped and its handle is gone, or when its handle is closed; until
//! then its descriptors stay registered, which is what lets a fork child
//! close its siblings' descriptors by number.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, Once, OnceLock, Weak},
    time::{Duration, Instant},
};

use crate::{
    at_fork,
    process::status::ExitStatus,
    start::StartMethod,
    sys::{self, ChildHandle, Fd, ParentWatch},
};

/// Identity of the running process.
#[derive(Debug)]
pub(crate) struct Me {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) start_method: Option<StartMethod>,
    pub(crate) authkey: [u8; 32],
    pub(crate) parent: Option<Arc<ParentRecord>>,
}

/// What a child knows of its parent.
#[derive(Debug)]
pub(crate) struct ParentRecord {
    pub(crate) pid: u32,
    pub(crate) name: String,
    /// Opened on first use: most children never ask.
    watch: OnceLock<Option<ParentWatch>>,
}

impl ParentRecord {
    pub(crate) fn new(pid: u32, name: String) -> ParentRecord {
        ParentRecord {
            pid,
            name,
            watch: OnceLock::new(),
        }
    }

    /// A record whose watch was opened by the parent itself and passed in
    /// (a fork server's child, whose `getppid()` is the server).
    pub(crate) fn with_watch(pid: u32, name: String, watch: ParentWatch) -> ParentRecord {
        ParentRecord {
            pid,
            name,
            watch: OnceLock::from(Some(watch)),
        }
    }

    /// A watch on the parent; `None` if it was gone when first asked
    /// (opening checks that the pid still names this process's parent, so a
    /// reused pid is never watched).
    pub(crate) fn watch(&self) -> Option<&ParentWatch> {
        self.watch
            .get_or_init(|| {
                let watch = ParentWatch::open_parent(self.pid).ok();
                if let Some(w) = &watch {
                    adopt_own_fd(w.raw_fd());
                }
                watch
            })
            .as_ref()
    }
}

/// A started child, shared by its handle and the registry.
#[derive(Debug)]
pub(crate) struct ChildCore {
    pub(crate) handle: ChildHandle,
    /// Parent end of the child's bootstrap socket.
    pub(crate) sock: Fd,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    status: Mutex<Option<ExitStatus>>,
}

impl ChildCore {
    pub(crate) fn new(handle: ChildHandle, sock: Fd, name: String, daemon: bool) -> ChildCore {
        ChildCore {
            handle,
            sock,
            name,
            daemon,
            status: Mutex::new(None),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.handle.pid()
    }

    /// The exit status, reaping the child if it has ended.
    pub(crate) fn try_status(&self) -> std::io::Result<Option<ExitStatus>> {
        let mut status = lock(&self.status);
        if status.is_none() {
            *status = self.handle.try_reap()?.map(ExitStatus::from_raw);
        }
        Ok(*status)
    }

    /// Waits up to `timeout` (forever if `None`) for the child to end.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> std::io::Result<Option<ExitStatus>> {
        if let Some(s) = self.try_status()? {
            return Ok(Some(s));
        }
        if self.handle.poll_exit(timeout)? {
            // pidfd readiness means the child is a zombie: reaping succeeds.
            return self.try_status();
        }
        Ok(None)
    }
}

struct State {
    me: Me,
    counter: u32,
    children: Vec<Arc<ChildCore>>,
    /// Descriptors of this process's own identity (its bootstrap socket,
    /// its watch on its parent), which a fork child must not keep.
    own_fds: Vec<i32>,
    /// Live connections' descriptors and their revocation flags: a fork
    /// child keeps only the connections it was given (see
    /// [`ForkLock::become_fork_child`]).
    endpoints: HashMap<i32, Weak<dyn Revoke>>,
}

impl State {
    fn new(me: Me) -> State {
        State {
            me,
            counter: 0,
            children: Vec::new(),
            own_fds: Vec::new(),
            endpoints: HashMap::new(),
        }
    }
}

/// What a fork child does to a connection it was not given.
pub(crate) trait Revoke: Send + Sync {
    /// Marks the connection unusable and closes the descriptors it holds
    /// besides its own (those it received and buffered). Runs in the fork
    /// child, with no other thread.
    fn revoke(&self);
}

/// Records a live connection's descriptor; `owner` is revoked in a fork
/// child that was not given it, whose descriptor is then closed.
pub(crate) fn endpoint_opened(fd: i32, owner: Weak<dyn Revoke>) {
    with_state(|s| s.endpoints.insert(fd, owner));
}

/// `true` while this process holds any connection.
pub(crate) fn any_endpoints() -> bool {
    with_state(|s| !s.endpoints.is_empty())
}

/// Forgets a connection's descriptor before it is closed.
pub(crate) fn endpoint_closed(fd: i32) {
    with_state(|s| s.endpoints.remove(&fd));
}

static STATE: Mutex<Option<State>> = Mutex::new(None);
static ATEXIT: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent even if a holder panicked: every update is
    // a single assignment or push.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn main_identity() -> Me {
    let mut authkey = [0u8; 32];
    // Without a kernel random source the key stays zero; it only matters to
    // the authenticated connections of a later release, which check it.
    let _ = sys::random_bytes(&mut authkey);
    Me {
        name: "MainProcess".into(),
        identity: Vec::new(),
        daemon: false,
        start_method: None,
        authkey,
        parent: None,
    }
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard = lock(&STATE);
    let state = guard.get_or_insert_with(|| State::new(main_identity()));
    f(state)
}

/// Runs `f` with this process's identity.
pub(crate) fn with_me<T>(f: impl FnOnce(&Me) -> T) -> T {
    with_state(|s| f(&s.me))
}

/// Installs the identity of a spawned child (before its target runs).
pub(crate) fn become_child(me: Me, own_fd: i32) {
    let mut state = State::new(me);
    state.own_fds.push(own_fd);
    *lock(&STATE) = Some(state);
}

/// Records a descriptor that belongs to this process's identity.
pub(crate) fn adopt_own_fd(fd: i32) {
    with_state(|s| s.own_fds.push(fd));
}

/// Forgets a descriptor recorded by [`adopt_own_fd`], before it is closed:
/// its number may then be reused, and a fork child must not close that.
pub(crate) fn release_own_fd(fd: i32) {
    with_state(|s| s.own_fds.retain(|&f| f != fd));
}

/// The identity and default name of the next child this process creates.
pub(crate) fn next_identity() -> (Vec<u32>, String) {
    with_state(|s| {
        s.counter += 1;
        let mut id = s.me.identity.clone();
        id.push(s.counter);
        let name = format!(
            "Process-{}",
            id.iter().map(u32::to_string).collect::<Vec<_>>().join(":")
        );
        (id, name)
    })
}

/// Adds a started child.
pub(crate) fn register(core: Arc<ChildCore>) {
    ATEXIT.call_once(|| {
        // If registration fails, children are still reaped by their handles
        // and daemons still die with this process; only the Python-style
        // join at exit is lost, which is not worth failing a start for.
        let _ = sys::atexit(exit_hook);
    });
    with_state(|s| s.children.push(core));
}

/// Drops the registry's reference to `core` (its handle was closed, or it
/// was reaped and its handle dropped).
pub(crate) fn unregister(core: &Arc<ChildCore>) {
    with_state(|s| s.children.retain(|c| !Arc::ptr_eq(c, core)));
}

/// Reaps every finished child; forgets those whose handle is gone. Returns
/// the children still running.
pub(crate) fn reap_finished() -> Vec<Arc<ChildCore>> {
    let children: Vec<_> = with_state(|s| s.children.clone());
    let mut alive = Vec::new();
    let mut done = Vec::new();
    for c in children {
        // An error here means the pidfd is unusable; treat the child as
        // gone rather than keep polling a broken handle.
        match c.try_status() {
            Ok(None) => alive.push(c),
            _ => done.push(c),
        }
    }
    // Strong counts: `done` + the registry = 2 means no handle holds it.
    with_state(|s| {
        s.children
            .retain(|c| !done.iter().any(|d| Arc::ptr_eq(c, d) && Arc::strong_count(c) <= 2))
    });
    alive
}

/// Python's exit routine: terminate daemonic children, then wait for all
/// children. Runs at normal exit of any process (through `atexit`) and at
/// the end of every child the library started.
pub(crate) fn exit_routine() {
    let alive = reap_finished();
    let daemons: Vec<_> = alive.iter().filter(|c| c.daemon).collect();
    for c in &daemons {
        // A failure means the child is gone already, or cannot be
        // signalled (EPERM): the waits below are bounded either way.
        let _ = c.handle.signal(sys::SIGTERM);
    }
    // One grace period for all daemons together, not one each: a daemon
    // that ignores SIGTERM (or cannot be signalled) is killed after it
    // rather than holding up the exit of its parent, and N such daemons
    // cost one period, not N.
    let grace = Instant::now() + DAEMON_GRACE;
    let mut stubborn = Vec::new();
    for c in &daemons {
        let left = grace.saturating_duration_since(Instant::now());
        if !matches!(c.wait(Some(left)), Ok(Some(_))) {
            let _ = c.handle.signal(sys::SIGKILL);
            stubborn.push(c);
        }
    }
    let reaped = Instant::now() + DAEMON_GRACE;
    for c in stubborn {
        let _ = c.wait(Some(reaped.saturating_duration_since(Instant::now())));
    }
    for c in alive.iter().filter(|c| !c.daemon) {
        // Python semantics: the parent waits for non-daemonic children.
        let _ = c.wait(None);
    }
}

/// How long the exit routine lets its daemons react to `SIGTERM`, all
/// together, and then to `SIGKILL`.
const DAEMON_GRACE: Duration = Duration::from_secs(5);

extern "C" fn exit_hook() {
    // Never unwind across the C boundary of atexit.
    let _ = std::panic::catch_unwind(exit_routine);
}

/// The registry, locked, for the duration of a fork, with every lock
/// registered to be held across forks (`at_fork::hold_across_fork`).
pub(crate) struct ForkLock(
    MutexGuard<'static, Option<State>>,
    // Declared second, dropped second: released after the registry.
    #[allow(dead_code)] at_fork::Fork,
);

/// Locks the registry so that no other thread holds it across a fork.
pub(crate) fn fork_locked() -> ForkLock {
    // Same order as everywhere else: the subsystems' locks (the fork
    // server's record), then the registry.
    let others = at_fork::lock_for_fork();
    let mut guard = lock(&STATE);
    guard.get_or_insert_with(|| State::new(main_identity()));
    ForkLock(guard, others)
}

impl ForkLock {
    /// In a fork child: close the descriptors of the parent's other
    /// children, forget those children, and become `me`.
    ///
    /// With `keep` (the descriptors of the connections among the target's
    /// arguments), also close every other connection this process holds:
    /// its copy in the child would otherwise keep the peer from ever seeing
    /// the end of the stream. Without it (a closure, whose captures cannot
    /// be listed), every connection stays, as in Python.
    pub(crate) fn become_fork_child(mut self, me: Me, own_fd: i32, keep: Option<&[i32]>) {
        let state = self.0.as_mut().expect("initialised by fork_locked");
        if let Some(keep) = keep {
            let mut closing = Vec::new();
            state.endpoints.retain(|fd, owner| {
                if keep.contains(fd) {
                    return true;
                }
                if let Some(owner) = owner.upgrade() {
                    owner.revoke();
                    closing.push(*fd);
                }
                false
            });
            // The numbers stay taken (by /dev/null) while the revoked
            // objects exist, so that nothing else gets them: the objects
            // still answer `as_raw_fd`.
            sys::reserve_closed(&closing);
        }
        let mut inherited: Vec<i32> = state
            .children
            .iter()
            .flat_map(|c| std::iter::once(c.sock.raw()).chain(c.handle.raw_fds()))
            .collect();
        inherited.append(&mut state.own_fds);
        sys::close_inherited(&inherited);
        // The `Fd`s that owned these see a foreign pid and will not close
        // the numbers again.
        state.children.clear();
        state.counter = 0;
        state.me = me;
        state.own_fds.push(own_fd);
    }

    /// The identity of the process holding the lock.
    pub(crate) fn me(&self) -> &Me {
        &self.0.as_ref().expect("initialised by fork_locked").me
    }
}
