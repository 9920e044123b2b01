//! The same `Pool` on a cluster: the backend comes from the environment,
//! so this unchanged program runs on local workers, in a Slurm
//! allocation, from a login node with batch jobs, or under an MPI
//! launcher.
//!
//! ```text
//! cargo run --example cluster                          # 4 local processes over TCP
//! salloc -N4 --ntasks-per-node=32                      # then, inside the allocation:
//! MULTIPROC_BACKEND=slurm MULTIPROC_WORKERS=128 ./target/release/examples/cluster
//! MULTIPROC_BACKEND=slurm-batch MULTIPROC_LAUNCHER_ARGS="-p short -t 30:00" ./cluster
//! MULTIPROC_BACKEND=mpi MULTIPROC_HOSTFILE=hosts.txt ./cluster   # Open MPI's mpirun over ssh
//! ```
//!
//! Every worker is this same executable: it never runs `main`; it
//! connects back, proves the pool's key and its build, and serves tasks.
//! A worker lost mid-map (killed, its node gone, its heartbeat missed)
//! has its task retried on another (3 attempts by default).

use std::{collections::BTreeMap, time::Duration};

use multiproc::{Backend, Pool, Result};

/// Where a task ran.
fn host(_: u32) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "?".into(), |h| h.trim().to_owned())
}

/// Some work: the number of primes below `n`.
fn primes_below(n: u64) -> u64 {
    (2..n)
        .filter(|k| (2..).take_while(|d| d * d <= *k).all(|d| k % d != 0))
        .count() as u64
}

fn main() -> Result<()> {
    // Unset, the example shows the remote machinery on this host.
    let backend = match Backend::from_env()? {
        Backend::Local => Backend::Tcp,
        b => b,
    };
    let workers = std::env::var("MULTIPROC_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    println!("backend: {backend:?}, {workers} workers");
    let pool = Pool::builder()
        .processes(workers)
        .backend(backend)
        .heartbeat_timeout(Duration::from_secs(5))
        .attempts(3)
        .build()?;

    let mut per_host = BTreeMap::new();
    for h in pool.map(host, 0..(workers as u32 * 8))? {
        *per_host.entry(h).or_insert(0) += 1;
    }
    println!("tasks per host: {per_host:?}");

    let counts = pool.map(primes_below, (1..=16u64).map(|k| k * 2_000))?;
    println!("primes below 2000, 4000, ... 32000: {counts:?}");
    assert_eq!(counts[0], 303);

    pool.close();
    pool.join()
}
