//! Channels between processes: connections and pipes, listeners and their
//! authentication, waiting on several endpoints, and codec errors.

mod codec_errors;
mod connection;
mod listener;
// Abstract socket names and SocketAddrExt are Linux-only.
#[cfg(target_os = "linux")]
mod listener_auth;
mod wait;
