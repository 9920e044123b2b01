//! The backends across three fake hosts (`.ci/fakehosts.sh up`: network
//! namespaces node0..2 with their own sshd and slurmd). Each test runs
//! its body, an ignored test of this binary, "on" node0 (in its network
//! namespace), where the pool opens its listener on 10.77.0.10: srun
//! across the hosts, sbatch, Open MPI and MPICH over ssh, a host's network
//! cut (heartbeat), and teardown leaving nothing on any host.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use multiproc::{Backend, MpiFlavour, Pool, PoolBuilder};

use super::{Scratch, all_gone, lab, unique};
use crate::support::DEADLINE;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn lab_dir() -> PathBuf {
    std::env::var_os("MULTIPROC_FAKEHOSTS").map_or_else(|| repo().join("target/fakehosts"), PathBuf::from)
}

/// Runs the ignored test `inner` of this binary on node0 and checks that
/// it passed.
fn on_node0(inner: &str) {
    let missing = (!Path::new("/run/netns/mpfh0").exists())
        .then(|| "the fake hosts are not up (.ci/fakehosts.sh up, as root)".to_owned());
    if !lab("fake hosts", missing) {
        return;
    }
    // One at a time: the network cut takes node2 away from the others.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(repo().join(".ci/fakehosts.sh"))
        .args(["run", "0"])
        .arg(exe)
        .args([
            "--exact",
            &format!("cluster::fakehosts::{inner}"),
            "--ignored",
            "--nocapture",
        ])
        .env("SLURM_CONF", lab_dir().join("slurm/slurm.conf"))
        .env("MP_FAKEHOSTS_INNER", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{inner} on node0:\n{text}"
    );
}

/// `false` unless run by [`on_node0`].
fn inner() -> bool {
    std::env::var_os("MP_FAKEHOSTS_INNER").is_some()
}

pub(crate) fn host_of(_: u32) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

fn hosts(pool: &Pool, n: u32) -> BTreeSet<String> {
    pool.map(host_of, 0..n).unwrap().into_iter().collect()
}

fn three() -> BTreeSet<String> {
    ["node0", "node1", "node2"].map(str::to_owned).into()
}

/// The children this process still has.
fn children() -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(c.split_whitespace().map(str::to_owned));
        }
    }
    out
}

/// Drops the pool and checks that nothing it started runs on any host:
/// no worker pid, no launcher child, no job.
fn teardown(pool: Pool, job: Option<&str>) {
    let pids = pool.pids();
    drop(pool);
    assert!(all_gone(&pids), "workers left: {pids:?}");
    let until = Instant::now() + DEADLINE;
    while !children().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(children(), Vec::<String>::new());
    if let Some(name) = job {
        let out = Command::new("squeue")
            .args(["-h", "-o", "%i", "-n", name])
            .output()
            .unwrap();
        assert!(out.stdout.trim_ascii().is_empty(), "job {name} left");
    }
}

fn base(n: usize, backend: Backend) -> PoolBuilder {
    Pool::builder()
        .processes(n)
        .backend(backend)
        .connect_timeout(DEADLINE)
        .listen_address("10.77.0.10:0".parse().unwrap())
}

#[test]
fn srun_across_three_hosts() {
    on_node0("inner_srun");
}

#[test]
#[ignore = "run on node0 by srun_across_three_hosts"]
fn inner_srun() {
    if !inner() {
        return;
    }
    let name = unique("fake-step");
    let pool = base(
        6,
        Backend::SlurmStep {
            args: vec!["--nodes=3".into(), "--overcommit".into(), format!("--job-name={name}")],
        },
    )
    .build()
    .unwrap();
    assert_eq!(hosts(&pool, 120), three());
    teardown(pool, Some(&name));
}

#[test]
fn sbatch_on_the_fake_hosts() {
    on_node0("inner_sbatch");
}

#[test]
#[ignore = "run on node0 by sbatch_on_the_fake_hosts"]
fn inner_sbatch() {
    if !inner() {
        return;
    }
    let name = unique("fake-batch");
    let pool = base(
        3,
        Backend::SlurmBatch {
            args: vec!["--overcommit".into(), format!("--job-name={name}")],
        },
    )
    .build()
    .unwrap();
    let until = Instant::now() + DEADLINE;
    while pool.pids().len() < 3 && Instant::now() < until {
        assert_eq!(pool.map(super::square, 0..8u64).unwrap()[7], 49);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pool.pids().len(), 3);
    assert!(!hosts(&pool, 30).is_empty());
    teardown(pool, Some(&name));
}

fn hostfile(dir: &Path, lines: &str) -> PathBuf {
    let f = dir.join("hosts");
    std::fs::write(&f, lines).unwrap();
    f
}

#[test]
fn openmpi_over_ssh() {
    on_node0("inner_openmpi");
}

#[test]
#[ignore = "run on node0 by openmpi_over_ssh"]
fn inner_openmpi() {
    if !inner() {
        return;
    }
    let scratch = Scratch::new("ompi-hosts");
    let hf = hostfile(scratch.path(), "node0 slots=2\nnode1 slots=2\nnode2 slots=2\n");
    let ssh = lab_dir().join("ssh/ssh");
    let args = [
        "--allow-run-as-root",
        "--mca",
        "plm_rsh_agent",
        ssh.to_str().unwrap(),
        "--mca",
        "oob_tcp_if_include",
        "10.77.0.0/24",
        "--mca",
        "btl",
        "self,tcp",
        "--mca",
        "btl_tcp_if_include",
        "10.77.0.0/24",
    ]
    .map(str::to_owned)
    .to_vec();
    let pool = base(
        6,
        Backend::Mpi {
            flavour: MpiFlavour::OpenMpi,
            hostfile: Some(hf),
            args,
        },
    )
    .build()
    .unwrap();
    assert_eq!(hosts(&pool, 120), three());
    teardown(pool, None);
}

#[test]
fn mpich_over_ssh() {
    on_node0("inner_mpich");
}

#[test]
#[ignore = "run on node0 by mpich_over_ssh"]
fn inner_mpich() {
    if !inner() {
        return;
    }
    let scratch = Scratch::new("mpich-hosts");
    let hf = hostfile(scratch.path(), "node0:2\nnode1:2\nnode2:2\n");
    let ssh = lab_dir().join("ssh/ssh");
    let args = ["-launcher", "ssh", "-launcher-exec", ssh.to_str().unwrap()]
        .map(str::to_owned)
        .to_vec();
    let pool = base(
        6,
        Backend::Mpi {
            flavour: MpiFlavour::Mpich,
            hostfile: Some(hf),
            args,
        },
    )
    .build()
    .unwrap();
    assert_eq!(hosts(&pool, 120), three());
    teardown(pool, None);
}

#[test]
fn a_hosts_network_cut_is_a_missed_heartbeat() {
    on_node0("inner_network_cut");
}

/// Records where it ran, then takes a while.
fn slow_host((dir, i): (PathBuf, u32)) -> (u32, String) {
    let h = host_of(i);
    let _ = std::fs::write(dir.join(format!("ran-on-{h}")), b"");
    std::thread::sleep(Duration::from_millis(30));
    (i, h)
}

#[test]
#[ignore = "run on node0 by a_hosts_network_cut_is_a_missed_heartbeat"]
fn inner_network_cut() {
    if !inner() {
        return;
    }
    let scratch = Scratch::new("cut");
    // One worker per host over ssh (a test launcher: the first N hosts),
    // the worker environment sent with ssh's SendEnv.
    let ssh = lab_dir().join("ssh/ssh");
    let script =
        r#"for h in $(printf 'node0\nnode1\nnode2\n' | head -n "$MULTIPROC_WORKERS"); do "$1" "$h" "$0" & done; wait"#;
    let pool = base(
        3,
        Backend::Command {
            program: "sh".into(),
            args: vec!["-c".into(), script.into(), "{exe}".into(), ssh.to_str().unwrap().into()],
        },
    )
    .heartbeat_timeout(Duration::from_secs(1))
    .build()
    .unwrap();
    assert_eq!(hosts(&pool, 30), three());
    let items: Vec<(PathBuf, u32)> = (0..300).map(|i| (scratch.path().to_owned(), i)).collect();
    let mut r = pool.tasks(slow_host).chunksize(1).map_async(items).unwrap();
    // Cut node2 once it is running tasks of this map.
    let marker = scratch.path().join("ran-on-node2");
    let until = Instant::now() + DEADLINE;
    while !marker.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(marker.exists());
    let link = |state: &str| {
        assert!(
            Command::new("ip")
                .args(["-n", "mpfhsw", "link", "set", "mpfhv2", state])
                .status()
                .unwrap()
                .success()
        );
    };
    link("down");
    let got = r.get_timeout(DEADLINE);
    link("up");
    let got = got.unwrap();
    // No task lost: every item answered once, in order.
    assert_eq!(
        got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..300).collect::<Vec<u32>>()
    );
    // node2's worker was lost and replaced (the launcher's first host).
    let now = hosts(&pool, 30);
    assert!(!now.contains("node2"), "{now:?}");
    teardown(pool, None);
}
