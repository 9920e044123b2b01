//! `Listener` and `Client`: connections by address (Unix socket or TCP), authenticated.
