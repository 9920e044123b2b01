//! The MPI launchers as launchers only, on loopback: Open MPI's `mpirun`,
//! MPICH's `mpiexec.hydra`, and `mpirun` inside a Slurm allocation.

use multiproc::{Backend, MpiFlavour, Pool};

use super::{lab, pid_of, runs, square};
use crate::support::DEADLINE;

fn have(program: &str, test: &str) -> bool {
    let missing = (!runs(program, &["--version"])).then(|| format!("{program} is not installed"));
    lab(test, missing)
}

/// Open MPI on loopback only, as root if need be, more ranks than cores.
fn openmpi_args() -> Vec<String> {
    [
        "--allow-run-as-root",
        "--oversubscribe",
        "--mca",
        "oob_tcp_if_include",
        "lo",
        "--mca",
        "btl",
        "self,tcp",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn check(pool: &Pool) {
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..300u64).unwrap(), want);
    assert!(
        pool.map(pid_of, 0..20u32)
            .unwrap()
            .iter()
            .all(|&p| p != std::process::id())
    );
}

#[test]
fn openmpi_mpirun_launches_the_workers() {
    if !have("mpirun", "Open MPI") {
        return;
    }
    let pool = Pool::builder()
        .processes(3)
        .backend(Backend::Mpi {
            flavour: MpiFlavour::OpenMpi,
            hostfile: None,
            args: openmpi_args(),
        })
        .connect_timeout(DEADLINE)
        .build()
        .unwrap();
    check(&pool);
    let pids = pool.pids();
    drop(pool);
    assert!(super::all_gone(&pids), "{pids:?}");
}

#[test]
fn mpich_mpiexec_launches_the_workers() {
    if !have("mpiexec.hydra", "MPICH") {
        return;
    }
    let pool = Pool::builder()
        .processes(3)
        .backend(Backend::Mpi {
            flavour: MpiFlavour::Mpich,
            hostfile: None,
            args: vec![],
        })
        .connect_timeout(DEADLINE)
        .build()
        .unwrap();
    check(&pool);
    let pids = pool.pids();
    drop(pool);
    assert!(super::all_gone(&pids), "{pids:?}");
}

#[test]
fn mpirun_inside_a_slurm_allocation() {
    if !have("mpirun", "mpirun in salloc")
        || !lab(
            "mpirun in salloc",
            (std::env::var_os("SLURM_CONF").is_none() || !runs("sinfo", &["-h"]))
                .then(|| "no Slurm (SLURM_CONF unset or down)".to_owned()),
        )
    {
        return;
    }
    // salloc -n N mpirun ... EXE: Open MPI takes its hosts from Slurm.
    let mut args: Vec<String> = ["-n", "{n}", "--overcommit", "mpirun"].map(str::to_owned).to_vec();
    args.extend(openmpi_args());
    for v in [
        "MULTIPROC_WORKER_ADDR",
        "MULTIPROC_WORKER_KEY",
        "MULTIPROC_WORKER_HEARTBEAT_MS",
    ] {
        args.extend(["-x".to_owned(), v.to_owned()]);
    }
    args.push("{exe}".to_owned());
    let pool = Pool::builder()
        .processes(2)
        .backend(Backend::Command {
            program: "salloc".into(),
            args,
        })
        .connect_timeout(DEADLINE)
        .build()
        .unwrap();
    check(&pool);
}
