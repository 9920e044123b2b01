//! Start methods.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{Error, ErrorKind};

/// How a child process is created.
///
/// | method | how | cost here | multithreaded parent | capturing closures |
/// |---|---|---|---|---|
/// | [`Spawn`](StartMethod::Spawn) | re-executes the running binary | ≈ 1 ms, independent of the parent's size | safe | no |
/// | [`Fork`](StartMethod::Fork) | `fork()`s the parent | ≈ 0.2 ms in a small parent, ≈ 30 µs more per MiB of touched memory | refused unless opted in | yes |
/// | [`ForkServer`](StartMethod::ForkServer) | a server process forks on request | a fork of a small process, independent of the parent's size | safe | no |
///
/// The default is [`Spawn`](StartMethod::Spawn): it works everywhere, in any
/// parent, and a child's `getppid()` names its parent (under the fork
/// server it names the server). See [`set_start_method`](crate::set_start_method).
///
/// Names parse as Python spells them: `"spawn".parse::<StartMethod>()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StartMethod {
    /// Start a fresh copy of the running executable, which runs the target
    /// from the library's entry point (never `main`). Arguments and results
    /// are serialised.
    #[default]
    Spawn,
    /// Fork the calling process; the child runs the target in a copy of the
    /// parent's memory and leaves through `_exit`. POSIX only.
    Fork,
    /// Ask a fork server to fork the child: a small, single-threaded copy of
    /// the executable, started on first use, that forks on request. Starts
    /// cost a fork of a small process whatever this process's size or
    /// thread count; arguments and results are serialised as for spawn.
    ForkServer,
}

impl StartMethod {
    /// The name Python uses for this method.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
            StartMethod::ForkServer => "forkserver",
        }
    }

    /// Every method available on this platform, the default first: all
    /// three on Unix, only [`Spawn`](StartMethod::Spawn) on Windows (which
    /// has no `fork`), as Python's `get_all_start_methods()`.
    #[doc(alias = "get_all_start_methods")]
    pub fn all() -> &'static [StartMethod] {
        if cfg!(windows) {
            &[StartMethod::Spawn]
        } else {
            &[StartMethod::Spawn, StartMethod::Fork, StartMethod::ForkServer]
        }
    }

    /// `Ok` if this platform has the method; otherwise the
    /// [`ErrorKind::Unsupported`] error a start with it fails with.
    pub(crate) fn check_available(self) -> Result<(), Error> {
        if StartMethod::all().contains(&self) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the {self} start method does not exist on this platform (it needs fork()); use StartMethod::Spawn"
            ),
        ))
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StartMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<StartMethod, Error> {
        StartMethod::all()
            .iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "cannot find start method {s:?}; available: {}",
                        StartMethod::all()
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }
}
