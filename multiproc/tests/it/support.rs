//! Test support: running scenarios under each start method, and a
//! rendezvous for synchronising with children without sleeping.
#![allow(unsafe_code, dead_code)]

#[cfg(target_os = "linux")]
use std::os::{
    linux::net::SocketAddrExt,
    unix::net::{SocketAddr, UnixDatagram},
};
use std::{sync::atomic::AtomicU32, time::Duration};

use multiproc::{self as mp, StartMethod};

/// The number `kill` reports a child ended by (`SIGKILL`; the same on
/// Windows, where the backend reads `TerminateProcess`'s code as it).
pub(crate) const SIGKILL: i32 = 9;

/// Generous deadline for anything a test waits on: a failing test fails
/// after it rather than hanging.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// Declares, for each scenario `fn name(m: StartMethod)`, one test per start
/// method: `name::spawn`, `name::fork` and `name::forkserver` (on Windows,
/// which has only spawn, `name::spawn` alone).
///
/// Fork scenarios run inside a spawned, single-threaded child: the test
/// harness's own process is multithreaded, where `fork` is refused (see
/// `fork::refused_in_a_multithreaded_parent`). The scenario then is the main
/// program of that child, and a failed assertion in it comes back as the
/// child's panic, with its message and location.
#[macro_export]
macro_rules! per_method {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn spawn() {
                $crate::support::run_direct(super::$name, multiproc::StartMethod::Spawn)
            }
            #[cfg(unix)]
            #[test]
            fn fork() {
                $crate::support::run_isolated(super::$name, multiproc::StartMethod::Fork)
            }
            #[cfg(unix)]
            #[test]
            fn forkserver() {
                $crate::support::run_direct(super::$name, multiproc::StartMethod::ForkServer)
            }
        }
    )*};
}

/// Runs a scenario in the test's own (multithreaded) process.
pub(crate) fn run_direct(scenario: fn(StartMethod), m: StartMethod) {
    scenario(m)
}

/// Runs a scenario as the main program of a fresh, single-threaded child.
pub(crate) fn run_isolated(scenario: fn(StartMethod), m: StartMethod) {
    let mut p = mp::ProcessBuilder::new().name("scenario").target_with(scenario, m);
    p.start().expect("start the scenario process");
    match p.join_timeout(DEADLINE) {
        Ok(()) => {}
        Err(e) => match e.panic() {
            Some(panic) => panic!(
                "scenario under {m} failed: {panic}\n{}",
                panic.backtrace().unwrap_or("")
            ),
            None => panic!("scenario under {m} failed: {e}"),
        },
    }
}

/// A datagram socket in the abstract namespace (no file to clean up, even
/// when a child holding one is killed), for children to report to; on
/// Windows and macOS a UDP socket on the loopback address, named by its
/// port.
pub(crate) struct Rendezvous {
    #[cfg(target_os = "linux")]
    sock: UnixDatagram,
    #[cfg(not(target_os = "linux"))]
    sock: std::net::UdpSocket,
    name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Rendezvous {
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn new() -> Rendezvous {
        let _ = &COUNTER;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind rendezvous socket");
        sock.set_read_timeout(Some(DEADLINE)).expect("set timeout");
        let name = sock.local_addr().expect("bound address").to_string();
        Rendezvous { sock, name }
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn new() -> Rendezvous {
        let name = format!(
            "multiproc-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind rendezvous socket");
        sock.set_read_timeout(Some(DEADLINE)).expect("set timeout");
        Rendezvous { sock, name }
    }

    /// The address to hand to a child.
    pub(crate) fn addr(&self) -> String {
        self.name.clone()
    }

    /// The next message, failing the test after [`DEADLINE`].
    ///
    /// Retries a receive interrupted by a signal: a socket with a timeout is
    /// never restarted by the kernel, and a daemonic child gets its death
    /// signal when the parent's thread that started it exits.
    pub(crate) fn recv(&self) -> String {
        let mut buf = vec![0u8; 64 * 1024];
        let n = loop {
            match self.sock.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => break other.expect("no message from the child before the deadline"),
            }
        };
        String::from_utf8(buf[..n].to_vec()).expect("utf-8 message")
    }

    /// Waits for a child's [`ready_then_wait`] and returns its address.
    pub(crate) fn wait_ready(&self) -> Gate {
        let msg = self.recv();
        let addr = msg.strip_prefix("ready ").expect("a ready message").to_owned();
        Gate { addr }
    }
}

/// Sends `msg` to the rendezvous named `addr`.
#[cfg(not(target_os = "linux"))]
pub(crate) fn notify(addr: &str, msg: &str) {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("socket")
        .send_to(msg.as_bytes(), addr)
        .expect("notify the parent");
}

/// Sends `msg` to the rendezvous named `addr`.
#[cfg(target_os = "linux")]
pub(crate) fn notify(addr: &str, msg: &str) {
    let to = SocketAddr::from_abstract_name(addr.as_bytes()).expect("abstract name");
    UnixDatagram::unbound()
        .expect("socket")
        .send_to_addr(msg.as_bytes(), &to)
        .expect("notify the parent");
}

/// Child side: tell the parent we are ready, then block until it opens the
/// gate.
pub(crate) fn ready_then_wait(addr: &str) {
    let own = Rendezvous::new();
    notify(addr, &format!("ready {}", own.addr()));
    let msg = own.recv();
    assert_eq!(msg, "go");
}

/// A child blocked in [`ready_then_wait`].
pub(crate) struct Gate {
    addr: String,
}

impl Gate {
    pub(crate) fn open(&self) {
        notify(&self.addr, "go");
    }
}

/// This process's parent as the system recorded it (`getppid()`; on
/// Windows, the creator's pid in a process snapshot).
#[cfg(unix)]
pub(crate) fn os_parent_id() -> u32 {
    std::os::unix::process::parent_id()
}

/// This process's parent as the system recorded it (`getppid()`; on
/// Windows, the creator's pid in a process snapshot).
#[cfg(windows)]
pub(crate) fn os_parent_id() -> u32 {
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
    };
    // SAFETY: a snapshot of every process; checked below, closed at the end.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    assert!(!snap.is_null() && snap as isize != -1, "process snapshot failed");
    // SAFETY: plain data.
    let mut e: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    e.dwSize = size_of::<PROCESSENTRY32W>() as u32;
    let me = std::process::id();
    // SAFETY: a valid snapshot and a sized entry.
    let mut ok = unsafe { Process32FirstW(snap, &mut e) };
    let mut parent = 0;
    while ok != 0 {
        if e.th32ProcessID == me {
            parent = e.th32ParentProcessID;
            break;
        }
        // SAFETY: as above.
        ok = unsafe { Process32NextW(snap, &mut e) };
    }
    // SAFETY: closing the snapshot opened above.
    unsafe { windows_sys::Win32::Foundation::CloseHandle(snap) };
    parent
}

/// Blocks the calling process until a signal ends it.
pub(crate) fn block_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// A pidfd on any process, to wait for its end without being its parent.
#[cfg(target_os = "linux")]
pub(crate) struct PidWatch(i32);

#[cfg(target_os = "linux")]
impl PidWatch {
    pub(crate) fn open(pid: u32) -> PidWatch {
        // SAFETY: pidfd_open takes a pid and flags.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        assert!(fd >= 0, "pidfd_open({pid}): {}", std::io::Error::last_os_error());
        PidWatch(fd as i32)
    }

    /// A watch, or `None` when no process has that pid any more (it ended
    /// and was reaped).
    pub(crate) fn try_open(pid: u32) -> Option<PidWatch> {
        // SAFETY: pidfd_open takes a pid and flags.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        (fd >= 0).then_some(PidWatch(fd as i32))
    }

    /// `true` once the process has ended, waiting up to `timeout`.
    pub(crate) fn ended_within(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        n > 0
    }
}

#[cfg(target_os = "linux")]
impl Drop for PidWatch {
    fn drop(&mut self) {
        // SAFETY: closing the pidfd opened in `open`.
        unsafe { libc::close(self.0) };
    }
}

/// A kqueue watching any process's exit (macOS: no pidfds).
#[cfg(target_os = "macos")]
pub(crate) struct PidWatch(i32);

#[cfg(target_os = "macos")]
impl PidWatch {
    pub(crate) fn open(pid: u32) -> PidWatch {
        Self::try_open(pid).unwrap_or_else(|| panic!("kqueue watch of {pid}: {}", std::io::Error::last_os_error()))
    }

    /// A watch, or `None` when no process has that pid any more.
    pub(crate) fn try_open(pid: u32) -> Option<PidWatch> {
        // SAFETY: kqueue takes no arguments; the result is checked.
        let kq = unsafe { libc::kqueue() };
        if kq < 0 {
            return None;
        }
        // SAFETY: plain data.
        let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
        ev.ident = pid as libc::uintptr_t;
        ev.filter = libc::EVFILT_PROC;
        ev.flags = libc::EV_ADD | libc::EV_ONESHOT;
        ev.fflags = libc::NOTE_EXIT;
        // SAFETY: one change on the kqueue opened above, no events out.
        let r = unsafe { libc::kevent(kq, &ev, 1, std::ptr::null_mut(), 0, std::ptr::null()) };
        if r < 0 {
            // SAFETY: closing the kqueue opened above.
            unsafe { libc::close(kq) };
            return None;
        }
        Some(PidWatch(kq))
    }

    /// `true` once the process has ended, waiting up to `timeout`.
    pub(crate) fn ended_within(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        n > 0
    }
}

#[cfg(target_os = "macos")]
impl Drop for PidWatch {
    fn drop(&mut self) {
        // SAFETY: closing the kqueue opened in `try_open`.
        unsafe { libc::close(self.0) };
    }
}

/// A handle on any process, to wait for its end (Windows).
#[cfg(windows)]
pub(crate) struct PidWatch(windows_sys::Win32::Foundation::HANDLE);

#[cfg(windows)]
impl PidWatch {
    pub(crate) fn open(pid: u32) -> PidWatch {
        Self::try_open(pid).unwrap_or_else(|| panic!("OpenProcess({pid}): {}", std::io::Error::last_os_error()))
    }

    /// A watch, or `None` when no process has that pid any more.
    pub(crate) fn try_open(pid: u32) -> Option<PidWatch> {
        use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_SYNCHRONIZE};
        // SAFETY: OpenProcess takes plain values; the result is checked.
        let h = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
        (!h.is_null()).then_some(PidWatch(h))
    }

    /// `true` once the process has ended, waiting up to `timeout`.
    pub(crate) fn ended_within(&self, timeout: Duration) -> bool {
        use windows_sys::Win32::{Foundation::WAIT_OBJECT_0, System::Threading::WaitForSingleObject};
        // SAFETY: a wait on the handle opened in `open`.
        unsafe { WaitForSingleObject(self.0, timeout.as_millis().min(u32::MAX as u128 - 1) as u32) == WAIT_OBJECT_0 }
    }
}

#[cfg(windows)]
impl Drop for PidWatch {
    fn drop(&mut self) {
        // SAFETY: closing the handle opened in `open`.
        unsafe { windows_sys::Win32::Foundation::CloseHandle(self.0) };
    }
}

/// The descriptors open in this process, with what they point to (the
/// directory handle used to list them excluded).
#[cfg(target_os = "linux")]
pub(crate) fn open_fds() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("list fds") {
        let entry = entry.expect("fd entry");
        let fd: i32 = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse().ok())
            .expect("numeric fd name");
        if let Ok(target) = std::fs::read_link(entry.path()) {
            out.push((fd, target.to_string_lossy().into_owned()));
        }
    }
    // read_dir's own descriptor points at the directory being listed.
    out.retain(|(_, t)| !t.starts_with("/proc/") || !t.ends_with("/fd"));
    out.sort();
    out
}

/// The descriptors open in this process (macOS: `/dev/fd`, with the path
/// `F_GETPATH` gives where there is one).
#[cfg(target_os = "macos")]
pub(crate) fn open_fds() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let listed: Vec<i32> = std::fs::read_dir("/dev/fd")
        .expect("list fds")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in listed {
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: F_GETPATH writes at most PATH_MAX bytes into `buf`.
        let r = unsafe { libc::fcntl(fd, libc::F_GETPATH, buf.as_mut_ptr()) };
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF) {
            // read_dir's own descriptor, closed since.
            continue;
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
        out.push((fd, String::from_utf8_lossy(&buf[..end]).into_owned()));
    }
    out.sort();
    out
}

/// The variable that holds back the start of this binary's spawned
/// children (see [`hold_back_the_start`]).
pub(crate) const BOOT_GATE: &str = "MULTIPROC_TEST_BOOT_GATE";

/// In a process started with [`BOOT_GATE`] naming a rendezvous, waits
/// (bounded) for that rendezvous to open the gate before anything else:
/// a child that is, for as long as a test wants, still starting. Runs
/// before the library's own entry constructor, which has the lowest
/// priority.
// SAFETY (of the constructor): it only reads the environment and talks
// to a datagram socket; it touches no state of the program's own.
#[ctor::ctor(unsafe)]
fn hold_back_the_start() {
    if std::env::var_os("__MULTIPROC_CHILD").is_none() {
        return;
    }
    if let Some(addr) = std::env::var_os(BOOT_GATE) {
        if let Some(addr) = addr.to_str() {
            ready_then_wait(addr);
        }
    }
}

/// A raw socket to a listener's address, for playing a peer that does not
/// follow the protocol (silent, slow or hostile).
#[cfg(unix)]
pub(crate) enum RawPeer {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

/// A stream that reads and writes.
pub(crate) trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

#[cfg(unix)]
impl RawPeer {
    pub(crate) fn connect(address: &mp::Address) -> RawPeer {
        use std::os::unix::net::UnixStream;
        match address {
            mp::Address::Unix(p) => RawPeer::Unix(UnixStream::connect(p).unwrap()),
            #[cfg(target_os = "linux")]
            mp::Address::Abstract(n) => {
                RawPeer::Unix(UnixStream::connect_addr(&SocketAddr::from_abstract_name(n).unwrap()).unwrap())
            }
            mp::Address::Tcp(a) => RawPeer::Tcp(std::net::TcpStream::connect(a).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            RawPeer::Unix(s) => s,
            RawPeer::Tcp(s) => s,
        }
    }
}

/// Starts `f(args)` under `m`.
pub(crate) fn start<A, R>(m: StartMethod, f: fn(A) -> R, args: A) -> mp::Process<R>
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut p = mp::ProcessBuilder::new().start_method(m).target_with(f, args);
    p.start().expect("start");
    p
}
