//! A named segment never exists untracked: a creator SIGKILLed at a random
//! instruction inside `SharedMemory::create_named` (or the drop that
//! unlinks) leaves nothing in `/dev/shm` once its cleanup tracker has
//! done its work.

use std::{hint::black_box, time::Instant};

use multiproc::{self as mp, ErrorKind, SharedMemory, StartMethod};

use crate::support::{DEADLINE, PidWatch, Rendezvous, notify};

/// Kills per start method.
const KILLS: u32 = 200;
/// Kills in flight at once (each a creator with its own tracker).
const PARALLEL: u32 = 4;

/// Child: starts its tracker with a first segment, reports the tracker's
/// pid, then creates and drops uniquely named segments until killed.
fn create_until_killed((addr, prefix): (String, String)) {
    drop(SharedMemory::create_named(&format!("{prefix}first"), 4096).unwrap());
    let tracker = SharedMemory::__tracker_pid().expect("a tracker runs once a named segment was created");
    notify(&addr, &tracker.to_string());
    for i in 0u64.. {
        let shm = SharedMemory::create_named(&format!("{prefix}{i}"), 4096).unwrap();
        drop(shm);
    }
}

/// A small xorshift generator, seeded from the clock and the pid.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Busy-spins `n` rounds: a kill point that depends on nothing but the
/// random count (no sleep, no synchronisation with the child).
fn spin(n: u64) {
    let mut x = 0u64;
    for i in 0..n {
        x = black_box(x.wrapping_add(i));
        std::hint::spin_loop();
    }
    black_box(x);
}

fn leftovers(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn creators_killed_at_random_points(m: StartMethod) {
    let prefix = format!("mp-it-killed-{}-{m}-", std::process::id());
    let mut rng = Rng::new();
    // Calibrate the spin to the length of a create/drop round, so that the
    // kills spread over several rounds of the creator's loop.
    let t = Instant::now();
    spin(100_000);
    let per_round = t.elapsed().as_nanos().max(1) as u64 / 100_000;
    let window = (2_000_000 / per_round.max(1)).max(1000);
    let mut done = 0;
    while done < KILLS {
        let batch = PARALLEL.min(KILLS - done);
        let rv = Rendezvous::new();
        let mut creators: Vec<_> = (0..batch)
            .map(|k| {
                let mut p = mp::ProcessBuilder::new()
                    .start_method(m)
                    .target_with(create_until_killed, (rv.addr(), format!("{prefix}{done}-{k}-")));
                p.start().unwrap();
                p
            })
            .collect();
        let trackers: Vec<PidWatch> = (0..batch)
            .map(|_| PidWatch::open(rv.recv().parse().expect("a tracker pid")))
            .collect();
        for p in &mut creators {
            spin(rng.below(window));
            p.kill().unwrap();
        }
        for p in &mut creators {
            assert_eq!(p.join_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::ChildKilled);
        }
        // The tracker exits once it has unlinked its dead owner's names.
        for t in &trackers {
            assert!(t.ended_within(DEADLINE), "a tracker outlived its owner");
        }
        done += batch;
    }
    let left = leftovers(&prefix);
    for name in &left {
        let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    }
    assert!(
        left.is_empty(),
        "{} of {KILLS} creators killed under {m} leaked: {left:?}",
        left.len()
    );
}

/// Child: creates a segment, has its tracker killed, creates a second one
/// (a new tracker starts and is told both names), reports the names and
/// the new tracker's pid, and blocks until killed.
fn create_kill_tracker_create(addr: String) {
    let first = SharedMemory::create(4096).unwrap();
    let old = SharedMemory::__tracker_pid().expect("a tracker runs");
    let watch = PidWatch::open(old);
    // SAFETY: kill(2) of this process's own tracker.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(old as i32, libc::SIGKILL) };
    assert_eq!(rc, 0);
    assert!(watch.ended_within(DEADLINE));
    let second = SharedMemory::create(4096).unwrap();
    let new = SharedMemory::__tracker_pid().expect("a new tracker runs");
    assert_ne!(new, old, "the killed tracker was replaced");
    notify(
        &addr,
        &format!("{} {} {new}", first.name().unwrap(), second.name().unwrap()),
    );
    std::mem::forget((first, second));
    crate::support::block_forever()
}

/// A killed tracker is replaced at the next create and told every live
/// name: the creator's death still removes them all.
fn a_killed_tracker_is_replaced_with_every_name(m: StartMethod) {
    let rv = Rendezvous::new();
    let mut p = mp::ProcessBuilder::new()
        .start_method(m)
        .target_with(create_kill_tracker_create, rv.addr());
    p.start().unwrap();
    let report = rv.recv();
    let parts: Vec<&str> = report.split(' ').collect();
    let tracker = PidWatch::open(parts[2].parse().expect("a pid"));
    for name in &parts[..2] {
        assert!(std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    }
    p.kill().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::ChildKilled);
    assert!(tracker.ended_within(DEADLINE), "the tracker outlived its owner");
    for name in &parts[..2] {
        assert!(
            !std::path::Path::new(&format!("/dev/shm/{name}")).exists(),
            "{name} outlived its creator"
        );
    }
}

per_method!(
    creators_killed_at_random_points,
    a_killed_tracker_is_replaced_with_every_name
);
