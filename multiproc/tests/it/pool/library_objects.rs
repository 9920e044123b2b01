//! Library objects reach pool workers: as the initializer's arguments
//! (Python's `Pool(initializer=init, initargs=(lock,))`) and as task
//! arguments (which CPython refuses for queues), under every start method,
//! by the descriptor passing that `Process` arguments use.

use std::{collections::BTreeSet, sync::OnceLock};

use multiproc::{
    self as mp, Array, Barrier, BoundedSemaphore, Condition, Connection, ErrorKind, Event, JoinableQueue, Lock, Pool,
    Queue, RLock, RawArray, RawValue, RecvTimeoutError, Semaphore, SharedMemory, SimpleQueue, StartMethod, Value,
};

use crate::{
    pool::executor,
    support::{DEADLINE, Rendezvous, notify, open_fds},
};

// ---------------------------------------------------------------------
// The initializer.
// ---------------------------------------------------------------------

/// What the initializer of a worker was given (Python's `global lock`).
static COUNTER: OnceLock<(Lock, Value<u64>)> = OnceLock::new();

fn init_counter(args: (Lock, Value<u64>)) {
    assert!(COUNTER.set(args).is_ok(), "the initializer runs once per worker");
}

/// Increments the shared value under the shared lock: a read and a write
/// that race without the lock (each takes only the value's own lock).
fn bump(_: u64) -> u32 {
    let (lock, value) = COUNTER.get().expect("the initializer ran");
    let _held = lock.acquire().unwrap();
    let v = value.load().unwrap();
    value.store(v + 1).unwrap();
    std::process::id()
}

/// The tutorial idiom: workers increment a `Value` under a `Lock` that
/// the initializer received; the total is exact, from both workers.
fn initializer_gets_a_lock_and_a_value(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let value = Value::new(0u64).unwrap();
    let p = Pool::builder()
        .processes(2)
        .start_method(m)
        .initializer(init_counter, (lock.clone(), value.clone()))
        .build()
        .unwrap();
    let n = 2000;
    let pids: BTreeSet<u32> = p.map_chunked(bump, 0..n, 5).unwrap().into_iter().collect();
    assert_eq!(value.load().unwrap(), n);
    assert!(!pids.is_empty());
    // Also through single tasks.
    for x in 0..10 {
        p.apply(bump, x).unwrap();
    }
    assert_eq!(value.load().unwrap(), n + 10);
}

static STARTED: OnceLock<Queue<u32>> = OnceLock::new();

fn report_start(q: Queue<u32>) {
    q.put(std::process::id()).unwrap();
    assert!(STARTED.set(q).is_ok());
}

fn own_pid(_: u8) -> u32 {
    std::process::id()
}

/// Replacement workers (`maxtasksperchild`) get the initializer's
/// objects too: each worker that ran a task had put its pid on the
/// initializer's queue first.
fn replacements_get_the_initializer_objects(m: StartMethod) {
    let q: Queue<u32> = Queue::new().unwrap();
    let p = Pool::builder()
        .processes(1)
        .maxtasksperchild(1)
        .start_method(m)
        .initializer(report_start, q.clone())
        .build()
        .unwrap();
    let ran: Vec<u32> = (0..3).map(|_| p.apply(own_pid, 0).unwrap()).collect();
    let distinct: BTreeSet<u32> = ran.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "one worker per task: {ran:?}");
    let mut started = BTreeSet::new();
    while !ran.iter().all(|pid| started.contains(pid)) {
        started.insert(q.get_timeout(DEADLINE).expect("a worker's start report"));
    }
}

// ---------------------------------------------------------------------
// Task arguments.
// ---------------------------------------------------------------------

fn put_into(arg: (Queue<u64>, u64)) -> u64 {
    let (q, x) = arg;
    q.put(x * 3).unwrap();
    x
}

/// A large argument beside the queue (its task message travels apart).
fn put_len(arg: (Queue<u64>, Vec<u8>)) -> usize {
    let (q, bytes) = arg;
    q.put(bytes.len() as u64).unwrap();
    bytes.len()
}

/// Drains `n` items from `q`, sorted.
fn drain(q: &Queue<u64>, n: usize) -> Vec<u64> {
    let mut got: Vec<u64> = (0..n).map(|_| q.get_timeout(DEADLINE).unwrap()).collect();
    got.sort_unstable();
    got
}

/// A `Queue` as a task argument through every way of submitting: the
/// workers put into it, the parent drains exactly what they put.
fn queue_as_a_task_argument(m: StartMethod) {
    let q: Queue<u64> = Queue::new().unwrap();
    let p = Pool::builder().processes(2).start_method(m).build().unwrap();
    let expect = |r: std::ops::Range<u64>| r.map(|x| x * 3).collect::<Vec<_>>();
    // map (batches), chunk size 1 and automatic.
    assert_eq!(
        p.map_chunked(put_into, (0..20).map(|x| (q.clone(), x)), 1).unwrap(),
        (0..20).collect::<Vec<_>>()
    );
    assert_eq!(drain(&q, 20), expect(0..20));
    assert_eq!(p.starmap(put_into, (0..50).map(|x| (q.clone(), x))).unwrap().len(), 50);
    assert_eq!(drain(&q, 50), expect(0..50));
    // apply, apply_async.
    assert_eq!(p.apply(put_into, (q.clone(), 7)).unwrap(), 7);
    let hs: Vec<_> = (0..5)
        .map(|x| p.apply_async(put_into, (q.clone(), x)).unwrap())
        .collect();
    for (x, h) in hs.into_iter().enumerate() {
        assert_eq!(h.get().unwrap(), x as u64);
    }
    assert_eq!(drain(&q, 6), [0, 3, 6, 9, 12, 21]);
    // imap (per-task messages), chunked and not.
    let got: Vec<u64> = p
        .imap(put_into, (0..10).map(|x| (q.clone(), x)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    assert_eq!(drain(&q, 10), expect(0..10));
    let got = p
        .imap_unordered_chunked(put_into, (0..10).map(|x| (q.clone(), x)), 3)
        .unwrap()
        .count();
    assert_eq!(got, 10);
    assert_eq!(drain(&q, 10), expect(0..10));
    // A large argument beside it.
    assert_eq!(p.apply(put_len, (q.clone(), vec![1u8; 200_000])).unwrap(), 200_000);
    assert_eq!(drain(&q, 1), [200_000]);
    // The executor: submit and map.
    drop(p);
    let ex = executor(m, 2);
    let mut f = ex.submit(put_into, (q.clone(), 11)).unwrap();
    assert_eq!(f.result(Some(DEADLINE)).unwrap(), 11);
    let got: Vec<u64> = ex
        .map(put_into, (0..8).map(|x| (q.clone(), x)), Some(DEADLINE))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..8).collect::<Vec<_>>());
    assert_eq!(drain(&q, 9), [0, 3, 6, 9, 12, 15, 18, 21, 33]);
}

fn wait_for_event(arg: (Event, String)) -> bool {
    let (ev, addr) = arg;
    notify(&addr, "waiting");
    ev.wait_timeout(DEADLINE)
}

/// An `Event` set by the parent wakes a task waiting on it.
fn event_set_by_the_parent_wakes_a_task(m: StartMethod) {
    let ev = Event::new().unwrap();
    let rv = Rendezvous::new();
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    let r = p.apply_async(wait_for_event, (ev.clone(), rv.addr())).unwrap();
    assert_eq!(rv.recv(), "waiting");
    ev.set();
    assert!(r.get().unwrap(), "the task saw the event set");
}

fn double_over(c: Connection) -> u64 {
    let x: u64 = c.recv().unwrap();
    c.send(2 * x).unwrap();
    x
}

/// One end of a `Connection` passed to a task: the task and the parent
/// talk over it, and the parent sees the end of the stream once the task
/// has dropped it.
fn connection_end_passed_to_a_task(m: StartMethod) {
    let p = Pool::builder().processes(2).start_method(m).build().unwrap();
    let (ours, theirs) = mp::pipe(true).unwrap();
    let r = p.apply_async(double_over, theirs).unwrap();
    ours.send(21u64).unwrap();
    assert_eq!(ours.recv_timeout::<u64>(DEADLINE).unwrap(), 42);
    assert_eq!(r.get().unwrap(), 21);
    // A connection in a map batch, one per task.
    let pairs: Vec<(Connection, Connection)> = (0..4).map(|_| mp::pipe(true).unwrap()).collect();
    let (ours, theirs): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    for (k, c) in ours.iter().enumerate() {
        c.send(k as u64).unwrap();
    }
    let got = p.map_chunked(double_over, theirs, 2).unwrap();
    assert_eq!(got, [0, 1, 2, 3]);
    for (k, c) in ours.iter().enumerate() {
        assert_eq!(c.recv_timeout::<u64>(DEADLINE).unwrap(), 2 * k as u64);
        let end = c.recv_timeout::<u64>(DEADLINE);
        assert!(
            matches!(end, Err(RecvTimeoutError::Disconnected)),
            "the stream ended with the task (no copy of its end left anywhere): {end:?}"
        );
    }
}

fn drop_it(c: Connection) -> u8 {
    drop(c);
    1
}

#[allow(unsafe_code)]
fn exit_worker(_: u8) -> u8 {
    // SAFETY: raising a signal touches no memory; SIGKILL ends the worker.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("killed")
}

/// A worker started while a chunk that carries a connection end waits
/// (here: the replacement of a worker that died) keeps no copy of that
/// end: once the task has dropped it, the parent's end sees the stream
/// end while that worker lives on.
fn a_waiting_chunk_end_is_not_inherited_by_a_new_worker(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    let (ours, theirs) = mp::pipe(true).unwrap();
    let first = p.apply_async(exit_worker, 0).unwrap();
    // Waits in the parent until the first worker is replaced.
    let second = p.apply_async(drop_it, theirs).unwrap();
    assert_eq!(first.get().unwrap_err().kind(), ErrorKind::ChildKilled);
    assert_eq!(second.get().unwrap(), 1);
    let end = ours.recv_timeout::<u8>(DEADLINE);
    assert!(
        matches!(end, Err(RecvTimeoutError::Disconnected)),
        "no copy of the passed end is left in the worker: {end:?}"
    );
    assert_eq!(p.pids().len(), 1);
}

/// Everything the library shares, in one task argument.
type Everything = (
    (Lock, RLock, Semaphore, BoundedSemaphore),
    (Event, Condition, Barrier),
    (Queue<u8>, SimpleQueue<u8>, JoinableQueue<u8>, Connection),
    (SharedMemory, Value<u32>, Array<u32>, RawValue<u32>, RawArray<u32>),
);

fn use_everything(all: Everything) -> u32 {
    let ((lock, rlock, sem, bsem), (ev, cond, barrier), (q, sq, jq, conn), (shm, value, array, raw, raw_array)) = all;
    drop(lock.acquire().unwrap());
    drop(rlock.acquire().unwrap());
    sem.release().unwrap();
    drop(bsem.acquire().unwrap());
    {
        let held = cond.acquire().unwrap();
        held.notify_all().unwrap();
    }
    barrier.wait_timeout(DEADLINE).unwrap();
    q.put(1).unwrap();
    sq.put(2).unwrap();
    jq.put(3).unwrap();
    conn.send(4u8).unwrap();
    shm.write_at(0, &[5]).unwrap();
    value.store(6).unwrap();
    array.lock().unwrap()[1] = 7;
    raw.store(8);
    raw_array.set(2, 9).unwrap();
    ev.set();
    10
}

/// Every kind of library object reaches a task whole and works there.
fn every_library_object_reaches_a_task(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    let (lock, rlock) = (Lock::new().unwrap(), RLock::new().unwrap());
    let (sem, bsem) = (Semaphore::new(0).unwrap(), BoundedSemaphore::new(1).unwrap());
    let (ev, cond, barrier) = (
        Event::new().unwrap(),
        Condition::new().unwrap(),
        Barrier::new(2).unwrap(),
    );
    let (q, sq, jq) = (
        Queue::new().unwrap(),
        SimpleQueue::new().unwrap(),
        JoinableQueue::new().unwrap(),
    );
    let (ours, theirs) = mp::pipe(true).unwrap();
    let shm = SharedMemory::new(16).unwrap();
    let (value, array) = (Value::new(0u32).unwrap(), Array::new(3).unwrap());
    let (raw, raw_array) = (RawValue::new(0u32).unwrap(), RawArray::new(3).unwrap());
    let all: Everything = (
        (lock, rlock, sem.clone(), bsem),
        (ev.clone(), cond, barrier.clone()),
        (q.clone(), sq.clone(), jq.clone(), theirs),
        (
            shm.try_clone().unwrap(),
            value.clone(),
            array.clone(),
            raw.clone(),
            raw_array.clone(),
        ),
    );
    let r = p.apply_async(use_everything, all).unwrap();
    // The barrier needs the parent too.
    barrier.wait_timeout(DEADLINE).unwrap();
    assert_eq!(r.get().unwrap(), 10);
    assert!(ev.is_set());
    assert_eq!(sem.get_value(), 1);
    assert_eq!(q.get_timeout(DEADLINE).unwrap(), 1);
    assert_eq!(sq.get_timeout(DEADLINE).unwrap(), 2);
    assert_eq!(jq.get_timeout(DEADLINE).unwrap(), 3);
    assert_eq!(ours.recv_timeout::<u8>(DEADLINE).unwrap(), 4);
    assert_eq!(shm.to_vec()[0], 5);
    assert_eq!(value.load().unwrap(), 6);
    assert_eq!(array.to_vec().unwrap(), [0, 7, 0]);
    assert_eq!(raw.load(), 8);
    assert_eq!(raw_array.to_vec(), [0, 0, 9]);
}

fn make_lock(_: u8) -> Lock {
    Lock::new().unwrap()
}

/// A result holding a library object does not come back (its
/// descriptors would need a reply of their own): a `Serialize` error of
/// that task, which says so; the worker goes on.
fn a_library_object_as_a_result_is_a_serialize_error(m: StartMethod) {
    let p = Pool::builder().processes(1).start_method(m).build().unwrap();
    let e = p.apply(make_lock, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
    assert_eq!(p.apply(own_pid, 0).unwrap(), p.pids()[0]);
}

per_method!(
    initializer_gets_a_lock_and_a_value,
    replacements_get_the_initializer_objects,
    queue_as_a_task_argument,
    event_set_by_the_parent_wakes_a_task,
    connection_end_passed_to_a_task,
    a_waiting_chunk_end_is_not_inherited_by_a_new_worker,
    every_library_object_reaches_a_task,
    a_library_object_as_a_result_is_a_serialize_error,
);

// ---------------------------------------------------------------------
// No descriptor left behind.
// ---------------------------------------------------------------------

/// Many tasks and an initializer carrying descriptors leave none open in
/// the parent once the pool is gone. Isolated under every method: the
/// test harness's other threads open and close descriptors meanwhile.
fn no_descriptor_leaks_in_the_parent(m: StartMethod) {
    let q: Queue<u64> = Queue::new().unwrap();
    let lock = Lock::new().unwrap();
    // The first pool opens what stays for the process (the fork server's
    // connection).
    drop(Pool::builder().processes(1).start_method(m).build().unwrap());
    let before = open_fds().len();
    {
        let value = Value::new(0u64).unwrap();
        let p = Pool::builder()
            .processes(2)
            .start_method(m)
            .maxtasksperchild(40)
            .initializer(init_counter, (lock.clone(), value.clone()))
            .build()
            .unwrap();
        for round in 0..3u64 {
            let hs: Vec<_> = (0..100)
                .map(|x| p.apply_async(put_into, (q.clone(), x)).unwrap())
                .collect();
            for h in hs {
                h.get().unwrap();
            }
            let got = p.map_chunked(put_into, (0..200).map(|x| (q.clone(), x)), 3).unwrap();
            assert_eq!(got.len(), 200, "round {round}");
            assert_eq!(drain(&q, 300).len(), 300);
        }
        p.close();
        p.join().unwrap();
    }
    let after = open_fds().len();
    assert!(
        after <= before,
        "descriptors leaked: {before} before, {after} after: {:?}",
        open_fds()
    );
}

mod no_descriptor_leaks_in_the_parent {
    use multiproc::StartMethod;

    use crate::support::run_isolated;

    #[test]
    fn spawn() {
        run_isolated(super::no_descriptor_leaks_in_the_parent, StartMethod::Spawn)
    }
    #[test]
    fn fork() {
        run_isolated(super::no_descriptor_leaks_in_the_parent, StartMethod::Fork)
    }
    #[test]
    fn forkserver() {
        run_isolated(super::no_descriptor_leaks_in_the_parent, StartMethod::ForkServer)
    }
}
