//! The contract's `RobustMutex` on macOS: the owner-word lock
//! (`../owner_lock.rs`, whose docs hold the design and why: macOS has no
//! robust pthread mutexes) in a `Mapping`, with `proc_pidinfo` for the
//! holder's liveness and `wait.rs` for the sleeps.

use std::{
    io,
    ptr::NonNull,
    sync::atomic::AtomicU32,
    time::{Duration, Instant},
};

use super::{Mapping, identity, wait};
use crate::sys::{
    LockError, Locked, MutexKind, UnlockError,
    imp::owner_lock::{Holder, LockOs, OWNER_WORD_ALIGN, OWNER_WORD_SIZE, OwnerWord},
};

/// Bytes a [`RobustMutex`] takes in shared memory.
pub(crate) const MUTEX_SIZE: usize = OWNER_WORD_SIZE;
/// The alignment its offset needs.
pub(crate) const MUTEX_ALIGN: usize = OWNER_WORD_ALIGN;

/// The system under the owner-word lock on macOS.
struct Mac;

impl LockOs for Mac {
    fn this_process() -> (u32, u64) {
        identity::process_identity()
    }
    fn this_thread() -> u32 {
        identity::thread_id()
    }
    fn holder(pid: u32) -> Holder {
        identity::holder(pid)
    }
    fn wait(word: &AtomicU32, seen: u32, deadline: Option<Instant>, slice: Duration) {
        wait::futex_wait(word, seen, deadline, slice)
    }
    fn wake_one(word: &AtomicU32) {
        wait::futex_wake(word, 1)
    }
}

/// A process-shared lock whose holder's death the next locker learns, at
/// a fixed address inside a [`Mapping`].
///
/// Invariant: `ptr` points at an initialised [`OwnerWord`] in shared
/// memory that stays mapped as long as this value lives (the owner of the
/// mapping keeps both).
#[derive(Debug)]
pub(crate) struct RobustMutex {
    ptr: NonNull<OwnerWord>,
}

// SAFETY: the words are atomics meant for any thread of any process.
unsafe impl Send for RobustMutex {}
// SAFETY: as above.
unsafe impl Sync for RobustMutex {}

impl RobustMutex {
    /// Initialises a new mutex of `kind` at byte `off` of `map`, whose
    /// bytes there are zeroed and used by nobody yet.
    pub(crate) fn init(map: &Mapping, off: usize, kind: MutexKind) -> io::Result<RobustMutex> {
        let m = Self::attach(map, off);
        m.word().init(kind);
        Ok(m)
    }

    /// The mutex another handle (of this or another process) initialised
    /// at byte `off` of `map`.
    pub(crate) fn attach(map: &Mapping, off: usize) -> RobustMutex {
        map.check(off, MUTEX_SIZE);
        assert_eq!(off % MUTEX_ALIGN, 0, "mutex offset is aligned");
        let ptr = NonNull::new(map.as_ptr().wrapping_add(off).cast()).expect("a mapping is not null");
        RobustMutex { ptr }
    }

    fn word(&self) -> &OwnerWord {
        // SAFETY: the invariant: mapped, aligned, initialised; every
        // access to the words is atomic.
        unsafe { self.ptr.as_ref() }
    }

    /// Locks, waiting until `deadline` (`None`: forever; a past instant:
    /// one try). A dead previous owner is [`Locked::OwnerDied`].
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Locked, LockError> {
        self.word().lock::<Mac>(deadline)
    }

    /// Unlocks once; refused for a thread that does not hold it.
    pub(crate) fn unlock(&self) -> Result<(), UnlockError> {
        self.word().unlock::<Mac>()
    }

    /// The holding thread's id, 0 when unlocked.
    pub(crate) fn owner(&self) -> u32 {
        self.word().owner_thread()
    }

    /// Whether the calling thread holds the mutex.
    pub(crate) fn held_by_current_thread(&self) -> bool {
        self.word().held_by_current_thread::<Mac>()
    }

    /// Whether a thread of this process holds the mutex (its memory must
    /// then stay mapped, see [`Mapping::keep_mapped`]).
    pub(crate) fn held_by_this_process(&self) -> bool {
        self.word().held_by_this_process::<Mac>()
    }
}
