//! Small process facts and settings.

use std::io;

use super::{Fd, cvt_r};

pub(crate) fn getpid() -> u32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() as u32 }
}

pub(crate) fn getppid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Number of online CPUs of the machine (Python's `os.cpu_count()`).
pub(crate) fn cpu_count() -> Option<usize> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (n > 0).then_some(n as usize)
}

/// Registers `f` to run at normal process exit (`exit(3)`, returning from
/// `main`).
pub(crate) fn atexit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: f is a plain function with the C ABI that lives forever.
    if unsafe { libc::atexit(f) } != 0 {
        return Err(io::Error::new(io::ErrorKind::OutOfMemory, "atexit registration failed"));
    }
    Ok(())
}

/// Makes writes to a closed pipe or socket fail with `EPIPE` instead of
/// killing the process, as the Rust runtime does before `main`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN is always valid.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Opens `/dev/null` for reading.
pub(crate) fn null_device() -> io::Result<Fd> {
    // SAFETY: the path is a NUL-terminated literal.
    let raw = cvt_r(|| unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: open returned a new descriptor we own.
    Ok(unsafe { Fd::from_raw(raw) })
}

/// Makes `target` (a raw descriptor number of this process) refer to what
/// `source` refers to, without close-on-exec.
pub(crate) fn redirect(source: &Fd, target: i32) -> io::Result<()> {
    // SAFETY: dup2 of an open descriptor onto a descriptor number.
    cvt_r(|| unsafe { libc::dup2(source.raw(), target) }).map(drop)
}

/// Closes raw descriptor numbers this process inherited but must not keep.
pub(crate) fn close_inherited(fds: &[i32]) {
    for &fd in fds {
        // SAFETY: the caller names descriptors nothing in this process owns
        // any more. EBADF (already closed) is harmless, so the result is
        // deliberately ignored.
        unsafe { libc::close(fd) };
    }
}

/// The load address of the object (executable or shared library) that
/// contains `addr`.
pub(crate) fn image_base(addr: usize) -> Option<usize> {
    // SAFETY: an all-zero Dl_info is a valid out-value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads its address argument and fills `info`.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    (found != 0).then_some(info.dli_fbase as usize)
}

/// `SIGTERM`, which `Process::terminate` sends.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
/// `SIGKILL`, which `Process::kill` sends.
pub(crate) const SIGKILL: i32 = libc::SIGKILL;

/// The name of a common signal, for messages.
pub(crate) fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// Ignores `SIGINT` (`true`) or restores its default action (`false`).
pub(crate) fn set_sigint_ignored(ignored: bool) {
    let action = if ignored { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: setting a signal's disposition to SIG_IGN or SIG_DFL is always valid.
    unsafe { libc::signal(libc::SIGINT, action) };
}
