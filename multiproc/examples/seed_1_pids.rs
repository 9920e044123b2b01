//! The seed's first program: a child prints its pid and its parent's pid.
//!
//! Python original:
//!
//! ```python
//! def ma_tache():
//!     print(f"PID Enfant: {os.getpid()}")
//!     print(f"PID Parent de l'enfant: {os.getppid()}")
//!
//! print(f"PID Principal (Parent): {os.getpid()}")
//! p = Process(target=ma_tache)
//! p.start()
//! p.join()
//! print("Fin du programme principal.")
//! ```
use multiproc as mp;

/// Runs in the child process.
fn ma_tache() {
    println!("PID Enfant: {}", std::process::id());
    // Python's `os.getppid()`; on Windows, the library's record of it.
    #[cfg(unix)]
    let parent = std::os::unix::process::parent_id();
    #[cfg(not(unix))]
    let parent = mp::parent_process().map_or(0, |p| p.pid());
    println!("PID Parent de l'enfant: {parent}");
}

fn main() -> mp::Result<()> {
    println!("PID Principal (Parent): {}", std::process::id());

    // 1. Create the Process object.
    let mut p = mp::Process::new(ma_tache);
    // 2. Start the child (conceptually fork/exec).
    p.start()?;
    // 3. Wait for the child to finish.
    p.join()?;

    println!("Fin du programme principal.");
    Ok(())
}
