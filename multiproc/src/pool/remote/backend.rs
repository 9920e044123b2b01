//! [`Backend`]: where a pool's workers run, chosen in code or from the
//! environment.

use std::{net::SocketAddr, path::PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Where a [`Pool`](crate::Pool)'s (or an [`Executor`](crate::Executor)'s)
/// workers run.
///
/// Every backend but [`Local`](Backend::Local) starts the workers as
/// copies of this same executable through a launcher; each worker connects
/// back over TCP to a listener the pool opened, proves the pool's key (32
/// random bytes, handed over in the environment, never in argv) by an
/// HMAC challenge before anything is deserialized, and proves it is the
/// same build (a stale binary is refused with an error that says so).
/// Functions are named by the same code offsets as for local workers.
/// A task argument holding a local-only object (a [`Queue`](crate::Queue),
/// a lock, [`SharedMemory`](crate::SharedMemory), a descriptor, a
/// [`Connection`](crate::Connection) made by [`pipe`](crate::pipe)) fails
/// at submission with [`ErrorKind::Unsupported`]; use
/// [`Listener`](crate::Listener)/[`Client`](crate::Client) over TCP instead.
///
/// [`PoolBuilder`](crate::PoolBuilder) reads [`Backend::from_env`] unless
/// [`PoolBuilder::backend`](crate::PoolBuilder::backend) says otherwise, so
/// an unchanged program moves to a cluster:
///
/// | `MULTIPROC_BACKEND` | backend |
/// |---|---|
/// | unset, `local` | [`Backend::Local`] |
/// | `tcp` | [`Backend::Tcp`] |
/// | `slurm` | [`Backend::SlurmStep`], extra `srun` arguments from `MULTIPROC_LAUNCHER_ARGS` |
/// | `slurm-batch` | [`Backend::SlurmBatch`], extra `sbatch` arguments from `MULTIPROC_LAUNCHER_ARGS` |
/// | `mpi`, `openmpi` | [`Backend::Mpi`] with [`MpiFlavour::OpenMpi`]; `MULTIPROC_HOSTFILE`, `MULTIPROC_LAUNCHER_ARGS` |
/// | `mpich` | [`Backend::Mpi`] with [`MpiFlavour::Mpich`]; likewise |
/// | `command` | [`Backend::Command`]: `MULTIPROC_LAUNCHER` (a program) and `MULTIPROC_LAUNCHER_ARGS` |
///
/// `MULTIPROC_LISTEN=ip[:port]` sets the listening address (see
/// [`PoolBuilder::listen_address`](crate::PoolBuilder::listen_address)).
/// Arguments in `MULTIPROC_LAUNCHER_ARGS` are split at whitespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// Local worker processes over private socket pairs (the default).
    #[default]
    Local,
    /// Local processes of this executable that connect back over TCP on
    /// loopback: the remote machinery on one host (its failure handling,
    /// a trial run before a cluster).
    Tcp,
    /// Inside a Slurm allocation (`salloc`, `sbatch`): the workers are one
    /// `srun` step of N tasks of this executable
    /// (`srun --ntasks=N --kill-on-bad-exit=0 ARGS... EXE`); a replacement is
    /// a step of one task.
    SlurmStep {
        /// Extra `srun` arguments (`--nodes=4`, `--cpus-per-task=2`, ...).
        args: Vec<String>,
    },
    /// From a login node: worker jobs queued with `sbatch` (a job array of
    /// N one-task jobs, `sbatch --parsable --array=0-(N-1) --ntasks=1
    /// ARGS... --wrap EXE`), which join the pool as they start, as
    /// dask-jobqueue's do: `build` returns once the first has joined, and
    /// the pool works with the workers it has. The jobs are cancelled
    /// (`scancel`) when the pool is closed, dropped or fails to start.
    /// The key travels in a file of mode 0600 (Slurm keeps a batch job's
    /// environment in its state directory) under
    /// `MULTIPROC_KEY_DIR`, else `$HOME/.multiproc`, which must be on a
    /// filesystem the nodes share.
    SlurmBatch {
        /// Extra `sbatch` arguments (`--partition=short`, `--time=30:00`, ...).
        args: Vec<String>,
    },
    /// An MPI launcher used only as a launcher (no libmpi):
    /// `mpirun -np N [--hostfile F] -x VAR... ARGS... EXE` for Open MPI,
    /// `mpiexec -n N [-f F] -genvlist VAR,... ARGS... EXE` for MPICH
    /// (Hydra), over ssh with a host file or inside an allocation.
    Mpi {
        /// Which launcher.
        flavour: MpiFlavour,
        /// A host file, in the launcher's own format.
        hostfile: Option<PathBuf>,
        /// Extra launcher arguments (`--oversubscribe`, `--mca ...`).
        args: Vec<String>,
    },
    /// Any launcher command: `program` runs with `args` (where `{n}` is
    /// replaced by the number of workers to start and `{exe}` by this
    /// executable's path) and the worker environment (also
    /// `MULTIPROC_WORKERS=N`); it must start that many copies of
    /// `{exe}` with that environment and stay until they exit, as `srun`
    /// and `mpirun` do.
    Command {
        /// The launcher.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// Which MPI launcher a [`Backend::Mpi`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MpiFlavour {
    /// Open MPI's `mpirun`.
    OpenMpi,
    /// MPICH's `mpiexec.hydra` (Hydra).
    Mpich,
}

/// The variable that selects the backend.
pub(crate) const BACKEND_VAR: &str = "MULTIPROC_BACKEND";
/// The variable with the listening address.
pub(crate) const LISTEN_VAR: &str = "MULTIPROC_LISTEN";

impl Backend {
    /// The backend the environment names (see the table above);
    /// [`Backend::Local`] when `MULTIPROC_BACKEND` is unset.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// // Nothing set in this doctest's environment:
    /// assert_eq!(multiproc::Backend::from_env()?, multiproc::Backend::Local);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a value it does not know, or
    /// `command` without `MULTIPROC_LAUNCHER`.
    pub fn from_env() -> Result<Backend> {
        let args = || -> Vec<String> {
            std::env::var("MULTIPROC_LAUNCHER_ARGS")
                .map(|a| a.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        match std::env::var(BACKEND_VAR).ok().as_deref().map(str::trim) {
            None | Some("" | "local") => Ok(Backend::Local),
            Some("tcp") => Ok(Backend::Tcp),
            Some("slurm") => Ok(Backend::SlurmStep { args: args() }),
            Some("slurm-batch") => Ok(Backend::SlurmBatch { args: args() }),
            Some(f @ ("mpi" | "openmpi" | "mpich")) => Ok(Backend::Mpi {
                flavour: if f == "mpich" {
                    MpiFlavour::Mpich
                } else {
                    MpiFlavour::OpenMpi
                },
                hostfile: std::env::var_os("MULTIPROC_HOSTFILE").map(PathBuf::from),
                args: args(),
            }),
            Some("command") => match std::env::var_os("MULTIPROC_LAUNCHER") {
                Some(p) => Ok(Backend::Command {
                    program: p.into(),
                    args: args(),
                }),
                None => Err(Error::new(
                    ErrorKind::InvalidInput,
                    "MULTIPROC_BACKEND=command needs MULTIPROC_LAUNCHER (the launcher program)",
                )),
            },
            Some(other) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "MULTIPROC_BACKEND={other:?} names no backend (local, tcp, slurm, slurm-batch, mpi, openmpi, mpich, \
                     command)"
                ),
            )),
        }
    }

    /// `true` for a backend whose workers connect over TCP.
    pub(crate) fn is_remote(&self) -> bool {
        !matches!(self, Backend::Local)
    }
}

/// The listening address from `MULTIPROC_LISTEN`, if set.
pub(crate) fn listen_from_env() -> Result<Option<SocketAddr>> {
    let Ok(v) = std::env::var(LISTEN_VAR) else {
        return Ok(None);
    };
    let v = v.trim();
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Ok(Some(a));
    }
    v.parse::<std::net::IpAddr>()
        .map(|ip| Some(SocketAddr::new(ip, 0)))
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{LISTEN_VAR}={v:?} is not an address (ip or ip:port)"),
            )
        })
}
