//! Where a child's standard output and error go: [`ChildOutput`].
//!
//! # Design
//!
//! **Inherit** (the default, as in Python): the child writes to this
//! process's descriptors 1 and 2, unchanged. A fork server's child
//! inherits the *server's* descriptors, which are this process's as they
//! were when the server started.
//!
//! **Capture**: the parent makes one anonymous memory file (memfd) per
//! stream and the child makes them its descriptors 1 and 2. A file never
//! fills up, so a child that writes a lot never blocks and nobody has to
//! read while it runs (no thread); whatever the child wrote before it
//! died, even by `SIGKILL`, is in the file; bytes pass unchanged (binary
//! output included). The parent reads the file from offset 0 whenever
//! asked ([`Process::output`](crate::Process::output)), without moving the
//! offset the writers share. The cost: the output lives in memory (tmpfs)
//! until the handle is dropped.
//!
//! **Prefix**: the parent makes one pipe per stream; the child makes the
//! write ends its descriptors 1 and 2, and the parent's *relay*, one
//! thread for all the prefixed children of this process, polls the read
//! ends and writes each complete line, prefixed with `[name] `, to this
//! process's descriptor 1 or 2, with one `write(2)` per batch of whole
//! lines (never std's `Stdout`, whose lock a fork child could inherit
//! held). A line split across the child's writes is kept until its end
//! arrives; a last line without newline is written, with one, when the
//! pipe ends; a line longer than [`LINE_MAX`] is cut into pieces of that
//! size. Reading in the parent (not relaying in the child) means nothing
//! is lost when the child crashes: what it wrote is in the pipe, and the
//! pipe ends when the child does. `join` drains the child's pipes itself
//! (under the relay's lock, so lines stay in order), so when it returns
//! every line the child wrote is out.
//!
//! **Where the descriptors are made.** Always in the parent, before the
//! child exists: under spawn and forkserver they travel with the `Boot`
//! frame (`SCM_RIGHTS`) and the child installs them before its target
//! runs (so not the fork server, whose descriptors its children inherit,
//! nor a child of another start, ever holds them); under fork the child
//! installs them right after the fork. The parent closes its copies of
//! the write ends as soon as the child is started, so the pipe ends when
//! the child (and any child of its own that inherited them) exits.
//!
//! **The relay thread** starts with the first prefixed child and ends when
//! the last pipe ends (or when `join` drained the last one), so an idle
//! process keeps no thread and no descriptor. It holds no lock of std's
//! and its own lock is held across a fork, so the `fork` start method
//! does not count it as a thread of the parent (see `lock_for_fork`).

use std::{
    io,
    sync::{Arc, Mutex, MutexGuard},
    thread::JoinHandle,
    time::Duration,
};

use crate::{
    registry,
    sys::{self, Fd, ReadSome},
};

/// Where a child's standard output and error go
/// ([`ProcessBuilder::output`](crate::ProcessBuilder::output),
/// [`PoolBuilder::output`](crate::PoolBuilder::output)).
///
/// ```
/// use multiproc::{ChildOutput, ProcessBuilder};
///
/// fn talk() {
///     println!("one");
///     eprintln!("two");
///     print!("no newline");
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = ProcessBuilder::new().output(ChildOutput::Capture).target(talk);
/// p.start()?;
/// p.join()?;
/// let out = p.output()?;
/// assert_eq!(out.stdout, b"one\nno newline");
/// assert_eq!(out.stderr, b"two\n");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChildOutput {
    /// The child writes to this process's standard output and error (the
    /// default, as in Python).
    #[default]
    Inherit,
    /// Each line the child writes to its standard output (error) appears on
    /// this process's standard output (error), whole and prefixed with the
    /// child's name in brackets: `[Process-3] hello`. The lines of several
    /// children interleave, but never within a line (up to
    /// [`ChildOutput::LINE_MAX`] bytes). Bytes pass unchanged; a last line
    /// without newline gets one. When [`join`](crate::Process::join)
    /// returns, every line the child wrote has been written, a crashed
    /// child's included (only a line that a child of its own, still
    /// running, may go on writing is held until it ends). A thread of this
    /// process relays the lines of all its prefixed children; it ends with
    /// the last of them.
    Prefix,
    /// The child's standard output and error are kept for this process:
    /// [`Process::output`](crate::Process::output),
    /// [`stdout`](crate::Process::stdout), [`stderr`](crate::Process::stderr).
    /// The child never blocks on them, and whatever it wrote before it
    /// ended (even killed) is kept, in memory, until the handle is dropped.
    /// (What the child's own `Stdout` still buffered when it was killed,
    /// the start of a line, never left the child.)
    Capture,
}

/// What a child wrote to its standard output and error
/// ([`ChildOutput::Capture`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CapturedOutput {
    /// The bytes written to standard output.
    pub stdout: Vec<u8>,
    /// The bytes written to standard error.
    pub stderr: Vec<u8>,
}

impl ChildOutput {
    /// The longest line [`ChildOutput::Prefix`] writes whole: a longer one
    /// is cut into lines of this many bytes, each with the prefix.
    pub const LINE_MAX: usize = 64 * 1024;
}

const LINE_MAX: usize = ChildOutput::LINE_MAX;

/// How much the relay reads from one pipe before it looks at the others.
const READ_CHUNK: usize = 64 * 1024;

/// A descriptor of this process's own (not a user's), which a fork child
/// closes (`registry::adopt_own_fd`). Released from that list before it is
/// closed, so that a number reused later is not closed by mistake.
pub(crate) struct OwnFd {
    fd: Fd,
    pid: u32,
}

impl OwnFd {
    fn new(fd: Fd) -> OwnFd {
        registry::adopt_own_fd(fd.raw());
        OwnFd { fd, pid: sys::getpid() }
    }
}

impl Drop for OwnFd {
    fn drop(&mut self) {
        if self.pid == sys::getpid() {
            registry::release_own_fd(self.fd.raw());
        }
    }
}

// ---------------------------------------------------------------------
// Preparing a child.

/// A child's output descriptors, made before it starts.
pub(crate) struct Prepared {
    /// What the child makes its descriptors 1 and 2.
    child: [Fd; 2],
    /// What this process keeps: the read ends of the pipes (Prefix) or
    /// nothing beyond `child` (Capture: the same files).
    kept: Kept,
}

enum Kept {
    Pipes { prefix: Vec<u8>, read: [Fd; 2] },
    Files,
}

/// The descriptors for a child named `name` with output `mode`; `None` for
/// [`ChildOutput::Inherit`].
pub(crate) fn prepare(mode: ChildOutput, name: &str) -> io::Result<Option<Prepared>> {
    match mode {
        ChildOutput::Inherit => Ok(None),
        ChildOutput::Capture => Ok(Some(Prepared {
            child: [sys::capture_file()?, sys::capture_file()?],
            kept: Kept::Files,
        })),
        ChildOutput::Prefix => {
            let (out_r, out_w) = sys::output_pipe()?;
            let (err_r, err_w) = sys::output_pipe()?;
            Ok(Some(Prepared {
                child: [out_w, err_w],
                kept: Kept::Pipes {
                    prefix: format!("[{name}] ").into_bytes(),
                    read: [out_r, err_r],
                },
            }))
        }
    }
}

impl Prepared {
    /// The descriptors the child makes its 1 and 2.
    pub(crate) fn child_fds(&self) -> [i32; 2] {
        [self.child[0].raw(), self.child[1].raw()]
    }

    /// Every descriptor this holds (a fork child closes them all once it
    /// has installed its own).
    fn all_fds(&self) -> Vec<i32> {
        let mut v = self.child_fds().to_vec();
        if let Kept::Pipes { read, .. } = &self.kept {
            v.extend(read.iter().map(Fd::raw));
        }
        v
    }

    /// The child has started: close this process's copies of the child's
    /// ends of the pipes and hand the read ends to the relay, or keep the
    /// capture files.
    pub(crate) fn attach(self) -> Attached {
        match self.kept {
            Kept::Files => {
                let [out, err] = self.child;
                Attached::Captured([OwnFd::new(out), OwnFd::new(err)])
            }
            Kept::Pipes { prefix, read } => {
                drop(self.child);
                let [out, err] = read;
                let mut relay = lock();
                let ids = [relay.add(out, 1, prefix.clone()), relay.add(err, 2, prefix)];
                relay.ensure_thread();
                Attached::Relayed(ids)
            }
        }
    }
}

/// Installs `fds` (the descriptors a spawned or fork-server child received
/// with its `Boot` frame) as this process's descriptors 1 and 2.
pub(crate) fn install(fds: Vec<Fd>) -> io::Result<()> {
    let [out, err] = <[Fd; 2]>::try_from(fds).map_err(|v| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} output descriptors, not 2", v.len()),
        )
    })?;
    sys::redirect(&out, 1)?;
    sys::redirect(&err, 2)?;
    Ok(())
}

/// What a started process keeps of its output.
#[derive(Default)]
pub(crate) enum Attached {
    #[default]
    Inherited,
    /// The relay's ids of its stdout and stderr pipes.
    Relayed([u64; 2]),
    /// The capture files of its stdout and stderr.
    Captured([OwnFd; 2]),
}

impl Attached {
    /// After the child has ended (`join`): write what its pipes still hold
    /// (all of it, unless a child of its own keeps a pipe open).
    pub(crate) fn settle(&self) {
        let Attached::Relayed(ids) = self else {
            return;
        };
        drain(Some(ids));
    }

    /// The captured output so far; `None` unless captured.
    pub(crate) fn captured(&self) -> Option<io::Result<CapturedOutput>> {
        let Attached::Captured([out, err]) = self else {
            return None;
        };
        Some((|| {
            Ok(CapturedOutput {
                stdout: sys::file_contents(&out.fd)?,
                stderr: sys::file_contents(&err.fd)?,
            })
        })())
    }

    /// One captured stream (1 or 2); `None` unless captured.
    pub(crate) fn captured_stream(&self, which: usize) -> Option<io::Result<Vec<u8>>> {
        let Attached::Captured(files) = self else {
            return None;
        };
        Some(sys::file_contents(&files[which - 1].fd))
    }
}

/// Writes what the pipes of the children `ids` (all children: `None`)
/// hold now, and stops the relay thread if no pipe is left, so that
/// nothing outlives the caller's `join` or exit.
fn drain(ids: Option<&[u64]>) {
    let mut relay = lock();
    let mut i = 0;
    while i < relay.sources.len() {
        if ids.is_some_and(|ids| !ids.contains(&relay.sources[i].id)) {
            i += 1;
        } else if relay.sources[i].pump(usize::MAX) {
            relay.remove(i);
        } else {
            i += 1;
        }
    }
    if relay.sources.is_empty() {
        if let Some(t) = relay.stop_thread() {
            drop(relay);
            let _ = t.join();
            let mut relay = lock();
            if relay.thread.is_none() {
                relay.wake = None;
            }
        }
    }
}

/// At the end of a process (a child's `finish`, after its own children
/// have ended; the main process's `atexit`): the lines its prefixed
/// children wrote that the relay has not written yet are written, so that
/// a parent's exit loses none of its children's lines.
pub(crate) fn drain_at_exit() {
    let active = RELAY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|r| !r.sources.is_empty());
    if active {
        drain(None);
    }
}

extern "C" fn drain_at_exit_hook() {
    // Never unwind across the C boundary of atexit. The exit routine runs
    // first (again, if the registry's hook ran before this one; it then
    // finds nothing to do): the children must have ended for their pipes
    // to end.
    let _ = std::panic::catch_unwind(|| {
        registry::exit_routine();
        drain_at_exit();
    });
}

// ---------------------------------------------------------------------
// The relay.

/// One pipe being relayed.
struct Source {
    id: u64,
    fd: OwnFd,
    /// This process's descriptor the lines go to (1 or 2).
    to: i32,
    prefix: Vec<u8>,
    /// The start of a line whose end has not arrived.
    partial: Vec<u8>,
}

impl Source {
    /// Reads what the pipe holds (up to about `budget` bytes) and writes
    /// the complete lines. `true` once the pipe has ended (the last line
    /// is then written too).
    fn pump(&mut self, budget: usize) -> bool {
        let mut read = 0;
        let ended = loop {
            if read >= budget {
                break false;
            }
            match sys::read_some(&self.fd.fd, &mut self.partial, READ_CHUNK) {
                // Written as it comes: what is held stays below LINE_MAX.
                Ok(ReadSome::Data(n)) => {
                    read += n;
                    self.write_lines(false);
                }
                Ok(ReadSome::Empty) => break false,
                // A pipe that cannot be read is as good as ended.
                Ok(ReadSome::End) | Err(_) => break true,
            }
        };
        if ended {
            self.write_lines(true);
        }
        ended
    }

    /// Writes every complete line of `partial` (and the rest too, when
    /// `all`), each behind the prefix, in one write.
    fn write_lines(&mut self, all: bool) {
        let mut out = Vec::new();
        let mut start = 0;
        let buf = &self.partial;
        while start < buf.len() {
            let rest = &buf[start..];
            let end = match rest.iter().position(|&b| b == b'\n') {
                Some(nl) if nl < LINE_MAX => nl + 1,
                _ if rest.len() >= LINE_MAX => LINE_MAX,
                _ if all => rest.len(),
                _ => break,
            };
            out.extend_from_slice(&self.prefix);
            out.extend_from_slice(&rest[..end]);
            if out.last() != Some(&b'\n') {
                out.push(b'\n');
            }
            start += end;
        }
        self.partial.drain(..start);
        if !out.is_empty() {
            // This process's own output cannot be reported anywhere else.
            let _ = sys::write_all_raw(self.to, &out);
        }
    }
}

#[derive(Default)]
struct Relay {
    sources: Vec<Source>,
    next_id: u64,
    /// Wakes the thread when a source is added or the thread must stop.
    wake: Option<Arc<OwnFd>>,
    /// The relay thread: the running one, or one that has stopped by
    /// itself (its generation is past) and is yet to be joined.
    thread: Option<JoinHandle<()>>,
    /// The running thread's generation; a thread whose number is not this
    /// one stops.
    generation: u64,
    running: bool,
}

static RELAY: Mutex<Option<Relay>> = Mutex::new(None);

struct Locked(MutexGuard<'static, Option<Relay>>);

impl std::ops::Deref for Locked {
    type Target = Relay;
    fn deref(&self) -> &Relay {
        self.0.as_ref().expect("set by lock")
    }
}

impl std::ops::DerefMut for Locked {
    fn deref_mut(&mut self) -> &mut Relay {
        self.0.as_mut().expect("set by lock")
    }
}

fn lock() -> Locked {
    // The relay's state stays usable after a panic: output is best effort.
    let mut guard = RELAY.lock().unwrap_or_else(|e| e.into_inner());
    guard.get_or_insert_with(Relay::default);
    Locked(guard)
}

impl Relay {
    fn add(&mut self, fd: Fd, to: i32, prefix: Vec<u8>) -> u64 {
        self.next_id += 1;
        self.sources.push(Source {
            id: self.next_id,
            fd: OwnFd::new(fd),
            to,
            prefix,
            partial: Vec::new(),
        });
        self.next_id
    }

    fn remove(&mut self, i: usize) {
        self.sources.swap_remove(i);
        if let Some(w) = &self.wake {
            // The thread must stop polling the closed descriptor.
            sys::eventfd_signal(&w.fd);
        }
    }

    /// Starts the relay thread unless it runs; wakes it if it does.
    fn ensure_thread(&mut self) {
        if self.running {
            if let Some(w) = &self.wake {
                sys::eventfd_signal(&w.fd);
            }
            return;
        }
        self.join_stopped();
        static ATEXIT: std::sync::Once = std::sync::Once::new();
        ATEXIT.call_once(|| {
            // Without it, lines still in a pipe at this process's exit
            // would be lost; not worth failing a start for.
            let _ = sys::atexit(drain_at_exit_hook);
        });
        let wake = match &self.wake {
            Some(w) => w.clone(),
            None => match sys::eventfd() {
                Ok(fd) => {
                    let w = Arc::new(OwnFd::new(fd));
                    self.wake = Some(w.clone());
                    w
                }
                // Without a wake-up the relay would miss new pipes: fall
                // back to polling them (the thread's poll times out).
                Err(_) => return self.spawn(None),
            },
        };
        self.spawn(Some(wake));
    }

    fn spawn(&mut self, wake: Option<Arc<OwnFd>>) {
        self.generation += 1;
        let generation = self.generation;
        let t = std::thread::Builder::new()
            .name("multiproc-output".into())
            .spawn(move || relay_loop(generation, wake));
        match t {
            Ok(t) => {
                self.thread = Some(t);
                self.running = true;
            }
            // No thread: the pipes are read only by `join`, and a child
            // that fills one blocks until then. Nothing better is possible.
            Err(_) => self.running = false,
        }
    }

    /// Joins a thread that stopped by itself (it no longer takes the lock,
    /// so joining under the lock cannot deadlock).
    fn join_stopped(&mut self) {
        if !self.running {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Tells the running thread to stop; the caller joins it without the
    /// lock.
    fn stop_thread(&mut self) -> Option<JoinHandle<()>> {
        self.join_stopped();
        if !self.running {
            return None;
        }
        self.running = false;
        self.generation += 1;
        if let Some(w) = &self.wake {
            sys::eventfd_signal(&w.fd);
        }
        self.thread.take()
    }
}

/// The relay thread: poll every pipe, write the lines of those that have
/// some, until no pipe is left or another generation took over.
fn relay_loop(generation: u64, wake: Option<Arc<OwnFd>>) {
    loop {
        let (ids, mut fds) = {
            let mut relay = lock();
            if relay.generation != generation {
                return;
            }
            if relay.sources.is_empty() {
                relay.running = false;
                relay.generation += 1;
                relay.wake = None;
                return;
            }
            let ids: Vec<u64> = relay.sources.iter().map(|s| s.id).collect();
            let fds: Vec<i32> = relay.sources.iter().map(|s| s.fd.fd.raw()).collect();
            (ids, fds)
        };
        if let Some(w) = &wake {
            fds.push(w.fd.raw());
        }
        // A descriptor closed meanwhile (by `join`) reports at once; the
        // next round no longer polls it. Without a wake-up descriptor,
        // look for new pipes twice a second.
        let timeout = wake.is_none().then(|| Duration::from_millis(500));
        let Ok(ready) = sys::poll_readable_set(&fds, timeout) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if let Some(w) = &wake {
            if ready[ids.len()] {
                sys::eventfd_drain(&w.fd);
            }
        }
        let mut relay = lock();
        if relay.generation != generation {
            return;
        }
        for (id, _) in ids.iter().zip(&ready).filter(|(_, r)| **r) {
            if let Some(i) = relay.sources.iter().position(|s| s.id == *id) {
                if relay.sources[i].pump(4 * READ_CHUNK) {
                    relay.remove(i);
                }
            }
        }
    }
}

/// The relay, locked across a fork (so that its thread holds no lock the
/// child would inherit held), and the number of relay threads running
/// (which the fork's count of the parent's threads leaves out: the relay
/// thread takes no lock of std's nor, while this is held, its own).
pub(crate) struct ForkGuard(Locked);

pub(crate) fn lock_for_fork() -> ForkGuard {
    let mut relay = lock();
    relay.join_stopped();
    ForkGuard(relay)
}

impl ForkGuard {
    /// Threads of the relay running in this process (0 or 1).
    pub(crate) fn threads(&self) -> usize {
        usize::from(self.0.thread.is_some())
    }

    /// In the fork child: forget the parent's relay (its thread is not
    /// here; its descriptors are closed with the process's own), and make
    /// `prepared`'s descriptors this child's 1 and 2.
    pub(crate) fn in_child(mut self, prepared: Option<&Prepared>) -> io::Result<()> {
        // Dropping would detach a thread that does not exist here, and close
        // descriptors by numbers the parent owns.
        std::mem::forget(self.0.0.take());
        drop(self);
        if let Some(p) = prepared {
            let installed = sys::redirect(&p.child[0], 1).and_then(|()| sys::redirect(&p.child[1], 2));
            // The parent's objects own these numbers: close them by number.
            sys::close_inherited(&p.all_fds());
            installed?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source reading a pipe and writing prefixed lines to a memory
    /// file; returns it with the writer of its pipe and the file.
    fn source() -> (Source, Fd, Fd) {
        let (input_r, input_w) = sys::output_pipe().unwrap();
        let file = sys::capture_file().unwrap();
        let s = Source {
            id: 1,
            fd: OwnFd::new(input_r),
            to: file.raw(),
            prefix: b"[p] ".to_vec(),
            partial: Vec::new(),
        };
        (s, input_w, file)
    }

    fn written(file: &Fd) -> Vec<u8> {
        sys::file_contents(file).unwrap()
    }

    #[test]
    fn lines_are_held_until_whole_and_the_last_is_ended_at_the_end() {
        let (mut s, w, out) = source();
        sys::write_all_raw(w.raw(), b"one\ntw").unwrap();
        assert!(!s.pump(usize::MAX));
        assert_eq!(written(&out), b"[p] one\n");
        sys::write_all_raw(w.raw(), b"o\nthr").unwrap();
        assert!(!s.pump(usize::MAX));
        assert_eq!(written(&out), b"[p] one\n[p] two\n");
        drop(w);
        assert!(s.pump(usize::MAX), "the pipe ended");
        assert_eq!(written(&out), b"[p] one\n[p] two\n[p] thr\n");
    }

    #[test]
    fn bytes_pass_unchanged_and_long_lines_are_cut() {
        let (mut s, w, out) = source();
        // Every byte value but the newline.
        let long: Vec<u8> = (0..LINE_MAX + 1000)
            .map(|i| (i % 255) as u8 + 1)
            .filter(|&b| b != b'\n')
            .collect();
        assert!(long.len() > LINE_MAX);
        let sent = long.clone();
        // More than a pipe holds: written while the source reads.
        let writer = std::thread::spawn(move || {
            sys::write_all_raw(w.raw(), &sent).unwrap();
        });
        while !s.pump(usize::MAX) {
            s.fd.fd.poll_readable(Some(Duration::from_secs(60))).unwrap();
        }
        writer.join().unwrap();
        let mut expected = b"[p] ".to_vec();
        expected.extend_from_slice(&long[..LINE_MAX]);
        expected.extend_from_slice(b"\n[p] ");
        expected.extend_from_slice(&long[LINE_MAX..]);
        expected.push(b'\n');
        let got = written(&out);
        assert!(
            got == expected,
            "{} bytes written, {} expected",
            got.len(),
            expected.len()
        );
    }
}
