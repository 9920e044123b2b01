//! Who this process is: its name, identity and parent, the counter that
//! names its children, and the descriptors that belong to its identity
//! (its bootstrap socket, its watch on its parent, its fork server and tracker),
//! which a fork child must not keep.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::{
    start::StartMethod,
    sys::{self, ParentWatch},
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

pub(super) struct Identity {
    pub(super) me: Me,
    pub(super) counter: u32,
    /// Descriptors of this process's own identity (its bootstrap socket,
    /// its watch on its parent), which a fork child must not keep.
    pub(super) own_fds: Vec<i32>,
}

impl Identity {
    fn new(me: Me) -> Identity {
        Identity {
            me,
            counter: 0,
            own_fds: Vec::new(),
        }
    }

    /// In a fork child: become `me`, whose own descriptor is `own_fd`,
    /// with no child named yet.
    pub(super) fn become_fork_child(&mut self, me: Me, own_fd: i32) {
        self.counter = 0;
        self.me = me;
        self.own_fds = vec![own_fd];
    }
}

static IDENTITY: Mutex<Option<Identity>> = Mutex::new(None);

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

/// The identity, locked: for the duration of a fork.
pub(super) fn locked() -> MutexGuard<'static, Option<Identity>> {
    let mut guard = lock(&IDENTITY);
    guard.get_or_insert_with(|| Identity::new(main_identity()));
    guard
}

fn with_identity<T>(f: impl FnOnce(&mut Identity) -> T) -> T {
    let mut guard = lock(&IDENTITY);
    f(guard.get_or_insert_with(|| Identity::new(main_identity())))
}

/// Runs `f` with this process's identity.
pub(crate) fn with_me<T>(f: impl FnOnce(&Me) -> T) -> T {
    with_identity(|s| f(&s.me))
}

/// Installs the identity of a spawned child (before its target runs).
pub(crate) fn become_child(me: Me, own_fd: i32) {
    let mut identity = Identity::new(me);
    identity.own_fds.push(own_fd);
    *lock(&IDENTITY) = Some(identity);
}

/// Records a descriptor that belongs to this process's identity.
pub(crate) fn adopt_own_fd(fd: i32) {
    with_identity(|s| s.own_fds.push(fd));
}

/// Forgets a descriptor recorded by [`adopt_own_fd`], before it is closed:
/// its number may then be reused, and a fork child must not close that.
pub(crate) fn release_own_fd(fd: i32) {
    with_identity(|s| s.own_fds.retain(|&f| f != fd));
}

/// The identity and default name of the next child this process creates.
pub(crate) fn next_identity() -> (Vec<u32>, String) {
    with_identity(|s| {
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
