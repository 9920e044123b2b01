//! SharedMemory across processes, under every start method: anonymous
//! segments passed by descriptor, named ones attached by name, who unlinks,
//! the cleanup tracker after a creator is killed, and leaks.

use std::{io, path::Path};

use multiproc::{self as mp, ErrorKind, SharedMemory, StartMethod};

use crate::support::{self, DEADLINE, Rendezvous, start};

fn shm_path(name: &str) -> String {
    format!("/dev/shm/{name}")
}

fn io_kind(e: &mp::Error) -> Option<io::ErrorKind> {
    std::error::Error::source(e)?
        .downcast_ref::<io::Error>()
        .map(io::Error::kind)
}

fn write_howdy(shm: SharedMemory) {
    shm.write_at(1, b"howdy").unwrap();
}

/// CPython SHM-05 (passing the object): the child writes, the parent reads.
fn anonymous_child_writes_parent_reads(m: StartMethod) {
    let shm = SharedMemory::new(4096).unwrap();
    let mut p = start(m, write_howdy, shm.try_clone().unwrap());
    p.join_timeout(DEADLINE).unwrap();
    let mut buf = [0u8; 6];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"\0howdy");
}

fn attach_and_write(name: String) -> usize {
    let shm = SharedMemory::attach(&name).unwrap();
    assert!(!shm.owns_name());
    shm.write_at(0, b"HELLO").unwrap();
    shm.size()
    // Dropped here: an attacher never unlinks.
}

/// CPython SHM-05 (by name): a child attaches by name and writes; its exit
/// leaves the segment to its creator.
fn named_attach_in_child(m: StartMethod) {
    let shm = SharedMemory::create(512).unwrap();
    let name = shm.name().unwrap().to_owned();
    let mut p = start(m, attach_and_write, name.clone());
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 512);
    assert!(
        Path::new(&shm_path(&name)).exists(),
        "the attacher's exit removed the segment"
    );
    assert_eq!(&shm.to_vec()[..5], b"HELLO");
    drop(shm);
    assert!(
        !Path::new(&shm_path(&name)).exists(),
        "the creator did not unlink on drop"
    );
}

/// A named segment passed as an argument travels by descriptor: the child
/// maps the same memory and does not own the name.
fn named_passed_by_descriptor(m: StartMethod) {
    fn child(shm: SharedMemory) -> (Option<String>, bool) {
        shm.write_at(0, b"x").unwrap();
        (shm.name().map(str::to_owned), shm.owns_name())
    }
    let shm = SharedMemory::create(64).unwrap();
    let mut p = start(m, child, shm.try_clone().unwrap());
    let (name, owns) = p.join_timeout(DEADLINE).unwrap();
    assert_eq!(name.as_deref(), shm.name());
    assert!(!owns);
    assert!(Path::new(&shm_path(shm.name().unwrap())).exists());
    assert_eq!(shm.to_vec()[0], b'x');
}

fn create_report_block(addr: String) {
    let shm = SharedMemory::create(10).unwrap();
    let tracker = SharedMemory::__tracker_pid().expect("a tracker runs once a named segment exists");
    support::notify(&addr, &format!("{} {tracker}", shm.name().unwrap()));
    support::block_forever()
}

/// CPython SHM-11, with SIGKILL: the creator dies without running any
/// destructor; its tracker removes the segment.
fn creator_killed_segment_removed(m: StartMethod) {
    let rv = Rendezvous::new();
    let mut p = start(m, create_report_block, rv.addr());
    let report = rv.recv();
    let (name, tracker) = report.split_once(' ').expect("name and tracker pid");
    let tracker = support::PidWatch::open(tracker.parse().expect("a pid"));
    let path = shm_path(name);
    assert!(Path::new(&path).exists());
    p.kill().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    // The cleanup happens in the dead creator's tracker, which unlinks its
    // names and then exits: its end says the cleanup is done.
    assert!(tracker.ended_within(DEADLINE), "the tracker outlived its owner");
    assert!(
        !Path::new(&path).exists(),
        "{path} still exists after its creator was killed"
    );
}

fn create_and_exit(_: ()) -> (String, u32) {
    let shm = SharedMemory::create(10).unwrap();
    let name = shm.name().unwrap().to_owned();
    // No destructor: process::exit-like leak, cleaned by the tracker.
    std::mem::forget(shm);
    (name, SharedMemory::__tracker_pid().expect("a tracker runs"))
}

/// A segment leaked by a creator that then exits normally is removed too.
fn leaked_segment_removed_at_exit(m: StartMethod) {
    let mut p = start(m, create_and_exit, ());
    let (name, tracker) = p.join_timeout(DEADLINE).unwrap();
    let path = shm_path(&name);
    // The tracker may be gone (and reaped) already.
    if let Some(tracker) = support::PidWatch::try_open(tracker) {
        assert!(tracker.ended_within(DEADLINE), "the tracker outlived its owner");
    }
    assert!(
        !Path::new(&path).exists(),
        "{path} still exists after its creator exited"
    );
}

fn replace_name(name: String) {
    SharedMemory::attach(&name).unwrap().unlink().unwrap();
    let mut other = SharedMemory::create_named(&name, 4096).unwrap();
    other.write_at(0, &[9]).unwrap();
    other.persist();
}

/// The creator's drop leaves alone a namesake that replaced its segment
/// after someone else unlinked the name.
fn creator_drop_spares_a_namesake(m: StartMethod) {
    let shm = SharedMemory::create(4096).unwrap();
    let name = shm.name().unwrap().to_owned();
    let mut p = start(m, replace_name, name.clone());
    p.join_timeout(DEADLINE).unwrap();
    assert!(shm.owns_name());
    drop(shm);
    let mut other = SharedMemory::attach(&name).expect("the namesake survives");
    let mut b = [0u8];
    other.read_at(0, &mut b).unwrap();
    assert_eq!(b, [9]);
    other.unlink().unwrap();
}

per_method!(
    anonymous_child_writes_parent_reads,
    named_attach_in_child,
    named_passed_by_descriptor,
    creator_killed_segment_removed,
    leaked_segment_removed_at_exit,
    creator_drop_spares_a_namesake,
);

/// The error cases (CPython's SHM-01 and SHM-03): a zero size, a missing or
/// malformed name, a taken name, an offset out of range, a second unlink.
#[test]
fn bad_sizes_names_offsets_and_unlinks_are_errors() {
    let e = SharedMemory::new(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("at least 1 byte"), "{e}");
    assert_eq!(SharedMemory::create(0).unwrap_err().kind(), ErrorKind::InvalidInput);

    let e = SharedMemory::attach("psm_multiproc_test_does_not_exist").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert_eq!(io_kind(&e), Some(io::ErrorKind::NotFound), "{e}");
    assert!(e.to_string().contains("psm_multiproc_test_does_not_exist"), "{e}");

    for bad in ["", "/", "a/b", "x\0y", &"n".repeat(256)] {
        assert_eq!(
            SharedMemory::attach(bad).unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
    }

    let mut shm = SharedMemory::create(512).unwrap();
    let name = shm.name().unwrap().to_owned();
    let e = SharedMemory::create_named(&name, 512).unwrap_err();
    assert_eq!(io_kind(&e), Some(io::ErrorKind::AlreadyExists), "{e}");
    // A leading slash names the same segment.
    let other = SharedMemory::attach(&format!("/{name}")).unwrap();
    assert_eq!(other.size(), 512);

    let mut buf = [0u8; 2];
    assert_eq!(shm.read_at(511, &mut buf).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(
        shm.write_at(usize::MAX, b"x").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    shm.read_at(510, &mut buf).unwrap();

    shm.unlink().unwrap();
    assert!(!shm.owns_name());
    let e = shm.unlink().unwrap_err();
    assert_eq!(io_kind(&e), Some(io::ErrorKind::NotFound), "{e}");
    assert_eq!(
        SharedMemory::new(1).unwrap().unlink().unwrap_err().kind(),
        ErrorKind::InvalidState
    );
}

/// `persist` gives the name up: it survives the creator's handle until an
/// attacher unlinks it.
#[test]
fn persist_then_unlink_by_attacher() {
    let mut shm = SharedMemory::create(16).unwrap();
    let name = shm.name().unwrap().to_owned();
    shm.persist();
    assert!(!shm.owns_name());
    drop(shm);
    let mut again = SharedMemory::attach(&name).unwrap();
    again.unlink().unwrap();
    assert!(!Path::new(&shm_path(&name)).exists());
}

/// The atomic view and the copies see the same bytes.
#[test]
fn the_atomic_view_and_the_copies_see_the_same_bytes() {
    use std::sync::atomic::Ordering;
    let mut shm = SharedMemory::new(8192).unwrap();
    shm.fill(7);
    assert_eq!(shm.as_atomic_bytes()[8191].load(Ordering::Relaxed), 7);
    shm.as_atomic_bytes()[0].store(1, Ordering::Relaxed);
    // SAFETY: no other handle or process exists.
    let slice = unsafe { shm.as_mut_slice() };
    assert_eq!(slice[0], 1);
    slice[1] = 2;
    assert_eq!(&shm.to_vec()[..3], &[1, 2, 7]);
}

fn proc_lines(path: &str) -> usize {
    std::fs::read_to_string(path).expect("read /proc file").lines().count()
}

/// The body of `cycles_leak_nothing`, in a single-threaded child so that
/// no other test's descriptors or mappings come and go meanwhile.
fn cycle_1000() -> (usize, usize, usize, usize, Vec<String>) {
    // The first named segment starts the tracker (a socket, a pidfd).
    drop(SharedMemory::create(4096).unwrap());
    let fds = support::open_fds().len();
    let maps = proc_lines("/proc/self/maps");
    let mut names = Vec::new();
    for i in 0..1000 {
        let mut named = SharedMemory::create(4096).unwrap();
        names.push(named.name().unwrap().to_owned());
        named.write_at(0, &[1]).unwrap();
        if i % 2 == 0 {
            named.unlink().unwrap();
        }
        drop(named);
        drop(SharedMemory::new(4096).unwrap());
    }
    let left = names.into_iter().filter(|n| Path::new(&shm_path(n)).exists()).collect();
    (
        fds,
        support::open_fds().len(),
        maps,
        proc_lines("/proc/self/maps"),
        left,
    )
}

/// 1,000 create/unlink cycles leave no descriptor, mapping or name behind.
#[test]
fn cycles_leak_nothing() {
    let mut p = mp::ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .target(cycle_1000);
    p.start().unwrap();
    let (fds0, fds1, maps0, maps1, left) = p.join_timeout(DEADLINE).unwrap();
    assert_eq!(fds0, fds1, "descriptors leaked");
    assert_eq!(maps0, maps1, "mappings leaked");
    assert!(left.is_empty(), "names left in /dev/shm: {left:?}");
}
