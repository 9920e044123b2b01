//! `Pool::map`: results in input order, whatever the chunking.

use multiproc::{ErrorKind, StartMethod};

use crate::support::DEADLINE;

use super::{assert_gone, pool, square};

fn add((a, b): (u32, u32)) -> u32 {
    a + b
}

fn map_keeps_order(m: StartMethod) {
    let p = pool(m, 2).build().unwrap();
    let expected: Vec<u64> = (0..10_000u64).map(square).collect();
    assert_eq!(p.map_chunked(square, 0..10_000u64, 1).unwrap(), expected);
    assert_eq!(p.map(square, 0..10_000u64).unwrap(), expected);
    assert_eq!(p.map(square, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
    assert_eq!(p.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
    assert_eq!(p.apply(square, 9).unwrap(), 81);
    let mut r = p.apply_async(square, 5).unwrap();
    assert_eq!(r.get_timeout(DEADLINE).unwrap(), 25);
    let mut again = p.apply_async(square, 6).unwrap();
    assert!(again.wait(Some(DEADLINE)).unwrap());
    assert!(again.ready());
    assert_eq!(again.successful(), Some(true));
    assert_eq!(again.get_timeout(DEADLINE).unwrap(), 36);
    assert_eq!(again.get_timeout(DEADLINE).unwrap_err().kind(), ErrorKind::InvalidState);
    let mut many = p.map_async(square, 0..100u64, Some(7)).unwrap();
    assert_eq!(many.get_timeout(DEADLINE).unwrap(), expected[..100]);
    p.close();
    assert_eq!(p.apply_async(square, 1).unwrap_err().kind(), ErrorKind::InvalidState);
    let pids = p.pids();
    p.join().unwrap();
    assert_gone(&pids);
}

per_method!(map_keeps_order);
