//! Pipe and Connection: semantics in one process, and endpoints passed to
//! children (and on to grandchildren) under every start method.

use std::time::Duration;

use multiproc::{self as mp, Connection, ErrorKind, StartMethod};
use serde::{Deserialize, Serialize};

use crate::support::DEADLINE;

fn start<A, R>(m: StartMethod, f: fn(A) -> R, args: A) -> mp::Process<R>
where
    A: Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut p = mp::ProcessBuilder::new().start_method(m).target_with(f, args);
    p.start().expect("start");
    p
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Msg {
    Value(Vec<Option<f64>>),
    Text(String),
}

/// Echoes every message (as bytes, so values and bytes alike) until the
/// other end goes away; returns how many it echoed.
fn echo(conn: Connection) -> usize {
    let mut n = 0;
    loop {
        match conn.recv_bytes_timeout(DEADLINE) {
            Ok(m) => {
                conn.send_bytes(&m).expect("echo back");
                n += 1;
            }
            Err(e) if e.is_disconnected() => return n,
            Err(e) => panic!("echo child: {e}"),
        }
    }
}

fn echo_child_round_trips(m: StartMethod) {
    let (ours, theirs) = mp::pipe(true).unwrap();
    let mut p = start(m, echo, theirs);
    assert_eq!(p.start_method(), m);
    let v = Msg::Value(vec![Some(1.0), Some(2.25), None]);
    ours.send(v.clone()).unwrap();
    assert_eq!(ours.recv_timeout::<Msg>(DEADLINE).unwrap(), v);
    ours.send_bytes(b"hello world").unwrap();
    assert_eq!(ours.recv_bytes_timeout(DEADLINE).unwrap(), b"hello world");
    ours.send_bytes(b"").unwrap();
    assert_eq!(ours.recv_bytes_timeout(DEADLINE).unwrap(), b"");
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    ours.send_bytes(&big).unwrap();
    assert!(
        ours.recv_bytes_timeout(DEADLINE).unwrap() == big,
        "16 MiB message corrupted"
    );
    ours.send(Msg::Text("last".into())).unwrap();
    assert_eq!(ours.recv_timeout::<Msg>(DEADLINE).unwrap(), Msg::Text("last".into()));
    drop(ours);
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), 5);
}

/// Receives a connection over `carrier`, says hello through it, and passes
/// a second one on to a grandchild that does the same.
fn relay(carrier: Connection) -> String {
    let conn: Connection = carrier.recv_timeout(DEADLINE).expect("receive a connection");
    conn.send(format!("hello from {}", std::process::id())).unwrap();
    let next: Connection = carrier.recv_timeout(DEADLINE).expect("receive a second connection");
    let mut grandchild = mp::ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .target_with(greet, next);
    grandchild.start().unwrap();
    grandchild.join_timeout(DEADLINE).unwrap();
    "done".into()
}

fn greet(conn: Connection) {
    conn.send("grandchild".to_string()).unwrap();
}

fn connections_travel_through_connections(m: StartMethod) {
    let (carrier, carrier_child) = mp::pipe(true).unwrap();
    let mut p = start(m, relay, carrier_child);
    let (a1, a2) = mp::pipe(true).unwrap();
    carrier.send(a2).unwrap();
    let hello: String = a1.recv_timeout(DEADLINE).unwrap();
    assert_eq!(hello, format!("hello from {}", p.pid().unwrap()));
    let (r, w) = mp::pipe(false).unwrap();
    carrier.send(w).unwrap();
    assert_eq!(r.recv_timeout::<String>(DEADLINE).unwrap(), "grandchild");
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), "done");
    // Every copy of the writer is gone: the grandchild's, the child's, ours.
    assert!(r.recv_timeout::<String>(DEADLINE).unwrap_err().is_disconnected());
}

/// Buffered but undelivered messages move with a passed connection.
fn buffered_messages_move_with_a_passed_connection(m: StartMethod) {
    let (a, b) = mp::pipe(true).unwrap();
    for i in 0..3u32 {
        a.send(i).unwrap();
    }
    // Receiving one reads all three into b's buffer.
    assert_eq!(b.recv_timeout::<u32>(DEADLINE).unwrap(), 0);
    let mut p = start(m, drain_u32, b);
    a.send(3u32).unwrap();
    drop(a);
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), vec![1, 2, 3]);
}

fn drain_u32(c: Connection) -> Vec<u32> {
    let mut v = Vec::new();
    loop {
        match c.recv_timeout::<u32>(DEADLINE) {
            Ok(x) => v.push(x),
            Err(e) if e.is_disconnected() => return v,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Writes the header of a 1 MiB message and half its payload, then
/// returns: the process ends in the middle of the message. (Unix: it
/// writes raw bytes to the socket; Windows pipes frame their bytes, see
/// `windows/mod.rs`.)
#[cfg(unix)]
fn die_mid_message(w: Connection) {
    use std::os::fd::AsRawFd;
    let mut header = Vec::from(*b"mp\x01\x00\x00\x00\x00\x00");
    header.extend_from_slice(&(1u64 << 20).to_le_bytes());
    header.extend_from_slice(&[1u8; 1000]);
    let fd = w.as_raw_fd();
    let mut rest = &header[..];
    while !rest.is_empty() {
        // SAFETY: writing a valid buffer to a descriptor this process owns.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        assert!(n > 0, "write failed");
        rest = &rest[n as usize..];
    }
}

#[cfg(unix)]
fn writer_dying_mid_message_is_an_error(m: StartMethod) {
    let (r, w) = mp::pipe(false).unwrap();
    let mut p = start(m, die_mid_message, w);
    let e = r.recv_bytes_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    p.join_timeout(DEADLINE).unwrap();
    // The connection stays broken rather than misreading what follows.
    assert_eq!(
        r.recv_bytes_timeout(Duration::ZERO).unwrap_err().kind(),
        ErrorKind::Protocol
    );
}

#[cfg(unix)]
fn writer_dying_mid_message_with_another_writer_alive_times_out(m: StartMethod) {
    let (r, w) = mp::pipe(false).unwrap();
    // A second copy of the writer stays here: the stream never ends.
    let mut p = start(m, die_mid_message, w.try_clone().unwrap());
    p.join_timeout(DEADLINE).unwrap();
    let e = r.recv_bytes_timeout(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(e, mp::RecvTimeoutError::Timeout), "{e}");
    // The rest never comes; the half message stays pending, not misread.
    drop(w);
    let e = r.recv_bytes_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
}

fn sleep_forever(_c: Connection) {
    loop {
        std::thread::park();
    }
}

fn killed_peer_is_disconnected(m: StartMethod) {
    let (a, b) = mp::pipe(true).unwrap();
    let mut p = start(m, sleep_forever, b);
    p.kill().unwrap();
    assert!(a.recv_timeout::<u8>(DEADLINE).unwrap_err().is_disconnected());
    let e = a.send(1u8).unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    assert_eq!(e.into_inner(), 1);
    assert!(p.join_timeout(DEADLINE).is_err());
}

per_method!(
    echo_child_round_trips,
    connections_travel_through_connections,
    buffered_messages_move_with_a_passed_connection,
    killed_peer_is_disconnected,
);

// Windows: left out, see `windows/mod.rs`.
#[cfg(unix)]
per_method!(
    writer_dying_mid_message_is_an_error,
    writer_dying_mid_message_with_another_writer_alive_times_out,
);

#[test]
fn one_way_pipe_directions() {
    let (r, w) = mp::pipe(false).unwrap();
    assert!(r.readable() && !r.writable());
    assert!(w.writable() && !w.readable());
    w.send(1u8).unwrap();
    assert_eq!(r.recv::<u8>().unwrap(), 1);
    assert_eq!(r.send(2u8).unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(w.recv::<u8>().unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(w.poll(None).unwrap_err().kind(), ErrorKind::InvalidState);
}

#[test]
fn recv_bytes_into_offsets_and_short_buffers() {
    let (a, b) = mp::pipe(true).unwrap();
    let ints: Vec<u8> = [0i32, 1, 2, 3].iter().flat_map(|i| i.to_ne_bytes()).collect();
    a.send_bytes(&ints).unwrap();
    let mut buf = [0u8; 40];
    assert_eq!(b.recv_bytes_into(&mut buf, 0).unwrap(), 16);
    assert_eq!(&buf[..16], &ints[..]);
    a.send_bytes(&ints).unwrap();
    let mut buf = [0u8; 40];
    assert_eq!(b.recv_bytes_into(&mut buf, 12).unwrap(), 16);
    assert_eq!(&buf[12..28], &ints[..]);
    assert_eq!(&buf[..12], &[0; 12]);
    let long = vec![b'x'; 110];
    a.send_bytes(&long).unwrap();
    let e = b.recv_bytes_into(&mut [0u8; 40], 0).unwrap_err().into_error();
    assert_eq!(e.kind(), ErrorKind::BufferTooShort);
    assert_eq!(e.message_bytes(), Some(&long[..]));
    let e = b.recv_bytes_into(&mut [0u8; 4], 5).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // Nothing was consumed by the bad offset.
    a.send_bytes(b"ok").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"ok");
}

#[test]
fn poll_never_consumes_and_sees_the_end() {
    let (a, b) = mp::pipe(true).unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    a.send_bytes(b"").unwrap();
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert!(b.poll(None).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"");
    a.send_bytes(b"first").unwrap();
    a.send_bytes(b"second").unwrap();
    drop(a);
    assert!(b.poll(Some(DEADLINE)).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"first");
    assert_eq!(b.recv_bytes().unwrap(), b"second");
    assert!(b.poll(Some(Duration::ZERO)).unwrap(), "end of stream is readable");
    assert!(b.recv_bytes().unwrap_err().is_disconnected());
    assert!(b.try_recv::<u8>().unwrap_err().is_disconnected());
}

#[test]
fn over_limit_message_breaks_the_connection() {
    let (a, b) = mp::pipe(true).unwrap();
    a.send_bytes(&[0u8; 100]).unwrap();
    a.send_bytes(b"next").unwrap();
    assert_eq!(b.recv_bytes_max(10).unwrap_err().kind(), ErrorKind::Protocol);
    assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Protocol);
}

#[test]
fn unserializable_values_fail_at_the_call_and_come_back() {
    struct Bad;
    impl Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("Bad refuses"))
        }
    }
    let (a, b) = mp::pipe(true).unwrap();
    let e = a.send(Bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize);
    assert!(e.to_string().contains("Bad refuses"), "{e}");
    let _bad: Bad = e.into_inner();
    // Nothing reached the other end.
    assert!(b.try_recv::<u8>().unwrap_err().is_empty());
    // A wrong type on the receiving side consumes the message and says so.
    a.send("text".to_string()).unwrap();
    assert_eq!(b.recv::<u64>().unwrap_err().kind(), ErrorKind::Deserialize);
}

#[test]
fn endpoints_refuse_foreign_serializers() {
    let (a, _b) = mp::pipe(true).unwrap();
    // A serializer outside the library: no descriptor list to join.
    let e = serde_json::to_vec(&a).unwrap_err();
    assert!(e.to_string().contains("can only be serialized by multiproc"), "{e}");
}

#[test]
fn threads_share_a_connection_without_interleaving() {
    let (a, b) = mp::pipe(true).unwrap();
    let big = vec![9u8; 1 << 20];
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..8 {
                    a.send_bytes(&big).unwrap();
                }
            });
        }
        for _ in 0..32 {
            assert!(b.recv_bytes_timeout(DEADLINE).unwrap() == big);
        }
    });
}

fn return_own_end(_: ()) -> Connection {
    mp::pipe(true).unwrap().0
}

#[test]
fn returning_an_endpoint_is_a_clear_error() {
    let mut p = mp::ProcessBuilder::new().target_with(return_own_end, ());
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialize, "{e}");
    assert!(e.to_string().contains("send them through a Connection or Queue"), "{e}");
}

/// Run with `cargo test --release -p multiproc --test integration -- --ignored over_4_gib`
/// on a machine with 10 GiB of free memory.
#[test]
#[ignore = "needs about 9 GiB of memory and a few seconds"]
fn a_message_over_4_gib_round_trips() {
    let (a, b) = mp::pipe(true).unwrap();
    let len = (4usize << 30) + 12345;
    let msg: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    let got = std::thread::scope(|s| {
        let reader = s.spawn(|| b.recv_bytes_timeout(Duration::from_secs(600)).unwrap());
        a.send_bytes(&msg).unwrap();
        reader.join().unwrap()
    });
    assert_eq!(got.len(), len);
    assert!(got == msg);
}

/// A pass that fails (a foreign serializer, a closed carrier, a full
/// queue) leaves the connection's buffered messages where they were.
#[test]
#[cfg(unix)] // Windows: uses a queue, see `windows/mod.rs`.
fn a_failed_pass_loses_no_buffered_message() {
    let (a, b) = mp::pipe(true).unwrap();
    a.send(1u8).unwrap();
    a.send(2u8).unwrap();
    assert!(b.poll(Some(DEADLINE)).unwrap(), "both messages are buffered in b now");
    // (a) a serializer that is not the library's
    assert!(serde_json::to_vec(&b).is_err());
    // (b) a carrier whose other end is gone
    let (carrier, gone) = mp::pipe(true).unwrap();
    drop(gone);
    let b = match carrier.send(b) {
        Err(mp::SendError::Disconnected(b)) => b,
        other => panic!("{other:?}"),
    };
    // (c) a full queue
    let q: mp::Queue<Connection> = mp::Queue::bounded(1).unwrap();
    q.put(mp::pipe(true).unwrap().0).unwrap();
    let b = q.try_put(b).unwrap_err().into_inner();
    assert_eq!(b.recv_timeout::<u8>(DEADLINE).unwrap(), 1);
    assert_eq!(b.recv_timeout::<u8>(DEADLINE).unwrap(), 2);
}

/// A receive blocked in one thread does not make another thread's timed
/// call late.
#[test]
fn a_blocked_receive_does_not_hold_up_other_threads_timeouts() {
    let (a, b) = mp::pipe(true).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| b.recv_bytes().unwrap());
        // Whichever thread gets the first turn, the timed calls return.
        s.spawn(|| {
            let polled = b.poll(Some(Duration::from_millis(50)));
            let got = b.recv_bytes_timeout(Duration::from_millis(50));
            tx.send((polled.is_ok(), got.is_err())).unwrap();
        });
        let done = rx.recv_timeout(DEADLINE);
        a.send_bytes(b"release the blocked receive").unwrap();
        a.send_bytes(b"and a second, for whoever is left").unwrap();
        assert_eq!(done, Ok((true, true)), "the timed calls waited on the blocked one");
    });
}

fn hold_until_told(c: Connection) {
    let _ = c.recv_timeout::<()>(DEADLINE);
}

/// A fork child is not given connections buffered inside other
/// connections either: the peer sees the end of the stream.
fn buffered_descriptors_are_not_kept_by_a_child(m: StartMethod) {
    let (a, b) = mp::pipe(true).unwrap();
    let (r, w) = mp::pipe(false).unwrap();
    a.send(w).unwrap();
    assert!(b.poll(Some(DEADLINE)).unwrap(), "w is buffered in b");
    let (hold, held) = mp::pipe(true).unwrap();
    let mut p = start(m, hold_until_told, held);
    let w: Connection = b.recv_timeout(DEADLINE).unwrap();
    drop(w);
    let e = r.recv_bytes_timeout(DEADLINE).unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    hold.send(()).unwrap();
    p.join_timeout(DEADLINE).unwrap();
}

static GLOBAL: std::sync::OnceLock<Connection> = std::sync::OnceLock::new();

fn use_the_global(_: ()) -> (bool, Option<mp::ErrorKind>) {
    // Set in the parent; a spawned child is a fresh process without it.
    let Some(c) = GLOBAL.get() else {
        return (false, None);
    };
    let ready = mp::wait(&[c.into()], Some(Duration::ZERO)).unwrap() == [0];
    (ready, c.recv_timeout::<u8>(Duration::ZERO).err().map(|e| e.kind()))
}

/// Under fork a connection the child was not given is unusable there (not
/// a stale number pointing at something else), and wait() reports it
/// ready, so that its error surfaces.
fn a_fork_child_cannot_use_connections_it_was_not_given(m: StartMethod) {
    let (a, b) = mp::pipe(true).unwrap();
    a.send(5u8).unwrap();
    let _ = GLOBAL.set(b);
    let mut p = start(m, use_the_global, ());
    let (ready, err) = p.join_timeout(DEADLINE).unwrap();
    if m == StartMethod::Fork {
        assert!(ready);
        assert_eq!(err, Some(ErrorKind::InvalidState));
    } else {
        assert_eq!((ready, err), (false, None));
    }
}

per_method!(
    buffered_descriptors_are_not_kept_by_a_child,
    a_fork_child_cannot_use_connections_it_was_not_given,
);
