//! Per-operation errors of the channels, in the manner of
//! crossbeam-channel: a failed send hands the value back, the variants say
//! what happened (`Full`, `Timeout`, `Empty`, `Disconnected`), and anything
//! else (a value that does not serialise, a corrupted stream, an I/O error,
//! a closed queue) is a `Failed` variant carrying the crate's [`Error`].
//! `Debug` does not require `T: Debug`. Each converts into [`Error`] so
//! that `?` works in a function returning [`crate::Result`].

use std::fmt;

use super::{Error, ErrorKind};

macro_rules! value_error {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal, $kind:ident;)* }) => {
        $(#[$doc])*
        pub enum $name<T> {
            $($(#[$vdoc])* $variant(T),)*
            /// The operation failed for another reason (the value did not
            /// serialise, the channel is closed or broken, an I/O error); the
            /// value is handed back with the error.
            Failed(T, Error),
        }

        impl<T> $name<T> {
            /// The value that was not sent.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$variant(v) => v,)*
                    $name::Failed(v, _) => v,
                }
            }

            /// The error without the value.
            pub fn into_error(self) -> Error {
                match self {
                    $($name::$variant(_) => Error::new(ErrorKind::$kind, $text),)*
                    $name::Failed(_, e) => e,
                }
            }

            /// The crate-level kind of this error.
            pub fn kind(&self) -> ErrorKind {
                match self {
                    $($name::$variant(_) => ErrorKind::$kind,)*
                    $name::Failed(_, e) => e.kind(),
                }
            }

            /// `true` when the other end is gone.
            pub fn is_disconnected(&self) -> bool {
                self.kind() == ErrorKind::Disconnected
            }

            fn text(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => $text,)*
                    $name::Failed(..) => "",
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => write!(f, "{}(..)", stringify!($variant)),)*
                    $name::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::Failed(_, e) => fmt::Display::fmt(e, f),
                    other => f.write_str(other.text()),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed(_, e) => Some(e),
                    _ => None,
                }
            }
        }

        impl<T> From<$name<T>> for Error {
            fn from(e: $name<T>) -> Error {
                e.into_error()
            }
        }
    };
}

value_error! {
    /// Why a blocking send failed.
    SendError {
        /// Every receiver is gone.
        Disconnected => "sending on a disconnected channel", Disconnected;
    }
}

value_error! {
    /// Why a non-blocking send failed.
    TrySendError {
        /// The channel is at its bound.
        Full => "sending on a full channel", Timeout;
        /// Every receiver is gone.
        Disconnected => "sending on a disconnected channel", Disconnected;
    }
}

value_error! {
    /// Why a send with a timeout failed.
    SendTimeoutError {
        /// The channel stayed at its bound until the deadline.
        Timeout => "timed out waiting on a full channel", Timeout;
        /// Every receiver is gone.
        Disconnected => "sending on a disconnected channel", Disconnected;
    }
}

impl<T> TrySendError<T> {
    /// `true` when the channel was at its bound.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// `true` when the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }
}

macro_rules! recv_error {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal, $kind:ident;)* }) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// The operation failed for another reason (a message that did
            /// not deserialise, a corrupted stream, a closed channel, an I/O
            /// error).
            Failed(Error),
        }

        impl $name {
            /// The error as the crate's [`Error`].
            pub fn into_error(self) -> Error {
                match self {
                    $($name::$variant => Error::new(ErrorKind::$kind, $text),)*
                    $name::Failed(e) => e,
                }
            }

            /// The crate-level kind of this error.
            pub fn kind(&self) -> ErrorKind {
                match self {
                    $($name::$variant => ErrorKind::$kind,)*
                    $name::Failed(e) => e.kind(),
                }
            }

            /// `true` when the other end is gone and nothing is left to
            /// receive (Python's `EOFError`).
            pub fn is_disconnected(&self) -> bool {
                self.kind() == ErrorKind::Disconnected
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant => f.write_str($text),)*
                    $name::Failed(e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed(e) => Some(e),
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }

        impl From<$name> for Error {
            fn from(e: $name) -> Error {
                e.into_error()
            }
        }
    };
}

recv_error! {
    /// Why a blocking receive failed.
    RecvError {
        /// The other end is gone and no message is left.
        Disconnected => "receiving on a disconnected channel", Disconnected;
    }
}

recv_error! {
    /// Why a non-blocking receive failed.
    TryRecvError {
        /// No message is waiting.
        Empty => "receiving on an empty channel", Timeout;
        /// The other end is gone and no message is left.
        Disconnected => "receiving on a disconnected channel", Disconnected;
    }
}

recv_error! {
    /// Why a receive with a timeout failed.
    RecvTimeoutError {
        /// No message arrived before the deadline.
        Timeout => "timed out waiting on an empty channel", Timeout;
        /// The other end is gone and no message is left.
        Disconnected => "receiving on a disconnected channel", Disconnected;
    }
}

impl TryRecvError {
    /// `true` when no message was waiting.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }
}

impl RecvTimeoutError {
    /// `true` when the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }
}

/// What a receive with an optional deadline ended with, inside the crate.
#[derive(Debug)]
pub(crate) enum RecvFailure {
    Timeout,
    Disconnected,
    Failed(Error),
}

impl From<RecvFailure> for RecvError {
    fn from(f: RecvFailure) -> RecvError {
        match f {
            RecvFailure::Disconnected => RecvError::Disconnected,
            RecvFailure::Failed(e) => RecvError::Failed(e),
            // A receive without a deadline never times out.
            RecvFailure::Timeout => RecvError::Failed(Error::new(ErrorKind::Timeout, "timed out")),
        }
    }
}

impl From<RecvFailure> for TryRecvError {
    fn from(f: RecvFailure) -> TryRecvError {
        match f {
            RecvFailure::Timeout => TryRecvError::Empty,
            RecvFailure::Disconnected => TryRecvError::Disconnected,
            RecvFailure::Failed(e) => TryRecvError::Failed(e),
        }
    }
}

impl From<RecvFailure> for RecvTimeoutError {
    fn from(f: RecvFailure) -> RecvTimeoutError {
        match f {
            RecvFailure::Timeout => RecvTimeoutError::Timeout,
            RecvFailure::Disconnected => RecvTimeoutError::Disconnected,
            RecvFailure::Failed(e) => RecvTimeoutError::Failed(e),
        }
    }
}
