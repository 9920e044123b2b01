//! The Slurm backends on a single-node Slurm on loopback (`.ci/slurm.sh
//! up`, with `SLURM_CONF` exported): one `srun` step of N tasks, and
//! batch workers queued with `sbatch` that join as they start.

use std::{path::PathBuf, process::Command, time::Instant};

use multiproc::{Backend, ErrorKind, Pool};

use super::{Scratch, failures::dies_once, lab, pid_of, runs, square, unique};
use crate::support::DEADLINE;

fn slurm(test: &str) -> bool {
    let missing = if std::env::var_os("SLURM_CONF").is_none() {
        Some("SLURM_CONF is not set (.ci/slurm.sh up starts a single-node Slurm and prints it)".to_owned())
    } else if !runs("sinfo", &["-h"]) {
        Some("sinfo fails: the Slurm named by SLURM_CONF is not up".to_owned())
    } else {
        None
    };
    lab(test, missing)
}

/// `true` once no job named `name` is queued or running, within the
/// deadline.
fn no_job_named(name: &str) -> bool {
    let until = Instant::now() + DEADLINE;
    while Instant::now() < until {
        let out = Command::new("squeue")
            .args(["-h", "-o", "%i", "-n", name])
            .output()
            .unwrap();
        if out.status.success() && out.stdout.trim_ascii().is_empty() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

fn step(n: usize, name: &str) -> multiproc::PoolBuilder {
    Pool::builder()
        .processes(n)
        .backend(Backend::SlurmStep {
            args: vec!["--overcommit".into(), format!("--job-name={name}")],
        })
        .connect_timeout(DEADLINE)
}

#[test]
fn srun_step_serves_a_map_and_leaves_nothing() {
    if !slurm("srun step") {
        return;
    }
    let name = unique("step");
    let pool = step(3, &name).build().unwrap();
    let want: Vec<u64> = (0..500u64).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..500u64).unwrap(), want);
    let pids = pool.map(pid_of, 0..30u32).unwrap();
    assert!(pids.iter().all(|&p| p != std::process::id()));
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert!(no_job_named(&name), "job {name} still queued");
}

#[test]
fn srun_step_replaces_a_killed_worker_inside_the_allocation() {
    if !slurm("srun replacement") {
        return;
    }
    let scratch = Scratch::new("srun-killed");
    let name = unique("step-killed");
    let pool = step(2, &name).build().unwrap();
    let items: Vec<(PathBuf, u32)> = (0..20).map(|i| (scratch.path().to_owned(), i)).collect();
    let got = pool.tasks(dies_once).chunksize(1).map(items).unwrap();
    assert_eq!(got, (0..20).collect::<Vec<u32>>());
    assert_eq!(pool.pids().len(), 2);
    drop(pool);
    assert!(no_job_named(&name), "job {name} still queued");
}

#[test]
fn srun_that_cannot_start_fails_build_with_its_stderr() {
    if !slurm("srun failure") {
        return;
    }
    let e = Pool::builder()
        .processes(2)
        .backend(Backend::SlurmStep {
            // More memory than the node has: refused at once.
            args: vec!["--mem=999999".into(), format!("--job-name={}", unique("nomem"))],
        })
        .connect_timeout(DEADLINE)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Bootstrap, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("srun"), "{msg}");
    assert!(msg.contains("its standard error: srun: error"), "{msg}");
}

#[test]
fn sbatch_workers_join_as_they_start_and_are_cancelled_at_the_end() {
    if !slurm("sbatch batch") {
        return;
    }
    let name = unique("batch");
    let pool = Pool::builder()
        .processes(3)
        .backend(Backend::SlurmBatch {
            args: vec!["--overcommit".into(), format!("--job-name={name}")],
        })
        .connect_timeout(DEADLINE)
        .build()
        .unwrap();
    // The pool serves with the workers it has...
    assert_eq!(pool.map(square, 0..100u64).unwrap()[99], 99 * 99);
    // ...and the others join as their jobs start.
    let until = Instant::now() + DEADLINE;
    while pool.pids().len() < 3 && Instant::now() < until {
        pool.map(square, 0..4u64).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(pool.pids().len(), 3);
    let pids = pool.map(pid_of, 0..60u32).unwrap();
    assert!(pids.iter().all(|&p| p != std::process::id()));
    pool.terminate().unwrap();
    assert!(no_job_named(&name), "job {name} still queued");
}

#[test]
fn queued_batch_jobs_are_cancelled_on_drop() {
    if !slurm("sbatch cancel") {
        return;
    }
    let name = unique("batch-held");
    // One job starts; the others are held and would wait for ever.
    let pool = Pool::builder()
        .processes(1)
        .backend(Backend::SlurmBatch {
            args: vec!["--overcommit".into(), format!("--job-name={name}")],
        })
        .connect_timeout(DEADLINE)
        .build()
        .unwrap();
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
    drop(pool);
    assert!(no_job_named(&name), "job {name} still queued");
}

#[test]
fn a_killed_batch_worker_is_replaced_by_a_job_that_joins_later() {
    if !slurm("sbatch replacement") {
        return;
    }
    let scratch = Scratch::new("batch-killed");
    let name = unique("batch-killed");
    let pool = Pool::builder()
        .processes(2)
        .backend(Backend::SlurmBatch {
            args: vec!["--overcommit".into(), format!("--job-name={name}")],
        })
        .connect_timeout(DEADLINE)
        .build()
        .unwrap();
    let until = Instant::now() + DEADLINE;
    while pool.pids().len() < 2 && Instant::now() < until {
        pool.map(square, 0..4u64).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(pool.pids().len(), 2);
    let items: Vec<(PathBuf, u32)> = (0..20).map(|i| (scratch.path().to_owned(), i)).collect();
    let got = pool.tasks(dies_once).chunksize(1).map(items).unwrap();
    assert_eq!(got, (0..20).collect::<Vec<u32>>());
    // The replacement job joins as it starts.
    let until = Instant::now() + DEADLINE;
    while pool.pids().len() < 2 && Instant::now() < until {
        pool.map(square, 0..4u64).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(pool.pids().len(), 2);
    drop(pool);
    assert!(no_job_named(&name), "job {name} still queued");
}
