//! The properties: proptest cases over random and mutated streams and
//! values, exhaustive cuts of small and large frames, and absurd lengths
//! that must fail fast without allocating.
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::AsRawFd,
    thread,
    time::{Duration, Instant},
};

use multiproc::{self as mp, Connection, ErrorKind, StartMethod};
use proptest::{prelude::*, sample::Index};
use serde::{Deserialize, Serialize};

use super::{
    harness::{
        DEFAULT_CASES, How, LONG, OP_LIMIT, captured, config, count_open, marker_fd, recv_ty, run_case, send_blocking,
        send_nonblocking, send_with_fds,
    },
    model::{
        DIRECT_MIN, Delivery, HEADER, Op, Out, Rec, Shape, TRUSTED_LEN, Ty, encode, expected_value, frame, header,
        pattern,
    },
    strategies::{op, rec, stream, ty},
};

proptest! {
    // The main property: twice the cases (about 2 s in a debug build).
    #![proptest_config(config(2 * DEFAULT_CASES))]

    /// Arbitrary and corrupted streams: every receive gives what the
    /// framing rules say — exact messages, then `Protocol` (sticky) or
    /// `Disconnected`, or `Timeout` while the writer is open.
    #[test]
    fn decoder_follows_the_framing_rules(
        stream in stream(),
        delivery in prop_oneof![
            5 => Just(Delivery::Closed),
            3 => Just(Delivery::Open),
            2 => prop_oneof![1..64usize, 1000..70_000usize].prop_map(Delivery::Streaming),
        ],
        ops in prop::collection::vec(op(), 1..8),
    ) {
        run_case(&stream, delivery, &ops);
    }
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    /// Random bytes sent as a message decode into each type as the codec
    /// says, or give a `Deserialize` error; the connection stays usable.
    #[test]
    fn random_messages_deserialize_cleanly(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 0..2048),
        ],
        tys in prop::collection::vec(ty(), 1..6),
    ) {
        let (a, b) = mp::pipe(true).unwrap();
        for &ty in &tys {
            a.send_bytes(&bytes).unwrap();
            let t = Instant::now();
            let got = recv_ty(&b, ty, How::Block);
            prop_assert_eq!(&got, &expected_value(ty, &bytes), "as {:?}", ty);
            prop_assert!(t.elapsed() < OP_LIMIT);
        }
        a.send_bytes(b"still framed").unwrap();
        prop_assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"still framed");
        drop(a);
        prop_assert!(b.recv_bytes_timeout(LONG).unwrap_err().is_disconnected());
    }

    /// Values as `send` writes them, with bits flipped in the payload: a
    /// value (the one postcard reads there) or a `Deserialize` error.
    #[test]
    fn corrupted_values_deserialize_cleanly(
        value in rec(),
        n in any::<u64>(),
        flips in prop::collection::vec((any::<Index>(), 0..8u8), 0..6),
    ) {
        let mut frames = [(captured(value.clone()), Ty::Rec), (captured(n), Ty::U64)];
        prop_assert_eq!(&frames[0].0[HEADER..], &encode(&value)[..]);
        let (a, b) = mp::pipe(true).unwrap();
        for (f, ty) in &mut frames {
            // Unchanged, it round-trips.
            send_nonblocking(a.as_raw_fd(), f);
            let sent = f[HEADER..].to_vec();
            prop_assert_eq!(recv_ty(&b, *ty, How::Wait(LONG)), Out::Data(sent));
            for (i, bit) in &flips {
                let at = HEADER + i.index(f.len() - HEADER);
                f[at] ^= 1 << bit;
            }
            prop_assert_eq!(send_nonblocking(a.as_raw_fd(), f), f.len());
            let got = recv_ty(&b, *ty, How::Wait(LONG));
            prop_assert_eq!(got, expected_value(*ty, &f[HEADER..]));
        }
        a.send(7u64).unwrap();
        prop_assert_eq!(b.recv_timeout::<u64>(LONG).unwrap(), 7);
    }

    /// A connection sent as a value, with its descriptor lost: with the
    /// header's count intact the frame is corrupted (`Protocol`); with a
    /// zero count, and with any bits flipped, a `Deserialize` error.
    #[test]
    fn a_connection_without_its_descriptor_is_an_error(
        buffered in prop::collection::vec(any::<u8>(), 0..40),
        flips in prop::collection::vec((any::<Index>(), 0..8u8), 0..4),
    ) {
        let (x, y) = mp::pipe(true).unwrap();
        if !buffered.is_empty() {
            // A message y has read but not delivered travels inside it.
            x.send_bytes(&buffered).unwrap();
            x.send_bytes(b"second").unwrap();
            prop_assert_eq!(y.recv_bytes_timeout(LONG).unwrap(), &buffered[..]);
        }
        let mut f = captured(y);
        prop_assert_eq!(u16::from_le_bytes([f[4], f[5]]), 1);
        let (a, b) = mp::pipe(true).unwrap();
        send_nonblocking(a.as_raw_fd(), &f);
        prop_assert_eq!(recv_ty(&b, Ty::Conn, How::Wait(LONG)), Out::Err(ErrorKind::Protocol));

        let (a, b) = mp::pipe(true).unwrap();
        f[4] = 0;
        for (i, bit) in &flips {
            let at = HEADER + i.index(f.len() - HEADER);
            f[at] ^= 1 << bit;
        }
        send_nonblocking(a.as_raw_fd(), &f);
        prop_assert_eq!(recv_ty(&b, Ty::Conn, How::Wait(LONG)), Out::Err(ErrorKind::Deserialize));
        // The message was consumed; the connection goes on.
        a.send_bytes(b"next").unwrap();
        prop_assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"next");
    }

    /// Frames with real descriptors attached (`SCM_RIGHTS`), their counts
    /// right or wrong, attached to the frame's first byte or later, payloads
    /// random or a connection's: no panic, messages exact while the
    /// stream is honest, and no descriptor left open once the reader and
    /// what it received are dropped.
    #[test]
    fn descriptors_with_corrupted_frames_do_not_leak(
        frames in prop::collection::vec(
            (
                prop_oneof![
                    1 => Just(None),
                    2 => prop::collection::vec((any::<Index>(), 0..8u8), 0..3).prop_map(Some),
                ],
                prop::collection::vec(any::<u8>(), 0..40),
                0..4usize,
                prop_oneof![
                    4 => Just(None),
                    1 => prop_oneof![Just(0u16), Just(1), Just(3), Just(254), any::<u16>()].prop_map(Some),
                ],
                prop_oneof![3 => Just(None), 1 => any::<Index>().prop_map(Some)],
            ),
            1..5,
        ),
        ops in prop::collection::vec(prop_oneof![Just(Ty::Conn), Just(Ty::Bytes), Just(Ty::Rec)], 1..4),
    ) {
        let (marker, name) = marker_fd();
        prop_assert_eq!(count_open(&name), 1, "the leak check sees the marker");
        let passed = {
            let (_x, y) = mp::pipe(true).unwrap();
            captured(y)[HEADER..].to_vec()
        };
        let (reader, writer) = mp::pipe(true).unwrap();
        let mut honest = true;
        let mut payloads = Vec::new();
        for (conn_flips, random, nfds, wrong_count, late) in &frames {
            // A connection's encoding (bits flipped or not), or random bytes.
            let payload = match conn_flips {
                Some(flips) => {
                    let mut p = passed.clone();
                    for (i, bit) in flips {
                        let at = i.index(p.len());
                        p[at] ^= 1 << bit;
                    }
                    p
                }
                None => random.clone(),
            };
            let announced = wrong_count.unwrap_or(*nfds as u16);
            honest &= announced as usize == *nfds && late.is_none();
            let f = [&header(payload.len() as u64, announced)[..], &payload].concat();
            let at = late.map_or(0, |i| 1 + i.index(f.len() - 1));
            let fds = vec![marker; *nfds];
            let mut sent = send_nonblocking(writer.as_raw_fd(), &f[..at]);
            sent += if fds.is_empty() {
                send_nonblocking(writer.as_raw_fd(), &f[at..])
            } else {
                send_with_fds(writer.as_raw_fd(), &f[at..], &fds)
            };
            prop_assert_eq!(sent, f.len());
            payloads.push(payload);
        }
        drop(writer);
        // SAFETY: closing the memfd this case created; copies travel.
        unsafe { libc::close(marker) };

        let mut taken = 0;
        let mut ended = None;
        for &ty in ops.iter().cycle().take(payloads.len() + 3) {
            let got = recv_ty(&reader, ty, How::Wait(LONG));
            match (&got, ended) {
                (_, Some(kind)) => prop_assert_eq!(&got, &Out::Err(kind), "the end is sticky"),
                (Out::Err(k @ (ErrorKind::Protocol | ErrorKind::Disconnected)), None) => {
                    prop_assert!(!honest || *k == ErrorKind::Disconnected, "{:?} on an honest stream", k);
                    if *k == ErrorKind::Disconnected {
                        prop_assert_eq!(taken, payloads.len(), "disconnected before the end");
                    }
                    ended = Some(*k);
                }
                (Out::Err(ErrorKind::Deserialize) | Out::Data(_), None) => {
                    prop_assert!(taken < payloads.len(), "a message after the last");
                    if ty != Ty::Conn {
                        // Descriptors or not, the bytes are the frame's.
                        prop_assert_eq!(&got, &expected_value(ty, &payloads[taken]));
                    }
                    taken += 1;
                }
                (other, None) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        drop(reader);
        prop_assert_eq!(count_open(&name), 0, "descriptors left open");
    }

    /// Messages of any size (empty, around and past the direct-read
    /// threshold) come out exactly as sent, whichever receive takes them.
    #[test]
    fn valid_messages_round_trip(
        sizes in prop::collection::vec(
            prop_oneof![
                4 => 0..100usize,
                1 => Just(0usize),
                1 => DIRECT_MIN - 20..DIRECT_MIN + 20,
                1 => 100_000..300_000usize,
            ],
            1..6,
        ),
        seed in any::<u64>(),
        ops in prop::collection::vec(0..5u8, 1..6),
    ) {
        let messages: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(i, &n)| pattern(n, seed.wrapping_add(i as u64))).collect();
        let (a, b) = mp::pipe(true).unwrap();
        let writer = {
            let messages = messages.clone();
            thread::spawn(move || {
                for m in &messages {
                    if a.send_bytes(m).is_err() {
                        return;
                    }
                }
            })
        };
        for (m, op) in messages.iter().zip(ops.iter().cycle()) {
            let t = Instant::now();
            let got = match op {
                0 => b.recv_bytes_timeout(LONG).unwrap(),
                1 => b.recv_bytes().unwrap(),
                2 => b.recv_timeout::<Vec<u8>>(LONG).unwrap(),
                3 => b.recv_bytes_max(m.len()).unwrap(),
                _ => {
                    let mut buf = vec![0u8; m.len() + 3];
                    let n = b.recv_bytes_into(&mut buf, 3).unwrap();
                    buf[3..3 + n].to_vec()
                }
            };
            prop_assert!(got == *m, "a {}-byte message came out as {} bytes, or different", m.len(), got.len());
            prop_assert!(t.elapsed() < OP_LIMIT);
        }
        writer.join().unwrap();
        prop_assert!(b.recv_bytes_timeout(LONG).unwrap_err().is_disconnected());
        prop_assert!(b.poll(Some(Duration::ZERO)).unwrap());
    }

    /// Values as `send` writes them come back equal.
    #[test]
    fn values_round_trip(values in prop::collection::vec(rec(), 0..8)) {
        let (a, b) = mp::pipe(true).unwrap();
        for v in &values {
            a.send(v.clone()).unwrap();
        }
        drop(a);
        for v in &values {
            let got: Rec = b.recv_timeout(LONG).unwrap();
            prop_assert_eq!(encode(&got), encode(v));
        }
        prop_assert!(b.recv_timeout::<Rec>(LONG).unwrap_err().is_disconnected());
    }
}

// ---------------------------------------------------------------------
// Exhaustive cuts

/// Every receive method, for cuts where one call has to show it all.
const ALL_OPS: [Op; 9] = [
    Op::Bytes,
    Op::Wait,
    Op::Value(Ty::Rec),
    Op::Try(Ty::Bytes),
    Op::Blocking,
    Op::Max(1 << 20),
    Op::Into { len: 200, offset: 7 },
    Op::Poll,
    Op::Value(Ty::Str),
];

/// A stream of small frames cut at every point: the whole messages before
/// the cut come out exactly, then `Disconnected` at a boundary and
/// `Protocol` inside a frame (and `Timeout` while the writer is open).
#[test]
fn every_cut_of_small_frames() {
    let rec = Rec {
        id: 7,
        delta: -3,
        ratio: 0.5,
        letter: 'é',
        name: "nom".into(),
        shape: Shape::Named {
            id: 9,
            flags: vec![true, false],
        },
        maybe: Some(vec![Shape::Empty, Shape::Pair(-1, Some(2))]),
        items: vec![(1, None), (2, Some(-300))],
        nested: vec![vec![], vec![1, 1 << 30]],
        wide: u128::MAX,
    };
    let stream = [
        frame(b""),
        frame(b"x"),
        frame(&encode(&rec)),
        frame("héllo".as_bytes()),
        frame(&[0u8; 40]),
    ]
    .concat();
    for cut in 0..=stream.len() {
        for start in 0..ALL_OPS.len() {
            let ops: Vec<Op> = ALL_OPS
                .iter()
                .cycle()
                .skip(start)
                .take(ALL_OPS.len())
                .copied()
                .collect();
            run_case(&stream[..cut], Delivery::Closed, &ops);
        }
        run_case(
            &stream[..cut],
            Delivery::Open,
            &[Op::Try(Ty::Bytes), Op::Bytes, Op::Poll, Op::Max(3)],
        );
    }
}

/// A frame longer than the direct-read threshold cut at points around its
/// header and inside its payload.
#[test]
fn cuts_of_a_large_frame() {
    let big = frame(&pattern(DIRECT_MIN + 5000, 3));
    let stream = [frame(b"before"), big, frame(b"after")].concat();
    let cuts = (0..40)
        .chain([1000, DIRECT_MIN, DIRECT_MIN + 30, stream.len() - 30])
        .chain(stream.len() - 10..=stream.len());
    for cut in cuts {
        run_case(
            &stream[..cut],
            Delivery::Closed,
            &[Op::Bytes, Op::Value(Ty::Bytes), Op::Poll],
        );
        // Read straight into the caller's buffer, or too long for it.
        for len in [DIRECT_MIN + 5000, DIRECT_MIN + 4999, 200_000] {
            run_case(
                &stream[..cut],
                Delivery::Closed,
                &[Op::Into { len, offset: 0 }, Op::Wait],
            );
            run_case(
                &stream[..cut],
                Delivery::Streaming(3000),
                &[
                    Op::Into { len, offset: 0 },
                    Op::Into {
                        len: len + 9,
                        offset: 9,
                    },
                ],
            );
        }
        run_case(
            &stream[..cut],
            Delivery::Open,
            &[Op::Bytes, Op::Try(Ty::Bytes), Op::Poll],
        );
        run_case(
            &stream[..cut],
            Delivery::Streaming(4096),
            &[Op::Poll, Op::Bytes, Op::Value(Ty::Bytes)],
        );
    }
}

/// Big headers with little behind them, writer closed or open.
#[test]
fn absurd_lengths_fail_fast() {
    for len in [
        u64::MAX,
        u64::MAX / 2,
        1 << 40,
        TRUSTED_LEN + 1,
        TRUSTED_LEN,
        DIRECT_MIN as u64,
    ] {
        for tail in [0usize, 1, 100, 70_000] {
            let stream = [&header(len, 0)[..], &pattern(tail, len)].concat();
            let t = Instant::now();
            run_case(&stream, Delivery::Closed, &[Op::Bytes, Op::Value(Ty::Rec), Op::Poll]);
            run_case(&stream, Delivery::Closed, &[Op::Max(1000)]);
            run_case(&stream, Delivery::Open, &[Op::Bytes, Op::Try(Ty::U64), Op::Poll]);
            assert!(
                t.elapsed() < 3 * OP_LIMIT,
                "length {len}, tail {tail}: {:?}",
                t.elapsed()
            );
        }
    }
}

// ---------------------------------------------------------------------
// Memory

/// Memory figures of this process, in KiB.
#[derive(Clone, Copy, Debug)]
struct Mem {
    hwm: u64,
    size: u64,
}

fn mem() -> Mem {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    Mem {
        hwm: field("VmHWM:"),
        size: field("VmSize:"),
    }
}

/// Resets the peak resident size to the current one (Linux 4.0+); `false`
/// where that is not allowed.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Caps this process's address space (`None`: lifts the cap).
fn limit_address_space(bytes: Option<u64>) {
    let lim = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads one rlimit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", io::Error::last_os_error());
}

/// Address space a probe may add: the one trusted allocation (64 MiB),
/// the bytes that arrived (up to 8 MiB) a few times over, and slack.
const ADDRESS_SPACE_ALLOWANCE: u64 = 128 << 20;

#[derive(Serialize, Deserialize, Debug)]
struct Probe {
    what: String,
    kind: Option<ErrorKind>,
    millis: u128,
    /// Growth of the peak resident size during the probe, KiB.
    resident_kib: u64,
}

/// Child process: headers announcing huge lengths, followed by a few bytes
/// (or a few MiB) and the end of the stream, received in several ways,
/// each under an address-space cap: a buffer sized by the announced length
/// would fail to allocate (an `Io` error) or abort the process.
fn huge_lengths_in_a_child() -> (Vec<Probe>, bool) {
    // Threads share one malloc arena, so that a writer thread does not
    // reserve an arena's 64 MiB under the cap.
    #[cfg(target_env = "gnu")]
    // SAFETY: a malloc tuning call with a valid parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let reset = reset_hwm();
    let mut probes = Vec::new();
    let mut probe = |what: &str, len: u64, tail: usize, close: bool, f: &dyn Fn(&Connection) -> Option<ErrorKind>| {
        let (r, w) = mp::pipe(true).unwrap();
        let wfd = w.as_raw_fd();
        let bytes = [&header(len, 0)[..], &pattern(tail, 5)].concat();
        let writer = thread::spawn(move || {
            send_blocking(wfd, &bytes);
            if close {
                drop(w);
                None
            } else {
                Some(w)
            }
        });
        if !close {
            // Everything sent before the receive, so that it times out.
            while !writer.is_finished() {
                thread::yield_now();
            }
        }
        reset_hwm();
        let before = mem();
        limit_address_space(Some((before.size << 10) + ADDRESS_SPACE_ALLOWANCE));
        let t = Instant::now();
        let kind = f(&r);
        let millis = t.elapsed().as_millis();
        limit_address_space(None);
        let after = mem();
        drop(r);
        drop(writer.join().unwrap());
        probes.push(Probe {
            what: format!("{what}: length {len:#x}, {tail} bytes behind"),
            kind,
            millis,
            resident_kib: after.hwm.saturating_sub(before.hwm),
        });
    };
    for len in [u64::MAX, 1 << 40, TRUSTED_LEN + 1] {
        for tail in [0, 100, 8 << 20] {
            probe("recv_bytes_timeout", len, tail, true, &|c| {
                c.recv_bytes_timeout(LONG).err().map(|e| e.kind())
            });
            probe("recv::<Rec>", len, tail, true, &|c| {
                c.recv::<Rec>().err().map(|e| e.kind())
            });
            probe("poll then try_recv", len, tail, true, &|c| {
                assert!(c.poll(Some(LONG)).unwrap());
                c.try_recv::<Vec<u8>>().err().map(|e| e.kind())
            });
            probe("recv_bytes_max", len, tail, true, &|c| {
                c.recv_bytes_max(1 << 20).err().map(|e| e.kind())
            });
        }
        probe("timeout with the writer open", len, 1000, false, &|c| {
            c.recv_bytes_timeout(Duration::from_millis(50)).err().map(|e| e.kind())
        });
    }
    // Control: the cap works (a reservation well past it fails; free heap
    // memory the process already holds does not count against it).
    probe("control", 0, 0, true, &|_| {
        let mut v = Vec::<u8>::new();
        v.try_reserve_exact(2 * ADDRESS_SPACE_ALLOWANCE as usize)
            .err()
            .map(|_| ErrorKind::Io)
    });
    // Lengths inside a value are not trusted either (serde sequences).
    probe("Vec<u64> announcing u64::MAX elements", 0, 0, true, &|_| {
        let (a, b) = mp::pipe(true).unwrap();
        let mut p = vec![253u8];
        p.extend_from_slice(&u64::MAX.to_le_bytes());
        a.send_bytes(&p).unwrap();
        b.recv::<Vec<u64>>().err().map(|e| e.kind())
    });
    (probes, reset)
}

/// A header announcing a huge length, then little and the end: an error
/// at once, with memory bounded by what arrived (plus the one trusted
/// allocation of up to 64 MiB of address space). Measured in a spawned
/// child, where no other test allocates.
#[test]
fn huge_lengths_do_not_allocate() {
    let mut p = mp::ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .target(huge_lengths_in_a_child);
    p.start().unwrap();
    let (probes, reset) = p.join_timeout(Duration::from_secs(120)).unwrap();
    let mut report = format!("VmHWM reset per probe: {reset}\n");
    for pr in &probes {
        report += &format!("{pr:?}\n");
    }
    for pr in &probes {
        let expected = if pr.what.starts_with("timeout") {
            ErrorKind::Timeout
        } else if pr.what.starts_with("control") {
            ErrorKind::Io
        } else if pr.what.starts_with("Vec<u64>") {
            ErrorKind::Deserialize
        } else {
            ErrorKind::Protocol
        };
        assert_eq!(pr.kind, Some(expected), "{report}");
        assert!(pr.millis < 3000, "{report}");
        // What arrived (at most 8 MiB) a few times over, plus slack.
        assert!(pr.resident_kib < 32 << 10, "{report}");
    }
    eprintln!("{report}");
}
