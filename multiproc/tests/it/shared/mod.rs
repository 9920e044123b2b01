//! Shared state: shared memory (from one or several threads, and when its
//! creator is killed) and shared ctypes-style values
//! and arrays, also under a caller's lock, and `ShareableList`.

mod callers_lock;
mod creator_killed;
mod ctypes;
mod memory;
mod memory_threads;
mod shareable_list;
