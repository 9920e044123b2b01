//! [`Barrier`].

use std::{
    fmt,
    sync::{
        Arc,
        atomic::Ordering::{Relaxed, SeqCst},
    },
    time::{Duration, Instant},
};

use super::{
    by_descriptor, create_error, error,
    shared::{Inner, Kind, NSLOTS, SLICE, SyncError, SyncMem, spin_until},
};
use crate::{
    error::{Error, ErrorKind, Result},
    sys::{deadline_after as deadline, futex_wait, futex_wake_all, passed, process_identity, thread_id},
};

/// A rendezvous of a fixed number of parties in any processes (Python's
/// `multiprocessing.Barrier`, with `threading.Barrier`'s semantics).
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Barrier, Process};
///
/// fn party(b: Barrier) -> usize {
///     b.wait_timeout(Duration::from_secs(30)).unwrap()
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let b = Barrier::new(2)?;
/// let mut p = Process::with_args(party, b.clone());
/// p.start()?;
/// let mine = b.wait_timeout(Duration::from_secs(30))?;
/// let theirs = p.join()?;
/// assert_eq!(mine + theirs, 1); // indexes 0 and 1
/// # Ok(()) }
/// ```
///
/// A wait that times out, [`abort`](Self::abort), [`reset`](Self::reset)
/// while parties wait, and the death of a waiting party break the barrier:
/// the waiters get [`ErrorKind::BrokenBarrier`], as does every wait until
/// a reset.
///
/// A party that dies before it arrives is not detected (the barrier does
/// not know its parties in advance): the others wait for it forever with
/// [`wait`](Self::wait) on a barrier without a default timeout. Give the
/// barrier one ([`with_timeout`](Self::with_timeout), Python's
/// `Barrier(parties, timeout=t)`) or use
/// [`wait_timeout`](Self::wait_timeout) when a party may die. There is no
/// `action` (see [the module docs](crate#synchronisation)).
#[derive(Clone)]
pub struct Barrier {
    mem: Arc<SyncMem>,
}

impl Barrier {
    /// The most parties a barrier can have (497): the size of its table of
    /// waiting parties, plus the last to arrive.
    pub const MAX_PARTIES: usize = SyncMem::MAX_PARTIES;

    /// A barrier for `parties` parties.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 parties or more than the
    /// barrier's table holds ([`Barrier::MAX_PARTIES`]);
    /// [`ErrorKind::Io`] when the system refuses the shared memory.
    pub fn new(parties: usize) -> Result<Barrier> {
        Self::create(parties, None)
    }

    fn create(parties: usize, timeout: Option<Duration>) -> Result<Barrier> {
        if parties == 0 || parties > Self::MAX_PARTIES {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("a barrier needs 1 to {} parties, not {parties}", Self::MAX_PARTIES),
            ));
        }
        let mem = SyncMem::new(Kind::Barrier, parties as u64, timeout_word(timeout))
            .map_err(|e| create_error("barrier", e))?;
        Ok(Barrier { mem: Arc::new(mem) })
    }

    /// A barrier for `parties` parties whose plain [`wait`](Self::wait)
    /// waits at most `timeout` (Python's `Barrier(parties,
    /// timeout=timeout)`). The default travels with the barrier to other
    /// processes. As with [`wait_timeout`](Self::wait_timeout), a wait that
    /// times out breaks the barrier: it and every other waiter get
    /// [`ErrorKind::BrokenBarrier`] (Python's `BrokenBarrierError`).
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let b = multiproc::Barrier::with_timeout(2, Duration::from_millis(20))?;
    /// assert_eq!(b.timeout(), Some(Duration::from_millis(20)));
    /// // Nobody else comes: the plain wait times out and breaks the barrier.
    /// let e = b.wait().unwrap_err();
    /// assert_eq!(e.kind(), multiproc::ErrorKind::BrokenBarrier);
    /// assert!(b.is_broken());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    #[doc(alias = "Barrier(parties, timeout)")]
    pub fn with_timeout(parties: usize, timeout: Duration) -> Result<Barrier> {
        Self::create(parties, Some(timeout))
    }

    /// The default timeout of a plain [`wait`](Self::wait), if the barrier
    /// was made with one (Python's `_timeout`).
    pub fn timeout(&self) -> Option<Duration> {
        match self.mem.bar_timeout() {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        }
    }

    /// Waits until `parties` parties wait; returns this party's arrival
    /// index, `0..parties` (exactly one party of each pass gets 0). On a
    /// barrier made [`with_timeout`](Self::with_timeout), waits at most
    /// that long, as [`wait_timeout`](Self::wait_timeout) does.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BrokenBarrier`] as described above, also when the
    /// default timeout passes.
    pub fn wait(&self) -> Result<usize> {
        self.mem
            .bar_wait(self.timeout().map(deadline))
            .map(|i| i as usize)
            .map_err(|e| error(e, "barrier"))
    }

    /// Like [`wait`](Self::wait), for at most `timeout` (instead of the
    /// default timeout, if any); a timeout breaks the barrier.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BrokenBarrier`], also on timeout (Python's
    /// `BrokenBarrierError`).
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.mem
            .bar_wait(Some(deadline(timeout)))
            .map(|i| i as usize)
            .map_err(|e| error(e, "barrier"))
    }

    /// Breaks the barrier: current and later waits fail until a reset.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if its internal lock fails.
    pub fn abort(&self) -> Result<()> {
        self.mem.bar_abort().map_err(|e| error(e, "barrier"))
    }

    /// Returns the barrier to its initial, unbroken state; parties waiting
    /// now get [`ErrorKind::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if its internal lock fails.
    pub fn reset(&self) -> Result<()> {
        self.mem.bar_reset().map_err(|e| error(e, "barrier"))
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.mem.bar_state().0 as usize
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> usize {
        self.mem.bar_state().1 as usize
    }

    /// Whether the barrier is broken (Python's `broken`).
    #[doc(alias = "broken")]
    pub fn is_broken(&self) -> bool {
        self.mem.bar_state().2
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (parties, waiting, broken) = self.mem.bar_state();
        f.debug_struct("Barrier")
            .field("parties", &parties)
            .field("n_waiting", &waiting)
            .field("broken", &broken)
            .field("timeout", &self.timeout())
            .finish()
    }
}

/// The shared word of a default timeout: 0 for none, else nanoseconds + 1
/// (saturating: a timeout of centuries is as good as none).
fn timeout_word(timeout: Option<Duration>) -> u64 {
    timeout.map_or(0, |t| {
        u64::try_from(t.as_nanos()).unwrap_or(u64::MAX - 1).saturating_add(1)
    })
}

by_descriptor!(Barrier, Barrier, |mem| Barrier { mem });

// ----- the algorithm -----

impl SyncMem {
    /// Takes the internal lock (until `deadline`, as in
    /// [`inner`](Self::inner)); a death under it breaks the barrier.
    fn bar_inner(&self, deadline: Option<Instant>) -> Result<Inner<'_>, SyncError> {
        let g = self.inner(deadline)?;
        if g.recovered {
            self.bar_break();
        }
        Ok(g)
    }

    /// Ends the current generation: passed or broken (under the lock).
    fn bar_end(&self, passed: bool) {
        let h = self.hdr();
        let generation = h.generation.load(SeqCst);
        let bit = 1u64 << (generation % 64);
        let outcomes = h.outcomes.load(SeqCst);
        h.outcomes
            .store(if passed { outcomes | bit } else { outcomes & !bit }, SeqCst);
        for s in &self.page().slots[..(h.parties.load(SeqCst) as usize).min(NSLOTS)] {
            s.pid.store(0, SeqCst);
        }
        h.count.store(0, SeqCst);
        h.generation.store(generation.wrapping_add(1), SeqCst);
        futex_wake_all(&h.generation);
    }

    /// Breaks the barrier (under the lock).
    fn bar_break(&self) {
        self.hdr().broken.store(1, SeqCst);
        self.bar_end(false);
    }

    /// A party that could not take the internal lock before its deadline
    /// gives up: it breaks the barrier without the lock (the flag only; the
    /// next party that takes the lock ends the generation, see
    /// [`bar_wait`](Self::bar_wait)), unless its generation (`waiting`:
    /// the generation and its arrival index) has ended meanwhile.
    fn bar_give_up(&self, waiting: Option<(u32, u32)>) -> Result<u32, SyncError> {
        let h = self.hdr();
        if let Some((generation, index)) = waiting
            && h.generation.load(SeqCst) != generation
        {
            return if h.outcomes.load(SeqCst) & (1u64 << (generation % 64)) != 0 {
                Ok(index)
            } else {
                Err(SyncError::Broken)
            };
        }
        h.broken.store(1, SeqCst);
        futex_wake_all(&h.generation);
        Err(SyncError::Broken)
    }

    /// Waits for the other parties; returns this party's arrival index.
    pub(super) fn bar_wait(&self, deadline: Option<Instant>) -> Result<u32, SyncError> {
        let h = self.hdr();
        let mut g = match self.bar_inner(deadline) {
            Err(SyncError::Timeout) => return self.bar_give_up(None),
            r => r?,
        };
        if h.broken.load(SeqCst) != 0 {
            return Err(SyncError::Broken);
        }
        let parties = h.parties.load(SeqCst);
        let index = h.count.load(SeqCst);
        if index + 1 >= parties {
            self.bar_end(true);
            return Ok(index);
        }
        let (pid, start) = process_identity();
        let Some(s) = self.page().slots.get(index as usize) else {
            return Err(SyncError::Full);
        };
        s.start.store(start, SeqCst);
        s.tid.store(thread_id(), SeqCst);
        s.pid.store(pid, SeqCst);
        h.count.store(index + 1, SeqCst);
        let generation = h.generation.load(SeqCst);
        loop {
            drop(g);
            if !spin_until(|| h.generation.load(SeqCst) != generation, deadline) {
                futex_wait(&h.generation, generation, deadline, SLICE);
            }
            g = match self.bar_inner(deadline) {
                Err(SyncError::Timeout) => return self.bar_give_up(Some((generation, index))),
                r => r?,
            };
            if h.generation.load(SeqCst) != generation {
                return if h.outcomes.load(SeqCst) & (1u64 << (generation % 64)) != 0 {
                    Ok(index)
                } else {
                    Err(SyncError::Broken)
                };
            }
            // A party that timed out on the internal lock set the flag.
            if h.broken.load(SeqCst) != 0 || passed(deadline) || self.bar_neighbour_died(index) {
                self.bar_break();
                return Err(SyncError::Broken);
            }
        }
    }

    /// Whether the party registered after `index` (the first one, for the
    /// last registered) is dead.
    ///
    /// Each waiting party checks one neighbour per wake-up, so that a round
    /// of checks costs O(parties), not O(parties²) (all parties checking all
    /// slots under the internal lock starved late arrivals for seconds at
    /// [`Barrier::MAX_PARTIES`]). Every registered slot is some party's
    /// neighbour, and a dead checker is found by its own neighbour, so a
    /// death is seen within a slice or two while one party lives.
    fn bar_neighbour_died(&self, index: u32) -> bool {
        let n = (self.hdr().count.load(SeqCst) as usize).min(NSLOTS);
        let next = index as usize + 1;
        let Some(s) = self.page().slots.get(if next < n { next } else { 0 }) else {
            return false;
        };
        s.pid.load(SeqCst) != 0 && !s.holder_alive()
    }

    /// Breaks the barrier: current and future waiters fail until a reset.
    pub(super) fn bar_abort(&self) -> Result<(), SyncError> {
        let _g = self.bar_inner(None)?;
        self.bar_break();
        Ok(())
    }

    /// Returns the barrier to its initial state; current waiters fail.
    pub(super) fn bar_reset(&self) -> Result<(), SyncError> {
        let _g = self.bar_inner(None)?;
        let h = self.hdr();
        if h.count.load(SeqCst) > 0 {
            self.bar_end(false);
        }
        h.broken.store(0, SeqCst);
        Ok(())
    }

    /// The word a barrier was created with as its default timeout (0:
    /// none, else nanoseconds + 1; the facade gives it meaning).
    pub(super) fn bar_timeout(&self) -> u64 {
        self.hdr().max.load(Relaxed)
    }

    /// `(parties, waiting, broken)`.
    pub(super) fn bar_state(&self) -> (u32, u32, bool) {
        let h = self.hdr();
        let broken = h.broken.load(SeqCst) != 0;
        let waiting = if broken { 0 } else { h.count.load(SeqCst) };
        (h.parties.load(SeqCst), waiting, broken)
    }
}
