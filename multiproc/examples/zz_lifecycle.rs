//! experiment
use multiproc::{Pool, StartMethod};
use std::time::{Duration, Instant};
fn square(x: u64) -> u64 {
    x * x
}
fn noop() {}
fn med(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
fn main() {
    let m = match std::env::args().nth(1).as_deref() {
        Some("spawn") => StartMethod::Spawn,
        Some("forkserver") => StartMethod::ForkServer,
        _ => StartMethod::Fork,
    };
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let (mut a, mut b, mut ph) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let t = Instant::now();
        let pool = Pool::builder().processes(2).start_method(m).build().unwrap();
        let t1 = t.elapsed();
        let r = pool.map(square, 0..2u64).unwrap();
        let t2 = t.elapsed();
        pool.close();
        pool.join().unwrap();
        let t3 = t.elapsed();
        drop(pool);
        assert_eq!(r, [0, 1]);
        a.push(t3);
        ph.push([t1, t2 - t1, t3 - t2]);
        let t = Instant::now();
        let mut p = multiproc::ProcessBuilder::new().start_method(m).target(noop);
        p.start().unwrap();
        p.join().unwrap();
        b.push(t.elapsed());
    }
    let p0 = med(ph.iter().map(|x| x[0]).collect());
    let p1 = med(ph.iter().map(|x| x[1]).collect());
    let p2 = med(ph.iter().map(|x| x[2]).collect());
    let (ma, mb) = (med(a), med(b));
    println!(
        "{m:?}: pool {ma:?} (build {p0:?} map {p1:?} close+join {p2:?}) process {mb:?} ratio {:.2}",
        ma.as_secs_f64() / mb.as_secs_f64()
    );
}
