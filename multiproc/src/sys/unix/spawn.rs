//! Re-executing the running binary (the `spawn` start method).
//!
//! `posix_spawn` (a `CLONE_VM | CLONE_VFORK` clone in glibc) costs the same
//! whatever the parent's size, unlike `fork`. Every argument is prepared
//! before the call; the file actions give the child `/dev/null` as stdin,
//! the bootstrap socket as descriptor [`BOOT_FD`], and close every other
//! descriptor above it (Linux: `posix_spawn_file_actions_addclosefrom_np`;
//! Apple: `POSIX_SPAWN_CLOEXEC_DEFAULT`, standard output and error
//! inherited by name), so nothing leaks into the child whatever its
//! close-on-exec flag. The executable is `/proc/self/exe` on Linux and
//! `_NSGetExecutablePath`'s path on the Apple platforms.

use std::{
    ffi::{CString, OsString},
    io,
    os::unix::ffi::OsStringExt,
    path::Path,
};

use super::{
    ChildHandle, Fd, cvt,
    os::{SPAWN_FLAGS, close_others, self_exe},
};

/// The descriptor number a spawned child finds its bootstrap socket on.
pub(crate) const BOOT_FD: i32 = 3;

/// Starts a copy of the running executable with `boot` as descriptor
/// [`BOOT_FD`] and the environment variable `marker` set.
pub(crate) fn spawn_self(boot: &Fd, marker: (&str, &str)) -> io::Result<ChildHandle> {
    spawn_program(boot, marker, None)
}

/// As [`spawn_self`], running `program` (another path of the same build)
/// instead when it is given.
pub(crate) fn spawn_program(boot: &Fd, marker: (&str, &str), program: Option<&Path>) -> io::Result<ChildHandle> {
    // dup2(3, 3) would keep close-on-exec set; move the socket away first.
    let moved;
    let source = if boot.raw() == BOOT_FD {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor `boot` keeps open.
        let raw = cvt(unsafe { libc::fcntl(boot.raw(), libc::F_DUPFD_CLOEXEC, BOOT_FD + 1) })?;
        // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor we own.
        moved = unsafe { Fd::from_raw(raw) };
        moved.raw()
    } else {
        boot.raw()
    };

    let argv: Vec<CString> = std::env::args_os().map(cstring).collect::<io::Result<_>>()?;
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != marker.0)
        .map(|(mut k, v)| {
            k.push("=");
            k.push(v);
            cstring(k)
        })
        .collect::<io::Result<_>>()?;
    envp.push(cstring(format!("{}={}", marker.0, marker.1).into())?);
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);

    let actions = FileActions::new()?;
    actions.check(
        // SAFETY: actions is initialised; the path is a NUL-terminated literal.
        unsafe {
            libc::posix_spawn_file_actions_addopen(actions.as_ptr(), 0, c"/dev/null".as_ptr(), libc::O_RDONLY, 0)
        },
    )?;
    // SAFETY: actions is initialised; both numbers are valid descriptors.
    actions.check(unsafe { libc::posix_spawn_file_actions_adddup2(actions.as_ptr(), source, BOOT_FD) })?;
    // SAFETY: actions is initialised.
    actions.check(unsafe { close_others(actions.as_ptr(), BOOT_FD) })?;

    let attr = SpawnAttr::new()?;
    let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(empty.as_mut_ptr()) };
    // SAFETY: attr is initialised and `empty` was initialised just above.
    attr.check(unsafe { libc::posix_spawnattr_setsigmask(attr.as_ptr(), empty.as_ptr()) })?;
    // A parent that ignores SIGCHLD would pass that on through exec, and
    // the child's own children would then be reaped by the kernel, their
    // exit status lost: the child starts with the default disposition.
    let mut default = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(default.as_mut_ptr()) };
    // SAFETY: the set was initialised just above; SIGCHLD is a valid signal.
    unsafe { libc::sigaddset(default.as_mut_ptr(), libc::SIGCHLD) };
    // SAFETY: attr is initialised and `default` was initialised just above.
    attr.check(unsafe { libc::posix_spawnattr_setsigdefault(attr.as_ptr(), default.as_ptr()) })?;
    let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF | SPAWN_FLAGS;
    // SAFETY: attr is initialised.
    attr.check(unsafe { libc::posix_spawnattr_setflags(attr.as_ptr(), flags as _) })?;

    let mut pid: libc::pid_t = 0;
    let mut spawn = |path: &CString| {
        // SAFETY: every pointer refers to memory that outlives the call;
        // argv and envp are NULL-terminated arrays of C strings.
        unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                actions.as_ptr(),
                attr.as_ptr(),
                argv_ptrs.as_ptr().cast(),
                envp_ptrs.as_ptr().cast(),
            )
        }
    };
    if let Some(program) = program {
        let err = spawn(&cstring(program.as_os_str().to_owned())?);
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
        return ChildHandle::open(pid as u32).inspect_err(|_| super::fork::kill_and_reap(pid));
    }
    let mut err = spawn(&self_exe()?);
    if err == libc::ENOENT {
        // No /proc (or the file moved): fall back to the path the executable was started from.
        err = spawn(&cstring(std::env::current_exe()?.into_os_string())?);
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    ChildHandle::open(pid as u32).inspect_err(|_| super::fork::kill_and_reap(pid))
}

fn cstring(s: OsString) -> io::Result<CString> {
    CString::new(s.into_vec()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "argument or environment string contains a NUL byte",
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(Box<std::cell::UnsafeCell<libc::posix_spawn_file_actions_t>>);

impl FileActions {
    fn new() -> io::Result<FileActions> {
        // SAFETY: zeroed storage is what posix_spawn_file_actions_init expects to overwrite.
        let this = FileActions(Box::new(std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() })));
        // SAFETY: initialising the storage we just allocated.
        this.check(unsafe { libc::posix_spawn_file_actions_init(this.as_ptr()) })?;
        Ok(this)
    }
    fn as_ptr(&self) -> *mut libc::posix_spawn_file_actions_t {
        self.0.get()
    }
    fn check(&self, err: libc::c_int) -> io::Result<()> {
        if err == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(err))
        }
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: destroying the object initialised in `new`; it cannot fail.
        unsafe { libc::posix_spawn_file_actions_destroy(self.as_ptr()) };
    }
}

/// `posix_spawnattr_t`, destroyed on drop.
struct SpawnAttr(Box<std::cell::UnsafeCell<libc::posix_spawnattr_t>>);

impl SpawnAttr {
    fn new() -> io::Result<SpawnAttr> {
        // SAFETY: zeroed storage is what posix_spawnattr_init expects to overwrite.
        let this = SpawnAttr(Box::new(std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() })));
        // SAFETY: initialising the storage we just allocated.
        this.check(unsafe { libc::posix_spawnattr_init(this.as_ptr()) })?;
        Ok(this)
    }
    fn as_ptr(&self) -> *mut libc::posix_spawnattr_t {
        self.0.get()
    }
    fn check(&self, err: libc::c_int) -> io::Result<()> {
        if err == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(err))
        }
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: destroying the object initialised in `new`; it cannot fail.
        unsafe { libc::posix_spawnattr_destroy(self.as_ptr()) };
    }
}
