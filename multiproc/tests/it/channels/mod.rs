//! Channels between processes: connections and pipes, listeners and their
//! authentication, waiting on several endpoints, and codec errors.

mod codec_errors;
mod connection;
mod listener;
mod listener_auth;
mod wait;
