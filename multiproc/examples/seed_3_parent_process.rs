//! The seed's third program: the child prints its parent's pid, taken from
//! `parent_process()`; the parent prints the child's pid after `join`.
//!
//! Python original:
//!
//! ```python
//! from multiprocessing import Process
//! from multiprocessing import parent_process
//!
//! def task():
//!     parent = parent_process()
//!     pid = parent.pid
//!     print(pid)
//!
//! child = Process(target=task)
//! child.start()
//! child.join()
//! pid1 = child.pid
//! print(pid1)
//! ```
//!
//! Output: the parent's pid (from the child), then the child's pid (from the
//! parent).
use multiproc as mp;

/// Runs in the child process: prints the pid of the process that started it.
fn task() {
    // In a child started by multiproc there is always a parent.
    let parent = mp::parent_process().expect("started by multiproc");
    let pid = parent.pid();
    println!("{pid}");
}

fn main() -> mp::Result<()> {
    // Configure the child process.
    let mut child = mp::Process::new(task);
    // Start it.
    child.start()?;
    // Wait for it to finish.
    child.join()?;
    // The child's pid stays known after join.
    let pid1 = child.pid().expect("started");
    println!("{pid1}");
    Ok(())
}
