//! Futex-style waits on a shared 32-bit word: `os_sync_wait_on_address`
//! with `OS_SYNC_WAIT_ON_ADDRESS_SHARED` (macOS 14.4 and later), a
//! bounded sleep before that.
//!
//! The four calls are looked up at run time (`dlsym`), all or none, so
//! that a binary built here still starts on an older macOS, where linking
//! them directly would fail at load time. Without them a wait sleeps at
//! most [`FALLBACK_SLEEP`] and a wake does nothing: every caller already
//! waits in slices and rechecks its word after each return (the
//! contract's "returns on a wake, a change, a signal or the timeout
//! alike"), so the fallback only adds up to that much latency to each
//! wake-up, never a lost one.

use std::{
    ffi::{CStr, c_void},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

/// Longest sleep of a wait without `os_sync_wait_on_address`.
pub(crate) const FALLBACK_SLEEP: Duration = Duration::from_millis(1);

type WaitFn = unsafe extern "C" fn(*mut c_void, u64, libc::size_t, u32, u32, u64) -> libc::c_int;
type WakeFn = unsafe extern "C" fn(*mut c_void, libc::size_t, u32) -> libc::c_int;

/// The calls, when this system has them.
struct OsSync {
    wait_with_timeout: WaitFn,
    wake_any: WakeFn,
    wake_all: WakeFn,
}

/// Looks `name` up among the loaded images.
fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

fn os_sync() -> Option<&'static OsSync> {
    static API: OnceLock<Option<OsSync>> = OnceLock::new();
    API.get_or_init(|| {
        let wait = symbol(c"os_sync_wait_on_address_with_timeout")?;
        let any = symbol(c"os_sync_wake_by_address_any")?;
        let all = symbol(c"os_sync_wake_by_address_all")?;
        // SAFETY: these symbols of libSystem have exactly these C
        // signatures (<os/os_sync_wait_on_address.h>, macOS 14.4).
        let wait_with_timeout = unsafe { std::mem::transmute::<*mut c_void, WaitFn>(wait) };
        // SAFETY: as above.
        let wake_any = unsafe { std::mem::transmute::<*mut c_void, WakeFn>(any) };
        // SAFETY: as above.
        let wake_all = unsafe { std::mem::transmute::<*mut c_void, WakeFn>(all) };
        Some(OsSync {
            wait_with_timeout,
            wake_any,
            wake_all,
        })
    })
    .as_ref()
}

/// Whether waits sleep in the kernel (`os_sync_wait_on_address`) rather
/// than in bounded sleeps.
#[allow(dead_code)]
pub(crate) fn waits_in_kernel() -> bool {
    os_sync().is_some()
}

/// Sleeps while `word` holds `seen`, at most `slice` and not past
/// `deadline`; returns on a wake, a change, a signal or the timeout alike.
pub(crate) fn futex_wait(word: &AtomicU32, seen: u32, deadline: Option<Instant>, slice: Duration) {
    let left = match deadline {
        None => slice,
        Some(d) => d.saturating_duration_since(Instant::now()).min(slice),
    };
    if left.is_zero() {
        return;
    }
    match os_sync() {
        Some(api) => {
            let ns = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
            // SAFETY: word is a live, 4-byte aligned u32 (in a shared
            // mapping, hence the shared flag: other processes wake it
            // through their own mappings); the clock is the one the call
            // supports. Errors (timeout, interruption) return like a wake.
            unsafe {
                (api.wait_with_timeout)(
                    word.as_ptr().cast(),
                    u64::from(seen),
                    4,
                    libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED,
                    libc::OS_CLOCK_MACH_ABSOLUTE_TIME,
                    ns,
                )
            };
        }
        None => {
            if word.load(SeqCst) == seen {
                std::thread::sleep(left.min(FALLBACK_SLEEP));
            }
        }
    }
}

/// Wakes up to `n` sleepers on `word` (one, or all of them for more).
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    let Some(api) = os_sync() else { return };
    let f = if n <= 1 { api.wake_any } else { api.wake_all };
    // SAFETY: word is a live, 4-byte aligned u32 in a shared mapping;
    // "no waiter" is an error that changes nothing.
    unsafe { f(word.as_ptr().cast(), 4, libc::OS_SYNC_WAKE_BY_ADDRESS_SHARED) };
}

/// Wakes every sleeper on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    futex_wake(word, i32::MAX);
}
