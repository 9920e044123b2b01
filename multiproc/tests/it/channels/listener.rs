//! Listener and Client: clients in child processes for every address
//! family and start method, authentication failures on either side, hostile
//! peers bounded by the handshake deadline, and the socket file's life.

use std::{
    net::SocketAddr,
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use multiproc::{self as mp, Address, Client, Connection, ErrorKind, Listener, StartMethod};
use serde::{Deserialize, Serialize};

use crate::support::{DEADLINE, RawPeer};

/// The handshake deadline of the tests that provoke it.
const AUTH_DEADLINE: Duration = Duration::from_millis(300);
/// Well under the default 10 s deadline: a failure that took longer than
/// this did not come from the short one configured.
const WELL_UNDER_DEFAULT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Family {
    /// The default address: a private Unix socket file.
    DefaultPath,
    /// A Unix socket file at a path the caller chose.
    Path,
    Abstract,
    Tcp,
}

const FAMILIES: [Family; 4] = [Family::DefaultPath, Family::Path, Family::Abstract, Family::Tcp];

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(what: &str) -> String {
    format!(
        "multiproc-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn address(family: Family) -> Option<Address> {
    match family {
        Family::DefaultPath => None,
        Family::Path => Some(Address::Unix(std::env::temp_dir().join(unique("sock")))),
        Family::Abstract => Some(Address::Abstract(unique("abstract").into_bytes())),
        Family::Tcp => Some(Address::Tcp("127.0.0.1:0".parse().unwrap())),
    }
}

fn listen(family: Family, key: Option<&[u8]>) -> Listener {
    let mut b = Listener::builder();
    if let Some(a) = address(family) {
        b = b.address(a);
    }
    if let Some(k) = key {
        b = b.authkey(k);
    }
    b.bind().unwrap_or_else(|e| panic!("bind a {family:?} listener: {e}"))
}

fn start<A, R>(m: StartMethod, f: fn(A) -> R, args: A) -> mp::Process<R>
where
    A: Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut p = mp::ProcessBuilder::new().start_method(m).target_with(f, args);
    p.start().expect("start");
    p
}

/// What a child reports of a failed call: kind and message.
type Outcome = Result<(), (ErrorKind, String)>;

fn report(e: mp::Error) -> (ErrorKind, String) {
    (e.kind(), e.to_string())
}

/// Child: connects (with `key`, if any) and sends "hello".
fn say_hello((address, key): (Address, Option<Vec<u8>>)) -> Outcome {
    let conn = Client::connect(&address, key.as_deref()).map_err(report)?;
    conn.send("hello".to_string()).map_err(|e| report(e.into()))?;
    Ok(())
}

fn process_key() -> Vec<u8> {
    mp::current_process().authkey().to_vec()
}

/// PIPE-23: a child connects, authenticated with the key the process tree
/// shares, and says hello; for every family.
fn hello_from_a_child(m: StartMethod) {
    for family in FAMILIES {
        let key = process_key();
        let listener = listen(family, Some(&key));
        let mut p = start(m, say_hello, (listener.address().clone(), Some(key)));
        let conn = listener.accept_timeout(DEADLINE).expect("accept the child");
        assert_eq!(conn.recv_timeout::<String>(DEADLINE).unwrap(), "hello", "{family:?}");
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), Ok(()), "{family:?}");
        match (family, listener.last_accepted()) {
            (Family::Tcp, Some(Address::Tcp(peer))) => assert!(peer.ip().is_loopback()),
            (Family::Tcp, other) => panic!("TCP peer address: {other:?}"),
            // A client's Unix socket has no name.
            (_, other) => assert_eq!(other, None, "{family:?}"),
        }
    }
}

/// PIPE-23 (issue 14725): the client connected, sent and exited before the
/// listener accepted; the message is still there.
fn client_gone_before_accept(m: StartMethod) {
    for family in FAMILIES {
        let listener = listen(family, None);
        let mut p = start(m, say_hello, (listener.address().clone(), None));
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), Ok(()), "{family:?}");
        let conn = listener.accept_timeout(DEADLINE).expect("accept the departed client");
        assert_eq!(conn.recv_timeout::<String>(DEADLINE).unwrap(), "hello", "{family:?}");
        assert!(conn.recv_timeout::<String>(DEADLINE).unwrap_err().is_disconnected());
    }
}

/// PIPE-27: a child with the wrong key is refused, both sides say why, and
/// the listener then accepts a child with the right key.
fn wrong_key_fails_on_both_sides(m: StartMethod) {
    for family in [Family::DefaultPath, Family::Tcp] {
        let listener = listen(family, Some(b"the right key"));
        let started = Instant::now();
        let mut p = start(
            m,
            say_hello,
            (listener.address().clone(), Some(b"a wrong key".to_vec())),
        );
        let e = listener.accept_timeout(DEADLINE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
        assert!(e.to_string().contains("digest received was wrong"), "{e}");
        let (kind, text) = p.join_timeout(DEADLINE).unwrap().unwrap_err();
        assert_eq!(kind, ErrorKind::Authentication, "{text}");
        assert!(text.contains("digest sent was rejected"), "{text}");
        assert!(started.elapsed() < DEADLINE);

        let mut p = start(
            m,
            say_hello,
            (listener.address().clone(), Some(b"the right key".to_vec())),
        );
        let conn = listener.accept_timeout(DEADLINE).expect("the listener still works");
        assert_eq!(conn.recv_timeout::<String>(DEADLINE).unwrap(), "hello");
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), Ok(()));
    }
}

/// Child: uppercases one message and sends it back.
fn shout(conn: Connection) {
    let s: String = conn.recv_timeout(DEADLINE).expect("a message");
    conn.send(s.to_uppercase()).expect("reply");
}

/// PIPE-17: an accepted connection is a `Connection`: it travels to a
/// child like any other.
fn accepted_connection_passes_to_a_child(m: StartMethod) {
    for family in FAMILIES {
        let listener = listen(family, None);
        // No key: the connection is queued without waiting for `accept`,
        // so no thread is needed (a fork scenario must stay single-threaded).
        let client = Client::connect(listener.address(), None).unwrap();
        let accepted = listener.accept_timeout(DEADLINE).unwrap();
        let mut p = start(m, shout, accepted);
        client.send("hello".to_string()).unwrap();
        assert_eq!(client.recv_timeout::<String>(DEADLINE).unwrap(), "HELLO", "{family:?}");
        p.join_timeout(DEADLINE).unwrap();
        // The child's copy was the only one left.
        assert!(client.recv_timeout::<String>(DEADLINE).unwrap_err().is_disconnected());
    }
}

per_method!(
    hello_from_a_child,
    client_gone_before_accept,
    wrong_key_fails_on_both_sides,
    accepted_connection_passes_to_a_child,
);

/// Runs `client` on a thread while the caller accepts.
fn with_client<T: Send + 'static>(
    client: impl FnOnce() -> T + Send + 'static,
    server: impl FnOnce() -> mp::Result<Connection>,
) -> (mp::Result<Connection>, T) {
    let t = thread::spawn(client);
    let accepted = server();
    (accepted, t.join().expect("client thread"))
}

#[test]
fn client_with_a_key_and_listener_without_one() {
    let listener = listen(Family::DefaultPath, None);
    // The listener's side waits for a message: the client, waiting for a
    // challenge, gives up at its deadline and closes.
    let address = listener.address().clone();
    let started = Instant::now();
    let (accepted, client) = with_client(
        move || {
            Client::builder()
                .authkey(b"key")
                .auth_timeout(AUTH_DEADLINE)
                .connect(&address)
                .map(drop)
        },
        || listener.accept_timeout(DEADLINE),
    );
    let e = client.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("authentication challenge"), "{e}");
    let elapsed = started.elapsed();
    assert!(elapsed >= AUTH_DEADLINE && elapsed < WELL_UNDER_DEFAULT, "{elapsed:?}");
    let conn = accepted.unwrap();
    assert!(conn.recv_bytes_timeout(DEADLINE).unwrap_err().is_disconnected());

    // The listener's side speaks first: the client sees it is no challenge.
    let address = listener.address().clone();
    let (accepted, client) = with_client(
        move || Client::connect(&address, Some(b"key")).map(drop),
        || {
            let conn = listener.accept_timeout(DEADLINE)?;
            conn.send("welcome".to_string())?;
            Ok(conn)
        },
    );
    let e = client.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
    assert!(e.to_string().contains("expected an authentication challenge"), "{e}");
    assert!(
        accepted
            .unwrap()
            .recv_bytes_timeout(DEADLINE)
            .unwrap_err()
            .is_disconnected()
    );
}

#[test]
fn listener_with_a_key_and_client_without_one() {
    let listener = listen(Family::Abstract, Some(b"key"));
    let address = listener.address().clone();
    let (accepted, seen) = with_client(
        move || {
            let conn = Client::connect(&address, None).unwrap();
            conn.send("hello".to_string()).unwrap();
            // What a client without a key sees: the challenge, the
            // verdict, the end.
            let mut seen = Vec::new();
            loop {
                match conn.recv_bytes_timeout(DEADLINE) {
                    Ok(m) => seen.push(m),
                    Err(e) if e.is_disconnected() => return seen,
                    Err(e) => panic!("{e}"),
                }
            }
        },
        || listener.accept_timeout(DEADLINE),
    );
    let e = accepted.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
    assert!(e.to_string().contains("not a digest"), "{e}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].starts_with(b"#CHALLENGE#{sha256}"));
    assert_eq!(seen[1], b"#FAILURE#");
}

/// Writes to a raw peer.
impl RawPeer {
    fn send(&mut self, bytes: &[u8]) {
        self.stream().write_all(bytes).unwrap();
    }
}

/// A message header as `Connection` writes it, announcing `len` bytes.
fn header(len: u64) -> Vec<u8> {
    let mut h = b"mp\x01\x00\x00\x00\x00\x00".to_vec();
    h.extend_from_slice(&len.to_le_bytes());
    h
}

#[test]
fn hostile_peers_fail_within_the_auth_deadline() {
    let mut wrong_response = header(40);
    wrong_response.extend_from_slice(b"{sha256}");
    wrong_response.extend_from_slice(&[0; 32]);
    let cases: [(&str, Vec<u8>, ErrorKind); 5] = [
        ("silent", Vec::new(), ErrorKind::Timeout),
        ("slow", header(64)[..10].to_vec(), ErrorKind::Timeout),
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ErrorKind::Protocol,
        ),
        ("oversized", header(1 << 20), ErrorKind::Protocol),
        ("wrong digest", wrong_response, ErrorKind::Authentication),
    ];
    for family in FAMILIES {
        let listener = Listener::builder().authkey(b"key").auth_timeout(AUTH_DEADLINE);
        let listener = match address(family) {
            Some(a) => listener.address(a),
            None => listener,
        }
        .bind()
        .unwrap();
        for (what, bytes, kind) in &cases {
            let mut peer = RawPeer::connect(listener.address());
            peer.send(bytes);
            let started = Instant::now();
            let e = listener.accept_timeout(DEADLINE).unwrap_err();
            let elapsed = started.elapsed();
            assert_eq!(e.kind(), *kind, "{family:?} {what}: {e}");
            assert!(elapsed < WELL_UNDER_DEFAULT, "{family:?} {what}: {elapsed:?}");
            if *kind == ErrorKind::Timeout {
                assert!(elapsed >= AUTH_DEADLINE, "{family:?} {what}: {elapsed:?}");
            }
            drop(peer);
            // The listener keeps working.
            let address = listener.address().clone();
            let (accepted, client) = with_client(
                move || Client::connect(&address, Some(b"key")).map(drop),
                || listener.accept_timeout(DEADLINE),
            );
            accepted.unwrap_or_else(|e| panic!("{family:?} after {what}: {e}"));
            client.unwrap();
        }
    }
}

#[test]
fn second_bind_on_an_address_in_use_fails() {
    for family in FAMILIES {
        let first = listen(family, None);
        let e = Listener::bind(Some(first.address().clone()), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{family:?}: {e}");
        assert!(e.to_string().contains(&first.address().to_string()), "{e}");
        let source = std::error::Error::source(&e).expect("the OS error");
        let source = source.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(source.raw_os_error(), Some(libc::EADDRINUSE), "{family:?}");
        // The failed bind left the first listener (and its file) alone.
        let _client = Client::connect(first.address(), None).unwrap();
        first.accept_timeout(DEADLINE).unwrap();
    }
}

fn socket_path(listener: &Listener) -> PathBuf {
    match listener.address() {
        Address::Unix(p) => p.clone(),
        other => panic!("not a path: {other}"),
    }
}

#[test]
fn default_socket_is_private_and_removed_on_drop() {
    let listener = Listener::bind(None, None).unwrap();
    let path = socket_path(&listener);
    let dir = path.parent().unwrap().to_owned();
    assert!(
        path.file_name().unwrap().as_bytes().starts_with(b"listener-"),
        "{path:?}"
    );
    assert!(dir.file_name().unwrap().as_bytes().starts_with(b"pymp-"), "{dir:?}");
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    drop(listener);
    assert!(!path.exists(), "{path:?} outlived its listener");
    assert!(!dir.exists(), "{dir:?} outlived its listener");
}

#[test]
fn explicit_path_is_removed_on_close_and_nothing_answers_there() {
    let listener = listen(Family::Path, None);
    let path = socket_path(&listener);
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "owner-only, whatever the umask"
    );
    listener.close();
    assert!(!path.exists());
    let e = Client::connect(path.as_path(), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
}

#[test]
fn connecting_where_nobody_listens_is_an_io_error() {
    let tcp = listen(Family::Tcp, None);
    let closed = tcp.address().clone();
    drop(tcp);
    for address in [
        Address::Unix(std::env::temp_dir().join(unique("missing"))),
        Address::Abstract(unique("missing").into_bytes()),
        closed,
    ] {
        let e = Client::connect_timeout(&address, Some(b"key"), DEADLINE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{address}: {e}");
        assert!(e.to_string().contains(&address.to_string()), "{e}");
    }
}

#[test]
fn accept_timeout_without_a_client_times_out() {
    let listener = listen(Family::Tcp, Some(b"key"));
    let started = Instant::now();
    let e = listener.accept_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[test]
fn unusable_names_are_invalid_input() {
    let long = Address::Unix(Path::new("/tmp").join("x".repeat(200)));
    assert_eq!(
        Listener::bind(Some(long.clone()), None).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        Client::connect(&long, None).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let long = Address::Abstract(vec![b'x'; 108]);
    assert_eq!(
        Listener::bind(Some(long), None).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

fn identity(a: Address) -> Address {
    a
}

#[test]
fn addresses_display_and_travel() {
    let odd_path = Address::Unix(PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/not-utf8-\xff.sock")));
    let tcp: SocketAddr = "[::1]:8080".parse().unwrap();
    for (a, shown) in [
        (Address::from(Path::new("/run/app.sock")), "/run/app.sock"),
        (odd_path, "/tmp/not-utf8-\u{fffd}.sock"),
        (Address::Abstract(b"app\0x".to_vec()), "@app\\x00x"),
        (Address::from(tcp), "[::1]:8080"),
    ] {
        assert_eq!(a.to_string(), shown);
        let mut p = start(StartMethod::Spawn, identity, a.clone());
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), a);
    }
}

#[test]
fn connect_timeout_bounds_a_full_backlog() {
    let listener = Listener::builder()
        .address(Address::Abstract(unique("backlog").into_bytes()))
        .backlog(0)
        .bind()
        .unwrap();
    // A backlog of 0 queues one connection; the next must wait for room.
    let _queued = Client::connect(listener.address(), None).unwrap();
    let started = Instant::now();
    let e = Client::connect_timeout(listener.address(), None, Duration::from_millis(100)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(100));
    // Room made, the next one gets in; its connection is usable.
    let first = listener.accept_timeout(DEADLINE).unwrap();
    let client = Client::connect_timeout(listener.address(), None, DEADLINE).unwrap();
    let second = listener.accept_timeout(DEADLINE).unwrap();
    client.send_bytes(b"ping").unwrap();
    assert_eq!(second.recv_bytes_timeout(DEADLINE).unwrap(), b"ping");
    drop(first);
}

#[test]
fn listeners_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Listener>();
    check::<mp::ListenerBuilder>();
    check::<mp::ClientBuilder>();
    check::<Address>();
}
