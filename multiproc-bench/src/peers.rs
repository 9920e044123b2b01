//! The Rust peer: procspawn 1.0.2 (re-exec of the running binary,
//! ipc-channel for the call and the result). Its children need
//! `procspawn::init()` in `main`, which [`crate::main`] calls.

use std::time::{Duration, Instant};

/// `procspawn::spawn((), |()| ()).join()`.
pub(crate) fn start_join() -> Result<Duration, String> {
    let t = Instant::now();
    procspawn::spawn((), |()| ())
        .join()
        .map_err(|e| format!("procspawn failed: {e}"))?;
    Ok(t.elapsed())
}

/// A `Vec<u8>` of `size` bytes as the argument of a fresh child that
/// returns its length, from spawn to join.
pub(crate) fn transfer(size: usize) -> Result<Duration, String> {
    let data = crate::rows::payload(size);
    let t = Instant::now();
    let len = procspawn::spawn(data, |v: Vec<u8>| v.len())
        .join()
        .map_err(|e| format!("procspawn failed: {e}"))?;
    let elapsed = t.elapsed();
    if len != size {
        return Err(format!("the child saw {len} bytes, {size} were sent"));
    }
    Ok(elapsed)
}
