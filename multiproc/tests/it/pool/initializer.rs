//! The worker initializer: one that fails fails the pool's creation, or
//! breaks the pool when a replacement's fails.

use multiproc::{ErrorKind, StartMethod};

use super::{assert_gone, killed_at, pool, square};

fn init_panics(msg: String) {
    panic!("{msg}");
}

fn init_ok(_: u32) {}

fn failing_initializer_fails_creation(m: StartMethod) {
    let e = pool(m, 2)
        .initializer(init_panics, "no database".to_owned())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    assert_eq!(e.panic().unwrap().message(), "no database");
    let p = pool(m, 2).initializer(init_ok, 1).build().unwrap();
    assert_eq!(p.apply(square, 3).unwrap(), 9);
}

fn init_fails_if_marker_exists(path: String) {
    if std::path::Path::new(&path).exists() {
        panic!("the replacement's initializer fails");
    }
}

fn failing_replacement_breaks_the_pool(m: StartMethod) {
    let marker = std::env::temp_dir().join(format!("multiproc-init-marker-{}-{m:?}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let p = pool(m, 1)
        .initializer(init_fails_if_marker_exists, marker.display().to_string())
        .build()
        .unwrap();
    let pids = p.pids();
    std::fs::write(&marker, b"").unwrap();
    let killed = p.apply_async(killed_at, 7).unwrap();
    let behind = p.apply_async(square, 3).unwrap();
    let e = killed.get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildKilled, "{e}");
    let e = behind.get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    assert_eq!(e.panic().unwrap().message(), "the replacement's initializer fails");
    let e = p.apply_async(square, 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
    // No respawn loop: no worker is left.
    assert!(p.pids().is_empty());
    assert_gone(&pids);
    std::fs::remove_file(&marker).unwrap();
    p.close();
    p.join().unwrap();
}

per_method!(failing_initializer_fails_creation, failing_replacement_breaks_the_pool);
