//! The seed's second program: the child prints its parent's pid; the parent
//! prints whether the child is alive right after `start` and after `join`.
//!
//! Python original:
//!
//! ```python
//! from multiprocessing import Process
//! from os import getppid
//!
//! def recupere_pid():
//!     pid = getppid()
//!     print(pid)
//!
//! enfant = Process(target=recupere_pid)
//! enfant.start()
//! print(enfant.is_alive())
//! enfant.join()
//! print(enfant.is_alive())
//! ```
//!
//! Output: the parent's pid (from the child), `true`, then `false`. The
//! child's line and `true` may come in either order, as in Python.
use multiproc as mp;

/// Runs in the child process: prints the pid of its parent.
fn recupere_pid() {
    // Python's `os.getppid()`; Windows has no such call in std, and the
    // library knows its parent there too.
    #[cfg(unix)]
    let pid = std::os::unix::process::parent_id();
    #[cfg(not(unix))]
    let pid = mp::parent_process().map_or(0, |p| p.pid());
    println!("{pid}");
}

fn main() -> mp::Result<()> {
    // Configure the child process.
    let mut enfant = mp::Process::new(recupere_pid);
    // Start it.
    enfant.start()?;
    println!("{}", enfant.is_alive());
    // Wait for it to finish.
    enfant.join()?;
    println!("{}", enfant.is_alive());
    Ok(())
}
