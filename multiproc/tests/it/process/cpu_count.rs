//! `process_cpu_count()` and the default pool size follow the CPUs a
//! process may run on, not the machine's count.

use multiproc::{self as mp, Pool, ProcessBuilder, StartMethod};

use crate::support::DEADLINE;

/// Pins this process to CPU 0, then reports what it may use and the size
/// of a pool built without a process count.
#[allow(unsafe_code)]
fn pinned_counts() -> (usize, usize) {
    // SAFETY: cpu_set_t is plain data, and all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU 0 is inside the set's fixed capacity.
    unsafe { libc::CPU_SET(0, &mut set) };
    // SAFETY: set is a valid cpu_set_t of the size passed; pid 0 is this
    // thread (the child's only one).
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(rc, 0);
    let pool = Pool::builder().build().expect("a pool of the default size");
    let size = pool.processes();
    pool.terminate().expect("stop the pool");
    (mp::process_cpu_count().unwrap(), size)
}

fn default_pool_size_follows_affinity(m: StartMethod) {
    let mut p = ProcessBuilder::new().start_method(m).target(pinned_counts);
    p.start().unwrap();
    assert_eq!(
        p.join_timeout(DEADLINE).unwrap(),
        (1, 1),
        "one CPU allowed: one CPU counted, one worker"
    );
}

per_method!(default_pool_size_follows_affinity);

#[test]
fn process_cpu_count_is_within_the_machine() {
    let n = mp::process_cpu_count().unwrap();
    assert!(n >= 1 && n <= mp::cpu_count().unwrap());
}
