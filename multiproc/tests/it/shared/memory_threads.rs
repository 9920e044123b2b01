//! Threads of one process using one shared segment or raw value at once:
//! the copies are atomic (no data race in Rust's memory model), and a
//! word-sized value is never torn. (The data race itself is what Miri
//! catches, in the library's `segment` tests; here the observable part.)

use std::sync::atomic::{AtomicBool, Ordering};

use multiproc::{RawArray, RawValue, SharedMemory};

const ROUNDS: usize = 20_000;

#[test]
fn threads_copy_in_and_out_of_one_segment() {
    let shm = SharedMemory::new(4096).unwrap();
    std::thread::scope(|s| {
        for byte in [1u8, 2] {
            let shm = &shm;
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    shm.write_at(0, &[byte; 256]).unwrap();
                    shm.fill(byte);
                }
            });
        }
        let mut buf = [0u8; 256];
        for _ in 0..ROUNDS {
            shm.read_at(0, &mut buf).unwrap();
            assert!(buf.iter().all(|b| [0, 1, 2].contains(b)), "{buf:?}");
            let b = shm.as_atomic_bytes()[7].load(Ordering::Relaxed);
            assert!([0, 1, 2].contains(&b), "{b}");
        }
    });
}

#[test]
fn a_raw_value_is_never_torn_between_threads() {
    let words = [0x0123_4567_89ab_cdefu64, !0x0123_4567_89ab_cdef];
    let v = RawValue::new(words[0]).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for w in words {
            let (v, done) = (v.clone(), &done);
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    v.store(w);
                }
            });
        }
        let torn = (0..10 * ROUNDS).map(|_| v.load()).find(|got| !words.contains(got));
        done.store(true, Ordering::Relaxed);
        assert_eq!(torn, None, "a torn value");
    });
}

#[test]
fn raw_array_elements_are_never_torn_between_threads() {
    let words = [0x1111_2222u32, 0x3333_4444];
    let a = RawArray::from_slice(&[words[0]; 16]).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for w in words {
            let (a, done) = (a.clone(), &done);
            s.spawn(move || {
                for i in (0..16).cycle() {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    a.set(i, w).unwrap();
                }
            });
        }
        let torn = (0..ROUNDS).flat_map(|_| a.to_vec()).find(|got| !words.contains(got));
        done.store(true, Ordering::Relaxed);
        assert_eq!(torn, None, "a torn element");
    });
}
