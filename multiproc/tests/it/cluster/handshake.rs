//! Peers that must be refused: a wrong key, a stale build, a handshake
//! that never finishes, garbage bytes. Each is refused (and logged), and
//! none holds up the honest workers.

use std::path::Path;

use multiproc::ErrorKind;

use super::{Scratch, script, square};
use crate::support::DEADLINE;

/// A key that is not the pool's.
const WRONG: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn a_worker_with_a_wrong_key_is_refused_and_others_serve() {
    let wrong = format!("MULTIPROC_WORKER_KEY={WRONG} \"$0\" & \"$0\" & \"$0\" & wait");
    let pool = script(2, &wrong, &[]).build().unwrap();
    assert_eq!(pool.map(square, 0..50u64).unwrap()[49], 49 * 49);
    drop(pool);
    // Alone, it is refused, and the build says why.
    let e = script(1, &format!("MULTIPROC_WORKER_KEY={WRONG} \"$0\""), &[])
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Bootstrap, "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
}

/// A copy of this executable whose GNU build id differs by one bit: an
/// otherwise identical binary of another build.
fn stale_copy(dir: &Path) -> std::path::PathBuf {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let mut bytes = std::fs::read(exe).unwrap();
    // The note header: namesz 4, descsz, type 3 (NT_GNU_BUILD_ID), "GNU\0".
    let at = bytes
        .windows(16)
        .position(|w| w[0..4] == [4, 0, 0, 0] && w[5..12] == [0, 0, 0, 3, 0, 0, 0] && &w[12..16] == b"GNU\0")
        .expect("a GNU build id note");
    bytes[at + 16] ^= 1;
    let path = dir.join("stale-worker");
    std::fs::write(&path, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_stale_build_is_refused_with_a_clear_error() {
    let scratch = Scratch::new("stale");
    let stale = stale_copy(scratch.path());
    let stale = stale.to_str().unwrap();
    let e = script(1, "\"$1\"", &[stale]).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Bootstrap, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("another build"), "{msg}");
    assert!(msg.contains("stale-worker"), "{msg}");
    // Beside a good one, the stale one is refused and the good one serves.
    let pool = script(1, "\"$1\" & \"$0\" & wait", &[stale]).build().unwrap();
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

#[test]
fn a_stalled_handshake_and_garbage_never_block_the_workers() {
    // bash's /dev/tcp: one connection sends garbage, another stays silent
    // (its descriptor stays open in the launcher) while the workers start.
    // The pool may close the garbage connection while bash still writes:
    // a write error, not a SIGPIPE that would end the launcher.
    let launcher = r#"
        trap '' PIPE
        host=${MULTIPROC_WORKER_ADDR%:*}; port=${MULTIPROC_WORKER_ADDR##*:}
        exec 3<>/dev/tcp/$host/$port
        printf 'GET / HTTP/1.0\r\n\r\n%s' "$(head -c 300 /dev/urandom | base64)" >&3 || true
        exec 4<>/dev/tcp/$host/$port
        "$0" 4>&- 3>&- & "$0" 4>&- 3>&- & wait
    "#;
    let pool = multiproc::Pool::builder()
        .processes(2)
        .backend(multiproc::Backend::Command {
            program: "bash".into(),
            args: vec!["-c".into(), launcher.into(), "{exe}".into()],
        })
        .connect_timeout(DEADLINE)
        // Far longer than the test may take: the stalled handshake is
        // still pending when the workers are serving.
        .handshake_timeout(DEADLINE * 2)
        .build()
        .unwrap();
    assert_eq!(pool.map(square, 0..20u64).unwrap()[19], 361);
}
