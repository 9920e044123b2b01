//! The crate's error type.
//!
//! # Design
//!
//! One opaque [`Error`] with a public, non-exhaustive [`ErrorKind`], in the
//! manner of `std::io::Error` and rayon's `ThreadPoolBuildError`: callers
//! match on [`Error::kind`] or the `is_*` helpers, never on message text.
//! An error from a child carries what the child knew: the panic (message,
//! location, backtrace text) as a serialisable [`RemotePanic`], or the
//! child's [`ExitStatus`]. The operating-system error stays available
//! through [`std::error::Error::source`] and is never repeated in the
//! message. The type is hand-written so that its `Display` wording stays
//! under review and no proc-macro enters the build.

use std::{borrow::Cow, fmt, io};

use serde::{Deserialize, Serialize};

pub(crate) mod acquire;
pub(crate) mod channel;

pub use self::acquire::AcquireError;
use crate::process::status::ExitStatus;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An operating-system call failed; [`source`](std::error::Error::source)
    /// holds the `io::Error`.
    Io,
    /// The operation is not available here (platform, start method, or a
    /// capturing closure under a start method that cannot carry it).
    Unsupported,
    /// The `fork` start method was asked for while this process runs more
    /// than one thread. See [`ProcessBuilder::allow_fork_with_threads`](crate::ProcessBuilder::allow_fork_with_threads).
    ForkWithThreads,
    /// A value (argument or result) could not be serialised.
    Serialize,
    /// A value (argument or result) could not be deserialised.
    Deserialize,
    /// The child's target panicked; see [`Error::panic`].
    ChildPanicked,
    /// The child exited with an exit code before delivering a result (for
    /// example through `std::process::exit`); see [`Error::exit_status`].
    ChildExited,
    /// The child was killed by a signal; see [`Error::exit_status`].
    ChildKilled,
    /// The child could not be started, or died or stalled before it reached
    /// the library's entry point.
    Bootstrap,
    /// A deadline passed before the operation could complete. The operation
    /// may be retried.
    Timeout,
    /// The call does not fit the object's state (starting a process twice,
    /// joining before starting, closing a running process, using a closed
    /// queue, ...).
    InvalidState,
    /// The other end of a channel is gone: every process holding it closed
    /// it or died (Python's `EOFError`).
    Disconnected,
    /// Bytes from a peer broke the channel's framing (a message cut short by
    /// a writer's death, a corrupted header, a message over the reader's
    /// size limit). The channel is unusable afterwards. Also the error of
    /// the tasks a pool worker held when it sent a message that answers
    /// none of them (the worker is replaced).
    Protocol,
    /// A `Listener` or `Client` peer did
    /// not prove it knows the authentication key (Python's
    /// `AuthenticationError`).
    Authentication,
    /// A message did not fit the caller's buffer; [`Error::message_bytes`]
    /// holds the whole message, which was consumed (Python's
    /// `BufferTooShort`).
    BufferTooShort,
    /// An argument is out of its range (an offset past a buffer's end, a
    /// zero-sized queue bound, ...).
    InvalidInput,
    /// A process or thread died holding a [`Lock`](crate::Lock) or
    /// [`RLock`](crate::RLock), or semaphore permits that an acquisition
    /// reclaimed. The lock was acquired all the same: see
    /// [`AcquireError::OwnerDied`](crate::AcquireError::OwnerDied), which
    /// carries the guard. The data it protects may be half updated.
    OwnerDied,
    /// A [`Barrier`](crate::Barrier) is broken: aborted, reset while this
    /// party waited, timed out, or a party died while waiting (Python's
    /// `BrokenBarrierError`).
    BrokenBarrier,
    /// A pool task will never run or finish: the pool was terminated or
    /// dropped, or the task was cancelled (Python's `CancelledError`).
    Cancelled,
    /// A pool task ran past the pool's task timeout: its worker was killed
    /// and replaced. Unlike [`Timeout`](ErrorKind::Timeout) (a wait that
    /// may be retried), this is the task's final outcome.
    TaskTimeout,
}

/// A panic that happened in another process, as that process saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotePanic {
    message: String,
    location: Option<Location>,
    backtrace: Option<String>,
}

/// Where a remote panic happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Source file, as `std::panic::Location::file` gives it.
    pub file: String,
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1.
    pub column: u32,
}

impl RemotePanic {
    pub(crate) fn new(message: String, location: Option<Location>, backtrace: Option<String>) -> RemotePanic {
        RemotePanic {
            message,
            location,
            backtrace,
        }
    }

    /// The panic message (`"explicit panic"` style text, or the payload if it
    /// was a string).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where the panic was raised, when the child's panic hook saw it.
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }

    /// The child's backtrace at the panic, as text.
    pub fn backtrace(&self) -> Option<&str> {
        self.backtrace.as_deref()
    }
}

impl fmt::Display for RemotePanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.message)?;
        if let Some(loc) = &self.location {
            write!(f, " at {loc}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The error type of this crate. See [`ErrorKind`] for the cases.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    process: Option<(String, Option<u32>)>,
    panic: Option<RemotePanic>,
    status: Option<ExitStatus>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    bytes: Option<Vec<u8>>,
}

impl Error {
    #[cold]
    pub(crate) fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                process: None,
                panic: None,
                status: None,
                source: None,
                bytes: None,
            }),
        }
    }

    #[cold]
    pub(crate) fn io(message: impl Into<Cow<'static, str>>, source: io::Error) -> Error {
        // A platform without the call (the stub backend, an old kernel)
        // is not an I/O failure.
        let kind = match source.kind() {
            io::ErrorKind::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Io,
        };
        Error::new(kind, message).with_source(source)
    }

    /// A copy for each task of a failed chunk: kind, message, process,
    /// panic and status (the OS error source is not cloneable and is left
    /// out).
    pub(crate) fn duplicate(&self) -> Error {
        Error {
            inner: Box::new(Inner {
                kind: self.inner.kind,
                message: self.inner.message.clone(),
                process: self.inner.process.clone(),
                panic: self.inner.panic.clone(),
                status: self.inner.status,
                source: None,
                bytes: None,
            }),
        }
    }

    pub(crate) fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.inner.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_process(mut self, name: &str, pid: Option<u32>) -> Error {
        self.inner.process = Some((name.to_owned(), pid));
        self
    }

    pub(crate) fn with_panic(mut self, panic: RemotePanic) -> Error {
        self.inner.panic = Some(panic);
        self
    }

    pub(crate) fn with_bytes(mut self, bytes: Vec<u8>) -> Error {
        self.inner.bytes = Some(bytes);
        self
    }

    /// The message that did not fit, for [`ErrorKind::BufferTooShort`].
    pub fn message_bytes(&self) -> Option<&[u8]> {
        self.inner.bytes.as_deref()
    }

    /// `true` for [`ErrorKind::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        self.kind() == ErrorKind::Disconnected
    }

    pub(crate) fn with_status(mut self, status: ExitStatus) -> Error {
        self.inner.status = Some(status);
        self
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The panic of the child, for [`ErrorKind::ChildPanicked`].
    pub fn panic(&self) -> Option<&RemotePanic> {
        self.inner.panic.as_ref()
    }

    /// How the child ended, when it ended (always set for
    /// [`ErrorKind::ChildExited`] and [`ErrorKind::ChildKilled`]).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.status
    }

    /// The pid of the process the error concerns, if any.
    pub fn pid(&self) -> Option<u32> {
        self.inner.process.as_ref().and_then(|p| p.1)
    }

    /// `true` for [`ErrorKind::Timeout`]: the operation can be retried.
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// `true` for [`ErrorKind::ChildPanicked`].
    pub fn is_panic(&self) -> bool {
        self.kind() == ErrorKind::ChildPanicked
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, pid)) = &self.inner.process {
            match pid {
                Some(pid) => write!(f, "process {name} (pid {pid}): ")?,
                None => write!(f, "process {name}: ")?,
            }
        }
        f.write_str(&self.inner.message)?;
        if let Some(panic) = &self.inner.panic {
            write!(f, ": panicked at {panic}")?;
        }
        Ok(())
    }
}

/// Short by default: kind, message, process, exit status, the panic's
/// message and location, and the source. The remote backtrace, which can
/// run to kilobytes, is printed only by the alternate form (`{:#?}`) and
/// is always available through [`RemotePanic::backtrace`].
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alternate = f.alternate();
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind).field("message", &self.inner.message);
        if let Some((name, pid)) = &self.inner.process {
            match pid {
                Some(pid) => d.field("process", &format_args!("{name} (pid {pid})")),
                None => d.field("process", name),
            };
        }
        if let Some(s) = &self.inner.status {
            d.field("status", &format_args!("{s}"));
        }
        if let Some(p) = &self.inner.panic {
            d.field("panic", &format_args!("{p}"));
            if let Some(bt) = p.backtrace().filter(|_| alternate) {
                d.field("backtrace", &format_args!("\n{bt}"));
            }
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

/// An I/O error met in the caller's own code, so that `?` works on
/// `io::Result` in functions returning [`Result`]: kind
/// [`ErrorKind::Io`], the `io::Error` as its
/// [`source`](std::error::Error::source) (shown by `Debug`, and by error
/// reporters that walk the chain; `Display` does not repeat it).
///
/// ```
/// fn read_config() -> multiproc::Result<String> {
///     Ok(std::fs::read_to_string("/nonexistent/config")?)
/// }
/// let e = read_config().unwrap_err();
/// assert_eq!(e.kind(), multiproc::ErrorKind::Io);
/// assert!(std::error::Error::source(&e).is_some());
/// ```
impl From<io::Error> for Error {
    #[cold]
    fn from(e: io::Error) -> Error {
        Error::new(ErrorKind::Io, "i/o error").with_source(e)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.kind() {
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::InvalidState | ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::Disconnected => io::ErrorKind::UnexpectedEof,
            ErrorKind::Authentication => io::ErrorKind::PermissionDenied,
            ErrorKind::Protocol => io::ErrorKind::InvalidData,
            ErrorKind::Serialize | ErrorKind::Deserialize => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
