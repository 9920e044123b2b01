//! The default start method and contexts (Python's `set_start_method`,
//! `get_start_method`, `get_context`). The default is process-wide, so the
//! checks run in a fresh child of their own.

use multiproc::{self as mp, ErrorKind, StartMethod};

use crate::support::DEADLINE;

fn started_with() -> Option<StartMethod> {
    mp::current_process().start_method()
}

fn child_default() -> Option<StartMethod> {
    mp::start_method_if_set()
}

fn default_method_scenario(_: ()) {
    // This child started with its parent's default (spawn, fixed by use).
    assert_eq!(mp::start_method_if_set(), Some(StartMethod::Spawn));
    mp::force_start_method(None);
    assert_eq!(mp::start_method_if_set(), None);
    mp::set_start_method(StartMethod::Fork).unwrap();
    let e = mp::set_start_method(StartMethod::Spawn).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.to_string().contains("already been set"), "{e}");
    assert_eq!(mp::get_start_method(), StartMethod::Fork);

    // A process without an explicit method uses the default.
    let mut p = mp::Process::new(started_with);
    assert_eq!(p.start_method(), StartMethod::Fork);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), Some(StartMethod::Fork));

    // A child starts with its parent's default, whatever made it.
    for m in [StartMethod::Spawn, StartMethod::Fork] {
        let mut p = mp::get_context(Some(m)).process(child_default);
        p.start().unwrap();
        assert_eq!(
            p.join_timeout(DEADLINE).unwrap(),
            Some(StartMethod::Fork),
            "child made by {m}"
        );
    }

    // force switches and resets; a context keeps its own method.
    mp::force_start_method(Some(StartMethod::Spawn));
    assert_eq!(mp::get_start_method(), StartMethod::Spawn);
    let ctx = mp::get_context(Some(StartMethod::Fork));
    assert_eq!(ctx.start_method(), StartMethod::Fork);
    let mut p = ctx.process(started_with);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), Some(StartMethod::Fork));
    let mut p = mp::get_context(None).builder().name("via-context").target(started_with);
    p.start().unwrap();
    assert_eq!(p.join_timeout(DEADLINE).unwrap(), Some(StartMethod::Spawn));

    mp::force_start_method(None);
    assert_eq!(mp::start_method_if_set(), None);
    assert_eq!(
        mp::get_context(None).start_method(),
        StartMethod::Spawn,
        "get_context(None) fixes the default"
    );
    assert_eq!(mp::start_method_if_set(), Some(StartMethod::Spawn));
    assert_eq!(
        mp::get_all_start_methods(),
        [StartMethod::Spawn, StartMethod::Fork, StartMethod::ForkServer]
    );
    assert_eq!("spawn".parse::<StartMethod>().unwrap(), StartMethod::Spawn);
}

#[test]
fn the_default_start_method_is_set_once_and_contexts_keep_theirs() {
    let mut scenario = mp::Process::with_args(default_method_scenario, ());
    scenario.start().unwrap();
    if let Err(e) = scenario.join_timeout(DEADLINE) {
        panic!("{e}\n{}", e.panic().and_then(|p| p.backtrace()).unwrap_or(""));
    }
}
