//! Remote-worker rows (issue 19): pools whose workers connect back over
//! TCP, next to the local pool and the raw floors, in the same run. On
//! loopback (`tcp`: the TCP backend's local processes) everywhere; with a
//! Slurm named by `SLURM_CONF`, also the `srun` step.
//!
//! | row | multiproc | baseline |
//! |---|---|---|
//! | `cluster/ready_6/tcp` | `Pool(6)` over TCP built (6 processes connected, authenticated, admitted), then dropped (not timed) | floor: 6 bare re-execs of this binary that exit at once, started and waited for |
//! | `cluster/ready_6/srun` | the same with `Backend::SlurmStep` | floor: `srun -n6 --overcommit` of this binary exiting at once |
//! | `cluster/map_10k_chunk1/tcp`, `cluster/map_100k_auto/tcp` | `Pool(6)` over TCP, `map` of `x * x`, chunk size 1 or automatic; tasks/s | this library's local `Pool(6)`, the same map |
//! | `cluster/map_1mib/tcp` | `Pool(1)` over TCP, `map` of 1 MiB `Vec<u8>` arguments; GB/s | floor: the same bytes written on a loopback TCP stream to a thread that reads them |
//!
//! With `MULTIPROC_BACKEND` set (say `slurm`, with
//! `MULTIPROC_LAUNCHER_ARGS="--nodes=3 --overcommit"`, run on a fake
//! host), the map and 1 MiB rows use that backend instead and end in
//! `/env`, and the `srun` rows take those launcher arguments too: the
//! issue's fake-cluster numbers.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use multiproc::{Backend, Pool};

use crate::{
    cli::Options,
    floors::FLOOR_ENV,
    harness::{Bench, Impl, Unit},
    rows::{Outcome, run_benches},
};

const MIB: usize = 1 << 20;

/// Runs the cluster rows `opts` selects.
pub(crate) fn run_all(opts: &Options, out: &mut Outcome) {
    run_ready(opts, out);
    run_map(opts, out);
    run_big(opts, out);
}

fn square(x: u64) -> u64 {
    x * x
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

/// The remote backend of the map rows and their name's last part.
fn remote_backend() -> (Backend, &'static str) {
    match Backend::from_env() {
        Ok(Backend::Local) | Err(_) => (Backend::Tcp, "tcp"),
        Ok(b) => (b, "env"),
    }
}

/// Extra `srun` arguments from `MULTIPROC_LAUNCHER_ARGS`.
fn srun_args() -> Vec<String> {
    let mut a = vec!["--overcommit".to_owned()];
    if let Ok(more) = std::env::var("MULTIPROC_LAUNCHER_ARGS") {
        a.extend(more.split_whitespace().map(str::to_owned));
    }
    a
}

fn ready(backend: Backend) -> Result<Duration, String> {
    let t = Instant::now();
    let pool = Pool::builder()
        .processes(6)
        .backend(backend)
        .build()
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    drop(pool);
    Ok(took)
}

/// `cmd` with the floor's "exit at once", waited for.
fn floor(mut cmd: Command) -> Result<Duration, String> {
    let t = Instant::now();
    let status = cmd
        .env(FLOOR_ENV, "exit")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("floor command failed: {status}"));
    }
    Ok(t.elapsed())
}

fn run_ready(opts: &Options, out: &mut Outcome) {
    let exe = std::env::current_exe().expect("this executable");
    let mut benches = Vec::new();
    if opts.wants("cluster/ready_6/tcp") {
        benches.push(Bench::new(
            "cluster/ready_6/tcp",
            Impl::Multiproc,
            "Pool(6) over TCP (Backend::Tcp) built and ready",
            || ready(Backend::Tcp),
        ));
        let exe = exe.clone();
        benches.push(Bench::new(
            "cluster/ready_6/tcp",
            Impl::Floor,
            "6 bare re-execs of this binary, exiting at once, waited for",
            move || {
                let t = Instant::now();
                let mut kids = Vec::new();
                for _ in 0..6 {
                    kids.push(
                        Command::new(&exe)
                            .env(FLOOR_ENV, "exit")
                            .stdin(Stdio::null())
                            .spawn()
                            .map_err(|e| e.to_string())?,
                    );
                }
                for mut k in kids {
                    k.wait().map_err(|e| e.to_string())?;
                }
                Ok(t.elapsed())
            },
        ));
    }
    let slurm = std::env::var_os("SLURM_CONF").is_some()
        && Command::new("sinfo")
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if opts.wants("cluster/ready_6/srun") {
        if slurm {
            benches.push(Bench::new(
                "cluster/ready_6/srun",
                Impl::Multiproc,
                "Pool(6) as one srun step (Backend::SlurmStep, --overcommit) built and ready",
                || ready(Backend::SlurmStep { args: srun_args() }),
            ));
            benches.push(Bench::new(
                "cluster/ready_6/srun",
                Impl::Floor,
                "srun -n6 --overcommit of this binary exiting at once",
                move || {
                    let mut c = Command::new("srun");
                    c.arg("-n6").args(srun_args()).arg(&exe);
                    floor(c)
                },
            ));
        } else {
            eprintln!("multiproc-bench: cluster/ready_6/srun skipped: no Slurm (SLURM_CONF unset or down)");
        }
    }
    run_benches(out, opts.counts(10), benches);
}

fn run_map(opts: &Options, out: &mut Outcome) {
    let rows: Vec<(String, usize, usize)> = [("map_10k_chunk1", 10_000, 1), ("map_100k_auto", 100_000, 0)]
        .into_iter()
        .map(|(stem, n, chunk)| {
            (
                format!("cluster/{stem}/{}", remote_backend().1),
                if opts.quick { n / 10 } else { n },
                chunk,
            )
        })
        .filter(|(name, _, _)| opts.wants(name))
        .collect();
    if rows.is_empty() {
        return;
    }
    let pools = Pool::builder()
        .processes(6)
        .backend(remote_backend().0)
        .build()
        .and_then(|remote| {
            Pool::builder()
                .processes(6)
                .backend(Backend::Local)
                .build()
                .map(|local| (remote, local))
        });
    let (remote, local) = match pools {
        Ok(p) => p,
        Err(e) => {
            out.failures.push(format!("cluster map rows: {e}"));
            return;
        }
    };
    for (name, n, chunk) in rows {
        let one = move |pool: &Pool| -> Result<Duration, String> {
            let t = Instant::now();
            let r = if chunk == 0 {
                pool.map(square, 0..n as u64)
            } else {
                pool.map_chunked(square, 0..n as u64, chunk)
            }
            .map_err(|e| e.to_string())?;
            let took = t.elapsed();
            if r.len() != n || r[n - 1] != square(n as u64 - 1) {
                return Err("wrong map result".into());
            }
            Ok(took)
        };
        let how = if chunk == 0 {
            "automatic chunk size".to_owned()
        } else {
            format!("chunksize {chunk}")
        };
        let (r, l) = (&remote, &local);
        let benches = vec![
            Bench::new(
                name.clone(),
                Impl::Multiproc,
                format!("Pool(6) over TCP ({}): map of {n} x*x tasks, {how}", remote_backend().1),
                move || one(r),
            )
            .per(n as u64, Unit::Msgs),
            Bench::new(
                name.clone(),
                Impl::OwnLocalPool,
                format!("local Pool(6): map of {n} x*x tasks, {how}"),
                move || one(l),
            )
            .per(n as u64, Unit::Msgs),
        ];
        run_benches(out, opts.counts(10), benches);
    }
}

fn run_big(opts: &Options, out: &mut Outcome) {
    let name = format!("cluster/map_1mib/{}", remote_backend().1);
    let name = name.as_str();
    if !opts.wants(name) {
        return;
    }
    let count = if opts.quick { 8 } else { 64 };
    let pool = match Pool::builder().processes(1).backend(remote_backend().0).build() {
        Ok(p) => p,
        Err(e) => {
            out.failures.push(format!("{name}: {e}"));
            return;
        }
    };
    let p = &pool;
    let benches = vec![
        Bench::new(
            name,
            Impl::Multiproc,
            format!("Pool(1) over TCP: map of {count} x 1 MiB Vec<u8> arguments"),
            move || {
                let args: Vec<Vec<u8>> = (0..count).map(|k| vec![k as u8; MIB]).collect();
                let t = Instant::now();
                let r = p.map(len_of, args).map_err(|e| e.to_string())?;
                let took = t.elapsed();
                if r.iter().any(|&l| l != MIB) {
                    return Err("wrong lengths".into());
                }
                Ok(took)
            },
        )
        .per(count as u64, Unit::Bytes(MIB as u64)),
        Bench::new(
            name,
            Impl::Floor,
            format!("{count} x 1 MiB over a loopback TCP stream to a reading thread"),
            move || raw_tcp(count),
        )
        .per(count as u64, Unit::Bytes(MIB as u64)),
    ];
    run_benches(out, opts.counts(10), benches);
}

/// `count` fresh 1 MiB buffers written on a loopback TCP stream, read by
/// a thread that answers once it has them all.
fn raw_tcp(count: usize) -> Result<Duration, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; MIB];
        for _ in 0..count {
            s.read_exact(&mut buf)?;
        }
        s.write_all(b"k")
    });
    let bufs: Vec<Vec<u8>> = (0..count).map(|k| vec![k as u8; MIB]).collect();
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let t = Instant::now();
    for b in bufs {
        s.write_all(&b).map_err(|e| e.to_string())?;
    }
    let mut k = [0u8; 1];
    s.read_exact(&mut k).map_err(|e| e.to_string())?;
    let took = t.elapsed();
    reader
        .join()
        .map_err(|_| "reader panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(took)
}
