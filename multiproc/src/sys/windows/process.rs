//! Starting this executable again, process handles, and a parent's death.
//!
//! **Spawn** (`spawn_program`): `CreateProcessW` of the same executable
//! (or the given one) with the parent's command line unchanged, the
//! parent's environment plus the marker, and an explicit list of the
//! handles the child inherits (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`): an
//! inheritable duplicate of the bootstrap pipe's end (its value, the same
//! in the child, is the marker's number), the null device as standard
//! input, and inheritable duplicates of this process's standard output and
//! error. Nothing else is inherited, whatever other handles of this
//! process are inheritable. The duplicates are closed once the child
//! exists.
//!
//! **Exit statuses** follow CPython on Windows: `terminate` ends the child
//! with `TerminateProcess(h, 0x10000 + signal)`, which reads back as
//! "ended by that signal" (`terminate` reports `-SIGTERM`; `kill`
//! reports `-SIGKILL`, where CPython reports `-SIGTERM` for both); any
//! other code is an exit code.
//!
//! **A parent's death** is awaited on its process handle, which the
//! system signals however the process ends (`ParentWatch`); a daemon
//! child watches its parent with a thread (`arm_parent_death` reports
//! that no signal can be armed here, so the caller starts the watch
//! thread).

use std::{
    ffi::{OsStr, OsString},
    io,
    os::windows::ffi::OsStrExt,
    path::Path,
    ptr,
    time::Duration,
};

use windows_sys::Win32::{
    Foundation::{
        DUPLICATE_SAME_ACCESS, DuplicateHandle, FILETIME, GENERIC_READ, GENERIC_WRITE, HANDLE, STILL_ACTIVE,
        WAIT_OBJECT_0, WAIT_TIMEOUT,
    },
    Storage::FileSystem::{CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING},
    System::{
        Console::{GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, SetStdHandle},
        Environment::GetCommandLineW,
        Threading::{
            CREATE_UNICODE_ENVIRONMENT, CreateProcessW, DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT,
            GetExitCodeProcess, GetProcessTimes, INFINITE, InitializeProcThreadAttributeList,
            LPPROC_THREAD_ATTRIBUTE_LIST, OpenProcess, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION,
            PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE, STARTF_USESTDHANDLES,
            STARTUPINFOEXW, TerminateProcess, UpdateProcThreadAttribute, WaitForSingleObject,
        },
    },
};

use super::{Fd, RawFd, current_process, cvt, getpid, getppid, wide};
use crate::sys::RawStatus;

/// The signal numbers the layers above name (the POSIX values).
pub(crate) const SIGTERM: i32 = 15;
pub(crate) const SIGKILL: i32 = 9;

/// The exit code base a terminated child reads back as a signal: CPython's
/// `TERMINATE` (`popen_spawn_win32.py`) plus the signal number.
const TERMINATE: u32 = 0x10000;

pub(crate) fn signal_name(sig: i32) -> Option<&'static str> {
    match sig {
        SIGTERM => Some("SIGTERM"),
        SIGKILL => Some("SIGKILL"),
        _ => None,
    }
}

/// Starts this executable with `boot` as its bootstrap channel.
pub(crate) fn spawn_self(boot: &Fd, marker: (&str, &str)) -> io::Result<ChildHandle> {
    spawn_program(boot, marker, None)
}

/// Whether a marker's number may name a bootstrap channel: any handle
/// value (it is the inherited duplicate's).
pub(crate) fn is_boot_channel_number(n: RawFd) -> bool {
    n > 0
}

/// The number a child finds its bootstrap channel at: `boot`'s own value,
/// which an inherited handle keeps in the child.
pub(crate) fn boot_channel_number(boot: &Fd) -> RawFd {
    boot.raw()
}

/// Starts `program` (default: this executable) with the marker in its
/// environment and `boot` inherited (see the module docs).
pub(crate) fn spawn_program(boot: &Fd, marker: (&str, &str), program: Option<&Path>) -> io::Result<ChildHandle> {
    let exe = match program {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?,
    };
    // The child's bootstrap channel is `boot` itself, made inheritable for
    // this call only: its value is the marker's number.
    boot.set_inheritable()?;
    let result = create(&exe, boot, marker);
    let _ = boot.set_cloexec();
    result
}

fn create(exe: &Path, boot: &Fd, marker: (&str, &str)) -> io::Result<ChildHandle> {
    let stdin = null_device()?;
    stdin.set_inheritable()?;
    let stdout = inheritable_std(STD_OUTPUT_HANDLE)?;
    let stderr = inheritable_std(STD_ERROR_HANDLE)?;
    let mut list: Vec<HANDLE> = vec![boot.handle(), stdin.handle()];
    list.extend(stdout.iter().map(Fd::handle));
    list.extend(stderr.iter().map(Fd::handle));

    let attrs = AttributeList::with_handles(&list)?;
    // SAFETY: STARTUPINFOEXW is plain data; all-zero is its empty state.
    let mut si: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    si.StartupInfo.cb = size_of::<STARTUPINFOEXW>() as u32;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = stdin.handle();
    si.StartupInfo.hStdOutput = stdout.as_ref().map_or(ptr::null_mut(), Fd::handle);
    si.StartupInfo.hStdError = stderr.as_ref().map_or(ptr::null_mut(), Fd::handle);
    si.lpAttributeList = attrs.ptr();

    let app = wide(exe.as_os_str());
    // SAFETY: GetCommandLineW returns this process's command line, valid
    // for the life of the process.
    let mut cmdline = wide_z_copy(unsafe { GetCommandLineW() });
    let mut env = environment_block(marker);
    // SAFETY: PROCESS_INFORMATION is plain data.
    let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: every pointer is valid for the call: NUL-terminated `app`, a
    // writable NUL-terminated command line, a double-NUL-terminated UTF-16
    // environment, the startup info with its attribute list (alive in
    // `attrs`), and `pi` to fill.
    cvt(unsafe {
        CreateProcessW(
            app.as_ptr(),
            cmdline.as_mut_ptr(),
            ptr::null(),
            ptr::null(),
            1,
            EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT,
            env.as_mut_ptr().cast(),
            ptr::null(),
            &si.StartupInfo,
            &mut pi,
        )
    })?;
    drop(Fd::from_new(pi.hThread));
    Ok(ChildHandle {
        pid: pi.dwProcessId,
        process: Fd::from_new(pi.hProcess)?,
    })
}

/// An inheritable duplicate of this process's standard handle `which`,
/// `None` when it has none.
fn inheritable_std(which: u32) -> io::Result<Option<Fd>> {
    // SAFETY: GetStdHandle takes a constant and returns a handle or null.
    let h = unsafe { GetStdHandle(which) };
    if h.is_null() || h == windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE {
        return Ok(None);
    }
    let mut out: HANDLE = ptr::null_mut();
    let me = current_process();
    // SAFETY: duplicating within this process, inheritable, into `out`.
    let ok = unsafe { DuplicateHandle(me, h, me, &mut out, 0, 1, DUPLICATE_SAME_ACCESS) };
    // A standard handle that cannot be duplicated (a console pseudo handle
    // of an old system) is left out rather than fail the spawn.
    if ok == 0 {
        return Ok(None);
    }
    Fd::from_new(out).map(Some)
}

/// A process-thread attribute list holding one handle list.
struct AttributeList {
    buf: Vec<u64>,
    /// The handles, which must stay in place while the list is used.
    _handles: Box<[HANDLE]>,
}

impl AttributeList {
    fn with_handles(handles: &[HANDLE]) -> io::Result<AttributeList> {
        let mut size = 0usize;
        // SAFETY: asks for the size only (null list); fails by design.
        unsafe { InitializeProcThreadAttributeList(ptr::null_mut(), 1, 0, &mut size) };
        let mut buf = vec![0u64; size.div_ceil(8)];
        let list: LPPROC_THREAD_ATTRIBUTE_LIST = buf.as_mut_ptr().cast();
        // SAFETY: `buf` has `size` bytes, aligned for the list.
        cvt(unsafe { InitializeProcThreadAttributeList(list, 1, 0, &mut size) })?;
        let handles: Box<[HANDLE]> = handles.into();
        // SAFETY: the list is initialised; `handles` stays alive (and in
        // place, boxed) as long as the list.
        let ok = unsafe {
            UpdateProcThreadAttribute(
                list,
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                handles.as_ptr().cast(),
                size_of_val(&*handles),
                ptr::null_mut(),
                ptr::null(),
            )
        };
        let me = AttributeList { buf, _handles: handles };
        cvt(ok)?;
        Ok(me)
    }
    fn ptr(&self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buf.as_ptr().cast_mut().cast()
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        // SAFETY: the list was initialised and is no longer used.
        unsafe { DeleteProcThreadAttributeList(self.ptr()) };
    }
}

/// A copy of the NUL-terminated UTF-16 string at `p`, NUL included.
fn wide_z_copy(p: *const u16) -> Vec<u16> {
    let mut out = Vec::new();
    if p.is_null() {
        out.push(0);
        return out;
    }
    let mut i = 0;
    loop {
        // SAFETY: `p` is NUL-terminated and `i` is at most its NUL's index.
        let at = unsafe { p.add(i) };
        // SAFETY: as above: `at` is inside the string.
        let c = unsafe { at.read() };
        out.push(c);
        if c == 0 {
            return out;
        }
        i += 1;
    }
}

/// This process's environment with `marker` set, as a UTF-16 block sorted
/// without regard to case (what `CreateProcessW` expects).
fn environment_block(marker: (&str, &str)) -> Vec<u16> {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(marker.0))
        .collect();
    vars.push((marker.0.into(), marker.1.into()));
    vars.sort_by_key(|(k, _)| k.to_ascii_uppercase());
    let mut block = Vec::new();
    for (k, v) in vars {
        block.extend(k.encode_wide());
        block.push(u16::from(b'='));
        block.extend(v.encode_wide());
        block.push(0);
    }
    block.push(0);
    block.push(0);
    block
}

/// `NUL`, opened for reading and writing, non-inheritable.
pub(crate) fn null_device() -> io::Result<Fd> {
    let name = wide(OsStr::new("NUL"));
    // SAFETY: a NUL-terminated name; no security attributes.
    Fd::from_new(unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            ptr::null(),
            OPEN_EXISTING,
            0,
            ptr::null_mut(),
        )
    })
}

/// Makes `source` this process's standard input (0), output (1) or error
/// (2). The handle stays `source`'s owner's: the caller keeps it open.
pub(crate) fn redirect(source: &Fd, target: i32) -> io::Result<()> {
    let which = match target {
        0 => STD_INPUT_HANDLE,
        1 => STD_OUTPUT_HANDLE,
        2 => STD_ERROR_HANDLE,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a standard stream")),
    };
    let copy = source.try_clone()?;
    // SAFETY: the handle is open; the standard slot keeps it (it is
    // forgotten here, as a standard handle lives as long as the process).
    cvt(unsafe { SetStdHandle(which, copy.handle()) })?;
    copy.forget();
    Ok(())
}

// ----- process handles -----

/// A started child: its process handle, which keeps its pid from being
/// reused while held.
#[derive(Debug)]
pub(crate) struct ChildHandle {
    pid: u32,
    process: Fd,
}

impl ChildHandle {
    /// Bytes of a fork server's status record (no fork server here).
    pub(crate) const STATUS_LEN: usize = crate::sys::STATUS_RECORD_LEN;

    /// A handle on process `pid`.
    pub(crate) fn open(pid: u32) -> io::Result<ChildHandle> {
        // SAFETY: OpenProcess takes plain values; the result is checked.
        let h = unsafe {
            OpenProcess(
                PROCESS_SYNCHRONIZE | PROCESS_TERMINATE | PROCESS_QUERY_LIMITED_INFORMATION,
                0,
                pid,
            )
        };
        Ok(ChildHandle {
            pid,
            process: Fd::from_new(h)?,
        })
    }
    /// A fork server's child: there is no fork server on Windows.
    pub(crate) fn remote(pid: u32, pidfd: Fd, _status: Fd, _already_read: Vec<u8>) -> ChildHandle {
        ChildHandle { pid, process: pidfd }
    }
    pub(crate) fn encode_status(pid: u32, status: RawStatus) -> [u8; Self::STATUS_LEN] {
        crate::sys::encode_status_record(pid, status)
    }
    #[cfg(test)]
    pub(crate) fn status_for_test(&self) -> RawStatus {
        RawStatus::Unknown
    }
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.process.raw()
    }
    /// The process handle, owned by this handle.
    pub(crate) fn process_fd(&self) -> &Fd {
        &self.process
    }
    /// The process handle, signalled once the child has ended.
    pub(crate) fn process_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        self.process.borrow_handle()
    }
    pub(crate) fn raw_fds(&self) -> Vec<RawFd> {
        vec![self.process.raw()]
    }
    /// A second handle on the child, to send to another process.
    pub(crate) fn pidfd_copy(&self) -> io::Result<Fd> {
        self.process.try_clone()
    }
    /// Waits until the child has exited; `false` on timeout.
    pub(crate) fn poll_exit(&self, timeout: Option<Duration>) -> io::Result<bool> {
        wait_handle(&self.process, timeout)
    }
    /// The child's status once it has exited.
    pub(crate) fn try_reap(&self) -> io::Result<Option<RawStatus>> {
        if !wait_handle(&self.process, Some(Duration::ZERO))? {
            return Ok(None);
        }
        let mut code = 0u32;
        // SAFETY: `code` is a valid out-pointer; the handle is open.
        cvt(unsafe { GetExitCodeProcess(self.process.handle(), &mut code) })?;
        Ok(Some(match code {
            c if c > TERMINATE && c < TERMINATE + 65 => RawStatus::Signaled((c - TERMINATE) as i32),
            c => RawStatus::Exited(c as i32),
        }))
    }
    /// Ends the child for `SIGTERM` or `SIGKILL` (`TerminateProcess`; see
    /// the module docs); a child that already exited is not an error.
    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        if signal != SIGTERM && signal != SIGKILL {
            return Err(super::unsupported(
                "only SIGTERM and SIGKILL (both TerminateProcess) can be sent on Windows",
            ));
        }
        // SAFETY: the handle is open with PROCESS_TERMINATE.
        let ok = unsafe { TerminateProcess(self.process.handle(), TERMINATE + signal as u32) };
        if ok == 0 && wait_handle(&self.process, Some(Duration::ZERO))? {
            // It had exited already (access is denied to an ended process).
            return Ok(());
        }
        cvt(ok).map(drop)
    }
}

/// Waits for `h` to be signalled; `false` on timeout.
pub(crate) fn wait_handle(h: &Fd, timeout: Option<Duration>) -> io::Result<bool> {
    let ms = timeout.map_or(INFINITE, |t| t.as_millis().min(u128::from(INFINITE - 1)) as u32);
    // SAFETY: a wait on an open handle.
    match unsafe { WaitForSingleObject(h.handle(), ms) } {
        WAIT_OBJECT_0 => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        // An abandoned mutex, or a failure.
        windows_sys::Win32::Foundation::WAIT_ABANDONED => Ok(true),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A handle on another process (this process's parent) whose end can be
/// awaited.
#[derive(Debug)]
pub(crate) struct ParentWatch {
    process: Fd,
}

impl ParentWatch {
    /// Watches the process `pidfd` (a process handle) refers to.
    pub(crate) fn from_pidfd(pidfd: Fd) -> ParentWatch {
        ParentWatch { process: pidfd }
    }
    /// A handle on this very process, to hand to another one.
    pub(crate) fn of_self() -> io::Result<Fd> {
        // SAFETY: OpenProcess takes plain values; the result is checked.
        Fd::from_new(unsafe { OpenProcess(PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, 0, getpid()) })
    }
    /// Watches `pid`, which must be this process's parent: fails if the
    /// parent is already gone (and `pid` could name another process, which
    /// would then have started after this one).
    pub(crate) fn open_parent(pid: u32) -> io::Result<ParentWatch> {
        // SAFETY: OpenProcess takes plain values; the result is checked.
        let process =
            Fd::from_new(unsafe { OpenProcess(PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })?;
        let gone = || io::Error::new(io::ErrorKind::NotFound, "the parent process has exited");
        if getppid() != pid || wait_handle(&process, Some(Duration::ZERO))? {
            return Err(gone());
        }
        let me = current_process();
        if creation_time(process.handle())? > creation_time(me)? {
            return Err(gone());
        }
        Ok(ParentWatch { process })
    }
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.process.raw()
    }
    /// Waits for the process to end; `true` once it has.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        wait_handle(&self.process, timeout)
    }
}

/// A process's creation time (100 ns units since 1601).
pub(crate) fn creation_time(process: HANDLE) -> io::Result<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: four valid out-pointers; the handle has query access.
    cvt(unsafe { GetProcessTimes(process, &mut created, &mut exited, &mut kernel, &mut user) })?;
    Ok(u64::from(created.dwHighDateTime) << 32 | u64::from(created.dwLowDateTime))
}

/// Whether the process `pid` created at `start` (0: any) still runs.
pub(crate) fn process_alive(pid: u32, start: u64) -> bool {
    // SAFETY: OpenProcess takes plain values; the result is checked.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    let Ok(process) = Fd::from_new(h) else {
        // Gone, or not ours to inspect (counted as alive).
        return io::Error::last_os_error().raw_os_error() != Some(87);
    };
    let mut code = 0u32;
    // SAFETY: `code` is a valid out-pointer.
    let ok = unsafe { GetExitCodeProcess(process.handle(), &mut code) };
    if ok != 0 && code != STILL_ACTIVE as u32 {
        return false;
    }
    start == 0 || creation_time(process.handle()).map_or(true, |t| t == start)
}

/// A fork server's child's link to its owner (no fork server here).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServerChild {
    pub(crate) owner_pidfd: i32,
    pub(crate) sock: i32,
}

/// No signal can end this process with its parent here: the caller falls
/// back to a thread waiting on the parent's process handle.
pub(crate) fn arm_parent_death(_real_parent: u32, _server_child: Option<ServerChild>) -> io::Result<bool> {
    Err(super::unsupported(
        "no parent-death signal on Windows: a thread watches the parent",
    ))
}
