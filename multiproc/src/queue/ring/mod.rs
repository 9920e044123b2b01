//! A growable FIFO of byte records in shared memory: the ring behind the
//! cross-process queues.
//!
//! Many processes (and threads) use one ring at once, each through its own
//! [`ShmRing`] handle; a handle travels to another process as two
//! descriptors ([`ShmRing::fds`], rebuilt with [`ShmRing::from_fds`]), and a
//! fork child inherits its parent's handles as they are.
//!
//! The ring is an algorithm over a few operating-system primitives from
//! `crate::sys`: sealed memory files (`memfile_*`), shared mappings
//! (`Mapping`), one robust process-shared mutex (`RobustMutex`), and
//! futex-style waits on shared words (`futex_wait`, `futex_wake_all`).
//! Its parts, each with its design notes:
//!
//! - `layout`: the control and data files, the header, the record format;
//! - `lock`: taking the lock (deadlines, threads and fork);
//! - `commit`: publishing a new state so that a death at any instruction
//!   leaves a consistent one;
//! - `recovery`: validating the state after a lock holder died;
//! - `wait`: sleeping on and waking the shared event words.

use std::{
    fmt, io,
    sync::{
        Mutex,
        atomic::Ordering::{Acquire, Relaxed, Release},
    },
    time::Instant,
};

use crate::sys::{self, Fd, MutexKind, Resize, RobustMutex, passed};

mod commit;
mod layout;
mod lock;
mod recovery;
mod wait;

use layout::{
    BROKEN_RECORD, CONTROL_SIZE, CONTROL_USED, ControlMap, DataMap, Event, Header, MAGIC, MAX_CAPACITY, MIN_CAPACITY,
    RECORD_HEADER, VERSION, record_size,
};

/// Why a ring operation failed.
#[derive(Debug)]
pub(crate) enum RingError {
    /// The deadline passed: the ring stayed full (push), empty (pop), or
    /// had unfinished tasks (join), or its lock stayed held.
    Timeout,
    /// The shared memory failed validation; every later call fails too.
    Broken(String),
    /// `task_done` was called more times than records were pushed.
    TooManyTaskDone,
    /// The ring is closed for every process ([`ShmRing::close`]), or, for
    /// a pop, its caller's `ended` said so, and no record is left.
    Closed,
    /// A system call or a callback failed.
    Io(io::Error),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Timeout => f.write_str("timed out"),
            RingError::Broken(why) => f.write_str(why),
            RingError::TooManyTaskDone => f.write_str("task_done() called more times than there were items"),
            RingError::Closed => f.write_str("closed"),
            RingError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RingError {}

impl From<io::Error> for RingError {
    fn from(e: io::Error) -> RingError {
        RingError::Io(e)
    }
}

/// A growable FIFO of byte records in shared memory (see the module docs).
pub(crate) struct ShmRing {
    /// The lock (at offset 0 of the control mapping) and the header.
    control: ControlMap,
    /// The shared lock; lives in `control`'s mapping.
    mutex: RobustMutex,
    /// This handle's mapping of the records; only used under the lock.
    data: Mutex<DataMap>,
    /// The control memory file.
    control_fd: Fd,
    /// The data memory file.
    data_fd: Fd,
}

impl fmt::Debug for ShmRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmRing")
            .field("control_fd", &self.control_fd.raw())
            .field("data_fd", &self.data_fd.raw())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl ShmRing {
    /// Creates a ring of at least `initial_capacity` bytes (rounded up to a
    /// power of two, at least 4 KiB) holding at most `max_count` records
    /// (`None`: unbounded).
    pub(crate) fn new(initial_capacity: usize, max_count: Option<u64>) -> io::Result<ShmRing> {
        if max_count == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a bounded queue needs room for at least one item",
            ));
        }
        let capacity = (initial_capacity as u64)
            .max(MIN_CAPACITY)
            .checked_next_power_of_two()
            .filter(|&c| c <= MAX_CAPACITY)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "initial queue capacity is too large"))?;
        let control_fd = sys::memfile_create(c"multiproc-queue-control", CONTROL_SIZE as u64, Resize::Fixed)?;
        let data_fd = sys::memfile_create(c"multiproc-queue-data", capacity, Resize::GrowOnly)?;
        let control = ControlMap::new(&control_fd)?;
        // A new memory file is zeroed, as the mutex's initialisation needs.
        let mutex = RobustMutex::init(control.mapping(), 0, MutexKind::ErrorCheck)?;
        let hdr = control.header();
        hdr.version.store(VERSION, Relaxed);
        hdr.layout.store(CONTROL_USED as u32, Relaxed);
        hdr.max_count.store(max_count.unwrap_or(u64::MAX), Relaxed);
        hdr.slots[0].capacity.store(capacity, Relaxed);
        hdr.magic.store(MAGIC, Release);
        let data = DataMap::map(&data_fd, capacity, 0).map_err(into_io)?;
        Ok(ShmRing {
            control,
            mutex,
            data: Mutex::new(data),
            control_fd,
            data_fd,
        })
    }

    /// The two descriptors to send to another process: control, then data.
    pub(crate) fn fds(&self) -> [&Fd; 2] {
        [&self.control_fd, &self.data_fd]
    }

    /// Rebuilds a handle from descriptors received from another process.
    ///
    /// Checks that both are memory files sealed against shrinking, that the
    /// control file has the right size, magic, version and layout; the data
    /// file's size is checked against the ring's capacity before each
    /// (re)mapping. Anything else is an `InvalidData` error.
    pub(crate) fn from_fds(control: Fd, data: Fd) -> io::Result<ShmRing> {
        let c = sys::memfile_check(&control, Resize::Fixed, "the queue's control")?;
        let d = sys::memfile_check(&data, Resize::GrowOnly, "the queue's data")?;
        if c.id == d.id {
            return Err(invalid("the queue's control and data descriptors are the same file"));
        }
        if !sys::size_matches(c.size, CONTROL_SIZE as u64) {
            return Err(invalid("the queue's control file has the wrong size"));
        }
        if d.size < MIN_CAPACITY {
            return Err(invalid("the queue's data file is too small"));
        }
        let map = ControlMap::new(&control)?;
        let hdr = map.header();
        if hdr.magic.load(Acquire) != MAGIC {
            return Err(invalid("the descriptor is not a queue's control file"));
        }
        if hdr.version.load(Relaxed) != VERSION || hdr.layout.load(Relaxed) != CONTROL_USED as u32 {
            return Err(invalid("the queue was made by an incompatible version of the library"));
        }
        if hdr.max_count.load(Relaxed) == 0 {
            return Err(invalid("the queue's control file is corrupt"));
        }
        let mutex = RobustMutex::attach(map.mapping(), 0);
        Ok(ShmRing {
            control: map,
            mutex,
            data: Mutex::new(DataMap::empty()),
            control_fd: control,
            data_fd: data,
        })
    }

    /// Appends one record made of the concatenation of `parts`.
    ///
    /// Waits while the ring holds `max_count` records (`deadline`: see the
    /// module docs). `before_commit` runs under the lock, after the bytes
    /// are written and just before the record is committed; if it fails,
    /// nothing is committed and its error is returned as `Io`.
    pub(crate) fn push(
        &self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
        before_commit: &mut dyn FnMut(u64) -> io::Result<()>,
    ) -> Result<(), RingError> {
        let len = parts
            .iter()
            .try_fold(0u64, |sum, p| sum.checked_add(p.len() as u64))
            .filter(|&l| record_size(l).is_some())
            .ok_or_else(|| {
                RingError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the item is too large for a queue",
                ))
            })?;
        let size = record_size(len).expect("checked above");
        let max = self.hdr().max_count.load(Relaxed);
        let mut g = self.lock(deadline)?;
        loop {
            if self.is_closed() {
                return Err(RingError::Closed);
            }
            if g.st.count < max {
                break;
            }
            if passed(deadline) {
                return Err(RingError::Timeout);
            }
            g = g.wait(Event::Get, deadline)?;
        }
        if g.st.capacity - g.st.used() < size {
            g.grow(size)?;
        }
        let map = g.map();
        let mut off = g.st.tail;
        map.write_u64(off, len);
        off += RECORD_HEADER;
        for part in parts {
            map.write(off, part);
            off += part.len() as u64;
        }
        before_commit(g.st.pushed)?;
        g.fail_point("push:written");
        g.st.tail += size;
        g.st.count += 1;
        g.st.pushed = g.st.pushed.wrapping_add(1);
        g.st.unfinished = g.st.unfinished.saturating_add(1);
        g.commit();
        g.signal(Event::Put);
        Ok(())
    }

    /// Removes and returns the oldest record.
    ///
    /// Waits while the ring is empty (`deadline`: see the module docs).
    /// `after_read` sees the record under the lock before it is removed; if
    /// it fails, the record stays and its error is returned as `Io`.
    ///
    /// An empty ring that is closed, or whose caller's `ended` (asked only
    /// when the ring is empty, after each wake-up) says no record will
    /// come, is [`RingError::Closed`].
    pub(crate) fn pop(
        &self,
        deadline: Option<Instant>,
        after_read: &mut dyn FnMut(&[u8], u64) -> io::Result<()>,
        ended: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, RingError> {
        let mut g = self.lock(deadline)?;
        while g.st.count == 0 {
            if self.is_closed() || ended() {
                return Err(RingError::Closed);
            }
            if passed(deadline) {
                return Err(RingError::Timeout);
            }
            g = g.wait(Event::Put, deadline)?;
        }
        let len = g.map().read_u64(g.st.head);
        let size = match record_size(len) {
            Some(size) if size <= g.st.used() => size,
            _ => return Err(g.break_ring(BROKEN_RECORD)),
        };
        // len < size <= capacity, which is mapped: it fits a usize.
        let len = len as usize;
        let out = g.map().read_vec(g.st.head + RECORD_HEADER, len)?;
        after_read(&out, g.st.pushed.wrapping_sub(g.st.count))?;
        g.fail_point("pop:read");
        g.st.head += size;
        g.st.count -= 1;
        if g.st.count == 0 && g.st.head == g.st.tail {
            g.st.head = 0;
            g.st.tail = 0;
        }
        g.commit();
        g.signal(Event::Get);
        Ok(out)
    }

    /// Closes the ring for every process: later pushes fail with
    /// [`RingError::Closed`], and so do pops once no record is left. Wakes
    /// every sleeper (blocked pushes fail, blocked pops drain or end).
    /// Idempotent.
    pub(crate) fn close(&self) -> Result<(), RingError> {
        let g = self.lock(None)?;
        self.hdr().closed.store(1, Release);
        drop(g);
        self.wake_all();
        Ok(())
    }

    /// Whether [`close`](Self::close) was called, in any process.
    pub(crate) fn is_closed(&self) -> bool {
        self.hdr().closed.load(Acquire) != 0
    }

    /// The number of committed records, exact: an operation that has
    /// returned is counted.
    pub(crate) fn len(&self) -> u64 {
        self.hdr().count.load(Acquire)
    }

    /// The bound on the number of records, `None` when unbounded.
    pub(crate) fn max_count(&self) -> Option<u64> {
        let max = self.hdr().max_count.load(Relaxed);
        (max != u64::MAX).then_some(max)
    }

    /// Marks one pushed record as processed (`JoinableQueue.task_done`).
    pub(crate) fn task_done(&self) -> Result<(), RingError> {
        let mut g = self.lock(None)?;
        if g.st.unfinished == 0 {
            return Err(RingError::TooManyTaskDone);
        }
        g.st.unfinished -= 1;
        g.commit();
        if g.st.unfinished == 0 {
            g.signal(Event::Done);
        }
        Ok(())
    }

    /// Waits until every pushed record has been marked done.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<(), RingError> {
        let mut g = self.lock(deadline)?;
        while g.st.unfinished != 0 {
            if passed(deadline) {
                return Err(RingError::Timeout);
            }
            g = g.wait(Event::Done, deadline)?;
        }
        Ok(())
    }

    /// The shared header.
    fn hdr(&self) -> &Header {
        self.control.header()
    }
}

/// An `InvalidData` error, for descriptors that are not a ring's.
fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// A ring error as an `io::Error`, for constructors.
fn into_io(e: RingError) -> io::Error {
    match e {
        RingError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
