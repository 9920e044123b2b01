//! Recipe: a producer/consumer pipeline across processes, with a queue
//! between each stage and `None` as the end-of-work marker.
//!
//! Run it with `cargo run -p multiproc --example recipe_pipeline`.
use multiproc::{Process, Queue};

const CONSUMERS: usize = 2;

/// Puts the numbers `0..n`, then one end marker per consumer.
fn produce((jobs, n): (Queue<Option<u64>>, u64)) {
    for i in 0..n {
        jobs.put(Some(i)).expect("queue a job");
    }
    for _ in 0..CONSUMERS {
        jobs.put(None).expect("queue an end marker");
    }
}

/// Squares jobs until it takes an end marker.
fn consume((jobs, results): (Queue<Option<u64>>, Queue<u64>)) {
    while let Some(n) = jobs.get().expect("take a job") {
        results.put(n * n).expect("queue a result");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = 1_000;
    let (jobs, results) = (Queue::new()?, Queue::new()?);
    let mut stages = vec![Process::with_args(produce, (jobs.clone(), n))];
    for _ in 0..CONSUMERS {
        stages.push(Process::with_args(consume, (jobs.clone(), results.clone())));
    }
    for p in &mut stages {
        p.start()?;
    }
    let sum: u64 = (0..n).map(|_| results.get()).sum::<Result<u64, _>>()?;
    for p in &mut stages {
        p.join()?;
    }
    assert_eq!(sum, (0..n).map(|i| i * i).sum::<u64>());
    println!("sum of squares below {n}: {sum}");
    Ok(())
}
