//! Recipe: a producer/consumer pipeline across processes, with a queue
//! between each stage. No end-of-work marker: a queue made with
//! `Queue::with_producer` ends, for every consumer, once it is drained and
//! every `Producer` handle is gone (dropped, or its process ended).
//!
//! Run it with `cargo run -p multiproc --example recipe_pipeline`.
use multiproc::{Process, Producer, Queue};

const CONSUMERS: usize = 2;

/// Puts the numbers `0..n`; the queue ends when this process does.
fn produce((jobs, n): (Producer<u64>, u64)) {
    for i in 0..n {
        jobs.put(i).expect("queue a job");
    }
}

/// Squares jobs until the queue ends.
fn consume((jobs, results): (Queue<u64>, Producer<u64>)) {
    for n in &jobs {
        results.put(n.expect("take a job").pow(2)).expect("queue a result");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = 1_000;
    let (jobs_in, jobs) = Queue::with_producer()?;
    let (results_in, results) = Queue::with_producer()?;
    let mut stages = vec![Process::with_args(produce, (jobs_in, n))];
    for _ in 0..CONSUMERS {
        stages.push(Process::with_args(consume, (jobs.clone(), results_in.clone())));
    }
    // The children hold the producers now: the results end when they do.
    drop(results_in);
    for p in &mut stages {
        p.start()?;
    }
    let mut sum = 0;
    for r in &results {
        sum += r?;
    }
    for p in &mut stages {
        p.join()?;
    }
    assert_eq!(sum, (0..n).map(|i| i * i).sum::<u64>());
    println!("sum of squares below {n}: {sum}");
    Ok(())
}
