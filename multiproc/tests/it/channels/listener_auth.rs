//! A keyed `Listener` authenticates its peers concurrently: peers that
//! connect and stay silent (or trickle their bytes) never hold up one that
//! authenticates, the number of handshakes under way is bounded (the
//! oldest is evicted), and a wrong key is still refused. Unix (path,
//! abstract) and TCP loopback addresses.

use std::{
    io::{ErrorKind as IoKind, Read},
    net::Shutdown,
    os::{
        linux::net::SocketAddrExt,
        unix::net::{self as unix, UnixListener},
    },
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

use multiproc::{self as mp, Address, Client, Connection, ErrorKind, Listener, StartMethod};

use crate::support::{DEADLINE, RawPeer};

const KEY: &[u8] = b"the key";
/// Silent peers opened before the honest one.
const SILENT: usize = 3;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(what: &str) -> String {
    format!(
        "multiproc-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn addresses() -> [Address; 3] {
    [
        Address::Unix(std::env::temp_dir().join(unique("auth-sock"))),
        Address::Abstract(unique("auth-abstract").into_bytes()),
        Address::Tcp("127.0.0.1:0".parse().unwrap()),
    ]
}

/// A keyed listener whose handshakes may take the whole test deadline: a
/// silent peer never fails by its deadline while a test runs.
fn listen(address: Address, max_pending: usize) -> Listener {
    Listener::builder()
        .address(address)
        .authkey(KEY)
        .auth_timeout(DEADLINE)
        .max_pending_handshakes(max_pending)
        .bind()
        .expect("bind")
}

/// What the tests check of a raw peer.
impl RawPeer {
    fn set_nonblocking(&self, on: bool) {
        match self {
            RawPeer::Unix(s) => s.set_nonblocking(on).unwrap(),
            RawPeer::Tcp(s) => s.set_nonblocking(on).unwrap(),
        }
    }

    fn set_read_timeout(&self, t: Duration) {
        match self {
            RawPeer::Unix(s) => s.set_read_timeout(Some(t)).unwrap(),
            RawPeer::Tcp(s) => s.set_read_timeout(Some(t)).unwrap(),
        }
    }

    /// Reads one message as `Connection` frames it.
    fn read_message(&mut self) -> Vec<u8> {
        self.set_read_timeout(DEADLINE);
        let mut header = [0u8; 16];
        self.stream().read_exact(&mut header).expect("a message header");
        let len = u64::from_le_bytes(header[8..].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len];
        self.stream().read_exact(&mut payload).expect("a message payload");
        payload
    }

    /// The listener sent this peer its challenge and nothing after it, and
    /// keeps the connection open: the handshake is pending.
    fn assert_challenged_and_pending(&mut self, what: &str) {
        let challenge = self.read_message();
        assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"), "{what}: {challenge:?}");
        self.set_nonblocking(true);
        let mut byte = [0u8; 1];
        match self.stream().read(&mut byte) {
            Err(e) if e.kind() == IoKind::WouldBlock => {}
            other => panic!("{what}: expected an open, quiet connection, got {other:?}"),
        }
        self.set_nonblocking(false);
    }

    /// The listener closed this peer's connection after its challenge.
    fn assert_challenged_and_closed(&mut self, what: &str) {
        let challenge = self.read_message();
        assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"), "{what}: {challenge:?}");
        let mut rest = Vec::new();
        self.stream().read_to_end(&mut rest).expect("read to the end");
        assert!(rest.is_empty(), "{what}: {rest:?}");
    }
}

/// Connects with `key`, sends "hello", and waits for the listener's side
/// to close (so the connection is not gone before it was accepted).
fn honest_client(address: Address, key: &'static [u8]) -> thread::JoinHandle<mp::Result<()>> {
    thread::spawn(move || {
        let conn = Client::builder()
            .authkey(key)
            .auth_timeout(DEADLINE)
            .connect(&address)?;
        conn.send("hello".to_string()).map_err(mp::Error::from)?;
        let _ = conn.recv_bytes_timeout(DEADLINE);
        Ok(())
    })
}

fn assert_hello(conn: &Connection) {
    assert_eq!(conn.recv_timeout::<String>(DEADLINE).unwrap(), "hello");
}

#[test]
fn silent_peers_do_not_delay_an_authenticating_one() {
    for address in addresses() {
        let listener = listen(address, 32);
        let address = listener.address().clone();
        let mut silent: Vec<RawPeer> = (0..SILENT).map(|_| RawPeer::connect(&address)).collect();
        let client = honest_client(address.clone(), KEY);
        // Silent peers' handshakes last the whole deadline: only the
        // honest client can be what returns.
        let conn = listener
            .accept_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("{address}: {e}"));
        assert_hello(&conn);
        drop(conn);
        client.join().unwrap().unwrap();
        for (i, s) in silent.iter_mut().enumerate() {
            s.assert_challenged_and_pending(&format!("{address}: silent peer {i}"));
        }
        // A second honest client, with the silent ones still pending.
        let client = honest_client(address.clone(), KEY);
        assert_hello(&listener.accept_timeout(DEADLINE).unwrap());
        client.join().unwrap().unwrap();
    }
}

/// Forwards a client's bytes to `address` one byte per write, and the
/// listener's bytes back whole: a client whose handshake trickles in.
fn trickling_proxy(address: Address) -> (Address, thread::JoinHandle<()>) {
    let name = unique("proxy");
    let front = UnixListener::bind_addr(&unix::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let t = thread::spawn(move || {
        let (mut client, _) = front.accept().unwrap();
        let mut server = RawPeer::connect(&address);
        let mut back = match &server {
            RawPeer::Unix(s) => RawPeer::Unix(s.try_clone().unwrap()),
            RawPeer::Tcp(s) => RawPeer::Tcp(s.try_clone().unwrap()),
        };
        let mut client_back = client.try_clone().unwrap();
        let down = thread::spawn(move || {
            let _ = std::io::copy(back.stream(), &mut client_back);
            let _ = client_back.shutdown(Shutdown::Write);
        });
        let mut byte = [0u8; 1];
        while let Ok(1) = client.read(&mut byte) {
            if server.stream().write_all(&byte).is_err() {
                break;
            }
            // Only a chance for the listener to see each byte alone.
            thread::yield_now();
        }
        match &server {
            RawPeer::Unix(s) => drop(s.shutdown(Shutdown::Write)),
            RawPeer::Tcp(s) => drop(s.shutdown(Shutdown::Write)),
        }
        down.join().unwrap();
    });
    (Address::Abstract(name.into_bytes()), t)
}

#[test]
fn a_client_that_trickles_its_handshake_byte_by_byte_authenticates() {
    for address in addresses() {
        let listener = listen(address, 32);
        let address = listener.address().clone();
        let mut silent: Vec<RawPeer> = (0..SILENT).map(|_| RawPeer::connect(&address)).collect();
        let (front, proxy) = trickling_proxy(address.clone());
        let client = honest_client(front, KEY);
        let conn = listener
            .accept_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("{address}: {e}"));
        assert_hello(&conn);
        drop(conn);
        client.join().unwrap().unwrap();
        proxy.join().unwrap();
        for (i, s) in silent.iter_mut().enumerate() {
            s.assert_challenged_and_pending(&format!("{address}: silent peer {i}"));
        }
    }
}

#[test]
fn a_full_set_of_pending_handshakes_evicts_the_oldest() {
    for address in addresses() {
        let listener = listen(address, 2);
        let address = listener.address().clone();
        // Three silent peers for two slots: the third evicts the first.
        let mut silent: Vec<RawPeer> = (0..3).map(|_| RawPeer::connect(&address)).collect();
        let e = listener.accept_timeout(Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{address}: {e}");
        assert!(e.to_string().contains("still authenticating"), "{address}: {e}");
        let evicted = |e: mp::Error| {
            assert_eq!(e.kind(), ErrorKind::Timeout, "{address}: {e}");
            assert!(e.to_string().contains("abandoned unfinished"), "{address}: {e}");
        };
        evicted(listener.accept_timeout(DEADLINE).unwrap_err());
        // An honest client evicts the second, and is accepted before that
        // eviction is reported.
        let client = honest_client(address.clone(), KEY);
        let conn = listener
            .accept_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("{address}: {e}"));
        assert_hello(&conn);
        drop(conn);
        client.join().unwrap().unwrap();
        evicted(listener.accept_timeout(DEADLINE).unwrap_err());
        silent[0].assert_challenged_and_closed(&format!("{address}: peer 0"));
        silent[1].assert_challenged_and_closed(&format!("{address}: peer 1"));
        silent[2].assert_challenged_and_pending(&format!("{address}: peer 2"));
    }
}

#[test]
fn a_wrong_key_is_refused_while_silent_peers_wait() {
    for address in addresses() {
        let listener = listen(address, 32);
        let address = listener.address().clone();
        let mut silent: Vec<RawPeer> = (0..SILENT).map(|_| RawPeer::connect(&address)).collect();
        let client = honest_client(address.clone(), b"a wrong key");
        let e = listener.accept_timeout(DEADLINE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication, "{address}: {e}");
        assert!(e.to_string().contains("digest received was wrong"), "{address}: {e}");
        let e = client.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication, "{address}: {e}");
        let client = honest_client(address.clone(), KEY);
        assert_hello(&listener.accept_timeout(DEADLINE).unwrap());
        client.join().unwrap().unwrap();
        for (i, s) in silent.iter_mut().enumerate() {
            s.assert_challenged_and_pending(&format!("{address}: silent peer {i}"));
        }
    }
}

/// Child: connects with the process key and says hello.
fn say_hello(address: Address) {
    let key = *mp::current_process().authkey();
    let conn = Client::builder()
        .authkey(&key)
        .auth_timeout(DEADLINE)
        .connect(&address)
        .expect("connect");
    conn.send("hello".to_string()).expect("send");
}

fn silent_peers_do_not_delay_a_child_client(m: StartMethod) {
    let key = *mp::current_process().authkey();
    for address in addresses() {
        let listener = Listener::builder()
            .address(address)
            .authkey(&key)
            .auth_timeout(DEADLINE)
            .bind()
            .expect("bind");
        let address = listener.address().clone();
        let mut silent: Vec<RawPeer> = (0..SILENT).map(|_| RawPeer::connect(&address)).collect();
        let mut p = mp::ProcessBuilder::new()
            .start_method(m)
            .target_with(say_hello, address.clone());
        p.start().expect("start");
        assert_hello(&listener.accept_timeout(DEADLINE).unwrap());
        p.join_timeout(DEADLINE).unwrap();
        for (i, s) in silent.iter_mut().enumerate() {
            s.assert_challenged_and_pending(&format!("{address}: silent peer {i}"));
        }
    }
}

per_method!(silent_peers_do_not_delay_a_child_client);
