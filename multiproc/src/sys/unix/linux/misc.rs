//! Process facts only Linux gives this way: `/proc`, cgroups, affinity,
//! `getrandom`, the auxiliary vector, `SO_PEERCRED`, `dup3`.

use std::io;

use super::{Fd, close_inherited, cvt, cvt_r, image_base, null_device};

/// Number of threads in this process, from `/proc/self/stat` (field 20).
///
/// One `read` into a stack buffer: this runs before every fork.
pub(crate) fn thread_count() -> io::Result<usize> {
    // SAFETY: the path is a NUL-terminated literal.
    let fd = cvt_r(|| unsafe { libc::open(c"/proc/self/stat".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: open returned a new descriptor we own; dropping it closes it.
    let file = unsafe { Fd::from_raw(fd) };
    let mut buf = [0u8; 1024];
    // SAFETY: buf is a writable stack buffer of the given length.
    let n = cvt_r(|| unsafe { libc::read(file.raw(), buf.as_mut_ptr().cast(), buf.len()) })? as usize;
    let stat = &buf[..n];
    // The command name (field 2) may contain spaces and parentheses: parse
    // after the last ')'.
    let close = stat.iter().rposition(|&b| b == b')').ok_or_else(bad_stat)?;
    let rest = std::str::from_utf8(&stat[close + 1..]).map_err(|_| bad_stat())?;
    // After ')' come fields 3.. ; num_threads is field 20, the 18th of those.
    rest.split_ascii_whitespace()
        .nth(17)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad_stat)
}

fn bad_stat() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "unexpected format of /proc/self/stat")
}

/// Number of CPUs this process may run on: its `sched_getaffinity` mask.
pub(crate) fn affinity_cpu_count() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data; all zeroes is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return None;
    }
    // SAFETY: set was filled by sched_getaffinity.
    let n = unsafe { libc::CPU_COUNT(&set) };
    (n > 0).then_some(n as usize)
}

/// The CPU bandwidth this process's cgroup (v2) allows, in CPUs
/// (`quota / period` of the tightest `cpu.max` on the path from the
/// process's cgroup to the root), or `None` when unlimited or unknown.
pub(crate) fn cgroup_cpu_limit() -> Option<f64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup");
    dir.push(cgroup_v2_path(&cgroups)?.trim_start_matches('/'));
    let mut limit: Option<f64> = None;
    for d in dir.ancestors().take_while(|d| d.starts_with("/sys/fs/cgroup")) {
        if let Some(cpus) = std::fs::read_to_string(d.join("cpu.max"))
            .ok()
            .as_deref()
            .and_then(parse_cpu_max)
        {
            limit = Some(limit.map_or(cpus, |l: f64| l.min(cpus)));
        }
    }
    limit
}

/// The unified (v2) hierarchy's path in `/proc/self/cgroup` (its `0::`
/// line).
pub(crate) fn cgroup_v2_path(cgroups: &str) -> Option<&str> {
    cgroups.lines().find_map(|l| l.strip_prefix("0::"))
}

/// `cpu.max`'s `"<quota> <period>"` as CPUs; `None` for `"max ..."`.
pub(crate) fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_ascii_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// Fills `buf` from the kernel's random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: rest is a valid writable slice.
        let n = cvt_r(|| unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) })?;
        done += n as usize;
    }
    Ok(())
}

/// Device and inode of the running executable: two processes with equal
/// identities run the same file.
pub(crate) fn exe_identity() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/exe")?;
    Ok((meta.dev(), meta.ino()))
}

/// The load address of the main executable (the object holding the
/// program's entry point).
pub(crate) fn main_image_base() -> Option<usize> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let entry = unsafe { libc::getauxval(libc::AT_ENTRY) } as usize;
    if entry == 0 { None } else { image_base(entry) }
}

/// The pid of the process at the other end of the Unix socket `fd` (as it
/// was when the socket was created), without taking ownership of `fd`.
pub(crate) fn socket_peer_pid(fd: i32) -> io::Result<u32> {
    // SAFETY: an all-zero ucred is a valid out-value.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid out-pointers of the sizes given; a
    // descriptor that is not a socket only makes the call fail.
    super::cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred.pid as u32)
}

/// Points each of `fds` at `/dev/null` (close-on-exec): the objects that
/// hold those numbers lose what they referred to, but the numbers stay
/// taken, so no later descriptor can be mistaken for them. Falls back to
/// closing them.
pub(crate) fn reserve_closed(fds: &[i32]) {
    let null = match null_device() {
        Ok(n) => n,
        Err(_) => return close_inherited(fds),
    };
    for &fd in fds {
        // SAFETY: dup3 onto a number this process holds (an inherited
        // endpoint), replacing it atomically.
        if unsafe { libc::dup3(null.raw(), fd, libc::O_CLOEXEC) } < 0 {
            close_inherited(&[fd]);
        }
    }
}

/// A close-on-exec, non-blocking eventfd: a counter that makes `poll`
/// return when signalled.
pub(crate) fn eventfd() -> io::Result<Fd> {
    // SAFETY: no pointers; the flags are valid.
    let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: eventfd returned a new descriptor we own.
    Ok(unsafe { Fd::from_raw(raw) })
}

/// Adds one to an eventfd (it becomes readable). A full counter is
/// already readable, so a failure changes nothing.
pub(crate) fn eventfd_signal(fd: &Fd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a valid buffer to a descriptor we own.
    let _ = unsafe { libc::write(fd.raw(), one.as_ptr().cast(), one.len()) };
}

/// Resets an eventfd's counter (it stops being readable).
pub(crate) fn eventfd_drain(fd: &Fd) {
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a valid buffer; non-blocking.
    let _ = unsafe { libc::read(fd.raw(), buf.as_mut_ptr().cast(), buf.len()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("50000"), Some(0.5));
        assert_eq!(parse_cpu_max("0 100000"), None);
        assert_eq!(parse_cpu_max("garbage"), None);
        assert_eq!(parse_cpu_max(""), None);
    }

    #[test]
    fn cgroup_v2_line() {
        assert_eq!(cgroup_v2_path("0::/user.slice/a.scope\n"), Some("/user.slice/a.scope"));
        assert_eq!(cgroup_v2_path("12:cpu,cpuacct:/x\n0::/\n"), Some("/"));
        assert_eq!(cgroup_v2_path("12:cpu,cpuacct:/x\n"), None);
    }

    #[test]
    fn affinity_is_within_the_machine() {
        let n = affinity_cpu_count().expect("sched_getaffinity works on Linux");
        assert!(n >= 1 && n <= crate::sys::cpu_count().unwrap());
    }
}
