//! How errors read: `Debug` (what `fn main() -> Result` prints) is short;
//! the remote backtrace is in `{:#?}` and `RemotePanic::backtrace`.

use multiproc::{ErrorKind, ProcessBuilder, StartMethod};

use crate::support::DEADLINE;

fn panics() {
    panic!("the input was empty");
}

fn debug_is_short_and_alternate_has_the_backtrace(m: StartMethod) {
    let mut p = ProcessBuilder::new().name("parser").start_method(m).target(panics);
    p.start().unwrap();
    let e = p.join_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChildPanicked);
    let short = format!("{e:?}");
    assert!(short.contains("ChildPanicked"), "{short}");
    assert!(short.contains("the input was empty"), "{short}");
    assert!(short.contains("parser (pid "), "names the process: {short}");
    assert!(short.contains("error_report.rs"), "the panic's location: {short}");
    assert!(!short.contains("backtrace"), "no backtrace in the short form: {short}");
    let backtrace = e.panic().and_then(|p| p.backtrace()).expect("the child's backtrace");
    assert!(!backtrace.is_empty());
    let long = format!("{e:#?}");
    assert!(
        long.contains("backtrace") && long.contains(backtrace.lines().next().unwrap()),
        "{long}"
    );
}

per_method!(debug_is_short_and_alternate_has_the_backtrace);

#[test]
fn io_errors_convert_with_their_source() {
    fn open() -> multiproc::Result<std::fs::File> {
        Ok(std::fs::File::open("/nonexistent/multiproc-test")?)
    }
    let e = open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    let source = std::error::Error::source(&e).expect("the io::Error");
    let io = source.downcast_ref::<std::io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(format!("{e:?}").contains("NotFound"));
}
