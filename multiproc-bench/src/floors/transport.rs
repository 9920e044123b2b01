//! Raw transport floors for the channel rows: the same traffic as a
//! multiproc `Connection` or `Queue` bench, over a bare `AF_UNIX`
//! `SOCK_STREAM` socket pair (what a duplex `Pipe` is made of) or a bare
//! `pipe(2)`, between this process and a forked child that runs nothing but
//! `read`/`write` loops, as in `shared/baselines/c/cbench.c`.
//!
//! The child is forked on the first sample of its bench and lives until the
//! bench is dropped (`SIGKILL` and `waitpid`), so a sample is only the
//! traffic. It closes every descriptor but its own at once, so that it holds
//! no copy of this process's other channels, and is started while this
//! process is not pinned, so that it inherits no pinning it did not ask for.
//! Forking here is sound because the benchmark's process is
//! single-threaded (as its fork rows require anyway).

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::{Duration, Instant},
};

/// Which kernel object carries the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `socketpair(AF_UNIX, SOCK_STREAM)`: the transport of a duplex Pipe.
    SocketPair,
    /// `pipe(2)` with its default 64 KiB buffer; acknowledgements come
    /// back on a second pipe.
    Pipe,
}

/// A floor child, killed and reaped on drop.
struct Child {
    pid: libc::pid_t,
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, not yet reaped (so its pid is
        // not reused).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reaping our own child into a stack variable.
        while unsafe { libc::waitpid(self.pid, &raw mut status, 0) } < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
}

/// Forks a child that closes every descriptor above 2 but `keep`, runs
/// `body` and `_exit`s.
#[allow(clippy::disallowed_methods)] // the floor calls fork and _exit itself
fn fork_child(keep: &[RawFd], body: impl FnOnce() -> io::Result<()>) -> io::Result<Child> {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    // SAFETY: this process is single-threaded (see the module docs), so the
    // child may run ordinary code; it only makes system calls on buffers
    // allocated before the fork, and leaves through `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        close_others(&keep);
        let code = i32::from(body().is_err());
        // SAFETY: ends the child at once, running no destructor or atexit
        // handler of the parent's state.
        unsafe { libc::_exit(code) }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Child { pid })
}

/// Closes every descriptor above 2 except the sorted `keep`.
fn close_others(keep: &[RawFd]) {
    let mut lo = 3u32;
    for &fd in keep {
        let fd = fd as u32;
        if fd > lo {
            // SAFETY: closing descriptors this (forked) child does not use.
            unsafe { libc::close_range(lo, fd - 1, 0) };
        }
        lo = lo.max(fd + 1);
    }
    // SAFETY: as above.
    unsafe { libc::close_range(lo, u32::MAX, 0) };
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// A close-on-exec `AF_UNIX` stream socket pair.
fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two new descriptors.
    Ok(unsafe { own_pair(fds) })
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new descriptors.
    Ok(unsafe { own_pair(fds) })
}

/// Takes ownership of the two new descriptors a successful `pipe2` or
/// `socketpair` returned.
///
/// # Safety
///
/// Both are open descriptors that nothing else owns or closes.
unsafe fn own_pair(fds: [RawFd; 2]) -> (OwnedFd, OwnedFd) {
    // SAFETY: open and owned by nothing else (the contract).
    let a = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let b = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    (a, b)
}

/// One `read` of whatever is there (at most `buf.len()` bytes), retried on
/// `EINTR`; 0 at the end of the stream.
fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn read_exact(fd: RawFd, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match read_some(fd, buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf = &mut buf[n..],
        }
    }
    Ok(())
}

/// `write` until all of `buf` is written (one call when the buffer has
/// room, as for a 64-byte message).
fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// One-way stream: the parent writes `count` messages of `size` bytes, one
/// `write` each (more only when a large message does not fit the buffer);
/// the child `read`s whatever is there into one reused buffer and answers
/// one byte when it has all of them.
pub(crate) struct OneWay {
    transport: Transport,
    size: usize,
    count: usize,
    msg: Vec<u8>,
    live: Option<OneWayLive>,
}

struct OneWayLive {
    /// Where the messages go.
    tx: OwnedFd,
    /// Where the acknowledgement comes from (`tx` itself for a socket).
    ack: Option<OwnedFd>,
    _child: Child,
}

impl OneWay {
    pub(crate) fn new(transport: Transport, size: usize, count: usize) -> OneWay {
        OneWay {
            transport,
            size,
            count,
            msg: vec![0x5A; size],
            live: None,
        }
    }

    fn start(&self) -> io::Result<OneWayLive> {
        // The reader takes what is there, up to a buffer that holds a whole
        // socket or pipe buffer, and a whole message.
        let mut buf = vec![0u8; self.size.max(256 << 10)];
        let expect = self.size * self.count;
        match self.transport {
            Transport::SocketPair => {
                let (ours, theirs) = socketpair()?;
                let fd = theirs.as_raw_fd();
                let child = fork_child(&[fd], move || sink(fd, fd, &mut buf, expect))?;
                Ok(OneWayLive {
                    tx: ours,
                    ack: None,
                    _child: child,
                })
            }
            Transport::Pipe => {
                let (rx, tx) = pipe()?;
                let (ack_rx, ack_tx) = pipe()?;
                let (r, w) = (rx.as_raw_fd(), ack_tx.as_raw_fd());
                let child = fork_child(&[r, w], move || sink(r, w, &mut buf, expect))?;
                Ok(OneWayLive {
                    tx,
                    ack: Some(ack_rx),
                    _child: child,
                })
            }
        }
    }

    /// One sample: `count` messages and the acknowledgement.
    pub(crate) fn sample(&mut self) -> Result<Duration, String> {
        if self.live.is_none() {
            self.live = Some(self.start().map_err(|e| format!("cannot start the floor child: {e}"))?);
        }
        let live = self.live.as_ref().expect("just started");
        let tx = live.tx.as_raw_fd();
        let ack = live.ack.as_ref().map_or(tx, |a| a.as_raw_fd());
        let mut b = [0u8; 1];
        let t = Instant::now();
        for _ in 0..self.count {
            write_all(tx, &self.msg).map_err(|e| format!("write failed: {e}"))?;
        }
        read_exact(ack, &mut b).map_err(|e| format!("no acknowledgement: {e}"))?;
        Ok(t.elapsed())
    }
}

/// The one-way reader: counts bytes, answers one byte per `expect` bytes.
fn sink(rx: RawFd, ack: RawFd, buf: &mut [u8], expect: usize) -> io::Result<()> {
    let mut got = 0;
    loop {
        match read_some(rx, buf)? {
            0 => return Ok(()),
            n => got += n,
        }
        if got >= expect {
            got -= expect;
            write_all(ack, b"k")?;
        }
    }
}

/// Pins the calling process (all of it: the benchmark is single-threaded)
/// to `cpu`.
pub(crate) fn pin_self(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET only sets a bit of `set` (its indexing is checked).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set_affinity(&set)
}

fn set_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) }).map(drop)
}

/// This process pinned to one CPU until dropped, when its previous
/// affinity comes back.
pub(crate) struct Pinned {
    old: libc::cpu_set_t,
}

impl Pinned {
    pub(crate) fn to(cpu: usize) -> Result<Pinned, String> {
        // SAFETY: zeroed is a valid cpu_set_t, filled by the call.
        let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `old` is a valid out-buffer of the size given.
        cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) })
            .map_err(|e| format!("sched_getaffinity failed: {e}"))?;
        pin_self(cpu).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))?;
        Ok(Pinned { old })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = set_affinity(&self.old);
    }
}

/// The median of `v` (sorted in place); 0 for an empty one.
pub(crate) fn median_ns(v: &mut [u64]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    Duration::from_nanos(m)
}

/// Ping-pong of one byte over a socket pair: the parent writes a byte and
/// reads the answer; the child, optionally pinned, reads and answers.
pub(crate) struct PingPong {
    rounds: usize,
    cpu: Option<usize>,
    rtts: Vec<u64>,
    live: Option<(OwnedFd, Child)>,
}

impl PingPong {
    /// `rounds` round trips per sample; with `cpu`, both ends run pinned to
    /// it (the parent only during a sample).
    pub(crate) fn new(rounds: usize, cpu: Option<usize>) -> PingPong {
        PingPong {
            rounds,
            cpu,
            rtts: Vec::with_capacity(rounds),
            live: None,
        }
    }

    fn start(&self) -> io::Result<(OwnedFd, Child)> {
        let (ours, theirs) = socketpair()?;
        let fd = theirs.as_raw_fd();
        let cpu = self.cpu;
        let child = fork_child(&[fd], move || {
            if let Some(cpu) = cpu {
                pin_self(cpu)?;
            }
            let mut b = [0u8; 1];
            loop {
                read_exact(fd, &mut b)?;
                write_all(fd, &b)?;
            }
        })?;
        Ok((ours, child))
    }

    /// One sample: the median round trip of `rounds`.
    pub(crate) fn sample(&mut self) -> Result<Duration, String> {
        if self.live.is_none() {
            self.live = Some(self.start().map_err(|e| format!("cannot start the floor child: {e}"))?);
        }
        let fd = self.live.as_ref().expect("just started").0.as_raw_fd();
        let _pin = self.cpu.map(Pinned::to).transpose()?;
        self.rtts.clear();
        let mut b = [0u8; 1];
        for _ in 0..self.rounds {
            let t = Instant::now();
            write_all(fd, b"x").map_err(|e| format!("write failed: {e}"))?;
            read_exact(fd, &mut b).map_err(|e| format!("read failed: {e}"))?;
            self.rtts.push(t.elapsed().as_nanos() as u64);
        }
        Ok(median_ns(&mut self.rtts))
    }
}

/// Pipelined echo over a socket pair, the floor of the queue echo: the
/// parent writes `count` messages of `size` bytes (one `write` each) while
/// reading back whatever has arrived, with `poll` so that neither side
/// blocks the other; the child writes back whatever it reads.
pub(crate) struct Echo {
    size: usize,
    count: usize,
    msg: Vec<u8>,
    back: Vec<u8>,
    live: Option<(OwnedFd, Child)>,
}

impl Echo {
    pub(crate) fn new(size: usize, count: usize) -> Echo {
        Echo {
            size,
            count,
            msg: vec![0x5A; size],
            back: vec![0u8; 256 << 10],
            live: None,
        }
    }

    fn start(&self) -> io::Result<(OwnedFd, Child)> {
        let (ours, theirs) = socketpair()?;
        // The parent's end never blocks: it polls for both directions.
        // SAFETY: fcntl on a descriptor we own.
        cvt(unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) })?;
        let fd = theirs.as_raw_fd();
        let mut buf = vec![0u8; 256 << 10];
        let child = fork_child(&[fd], move || {
            loop {
                match read_some(fd, &mut buf)? {
                    0 => return Ok(()),
                    n => write_all(fd, &buf[..n])?,
                }
            }
        })?;
        Ok((ours, child))
    }

    /// One sample: all messages out and all their bytes back.
    pub(crate) fn sample(&mut self) -> Result<Duration, String> {
        if self.live.is_none() {
            self.live = Some(self.start().map_err(|e| format!("cannot start the floor child: {e}"))?);
        }
        let fd = self.live.as_ref().expect("just started").0.as_raw_fd();
        let total = self.size * self.count;
        let (mut sent_msgs, mut partial, mut got) = (0usize, 0usize, 0usize);
        let t = Instant::now();
        while got < total {
            let want_out = sent_msgs < self.count;
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN | if want_out { libc::POLLOUT } else { 0 },
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll failed: {e}"));
            }
            if want_out && pfd.revents & libc::POLLOUT != 0 {
                // One write per message until the socket is full.
                while sent_msgs < self.count {
                    let rest = &self.msg[partial..];
                    // SAFETY: `rest` is valid for its length.
                    let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
                    if n < 0 {
                        let e = io::Error::last_os_error();
                        match e.kind() {
                            io::ErrorKind::WouldBlock => break,
                            io::ErrorKind::Interrupted => continue,
                            _ => return Err(format!("write failed: {e}")),
                        }
                    }
                    partial += n as usize;
                    if partial == self.size {
                        partial = 0;
                        sent_msgs += 1;
                    }
                }
            }
            if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                loop {
                    match read_some(fd, &mut self.back) {
                        Ok(0) => return Err("the floor child closed the socket".into()),
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(format!("read failed: {e}")),
                    }
                }
            }
        }
        let elapsed = t.elapsed();
        if got != total {
            return Err(format!("{got} bytes came back, {total} were sent"));
        }
        Ok(elapsed)
    }
}
