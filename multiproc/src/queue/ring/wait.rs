//! Sleeping until another process changes the ring, and waking sleepers.
//!
//! # Waiting
//!
//! Three futex words count events: `put_seq` (a record was committed),
//! `get_seq` (a record was removed), `done_seq` (`unfinished` reached 0).
//! A waiter reads the word and registers in the matching waiter counter
//! under the lock, unlocks, and sleeps on the word (the backend's
//! process-shared futex wait) while it is unchanged; then it relocks and
//! rechecks. An event bumps the word and, only when the counter is nonzero,
//! wakes all sleepers (waking one would be lost if that one died or was a
//! [`ShmRing::wait_put_seq_change`] watcher). The wake happens before the
//! unlock, so an owner that dies before waking is found by the next locker,
//! which wakes everyone. Every sleep lasts at most [`SLICE`]: a waiter then
//! relocks (or, for a watcher, probes the lock with a try), so a process
//! that died holding the lock is recovered within a slice even when nobody
//! else touches the ring. A waiter that dies leaves its counter raised,
//! which only costs later events a wake system call.
//!
//! A fourth counter, `watchers`, counts callers of `wait()` that watch the
//! ring through a descriptor instead (the queue's eventfd, which this module
//! does not know): after a push returns, the queue signals that descriptor
//! when the count is nonzero ([`ShmRing::watch`], [`ShmRing::has_watchers`]).
//! A fifth, `room_watchers`, does the same for room: async putters waiting
//! on a full queue through its room eventfd, which the queue signals after
//! a pop returns ([`ShmRing::watch_room`], [`ShmRing::has_room_watchers`]).

use std::{
    sync::atomic::{
        AtomicU32,
        Ordering::{Acquire, Relaxed, SeqCst},
    },
    time::{Duration, Instant},
};

use super::{
    RingError, ShmRing,
    layout::Event,
    lock::{LockWait, Locked, SLICE},
};
use crate::sys::{futex_wait, futex_wake_all, passed};

/// How long a waiter spins before it sleeps on the futex.
const SPIN: Duration = Duration::from_micros(20);

impl ShmRing {
    /// Bumps every futex word and wakes every sleeper.
    pub(crate) fn wake_all(&self) {
        let hdr = self.hdr();
        for word in [&hdr.put_seq, &hdr.get_seq, &hdr.done_seq] {
            word.fetch_add(1, SeqCst);
            futex_wake_all(word);
        }
    }

    /// The futex word and waiter counter of `event`.
    fn event(&self, event: Event) -> (&AtomicU32, &AtomicU32) {
        let h = self.hdr();
        match event {
            Event::Put => (&h.put_seq, &h.put_waiters),
            Event::Get => (&h.get_seq, &h.get_waiters),
            Event::Done => (&h.done_seq, &h.done_waiters),
        }
    }

    /// The current value of the word bumped at each committed record.
    pub(crate) fn put_seq(&self) -> u32 {
        self.hdr().put_seq.load(SeqCst)
    }

    /// Waits until the put word differs from `seen` (`true`) or the deadline
    /// passes (`false`). Also `true` once the ring is broken, so that the
    /// caller's next call reports it. A `true` may be spurious (a record
    /// already taken by someone else): recheck with a non-blocking pop.
    pub(crate) fn wait_put_seq_change(&self, seen: u32, deadline: Option<Instant>) -> bool {
        let hdr = self.hdr();
        loop {
            if hdr.put_seq.load(SeqCst) != seen || hdr.broken.load(Acquire) != 0 {
                return true;
            }
            if passed(deadline) {
                return false;
            }
            hdr.put_waiters.fetch_add(1, SeqCst);
            if hdr.put_seq.load(SeqCst) == seen {
                futex_wait(&hdr.put_seq, seen, deadline, SLICE);
            }
            hdr.put_waiters.fetch_sub(1, SeqCst);
            if hdr.put_seq.load(SeqCst) == seen && !passed(deadline) {
                // A slice passed or the wake was spurious: if the lock's
                // owner died, recover now (which bumps the word).
                let _ = self.lock_with(LockWait::Try);
            }
        }
    }

    /// Counts the caller as a watcher until [`unwatch`](Self::unwatch):
    /// someone who wants to hear of every committed record by another
    /// means than the futex (the queue's eventfd). The caller then reads
    /// the ring's state; the fence pairs with the one in
    /// [`has_watchers`](Self::has_watchers), so either the caller sees a
    /// record or its putter sees the watcher. A watcher that dies leaves
    /// the count raised, which only costs later puts a signal.
    pub(crate) fn watch(&self) {
        self.hdr().watchers.fetch_add(1, SeqCst);
        std::sync::atomic::fence(SeqCst);
    }

    /// Ends a [`watch`](Self::watch).
    pub(crate) fn unwatch(&self) {
        // Saturating: a count is never taken below what was added.
        let _ = self.hdr().watchers.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }

    /// Whether anyone watches; called after a push has returned.
    pub(crate) fn has_watchers(&self) -> bool {
        std::sync::atomic::fence(SeqCst);
        self.hdr().watchers.load(Relaxed) != 0
    }

    /// Counts the caller as a watcher of room until
    /// [`unwatch_room`](Self::unwatch_room): an async putter that wants to
    /// hear of every removed record through the queue's room eventfd. As
    /// in [`watch`](Self::watch), the caller then reads the state, and the
    /// fence pairs with the one in [`has_room_watchers`](Self::has_room_watchers):
    /// either the caller sees the room or the getter sees the watcher.
    pub(crate) fn watch_room(&self) {
        self.hdr().room_watchers.fetch_add(1, SeqCst);
        std::sync::atomic::fence(SeqCst);
    }

    /// Ends a [`watch_room`](Self::watch_room).
    pub(crate) fn unwatch_room(&self) {
        // Saturating: a count is never taken below what was added.
        let _ = self
            .hdr()
            .room_watchers
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }

    /// Whether anyone waits for room; called after a pop has returned.
    pub(crate) fn has_room_watchers(&self) -> bool {
        std::sync::atomic::fence(SeqCst);
        self.hdr().room_watchers.load(Relaxed) != 0
    }
}

impl<'a> Locked<'a> {
    /// Reports `event` (under the lock): bumps its word and wakes its
    /// sleepers if there are any.
    pub(super) fn signal(&self, event: Event) {
        let (word, waiters) = self.ring.event(event);
        word.fetch_add(1, SeqCst);
        if waiters.load(SeqCst) != 0 {
            futex_wake_all(word);
        }
    }

    /// Releases the lock, sleeps until `event` (at most one slice, or until
    /// the deadline) and takes the lock again.
    ///
    /// It first spins for up to [`SPIN`] with the lock released: a peer on
    /// another CPU usually acts within microseconds, and a waiter that never
    /// registers costs the peer no wake-up system call (this halves the
    /// cost of a pipelined exchange). Registering after the spin is safe: a
    /// signal in between changes the word, and the futex wait then returns
    /// at once.
    pub(super) fn wait(self, event: Event, deadline: Option<Instant>) -> Result<Locked<'a>, RingError> {
        let ring = self.ring;
        let (word, waiters) = ring.event(event);
        let seen = word.load(SeqCst);
        drop(self);
        let spin_start = Instant::now();
        let mut spins = 0u32;
        while word.load(SeqCst) == seen {
            std::hint::spin_loop();
            spins += 1;
            if spins % 64 == 0 && (spin_start.elapsed() >= SPIN || passed(deadline)) {
                break;
            }
        }
        if word.load(SeqCst) == seen {
            waiters.fetch_add(1, SeqCst);
            futex_wait(word, seen, deadline, SLICE);
            waiters.fetch_sub(1, SeqCst);
        }
        ring.lock(deadline)
    }
}
