//! The small pieces of CPython's surface: a barrier's default timeout,
//! values sharing a caller's lock, `ShareableList`, `set_executable`;
//! every child behaviour under every start method.

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use multiproc::{
    self as mp, AcquireError, Array, Barrier, ErrorKind, ListItem, Lock, RLock, ShareableList, StartMethod, Value,
    ValueLock,
};

use crate::support::{DEADLINE, start};

// ----- Barrier(parties, timeout=...) -----

/// A plain `wait()` in the child; reports the default timeout the child's
/// handle carries and how its wait ended.
fn plain_wait(b: Barrier) -> (Option<Duration>, std::result::Result<usize, ErrorKind>) {
    (b.timeout(), b.wait().map_err(|e| e.kind()))
}

/// Python's `Barrier(3, timeout=t)`: the default travels with the barrier,
/// a plain `wait()` uses it, and its expiry breaks the barrier for every
/// waiter (`BrokenBarrierError`), here a child and the parent.
fn barrier_default_timeout_breaks_plain_wait(m: StartMethod) {
    let t = Duration::from_millis(300);
    let b = Barrier::with_timeout(3, t).unwrap();
    assert_eq!(b.timeout(), Some(t));
    let mut p = start(m, plain_wait, b.clone());
    // The third party never comes: whichever of the two waits expires
    // first breaks the barrier, and the other is told.
    let mine = b.wait().unwrap_err();
    assert_eq!(mine.kind(), ErrorKind::BrokenBarrier, "{mine}");
    let (theirs_timeout, theirs) = p.join_timeout(DEADLINE).unwrap();
    assert_eq!(theirs_timeout, Some(t));
    assert_eq!(theirs, Err(ErrorKind::BrokenBarrier));
    assert!(b.is_broken());
    // Broken until a reset; then it passes again, with plain waits.
    b.reset().unwrap();
    let b2 = Barrier::with_timeout(2, DEADLINE).unwrap();
    let mut p = start(m, plain_wait, b2.clone());
    let mine = b2.wait().unwrap();
    let (_, theirs) = p.join_timeout(DEADLINE).unwrap();
    assert_eq!(mine + theirs.unwrap(), 1);
}

per_method!(barrier_default_timeout_breaks_plain_wait);

#[test]
fn barrier_without_default_timeout_has_none() {
    let b = Barrier::new(1).unwrap();
    assert_eq!(b.timeout(), None);
    assert_eq!(b.wait().unwrap(), 0);
    // An explicit timeout still wins over the default.
    let b = Barrier::with_timeout(2, DEADLINE).unwrap();
    let e = b.wait_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenBarrier);
}

// ----- Value(typecode, v, lock=L) -----

const ROUNDS: u64 = 300;

/// Increments both values in one critical section of their shared `Lock`;
/// counts the times it found them unequal (the invariant a == b).
fn bump_with_lock((a, b, lock): (Value<u64>, Value<u64>, Lock)) -> u64 {
    // The values carry the very lock passed beside them.
    assert!(matches!(a.get_lock(), Some(ValueLock::Lock(_))));
    let mut broken = 0;
    for _ in 0..ROUNDS {
        let held = lock.acquire().expect("nobody dies holding it");
        let mut ga = a.lock_in(&held).expect("a is under this lock");
        let mut gb = b.lock_in(&held).expect("b is under this lock");
        broken += u64::from(*ga != *gb);
        *ga += 1;
        *gb += 1;
    }
    broken
}

/// Python's `Value('Q', 0, lock=L)` twice with one `Lock`: children update
/// both inside one critical section; totals are exact and the invariant
/// holds whenever the lock is held.
fn values_share_a_callers_lock(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let a = Value::with_lock(0u64, lock.clone()).unwrap();
    let b = Value::with_lock(0u64, lock.clone()).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|_| start(m, bump_with_lock, (a.clone(), b.clone(), lock.clone())))
        .collect();
    let mut broken = bump_with_lock((a.clone(), b.clone(), lock.clone()));
    for mut p in ps {
        broken += p.join_timeout(DEADLINE).expect("the child's count");
    }
    assert_eq!(broken, 0, "a == b under the lock");
    assert_eq!(a.load().unwrap(), 4 * ROUNDS);
    assert_eq!(b.load().unwrap(), 4 * ROUNDS);
    assert!(!lock.is_locked());
}

/// Reports whether `b` was free while the parent holds `a`'s guard, and
/// whether the shared lock is seen held through `b.get_lock()`.
fn probe_b(b: Value<u64>) -> (bool, bool) {
    let free = match b.try_lock() {
        Ok(_) => true,
        Err(AcquireError::Timeout) => false,
        Err(e) => panic!("unexpected {e}"),
    };
    let held = match b.get_lock() {
        Some(ValueLock::RLock(l)) => l.is_locked(),
        other => panic!("b's lock is the caller's RLock, not {other:?}"),
    };
    (free, held)
}

fn bump_with_rlock((a, b, lock): (Array<u64>, Value<u64>, RLock)) -> u64 {
    let mut broken = 0;
    for _ in 0..ROUNDS {
        // Python's `with lock: a[0] += 1; b.value += 1` (an RLock nests).
        let _outer = lock.acquire().expect("nobody dies holding it");
        let mut ga = a.lock().expect("a nests in the RLock");
        let mut gb = b.lock().expect("b nests in the RLock");
        broken += u64::from(ga[0] != *gb);
        ga[0] += 1;
        *gb += 1;
    }
    broken
}

/// An `Array` and a `Value` sharing one `RLock` (Python's default kind):
/// holding one excludes the other's users in other processes, the lock
/// travels with them, and nested updates under the RLock are exact.
fn array_and_value_share_a_callers_rlock(m: StartMethod) {
    let lock = RLock::new().unwrap();
    let a = Array::<u64>::with_lock(4, lock.clone()).unwrap();
    let b = Value::with_lock(0u64, lock.clone()).unwrap();
    {
        let _g = a.lock().unwrap();
        let mut p = start(m, probe_b, b.clone());
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), (false, true));
    }
    let mut p = start(m, probe_b, b.clone());
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), (true, false));
    let ps: Vec<_> = (0..3)
        .map(|_| start(m, bump_with_rlock, (a.clone(), b.clone(), lock.clone())))
        .collect();
    let mut broken = bump_with_rlock((a.clone(), b.clone(), lock.clone()));
    for mut p in ps {
        broken += p.join_timeout(DEADLINE).expect("the child's count");
    }
    assert_eq!(broken, 0);
    assert_eq!(a.to_vec().unwrap(), [4 * ROUNDS, 0, 0, 0]);
    assert_eq!(b.load().unwrap(), 4 * ROUNDS);
}

/// Takes `a`'s guard (the shared lock), says so, and dies holding it.
fn die_holding((a, held): (Value<u64>, mp::Event)) {
    let mut g = a.lock().expect("free");
    *g = 7;
    held.set();
    crate::support::block_forever()
}

/// A holder killed inside the shared lock: the next locker of *another*
/// value under that lock is told (`OwnerDied`, with the guard), and the
/// dead holder's guard on the first value does not block later guards.
fn callers_lock_holder_killed(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let a = Value::with_lock(0u64, lock.clone()).unwrap();
    let b = Value::with_lock(0u64, lock.clone()).unwrap();
    let held = mp::Event::new().unwrap();
    let mut p = start(m, die_holding, (a.clone(), held.clone()));
    assert!(held.wait_timeout(DEADLINE), "the child holds the lock");
    p.kill().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::ChildKilled);
    match b.lock() {
        Err(e @ AcquireError::OwnerDied(_)) => *e.recover().unwrap() += 1,
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    }
    assert_eq!(*a.lock().expect("a is not left borrowed"), 7);
    assert_eq!(b.load().unwrap(), 1);
}

per_method!(
    values_share_a_callers_lock,
    array_and_value_share_a_callers_rlock,
    callers_lock_holder_killed
);

#[test]
fn a_value_under_a_callers_lock_is_never_borrowed_twice() {
    let rlock = RLock::new().unwrap();
    let v = Value::with_lock(1u32, rlock.clone()).unwrap();
    let g = v.lock().unwrap();
    // The RLock would nest: the value refuses a second guard on this thread.
    let e = v.lock().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert_eq!(rlock.depth(), 1, "the refused level was released");
    drop(g);
    assert!(!rlock.is_locked());

    let lock = Lock::new().unwrap();
    let v = Value::with_lock(1u32, lock.clone()).unwrap();
    let held = lock.acquire().unwrap();
    let g = v.lock_in(&held).unwrap();
    assert_eq!(v.lock_in(&held).unwrap_err().kind(), ErrorKind::InvalidState);
    // A Lock does not nest: locking the value again is refused, not a deadlock.
    assert_eq!(v.lock().unwrap_err().kind(), ErrorKind::InvalidState);
    drop(g);
    drop(held);
    // Another lock's guard does not open this value.
    let other = Lock::new().unwrap();
    let held = other.acquire().unwrap();
    assert_eq!(v.lock_in(&held).unwrap_err().kind(), ErrorKind::InvalidInput);
    // A value with a lock of its own has no caller's lock to give.
    assert!(Value::new(0u8).unwrap().get_lock().is_none());
}

// ----- ShareableList -----

/// Attaches by name, checks what the parent wrote, and changes items;
/// reports the errors of an out-of-range index and an oversized string.
fn edit_by_name(name: String) -> (ErrorKind, ErrorKind, String) {
    let list = ShareableList::attach(&name).expect("attach by name");
    assert_eq!(list.len(), 6);
    assert_eq!(list.get(0).unwrap(), ListItem::Str("howdy".into()));
    assert_eq!(list.get(2).unwrap(), ListItem::Float(-273.15));
    list.set(0, "partner").unwrap(); // 7 bytes: fits the 8-byte slot
    list.set(1, list.get(1).unwrap().int() + 1).unwrap();
    list.set(3, ListItem::None).unwrap();
    list.set(4, "now a str").unwrap(); // 9 bytes in a 16-byte slot
    list.set(5, 99).unwrap();
    let range = list.get(6).unwrap_err();
    let oversized = list.set(0, "much too long").unwrap_err();
    assert!(!list.shm().owns_name(), "an attached list never unlinks");
    (range.kind(), oversized.kind(), oversized.to_string())
}

trait Int {
    fn int(&self) -> i64;
}

impl Int for ListItem {
    fn int(&self) -> i64 {
        match self {
            ListItem::Int(i) => *i,
            other => panic!("not an int: {other:?}"),
        }
    }
}

fn shm_entry_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// Python's `ShareableList`: made in the parent, attached by name in a
/// child that changes it; the parent sees every change; an index out of
/// range and a string past its slot are clear errors; unlinking leaves
/// nothing in /dev/shm.
fn shareable_list_attached_by_name_in_a_child(m: StartMethod) {
    let mut list = ShareableList::new([
        ListItem::from("howdy"),
        41.into(),
        (-273.15).into(),
        true.into(),
        b"eight by".as_slice().into(),
        ().into(),
    ])
    .unwrap();
    let name = list.name().to_owned();
    assert!(shm_entry_exists(&name));
    let mut p = start(m, edit_by_name, name.clone());
    let (range, oversized, msg) = p.join_timeout(DEADLINE).expect("the child's report");
    assert_eq!(range, ErrorKind::InvalidInput);
    assert_eq!(oversized, ErrorKind::InvalidInput);
    assert!(msg.contains("exceeds the 8 bytes"), "{msg}");
    assert_eq!(
        list.to_vec().unwrap(),
        [
            ListItem::Str("partner".into()),
            ListItem::Int(42),
            ListItem::Float(-273.15),
            ListItem::None,
            ListItem::Str("now a str".into()),
            ListItem::Int(99),
        ]
    );
    assert_eq!(list.count(&ListItem::None).unwrap(), 1);
    assert_eq!(list.index(&ListItem::Int(99)).unwrap(), Some(5));
    assert_eq!(list.format().unwrap(), "8sqdxxxxxx?x16sq");
    list.shm_mut().unlink().unwrap();
    assert!(!shm_entry_exists(&name), "unlink leaves nothing in /dev/shm");
    assert!(ShareableList::attach(&name).is_err());
    // The mapping stays usable after the unlink.
    assert_eq!(list.get(1).unwrap(), ListItem::Int(42));
}

/// The child gets the list as an argument (by descriptor) and writes.
fn write_passed(list: ShareableList) {
    list.set(0, "from the child").unwrap();
}

/// Dropping the creator's list unlinks its name, also after a child used
/// it through a passed handle.
fn shareable_list_passed_and_dropped(m: StartMethod) {
    let list = ShareableList::new([ListItem::from("a string of room")]).unwrap();
    let name = list.name().to_owned();
    let attached = ShareableList::attach(&name).unwrap();
    let mut p = start(m, write_passed, attached);
    p.join_timeout(DEADLINE).unwrap();
    assert_eq!(list.get(0).unwrap(), ListItem::Str("from the child".into()));
    drop(list);
    assert!(!shm_entry_exists(&name), "the creator's drop unlinks");
}

per_method!(
    shareable_list_attached_by_name_in_a_child,
    shareable_list_passed_and_dropped
);

// ----- set_executable -----

/// A directory of its own under the temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("multiproc-{tag}-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("create the temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The child's own executable and a value computed from its argument.
fn whoami(x: u32) -> (PathBuf, u32) {
    (
        std::fs::read_link("/proc/self/exe").expect("read /proc/self/exe"),
        2 * x,
    )
}

fn start_err(m: StartMethod) -> mp::Error {
    let mut p = mp::ProcessBuilder::new().start_method(m).target_with(whoami, 1);
    p.start().expect_err("the start is refused")
}

/// The scenario, as the main program of its own process (the setting is
/// process-wide): run a child from the copy, then try other programs.
fn executable_scenario((m, dir): (StartMethod, PathBuf)) {
    let own = std::fs::read_link("/proc/self/exe").unwrap();
    let copy = dir.join("copy-of-the-test-binary");
    std::fs::copy(&own, &copy).expect("copy the test binary");
    mp::set_executable(&copy);
    assert_eq!(mp::get_executable().as_deref(), Some(copy.as_path()));
    let mut p = mp::ProcessBuilder::new().start_method(m).target_with(whoami, 21);
    p.start().expect("start a child from the copy");
    let (exe, v) = p.join_timeout(DEADLINE).expect("the child's result");
    assert_eq!(v, 42);
    if m == StartMethod::Fork {
        // fork runs no program: the child is this process's copy.
        assert_eq!(exe, own);
    } else {
        assert_eq!(exe, copy);
    }

    // Another program: refused at start, before anything runs.
    mp::set_executable("/bin/true");
    if m == StartMethod::Fork {
        let mut p = mp::ProcessBuilder::new().start_method(m).target_with(whoami, 1);
        p.start().expect("fork ignores the setting");
        assert_eq!(p.join_timeout(DEADLINE).unwrap().0, own);
    } else {
        let e = start_err(m);
        assert_eq!(e.kind(), ErrorKind::Bootstrap, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("/bin/true") && msg.contains(&*own.to_string_lossy()),
            "{msg}"
        );
        assert!(msg.contains("not the same build"), "{msg}");

        // Missing, and not executable: clear errors naming the path.
        let missing = dir.join("missing");
        mp::set_executable(&missing);
        let e = start_err(m);
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
        mp::set_executable(&copy);
        let e = start_err(m);
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(e.to_string().contains("not an executable file"), "{e}");
    }
    assert!(mp::active_children().is_empty(), "nothing is left running");
    mp::reset_executable();
    assert_eq!(mp::get_executable(), None);
}

/// Python's `set_executable`: a copy of this build (another inode) runs
/// spawned and fork-server children; another program, a missing or
/// non-executable path is refused at start with nothing left running;
/// under fork the setting does not apply. The copy is removed afterwards.
fn set_executable_runs_a_copy_of_this_build(m: StartMethod) {
    let dir = TempDir::new("exe");
    let mut p = mp::ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .name("executable-scenario")
        .target_with(executable_scenario, (m, dir.0.clone()));
    p.start().expect("start the scenario");
    if let Err(e) = p.join_timeout(DEADLINE) {
        panic!(
            "scenario under {m} failed: {}",
            e.panic().map_or_else(|| e.to_string(), |p| p.to_string())
        );
    }
    let path = dir.0.clone();
    drop(dir);
    assert!(!path.exists(), "the copy is removed");
}

per_method!(set_executable_runs_a_copy_of_this_build);
