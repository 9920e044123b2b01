//! The few file-system calls of `Listener`'s Unix socket files that
//! differ by platform: a path as bytes (the wire form), owner-only
//! permissions, and a file's identity. On Windows, where Unix socket
//! listeners are not supported yet, they keep the facade compiling.

use std::{
    ffi::OsString,
    fs::{self, DirBuilder},
    io,
    path::{Path, PathBuf},
};

/// A path's bytes (Unix: exactly; Windows: its encoded bytes).
pub(super) fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}

/// A path from the bytes [`path_into_bytes`] made.
pub(super) fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    #[cfg(unix)]
    let s = <OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes);
    #[cfg(not(unix))]
    let s = OsString::from(String::from_utf8_lossy(&bytes).into_owned());
    PathBuf::from(s)
}

/// A path's bytes, owned.
pub(super) fn path_into_bytes(p: PathBuf) -> Vec<u8> {
    #[cfg(unix)]
    return std::os::unix::ffi::OsStringExt::into_vec(p.into_os_string());
    #[cfg(not(unix))]
    return p.into_os_string().into_encoded_bytes();
}

/// Makes `path` readable and writable by its owner only.
pub(super) fn make_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    return fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    #[cfg(not(unix))]
    return fs::metadata(path).map(drop);
}

/// Creates `dir`, accessible by its owner only.
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut b = DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// The (device, inode) of the file at `path` itself (a link is not
/// followed); on Windows, its modification time stands in.
pub(super) fn file_id(path: &Path) -> Option<(u64, u64)> {
    let m = fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    return Some((
        std::os::unix::fs::MetadataExt::dev(&m),
        std::os::unix::fs::MetadataExt::ino(&m),
    ));
    #[cfg(not(unix))]
    return m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| (d.as_secs(), u64::from(d.subsec_nanos())));
}
