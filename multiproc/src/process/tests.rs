//! Unit tests: a child started from the library's own unit-test binary,
//! which needs no set-up either.

use super::*;

fn double(x: u32) -> u32 {
    x * 2
}

#[test]
fn a_child_runs_from_a_unit_test_binary() {
    let mut p = Process::with_args(double, 21);
    p.start().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), 42);
}

#[test]
fn exit_status_conversions() {
    assert_eq!(ExitStatus::Exited(3).code(), Some(3));
    assert_eq!(ExitStatus::Signaled(9).signal(), Some(9));
    assert!(ExitStatus::Exited(0).success());
    assert_eq!(ExitStatus::Unknown.exitcode(), 255);
    assert_eq!(ExitStatus::Signaled(15).exitcode_name(), "-SIGTERM");
    assert_eq!(ExitStatus::Signaled(64).exitcode_name(), "-64");
}

#[test]
fn handles_and_builders_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Process<()>>();
    assert_send::<Process<Vec<u8>>>();
    assert_send::<ProcessBuilder>();
    let mut p = Process::with_args(double, 4);
    p.start().unwrap();
    let joined = std::thread::spawn(move || p.join_timeout(Duration::from_secs(60)).unwrap())
        .join()
        .unwrap();
    assert_eq!(joined, 8);
}
