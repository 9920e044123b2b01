//! Recipe: run a call that may crash or hang (a native library, say) in
//! worker processes, with a deadline per call and one result per input.
//!
//! Run it with `cargo run -p multiproc --example recipe_isolate`.
use std::time::Duration;

use multiproc::{ErrorKind, Pool};

/// Stands in for a native call: some inputs abort the process, one never
/// returns.
fn parse(input: String) -> usize {
    match input.as_str() {
        "crash" => std::process::abort(),
        "hang" => loop {
            std::thread::park();
        },
        _ => input.len(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_secs(2)) // past it the worker is killed and replaced
        .build()?;
    let inputs: Vec<String> = ["alpha", "crash", "hang", "omega"].map(String::from).into();
    // Chunks of one: a failure takes only its own input down.
    let results = pool.imap_chunked(parse, inputs.clone(), 1)?;
    for (input, result) in inputs.iter().zip(results) {
        match result {
            Ok(n) => println!("{input}: {n}"),
            Err(e) if e.kind() == ErrorKind::TaskTimeout => println!("{input}: timed out"),
            Err(e) => println!("{input}: failed ({:?})", e.kind()),
        }
    }
    pool.close();
    pool.join()?;
    Ok(())
}
