//! How a process ended.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sys::RawStatus;

use crate::sys::signal_name;
pub(crate) use crate::sys::{SIGKILL, SIGTERM};

/// How a child process ended: Python's `exitcode`, structured.
///
/// ```
/// use multiproc::ExitStatus;
/// assert_eq!(ExitStatus::Exited(7).exitcode(), 7);
/// assert_eq!(ExitStatus::Signaled(9).exitcode(), -9);
/// assert_eq!(ExitStatus::Signaled(15).to_string(), "signal 15 (SIGTERM)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitStatus {
    /// The process exited with this code (0..=255).
    Exited(i32),
    /// A signal ended the process.
    Signaled(i32),
    /// The status was lost: something else reaped the child (for example
    /// this process set `SIGCHLD` to `SIG_IGN`).
    Unknown,
}

impl ExitStatus {
    pub(crate) fn from_raw(raw: RawStatus) -> ExitStatus {
        match raw {
            RawStatus::Exited(c) => ExitStatus::Exited(c),
            RawStatus::Signaled(s) => ExitStatus::Signaled(s),
            RawStatus::Unknown => ExitStatus::Unknown,
        }
    }

    /// `true` for a zero exit code.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The exit code, if the process exited.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(c),
            _ => None,
        }
    }

    /// The signal that ended the process, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Signaled(s) => Some(s),
            _ => None,
        }
    }

    /// Python's integer convention: the code, or minus the signal number;
    /// 255 when unknown (as CPython reports a child it lost track of).
    pub fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => -s,
            ExitStatus::Unknown => 255,
        }
    }

    /// Python's `repr` form: `0`, `7` or `-SIGTERM`.
    pub(crate) fn exitcode_name(self) -> String {
        match self {
            ExitStatus::Signaled(s) => match signal_name(s) {
                Some(name) => format!("-{name}"),
                None => format!("-{s}"),
            },
            other => other.exitcode().to_string(),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(c) => write!(f, "exit code {c}"),
            ExitStatus::Signaled(s) => match signal_name(s) {
                Some(name) => write!(f, "signal {s} ({name})"),
                None => write!(f, "signal {s}"),
            },
            ExitStatus::Unknown => f.write_str("an unknown status"),
        }
    }
}
