//! Rows of the synchronisation primitives (issue 5): an uncontended `Lock`
//! acquire + release against the same robust process-shared pthread mutex
//! used raw, and a cross-process handoff (ping-pong through two `Event`s)
//! against two processes ping-ponging on a raw futex word, both pinned to
//! one CPU and unpinned.
//!
//! A sample is a batch of operations, reported per operation (one
//! acquire + release; one round trip).

use std::{
    io, mem,
    ptr::{self, NonNull},
    sync::atomic::{AtomicU32, Ordering::SeqCst},
    time::{Duration, Instant},
};

use multiproc::{Event, Lock, Process, ProcessBuilder, StartMethod};

use crate::{
    cli::{Counts, Options},
    harness::{Bench, Impl},
};

/// Lock operations per sample.
const LOCK_BATCH: u32 = 100_000;
/// Round trips per sample.
const TRIPS: u32 = 2_000;

/// The groups to measure: `(sample counts, benches)`.
pub(crate) fn groups(opts: &Options) -> Vec<(Counts, Vec<Bench<'static>>)> {
    let lock = vec![
        Bench::new(
            "sync/lock_uncontended",
            Impl::Multiproc,
            format!("Lock::acquire + guard drop, per pair (batches of {LOCK_BATCH})"),
            lock_pair(),
        ),
        Bench::new(
            "sync/lock_uncontended",
            Impl::Floor,
            "pthread_mutex_lock + unlock of a robust process-shared mutex, per pair",
            raw_mutex_pair(),
        ),
    ];
    let mut out = vec![(opts.counts(30), lock)];
    for pinned in [true, false] {
        let name = if pinned { "sync/handoff_pinned" } else { "sync/handoff" };
        let how = if pinned {
            "both processes pinned to CPU 0"
        } else {
            "unpinned"
        };
        out.push((
            opts.counts(20),
            vec![
                Bench::new(
                    name,
                    Impl::Multiproc,
                    format!("round trip through two Events (set / wait / clear) with a spawned child, {how}"),
                    event_ping_pong(pinned),
                ),
                Bench::new(
                    name,
                    Impl::Floor,
                    format!(
                        "round trip on a shared futex word (store, FUTEX_WAKE, FUTEX_WAIT) with a forked child, {how}"
                    ),
                    futex_ping_pong(pinned),
                ),
            ],
        ));
    }
    out
}

/// Per-operation time of a batch of `n`.
fn per_op(elapsed: Duration, n: u32) -> Duration {
    Duration::from_secs_f64(elapsed.as_secs_f64() / f64::from(n))
}

fn lock_pair() -> impl FnMut() -> Result<Duration, String> {
    let lock = Lock::new();
    move || {
        let lock = lock.as_ref().map_err(|e| format!("Lock::new: {e}"))?;
        let t = Instant::now();
        for _ in 0..LOCK_BATCH {
            let g = lock.acquire().map_err(|e| format!("acquire: {e}"))?;
            drop(std::hint::black_box(g));
        }
        Ok(per_op(t.elapsed(), LOCK_BATCH))
    }
}

/// A robust, process-shared mutex in a shared anonymous mapping.
struct RawMutex(NonNull<libc::pthread_mutex_t>);

impl RawMutex {
    fn new() -> io::Result<RawMutex> {
        let m = shared_page()?.cast::<libc::pthread_mutex_t>();
        let mut attr = mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let a = attr.as_mut_ptr();
        // SAFETY: attr is storage for an attribute object.
        unsafe { libc::pthread_mutexattr_init(a) };
        // SAFETY: a was initialised just above.
        unsafe { libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED) };
        // SAFETY: as above.
        unsafe { libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST) };
        // SAFETY: as above.
        unsafe { libc::pthread_mutexattr_settype(a, libc::PTHREAD_MUTEX_ERRORCHECK) };
        // SAFETY: a is initialised; m points at a fresh zeroed page nobody
        // else uses.
        unsafe { libc::pthread_mutex_init(m.as_ptr(), a) };
        // SAFETY: a is initialised and no longer needed.
        unsafe { libc::pthread_mutexattr_destroy(a) };
        Ok(RawMutex(m))
    }
}

fn raw_mutex_pair() -> impl FnMut() -> Result<Duration, String> {
    let m = RawMutex::new();
    move || {
        let m = m.as_ref().map_err(|e| format!("mmap: {e}"))?.0.as_ptr();
        let t = Instant::now();
        for _ in 0..LOCK_BATCH {
            // SAFETY: m is an initialised mutex in a mapping that lives as
            // long as the process (never unmapped).
            let rc = unsafe { libc::pthread_mutex_lock(std::hint::black_box(m)) };
            if rc != 0 {
                return Err(format!("pthread_mutex_lock: {rc}"));
            }
            // SAFETY: as above; this thread holds it.
            unsafe { libc::pthread_mutex_unlock(m) };
        }
        Ok(per_op(t.elapsed(), LOCK_BATCH))
    }
}

/// A fresh shared anonymous page (kept for the life of the process).
fn shared_page() -> io::Result<NonNull<u8>> {
    // SAFETY: a new mapping chosen by the kernel touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(NonNull::new(p.cast()).expect("mmap does not return null"))
}

/// Restricts the calling thread to CPU 0 (`Some`), or to every CPU; returns
/// the previous set.
fn pin(to_cpu0: bool) -> libc::cpu_set_t {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut old: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: old is a valid out-pointer of the size passed.
    unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut old) };
    if to_cpu0 {
        // SAFETY: as above.
        let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
        // SAFETY: CPU 0 is within the set's size.
        unsafe { libc::CPU_SET(0, &mut set) };
        set_affinity(&set);
    }
    old
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: set is a valid cpu set of the size passed.
    unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), set) };
}

/// Child side of the Event ping-pong: answers each ping until `stop`.
fn event_echo((ping, pong, stop, pinned): (Event, Event, Event, bool)) {
    pin(pinned);
    loop {
        ping.wait();
        ping.clear();
        if stop.is_set() {
            return;
        }
        pong.set();
    }
}

/// The parent's side of an Event ping-pong with a spawned child.
struct EventPair {
    ping: Event,
    pong: Event,
    stop: Event,
    child: Process<()>,
}

impl Drop for EventPair {
    fn drop(&mut self) {
        self.stop.set();
        self.ping.set();
        if self.child.join_timeout(Duration::from_secs(10)).is_err() {
            let _ = self.child.kill();
        }
    }
}

fn event_ping_pong(pinned: bool) -> impl FnMut() -> Result<Duration, String> {
    let mut pair: Option<EventPair> = None;
    move || {
        if pair.is_none() {
            let e = |r: multiproc::Result<Event>| r.map_err(|e| format!("Event::new: {e}"));
            let (ping, pong, stop) = (e(Event::new())?, e(Event::new())?, e(Event::new())?);
            let mut child = ProcessBuilder::new()
                .start_method(StartMethod::Spawn)
                .daemon(true)
                .target_with(event_echo, (ping.clone(), pong.clone(), stop.clone(), pinned));
            child.start().map_err(|e| format!("start: {e}"))?;
            pair = Some(EventPair {
                ping,
                pong,
                stop,
                child,
            });
        }
        let p = pair.as_ref().expect("set above");
        let old = pin(pinned);
        let t = Instant::now();
        for _ in 0..TRIPS {
            p.ping.set();
            if !p.pong.wait_timeout(Duration::from_secs(10)) {
                set_affinity(&old);
                return Err("the child did not answer".into());
            }
            p.pong.clear();
        }
        let elapsed = t.elapsed();
        set_affinity(&old);
        Ok(per_op(elapsed, TRIPS))
    }
}

/// Futex word values of the raw ping-pong.
const PING: u32 = 1;
const PONG: u32 = 0;
const STOP: u32 = 2;

fn futex_wait(word: &AtomicU32, seen: u32) {
    // SAFETY: word is a live, aligned u32 in a shared mapping; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: word is a live, aligned u32 in a shared mapping.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

/// The parent's side of a raw futex ping-pong with a forked child.
struct FutexPair {
    word: &'static AtomicU32,
    pid: libc::pid_t,
}

impl Drop for FutexPair {
    fn drop(&mut self) {
        self.word.store(STOP, SeqCst);
        futex_wake(self.word);
        let mut status = 0;
        // SAFETY: reaping our own child; status is a valid out-pointer.
        unsafe { libc::waitpid(self.pid, &raw mut status, 0) };
    }
}

/// Forks a child that answers each PING with PONG until STOP; it runs only
/// atomics and system calls, then `_exit`.
#[allow(clippy::disallowed_methods)]
fn fork_futex_child(word: &'static AtomicU32, pinned: bool) -> Result<libc::pid_t, String> {
    // Computed before fork: the child must not allocate.
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut cpu0: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: CPU 0 is within the set's size.
    unsafe { libc::CPU_SET(0, &mut cpu0) };
    // SAFETY: the child runs only atomics, futex and affinity system calls
    // and `_exit`: no lock, no allocation.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        if pinned {
            set_affinity(&cpu0);
        }
        loop {
            match word.load(SeqCst) {
                PING => {
                    word.store(PONG, SeqCst);
                    futex_wake(word);
                }
                STOP => break,
                seen => futex_wait(word, seen),
            }
        }
        // SAFETY: ends the child at once, running no Rust code.
        unsafe { libc::_exit(0) }
    }
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    Ok(pid)
}

fn futex_ping_pong(pinned: bool) -> impl FnMut() -> Result<Duration, String> {
    let mut pair: Option<FutexPair> = None;
    move || {
        if pair.is_none() {
            let page = shared_page().map_err(|e| format!("mmap: {e}"))?;
            // SAFETY: the page is zeroed, aligned, shared and never unmapped.
            let word: &'static AtomicU32 = unsafe { AtomicU32::from_ptr(page.as_ptr().cast()) };
            let pid = fork_futex_child(word, pinned)?;
            pair = Some(FutexPair { word, pid });
        }
        let word = pair.as_ref().expect("set above").word;
        let old = pin(pinned);
        let t = Instant::now();
        for _ in 0..TRIPS {
            word.store(PING, SeqCst);
            futex_wake(word);
            while word.load(SeqCst) == PING {
                futex_wait(word, PING);
            }
        }
        let elapsed = t.elapsed();
        set_affinity(&old);
        Ok(per_op(elapsed, TRIPS))
    }
}
