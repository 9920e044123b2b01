//! Process facts, identity and exit.

use std::{io, path::Path, ptr, sync::OnceLock};

use windows_sys::Win32::{
    Foundation::{HANDLE, HMODULE, STILL_ACTIVE},
    Security::Cryptography::{BCRYPT_USE_SYSTEM_PREFERRED_RNG, BCryptGenRandom},
    Storage::FileSystem::{BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle},
    System::{
        Diagnostics::ToolHelp::{
            CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
        },
        LibraryLoader::{
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, GetModuleHandleExW,
            GetModuleHandleW,
        },
        Threading::{
            GetCurrentProcessId, GetCurrentThreadId, GetExitCodeThread, OpenThread, THREAD_QUERY_LIMITED_INFORMATION,
            TerminateProcess,
        },
    },
};

use super::{Fd, current_process, cvt, process};

pub(crate) fn getpid() -> u32 {
    // SAFETY: no arguments.
    unsafe { GetCurrentProcessId() }
}

/// The pid of the process that created this one (Windows records it at
/// creation and never changes it; the parent may have exited since).
pub(crate) fn getppid() -> u32 {
    static PARENT: OnceLock<u32> = OnceLock::new();
    *PARENT.get_or_init(|| parent_of(getpid()).unwrap_or(0))
}

/// The creator of `pid`, from a process snapshot.
fn parent_of(pid: u32) -> Option<u32> {
    // SAFETY: a snapshot of all processes; the result is checked.
    let snap = Fd::from_new(unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) }).ok()?;
    // SAFETY: PROCESSENTRY32W is plain data.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: `entry` is a valid, sized out-value.
    let mut ok = unsafe { Process32FirstW(snap.handle(), &mut entry) };
    while ok != 0 {
        if entry.th32ProcessID == pid {
            return Some(entry.th32ParentProcessID);
        }
        // SAFETY: as above.
        ok = unsafe { Process32NextW(snap.handle(), &mut entry) };
    }
    None
}

/// Only the fork start method counts threads; there is none here.
pub(crate) fn thread_count() -> io::Result<usize> {
    Err(super::unsupported(
        "counting threads is only needed by fork, which Windows does not have",
    ))
}
pub(crate) fn cpu_count() -> Option<usize> {
    std::thread::available_parallelism().ok().map(usize::from)
}
pub(crate) fn affinity_cpu_count() -> Option<usize> {
    None
}
pub(crate) fn cgroup_cpu_limit() -> Option<f64> {
    None
}

/// Fills `buf` from the system's preferred random generator.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    for chunk in buf.chunks_mut(u32::MAX as usize) {
        // SAFETY: `chunk` is valid for its length; no algorithm handle with
        // the system-preferred flag.
        let status = unsafe {
            BCryptGenRandom(
                ptr::null_mut(),
                chunk.as_mut_ptr(),
                chunk.len() as u32,
                BCRYPT_USE_SYSTEM_PREFERRED_RNG,
            )
        };
        if status < 0 {
            return Err(io::Error::other(format!(
                "BCryptGenRandom failed: NTSTATUS {status:#x}"
            )));
        }
    }
    Ok(())
}

/// Eight random bytes (names of pipes), or a mix of time and counters if
/// the generator fails.
pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if random_bytes(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(thread_id()).rotate_left(32)
}

/// The running executable's identity: (volume serial number, file index).
pub(crate) fn exe_identity() -> io::Result<(u64, u64)> {
    file_identity(&std::env::current_exe()?)
}

/// A file's (volume serial number, file index).
pub(crate) fn file_identity(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::windows::io::AsRawHandle;
    let file = std::fs::File::open(path)?;
    // SAFETY: BY_HANDLE_FILE_INFORMATION is plain data.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-value; the file is open.
    cvt(unsafe { GetFileInformationByHandle(file.as_raw_handle() as HANDLE, &mut info) })?;
    Ok((
        u64::from(info.dwVolumeSerialNumber),
        u64::from(info.nFileIndexHigh) << 32 | u64::from(info.nFileIndexLow),
    ))
}

/// The base address of the module (the executable or a DLL) holding
/// `addr`.
pub(crate) fn image_base(addr: usize) -> Option<usize> {
    let mut module: HMODULE = ptr::null_mut();
    // SAFETY: with FROM_ADDRESS the "name" is an address inside a module;
    // the reference count is left alone; `module` is a valid out-pointer.
    let ok = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            addr as *const u16,
            &mut module,
        )
    };
    (ok != 0).then_some(module as usize)
}

/// The base address of the executable.
pub(crate) fn main_image_base() -> Option<usize> {
    // SAFETY: a null name asks for the executable's module.
    let module = unsafe { GetModuleHandleW(ptr::null()) };
    (!module.is_null()).then_some(module as usize)
}

/// Writing to a closed pipe fails with an error on Windows; there is no
/// signal to ignore.
pub(crate) fn ignore_sigpipe() {}
/// No Ctrl-C handling is changed (only the fork server would).
pub(crate) fn set_sigint_ignored(_ignored: bool) {}
pub(crate) fn ignore_group_signals() {}

// ----- thread and process identity -----

/// The calling thread's system-wide id (never 0).
pub(crate) fn thread_id() -> u32 {
    // SAFETY: no arguments.
    unsafe { GetCurrentThreadId() }
}

/// (pid, creation time): a pair no later process shares.
pub(crate) fn process_identity() -> (u32, u64) {
    static START: OnceLock<u64> = OnceLock::new();
    let me = current_process();
    (getpid(), *START.get_or_init(|| process::creation_time(me).unwrap_or(0)))
}

/// Whether the process `pid` created at `start` (and, unless 0, its thread
/// `tid`) still exists; one that cannot be inspected counts as alive.
pub(crate) fn is_alive(pid: u32, tid: u32, start: u64) -> bool {
    if !process::process_alive(pid, start) {
        return false;
    }
    if tid == 0 {
        return true;
    }
    // SAFETY: OpenThread takes plain values; the result is checked.
    let Ok(thread) = Fd::from_new(unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, tid) }) else {
        return false;
    };
    let mut code = 0u32;
    // SAFETY: `code` is a valid out-pointer.
    let ok = unsafe { GetExitCodeThread(thread.handle(), &mut code) };
    ok == 0 || code == STILL_ACTIVE as u32
}

pub(crate) fn may_spin() -> bool {
    cpu_count().is_some_and(|n| n > 1)
}

// ----- exit -----

/// Leaves the process with `code` at once, running no destructor, exit
/// handler or DLL notification.
pub(crate) fn exit_now(code: i32) -> ! {
    let me = current_process();
    // SAFETY: ends this process; nothing runs after it.
    unsafe { TerminateProcess(me, code as u32) };
    // TerminateProcess on the current process does not return.
    #[allow(clippy::disallowed_methods)]
    std::process::abort()
}

/// Runs `f` when the process exits normally (the C runtime's `atexit`).
pub(crate) fn atexit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: registers a plain function pointer.
    if unsafe { libc::atexit(f) } == 0 {
        Ok(())
    } else {
        Err(io::Error::other("atexit failed"))
    }
}

/// Handles are not inherited unless listed at spawn: nothing to close.
pub(crate) fn close_inherited(_fds: &[i32]) {}
pub(crate) fn reserve_closed(_fds: &[i32]) {}
