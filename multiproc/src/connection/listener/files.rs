//! The socket file and private directory a listener makes, and binding
//! at the default address.

use std::{fs, io, path::PathBuf};

use super::Address;
use crate::{
    error::{Error, Result},
    sys::{self, Fd},
};

/// Binds a socket in a fresh private directory; see the module docs.
pub(super) fn bind_private(backlog: i32) -> Result<(Fd, Address, Option<SocketFiles>)> {
    let base = std::env::temp_dir();
    let mut attempts = 0;
    let dir = loop {
        let dir = base.join(format!("pymp-{}", random_name()?));
        match crate::connection::portable::create_private_dir(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => {
                return Err(Error::io(
                    format!("failed to create a private directory in {}", base.display()),
                    e,
                ));
            }
        }
    };
    let mut files = SocketFiles::new(None, Some(dir.clone()));
    let address = Address::Unix(dir.join(format!("listener-{}", random_name()?)));
    address.check()?;
    let fd = sys::bound_socket(address.sock_addr()).map_err(|e| bind_error(&address, e))?;
    let Address::Unix(path) = &address else {
        unreachable!("made as a path just above")
    };
    files.socket = Some(SocketFiles::identify(path.clone()));
    crate::connection::portable::make_private(path)
        .map_err(|e| Error::io(format!("failed to make {} private", path.display()), e))?;
    sys::listen(&fd, backlog).map_err(|e| Error::io(format!("failed to listen at {address}"), e))?;
    Ok((fd, address, Some(files)))
}

pub(super) fn bind_error(address: &Address, e: io::Error) -> Error {
    let hint = match (e.kind(), address) {
        (io::ErrorKind::AddrInUse, Address::Unix(_)) => {
            " (another listener or a file is there; remove a stale socket file first)"
        }
        (io::ErrorKind::AddrInUse, _) => " (another socket is bound there)",
        _ => "",
    };
    Error::io(format!("failed to bind a listener to {address}{hint}"), e)
}

/// Eight characters from `[a-z0-9]`, as in Python's temporary names.
fn random_name() -> Result<String> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 8];
    sys::random_bytes(&mut bytes).map_err(|e| Error::io("failed to make a random socket name", e))?;
    Ok(bytes
        .iter()
        .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect())
}

/// The socket file (and the private directory) a listener made, removed
/// on drop by the process that made them.
pub(super) struct SocketFiles {
    /// The path and the (device, inode) it had once bound: a file someone
    /// else put there since is not ours to remove.
    socket: Option<(PathBuf, Option<(u64, u64)>)>,
    dir: Option<PathBuf>,
    pid: u32,
}

impl SocketFiles {
    pub(super) fn new(socket: Option<PathBuf>, dir: Option<PathBuf>) -> SocketFiles {
        SocketFiles {
            socket: socket.map(SocketFiles::identify),
            dir,
            pid: sys::getpid(),
        }
    }

    fn identify(path: PathBuf) -> (PathBuf, Option<(u64, u64)>) {
        let id = crate::connection::portable::file_id(&path);
        (path, id)
    }
}

impl Drop for SocketFiles {
    fn drop(&mut self) {
        if self.pid != sys::getpid() {
            return;
        }
        // Failures are ignored: a drop cannot report them, and a file or
        // directory someone else removed or changed is not ours to insist on.
        if let Some((path, id)) = &self.socket {
            let now = crate::connection::portable::file_id(path);
            if now.is_some() && now == *id {
                let _ = fs::remove_file(path);
            }
        }
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir(dir);
        }
    }
}
