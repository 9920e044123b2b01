//! Stopping a pool whose workers cannot be signalled (issue 14, item 3).
//!
//! The pool's owner is a child of the test that builds the pool as root,
//! then drops its privileges (`setuid` to nobody, the common server
//! pattern): every signal it sends its root-owned workers fails with
//! `EPERM`. Dropping, terminating and joining the pool still return well
//! within a bound far below the minute per worker they once took, idle
//! workers leave because their links close, and the errors name the
//! workers that could not be signalled. The test (root) kills any worker
//! left behind, by pidfd, and fails.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Pool, ProcessBuilder, StartMethod};
use serde::{Deserialize, Serialize};

use crate::support::{DEADLINE, Rendezvous, notify, ready_then_wait};

/// Far below the minute per worker a stop used to wait, above the
/// pool's ten-second deadline for all its workers.
const BOUND: Duration = Duration::from_secs(20);

/// The unprivileged user.
const NOBODY: libc::uid_t = 65534;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Stop {
    Drop,
    Terminate,
    Join,
    /// `terminate` while one worker runs a task that does not return
    /// until the test lets it, then `join`.
    TerminateBusy,
}

/// An error as the owner saw it: its kind and its message.
type Seen = Option<(ErrorKind, String)>;

#[derive(Debug, Serialize, Deserialize)]
struct Report {
    /// How long the stop took.
    elapsed: Duration,
    /// Its error.
    stopped: Seen,
    /// `TerminateBusy`: the error of the `join` that follows, and how
    /// long it took.
    joined: Option<(Duration, Seen)>,
}

fn seen(r: multiproc::Result<()>) -> Seen {
    r.err().map(|e| (e.kind(), e.to_string()))
}

fn blocks(addr: String) -> u32 {
    ready_then_wait(&addr);
    std::process::id()
}

fn drop_privileges() {
    // SAFETY: an empty list (a null pointer with length 0) clears this
    // process's supplementary groups.
    assert_eq!(unsafe { libc::setgroups(0, std::ptr::null()) }, 0, "setgroups");
    // SAFETY: changes only this process's credentials.
    assert_eq!(unsafe { libc::setgid(NOBODY) }, 0, "setgid");
    // SAFETY: as above (last: it drops the right to change the others).
    assert_eq!(unsafe { libc::setuid(NOBODY) }, 0, "setuid");
}

/// `true` if signalling `pid` fails with `EPERM`.
fn refused(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the signal could be sent.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pool's owner: builds the pool as root, drops its privileges, and
/// stops the pool as `stop` says.
fn owner((m, stop, own, worker): (StartMethod, Stop, String, String)) -> Report {
    let p = Pool::builder().processes(2).start_method(m).build().unwrap();
    let pids = p.pids();
    assert_eq!(pids.len(), 2);
    let busy = (stop == Stop::TerminateBusy).then(|| p.apply_async(blocks, worker).unwrap());
    notify(&own, &format!("pids {} {}", pids[0], pids[1]));
    // Until the test watches the workers (and has seen the task run in
    // its worker).
    ready_then_wait(&own);
    drop_privileges();
    for &pid in &pids {
        assert!(refused(pid), "signalling worker {pid} is not refused");
    }
    let start = Instant::now();
    let stopped = match stop {
        Stop::Drop => {
            drop(p);
            return Report {
                elapsed: start.elapsed(),
                stopped: None,
                joined: None,
            };
        }
        Stop::Terminate | Stop::TerminateBusy => seen(p.terminate()),
        Stop::Join => {
            p.close();
            seen(p.join())
        }
    };
    let elapsed = start.elapsed();
    let mut joined = None;
    if let Some(task) = busy {
        assert_eq!(task.get().unwrap_err().kind(), ErrorKind::Cancelled);
        // The test now lets the task return: its worker finds its link
        // closed and leaves, which `join` waits for.
        notify(&own, "terminated");
        let start = Instant::now();
        let r = seen(p.join());
        joined = Some((start.elapsed(), r));
    }
    Report {
        elapsed,
        stopped,
        joined,
    }
}

/// A pidfd on a worker of the owner: to see it end, and to kill it (as
/// root) if it did not.
struct Watch(libc::c_int);

impl Watch {
    fn open(pid: u32) -> Watch {
        // SAFETY: pidfd_open takes a pid and flags.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        assert!(fd >= 0, "pidfd_open({pid}): {}", std::io::Error::last_os_error());
        Watch(fd as libc::c_int)
    }

    fn ended_within(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) > 0 }
    }

    fn kill(&self) {
        // SAFETY: a signal to the process this pidfd names (never another
        // that reused its pid).
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.0, libc::SIGKILL, 0, 0) };
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: closing the pidfd opened in `open`.
        unsafe { libc::close(self.0) };
    }
}

/// Runs the owner, and checks that every worker has ended at the end
/// (killing, as root, those that have not, and failing).
fn stop_unsignalled(m: StartMethod, stop: Stop) -> (Report, [u32; 2]) {
    let own = Rendezvous::new();
    let worker = Rendezvous::new();
    let mut p = ProcessBuilder::new()
        .name("pool-owner")
        .start_method(StartMethod::Spawn)
        .target_with(owner, (m, stop, own.addr(), worker.addr()));
    p.start().unwrap();
    let msg = own.recv();
    let pids: Vec<u32> = msg
        .strip_prefix("pids ")
        .expect("the workers' pids")
        .split(' ')
        .map(|s| s.parse().unwrap())
        .collect();
    let pids = [pids[0], pids[1]];
    let watches = pids.map(Watch::open);
    let task = (stop == Stop::TerminateBusy).then(|| worker.wait_ready());
    own.wait_ready().open();
    if let Some(task) = task {
        assert_eq!(own.recv(), "terminated");
        task.open();
    }
    let report = p.join_timeout(DEADLINE);
    let left: Vec<u32> = pids
        .iter()
        .zip(&watches)
        .filter(|(_, w)| !w.ended_within(DEADLINE))
        .map(|(&pid, w)| {
            w.kill();
            pid
        })
        .collect();
    assert!(left.is_empty(), "workers {left:?} outlived their pool under {m}");
    (report.unwrap(), pids)
}

fn drop_of_unsignalled_workers_is_bounded(m: StartMethod) {
    let (r, _) = stop_unsignalled(m, Stop::Drop);
    assert!(r.elapsed < BOUND, "drop took {:?}", r.elapsed);
}

fn terminate_of_unsignalled_workers_is_bounded(m: StartMethod) {
    let (r, pids) = stop_unsignalled(m, Stop::Terminate);
    assert!(r.elapsed < BOUND, "terminate took {:?}", r.elapsed);
    // Both idle workers left once their links closed; the error says
    // that neither could be signalled.
    let (kind, msg) = r.stopped.expect("an error naming the workers");
    assert_eq!(kind, ErrorKind::Io, "{msg}");
    for pid in pids {
        assert!(
            msg.contains(&format!("pid {pid} could not be signalled")) && msg.contains("left when its link closed"),
            "{msg}"
        );
    }
}

fn join_of_unsignalled_workers_is_bounded(m: StartMethod) {
    // The workers leave when their links close: no signal is needed.
    let (r, _) = stop_unsignalled(m, Stop::Join);
    assert!(r.elapsed < BOUND, "join took {:?}", r.elapsed);
    assert_eq!(r.stopped, None);
}

fn terminate_names_a_busy_unsignalled_worker(m: StartMethod) {
    let (r, pids) = stop_unsignalled(m, Stop::TerminateBusy);
    assert!(r.elapsed < BOUND, "terminate took {:?}", r.elapsed);
    let (kind, msg) = r.stopped.expect("an error naming the busy worker");
    assert_eq!(kind, ErrorKind::Timeout, "{msg}");
    // One worker runs the task and is still running; the other left.
    let named = pids
        .iter()
        .filter(|pid| msg.contains(&format!("pid {pid} could not be signalled")))
        .count();
    assert_eq!(named, 2, "{msg}");
    assert_eq!(msg.matches("is still running").count(), 1, "{msg}");
    assert_eq!(msg.matches("left when its link closed").count(), 1, "{msg}");
    // Once its task returned, the busy worker left, and `join` saw it.
    let (took, joined) = r.joined.expect("a join after the terminate");
    assert!(took < BOUND, "join took {took:?}");
    assert_eq!(joined, None);
}

per_method!(
    drop_of_unsignalled_workers_is_bounded,
    terminate_of_unsignalled_workers_is_bounded,
    join_of_unsignalled_workers_is_bounded,
    terminate_names_a_busy_unsignalled_worker,
);
