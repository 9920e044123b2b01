//! `Pool::map_results`: one `Result` per input, in order; a failure costs
//! only its own slot (its chunk's, without a task timeout).

use std::time::Duration;

use multiproc::{ErrorKind, Pool, StartMethod};

fn pool(m: StartMethod, timeout: Option<Duration>) -> Pool {
    let mut b = Pool::builder().processes(2).start_method(m);
    if let Some(t) = timeout {
        b = b.task_timeout(t);
    }
    b.build().expect("build the pool")
}

fn odd_panics(x: u64) -> u64 {
    assert!(x % 2 == 0, "odd input {x}");
    x * 10
}

fn each_input_gets_its_own_result(m: StartMethod) {
    let p = pool(m, None);
    let results = p.map_results(odd_panics, 0..40u64).unwrap();
    assert_eq!(results.len(), 40);
    // Automatic chunks (40 / 8 = 5 items): a panic fails its task alone,
    // the rest of its chunk keeps its values.
    for (x, r) in (0..40u64).zip(&results) {
        match r {
            Ok(v) => assert_eq!((x % 2, *v), (0, x * 10)),
            Err(e) => {
                assert_eq!(x % 2, 1, "only odd inputs fail: {e}");
                assert_eq!(e.kind(), ErrorKind::ChildPanicked);
                assert_eq!(e.panic().unwrap().message(), format!("odd input {x}"));
            }
        }
    }
    p.close();
    p.join().unwrap();
}

/// 0: returns; 1: never returns; 2: aborts its worker.
fn misbehaves(x: u64) -> u64 {
    match x % 3 {
        1 => loop {
            std::thread::park();
        },
        2 => std::process::abort(),
        _ => x,
    }
}

fn with_a_task_timeout_each_failure_is_its_own(m: StartMethod) {
    let p = pool(m, Some(Duration::from_millis(500)));
    let results = p.map_results(misbehaves, 0..6u64).unwrap();
    let kinds: Vec<Result<u64, ErrorKind>> = results.into_iter().map(|r| r.map_err(|e| e.kind())).collect();
    assert_eq!(
        kinds,
        [
            Ok(0),
            Err(ErrorKind::TaskTimeout),
            Err(ErrorKind::ChildKilled),
            Ok(3),
            Err(ErrorKind::TaskTimeout),
            Err(ErrorKind::ChildKilled),
        ]
    );
    p.close();
    p.join().unwrap();
}

fn a_closed_pool_fails_the_call(m: StartMethod) {
    let p = pool(m, None);
    p.close();
    let e = p.map_results(odd_panics, [2u64]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    p.join().unwrap();
}

per_method!(
    each_input_gets_its_own_result,
    with_a_task_timeout_each_failure_is_its_own,
    a_closed_pool_fails_the_call,
);
