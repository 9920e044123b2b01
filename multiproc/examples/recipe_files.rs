//! Recipe: count the lines of many files in a pool of worker processes,
//! with a progress bar on stderr.
//!
//! Run it with `cargo run -p multiproc --features progress --example
//! recipe_files [DIR]` (default: this crate's `src` directory).
use std::path::{Path, PathBuf};

use multiproc::Pool;

/// Runs in a worker: one file's line count, or why it could not be read.
fn count_lines(path: PathBuf) -> Result<usize, String> {
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.lines().count())
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), PathBuf::from);
    let mut files = Vec::new();
    files_under(&dir, &mut files)?;

    let pool = Pool::builder().build()?; // one worker per CPU
    // A progress bar for this call; results in input order.
    let counts = pool.tasks(count_lines).progress(true).map(files.clone())?;
    pool.close();
    pool.join()?;

    let mut total = 0;
    for (path, count) in files.iter().zip(counts) {
        match count {
            Ok(n) => total += n,
            Err(e) => eprintln!("skipped {}: {e}", path.display()),
        }
    }
    println!("{} files, {total} lines", files.len());
    Ok(())
}
