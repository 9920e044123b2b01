//! Shared-memory rows: a 256 MiB segment created, filled by a spawned
//! child, and checksummed by the parent (`shared/baselines` A5a and B6),
//! against a floor measured in the same run and CPython's
//! `shared_memory`.
//!
//! - fresh: a new segment each time; the child's writes allocate its pages.
//!   multiproc: `SharedMemory::new`, a spawned child `fill`s it (passed by
//!   descriptor), the parent sums it. Floor: `memfd_create` + `ftruncate` +
//!   `mmap`, a re-exec of this binary (`Command::status`) that maps the
//!   inherited descriptor and `memset`s it, the parent sums it: the C
//!   program of B6 with an exec instead of a bare fork, since a spawned
//!   child is an exec.
//! - reused: one segment, pre-faulted, reused every time; the parent keeps
//!   its mapping.
//!
//! The parent's checksum is a wrapping sum of the `u64` words, on a slice
//! (multiproc: `SharedMemory::as_slice` once the child has exited).
//! CPython's row fills with 1 MiB slice assignments and takes a `crc32`,
//! as in `shared/baselines/py_mp.py`.

use std::{
    io::ErrorKind,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use multiproc::{ProcessBuilder, SharedMemory, StartMethod};
use serde::Deserialize;

use crate::harness::{Bench, Impl, Row};

const MIB: usize = 1 << 20;
/// The segment size of the rows.
pub(crate) const SIZE_MIB: usize = 256;
/// Set in a re-executed floor child: `fd:size:byte`.
const SHM_ENV: &str = "MULTIPROC_BENCH_SHM";

pub(crate) const FRESH: &str = "shm/256MiB_fresh/spawn";
pub(crate) const REUSED: &str = "shm/256MiB_reused/spawn";

/// The targets of these rows, for `report::target`.
pub(crate) fn target(name: &str, baseline: Impl) -> Option<(f64, &'static str)> {
    match (name, baseline) {
        (FRESH, Impl::Floor) => Some((1.1, "<= 1.1x the fresh memfd + re-exec floor")),
        (REUSED, Impl::Floor) => Some((1.25, "<= 1.25x the reused memfd + re-exec floor")),
        _ => None,
    }
}

/// In a re-executed floor child: maps the inherited descriptor, fills it,
/// exits. Elsewhere returns at once. Called first thing in `main`.
#[allow(clippy::disallowed_methods)] // a floor child ends like any small program
pub(crate) fn child_entry() {
    let Some(job) = std::env::var_os(SHM_ENV) else {
        return;
    };
    let parsed: Option<Vec<usize>> = job
        .to_str()
        .map(|s| s.split(':').map(|x| x.parse().ok()).collect::<Option<Vec<usize>>>())
        .unwrap_or(None);
    let code = match parsed.as_deref() {
        Some(&[fd, size, byte]) => {
            // SAFETY: a fresh shared mapping of the descriptor the parent
            // left open for us; written once, unmapped at exit.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd as libc::c_int,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                1
            } else {
                // The same pre-fault as `SharedMemory::fill` (one
                // MADV_POPULATE_WRITE for 4 MiB or more), so that the floor
                // is not slower than the library by the page faults alone.
                if size >= 4 << 20 {
                    // SAFETY: p is page-aligned and starts `size` mapped
                    // bytes; populating changes no contents, and a failure
                    // (an old kernel) only leaves the writes to fault.
                    unsafe { libc::madvise(p, size & !4095, libc::MADV_POPULATE_WRITE) };
                }
                // SAFETY: p starts `size` writable bytes.
                unsafe { std::ptr::write_bytes(p.cast::<u8>(), byte as u8, size) };
                0
            }
        }
        _ => 2,
    };
    std::process::exit(code)
}

/// A wrapping sum of the native-endian `u64` words of `bytes`.
fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")))
        .fold(0u64, u64::wrapping_add)
}

/// What `checksum` gives for `size` bytes of `byte`.
fn expected(size: usize, byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8]).wrapping_mul((size / 8) as u64)
}

fn fill_child((shm, byte): (SharedMemory, u8)) {
    shm.fill(byte);
}

/// multiproc: one round on `shm`, or on a new segment.
fn multiproc_round(reused: Option<&SharedMemory>, byte: u8) -> Result<Duration, String> {
    let size = SIZE_MIB * MIB;
    let t = Instant::now();
    let fresh;
    let shm = match reused {
        Some(s) => s,
        None => {
            fresh = SharedMemory::new(size).map_err(|e| format!("create failed: {e}"))?;
            &fresh
        }
    };
    let passed = shm.try_clone().map_err(|e| format!("clone failed: {e}"))?;
    let mut p = ProcessBuilder::new()
        .start_method(StartMethod::Spawn)
        .target_with(fill_child, (passed, byte));
    p.start().map_err(|e| format!("start failed: {e}"))?;
    p.join().map_err(|e| format!("join failed: {e}"))?;
    // SAFETY: the child has exited; no other process or handle writes.
    let sum = checksum(unsafe { shm.as_slice() });
    let elapsed = t.elapsed();
    if sum != expected(size, byte) {
        return Err("the parent did not see the child's writes".to_owned());
    }
    Ok(elapsed)
}

/// A raw memfd mapping for the floor: inheritable (no close-on-exec).
struct FloorSeg {
    fd: libc::c_int,
    ptr: *mut u8,
    size: usize,
}

impl FloorSeg {
    fn new(size: usize) -> Result<FloorSeg, String> {
        // SAFETY: the name is a NUL-terminated literal.
        let fd = unsafe { libc::memfd_create(c"floor".as_ptr(), 0) };
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: ftruncate on our descriptor.
        if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
            // SAFETY: closing our descriptor.
            unsafe { libc::close(fd) };
            return Err(format!("ftruncate: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh shared mapping chosen by the kernel.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            // SAFETY: closing our descriptor.
            unsafe { libc::close(fd) };
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(FloorSeg {
            fd,
            ptr: p.cast(),
            size,
        })
    }
}

impl Drop for FloorSeg {
    fn drop(&mut self) {
        // SAFETY: our own mapping, which nothing borrows any more.
        unsafe { libc::munmap(self.ptr.cast(), self.size) };
        // SAFETY: our own descriptor, no longer used.
        unsafe { libc::close(self.fd) };
    }
}

/// The floor: one round on `seg`, or on a new memfd.
fn floor_round(exe: &Path, reused: Option<&FloorSeg>, byte: u8) -> Result<Duration, String> {
    let size = SIZE_MIB * MIB;
    let t = Instant::now();
    let fresh;
    let seg = match reused {
        Some(s) => s,
        None => {
            fresh = FloorSeg::new(size)?;
            &fresh
        }
    };
    let status = Command::new(exe)
        .env(SHM_ENV, format!("{}:{size}:{byte}", seg.fd))
        .status()
        .map_err(|e| format!("re-exec failed: {e}"))?;
    // SAFETY: the child has exited; `size` mapped bytes nobody writes.
    let sum = checksum(unsafe { std::slice::from_raw_parts(seg.ptr, size) });
    let elapsed = t.elapsed();
    if !status.success() || sum != expected(size, byte) {
        return Err(format!("floor child ended with {status}, or its writes were not seen"));
    }
    Ok(elapsed)
}

/// The rows, for one interleaved group each: fresh, then reused.
pub(crate) fn benches(exe: &Path) -> Result<[Vec<Bench<'_>>; 2], String> {
    let size = SIZE_MIB * MIB;
    let reused = SharedMemory::new(size).map_err(|e| format!("create failed: {e}"))?;
    reused.fill(2);
    let floor_seg = FloorSeg::new(size)?;
    // SAFETY: our own fresh mapping of `size` bytes; pre-fault it.
    unsafe { std::ptr::write_bytes(floor_seg.ptr, 2, size) };
    let fresh = vec![
        Bench::new(
            FRESH,
            Impl::Multiproc,
            "SharedMemory::new(256 MiB) + spawned child fill() + parent sum of u64 words",
            move || multiproc_round(None, 1),
        ),
        Bench::new(
            FRESH,
            Impl::Floor,
            "memfd + ftruncate + mmap, re-exec of this binary that maps and memsets it, parent sum",
            move || floor_round(exe, None, 1),
        ),
    ];
    let reused_rows = vec![
        Bench::new(
            REUSED,
            Impl::Multiproc,
            "one pre-faulted SharedMemory(256 MiB): spawned child fill() + parent sum",
            {
                // Alternate the byte, so that a child that wrote nothing
                // fails the check.
                let mut flip = false;
                move || {
                    flip = !flip;
                    multiproc_round(Some(&reused), if flip { 3 } else { 5 })
                }
            },
        ),
        Bench::new(
            REUSED,
            Impl::Floor,
            "one pre-faulted memfd mapping: re-exec child maps and memsets it, parent sum",
            {
                let mut flip = false;
                move || {
                    flip = !flip;
                    floor_round(exe, Some(&floor_seg), if flip { 3 } else { 5 })
                }
            },
        ),
    ];
    Ok([fresh, reused_rows])
}

#[derive(Deserialize)]
struct Record {
    name: String,
    samples_us: Vec<f64>,
}

/// CPython's fresh row (spawn), `Ok(None)` without python3.
pub(crate) fn cpython(warmup: usize, samples: usize) -> Result<Option<Row>, String> {
    let path = std::env::temp_dir().join(format!("multiproc_bench_shm_{}.py", std::process::id()));
    std::fs::write(&path, include_str!("cpython.py")).map_err(|e| format!("cannot write the script: {e}"))?;
    let out = Command::new("python3")
        .arg(&path)
        .args([
            "shm".to_owned(),
            warmup.to_string(),
            samples.to_string(),
            SIZE_MIB.to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let _ = std::fs::remove_file(&path);
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot run python3: {e}")),
    };
    if !out.status.success() {
        return Err(format!("python3 shm mode ended with {}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| !l.trim().is_empty()).ok_or("no output")?;
    let rec: Record = serde_json::from_str(line).map_err(|e| format!("unexpected line ({e}): {line}"))?;
    let desc =
        "CPython spawn: SharedMemory(create=True) + child attaches, fills (1 MiB slices) + parent crc32".to_owned();
    Ok(Row::apart(
        rec.name,
        Impl::Cpython,
        desc,
        crate::harness::Unit::Time,
        rec.samples_us,
    ))
}
