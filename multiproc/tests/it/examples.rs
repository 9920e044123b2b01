//! The examples, run as programs: the seed's three programs print what
//! their Python originals print, with pids that tell the truth, and the tour
//! runs to its end.
//!
//! The binaries are built once per run of this suite with
//! `cargo build --examples`-style arguments (a no-op when they are fresh),
//! in the target directory and profile of this test binary.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{OnceLock, mpsc},
    time::Duration,
};

/// Longest a build or an example run may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// Longest a build may take (a cold build of the examples included).
const BUILD_DEADLINE: Duration = Duration::from_secs(600);

const EXAMPLES: [&str; 5] = [
    "seed_1_pids",
    "seed_2_is_alive",
    "seed_3_parent_process",
    "tour",
    "channels",
];

/// `<target>/<profile>`, the directory holding this test binary's `deps`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    // <target>/<profile>/deps/integration-<hash>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_owned()
}

/// Builds the examples (once) and returns the path of `name`.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = profile_dir();
    let built = BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.arg("build")
            .arg("--quiet")
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        for e in EXAMPLES {
            cmd.args(["--example", e]);
        }
        // The same profile and target directory as this test binary.
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
            None => {}
        }
        if let Some(target_dir) = dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        let out = run_with_deadline(cmd, BUILD_DEADLINE).0?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "building the examples failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "no example binary at {}", path.display());
    path
}

/// Runs `cmd` with piped output; kills it and reports an error after
/// `deadline`. Returns the output and the process id.
fn run_with_deadline(mut cmd: Command, deadline: Duration) -> (Result<Output, String>, u32) {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Err(format!("cannot run {cmd:?}: {e}")), 0),
    };
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(deadline) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(format!("waiting for {cmd:?} failed: {e}")),
        Err(_) => {
            // The waiting thread has not reaped the process, so the pid
            // still names it.
            // SAFETY: kill takes plain integers and touches no memory.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            Err(format!("{cmd:?} still ran after {deadline:?} and was killed"))
        }
    };
    (out, pid)
}

/// What an example printed, with the pid it ran as.
struct Run {
    pid: u32,
    lines: Vec<String>,
    stderr: String,
}

/// Runs the example `name`, which must exit with status 0.
fn run(name: &str) -> Run {
    let (out, pid) = run_with_deadline(Command::new(example(name)), DEADLINE);
    let out = out.unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{name} failed with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    Run {
        pid,
        lines: stdout.lines().map(str::to_owned).collect(),
        stderr,
    }
}

fn pid_in(line: &str, prefix: &str) -> u32 {
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("no pid after {prefix:?} in {line:?}: {e}"))
}

#[test]
fn seed_1_the_child_reports_its_parent() {
    let run = run("seed_1_pids");
    let [main_line, child_line, ppid_line, end] = &run.lines[..] else {
        panic!("expected 4 lines, got {:?}", run.lines);
    };
    let main_pid = pid_in(main_line, "PID Principal (Parent): ");
    let child_pid = pid_in(child_line, "PID Enfant: ");
    let childs_parent = pid_in(ppid_line, "PID Parent de l'enfant: ");
    assert_eq!(main_pid, run.pid, "the parent prints its own pid");
    assert_eq!(childs_parent, main_pid, "the child's parent is the main process");
    assert_ne!(child_pid, main_pid, "the child is another process");
    assert_eq!(end, "Fin du programme principal.");
}

#[test]
fn seed_2_alive_after_start_not_after_join() {
    let run = run("seed_2_is_alive");
    let [first, second, last] = &run.lines[..] else {
        panic!("expected 3 lines, got {:?}", run.lines);
    };
    // The child's line and the parent's `true` race, as in Python.
    let (pid_line, alive) = if first == "true" {
        (second, first)
    } else {
        (first, second)
    };
    assert_eq!(alive, "true", "is_alive() right after start()");
    assert_eq!(last, "false", "is_alive() after join()");
    let childs_parent: u32 = pid_line.parse().unwrap_or_else(|e| panic!("{pid_line:?}: {e}"));
    assert_eq!(childs_parent, run.pid, "getppid() in the child is the example's pid");
}

#[test]
fn seed_3_parent_process_and_child_pid() {
    let run = run("seed_3_parent_process");
    let [parent_line, child_line] = &run.lines[..] else {
        panic!("expected 2 lines, got {:?}", run.lines);
    };
    let parent: u32 = parent_line.parse().unwrap_or_else(|e| panic!("{parent_line:?}: {e}"));
    let child: u32 = child_line.parse().unwrap_or_else(|e| panic!("{child_line:?}: {e}"));
    assert_eq!(
        parent, run.pid,
        "parent_process().pid in the child is the example's pid"
    );
    assert_ne!(child, run.pid, "child.pid names another process");
    assert_ne!(child, std::process::id(), "child.pid is not this test's pid");
    assert_ne!(child, 0);
}

#[test]
fn tour_runs_every_step() {
    let run = run("tour");
    for (i, line) in run.lines.iter().enumerate() {
        let prefix = format!("{}. ", i + 1);
        assert!(line.starts_with(&prefix), "line {} is not numbered: {line:?}", i + 1);
    }
    assert_eq!(run.lines.len(), 22, "the tour's steps: {:#?}", run.lines);
    let all = run.lines.join("\n");
    let facts = [
        // The seed's model.
        "pid None, is_alive false".to_owned(),
        "(same as p.pid(): true)".to_owned(),
        format!(
            "getppid {0} and parent_process().pid {0} (this process is {0})",
            run.pid
        ),
        "exitcode Some(0), is_alive false".to_owned(),
        // Results and failures.
        "Stats { count: 8, sum: 31, max: Some(9) }".to_owned(),
        "kind ChildPanicked, message \"cannot take the square root of -4\", at ".to_owned(),
        "exitcode Some(1)".to_owned(),
        "kind ChildExited, exit_status Some(Exited(7)), exitcode Some(7)".to_owned(),
        "kind Timeout (is_timeout true), is_alive true".to_owned(),
        "kind ChildKilled, killed by signal 9 (SIGKILL), exitcode Some(-9), is_alive false".to_owned(),
        "ended by signal 15 (SIGTERM), exitcode Some(-15)".to_owned(),
        // Closures and daemons.
        "under fork in pid".to_owned(),
        "\"un + deux + trois\"".to_owned(),
        "is_daemon true, and true inside".to_owned(),
        "InvalidState error".to_owned(),
        // Channels and shared state.
        "the child answered \"BONJOUR\"".to_owned(),
        "returned after 1 message".to_owned(),
        "(Err(ChildKilled)); all arrived: [1, 2, 3]".to_owned(),
        "the next acquire was told OwnerDied, and the lock works again: true".to_owned(),
        "under its lock: 2000".to_owned(),
        // Pools.
        "Pool(2).imap(x*x) over 0..6, where task 3 kills its worker: [Ok(0), Ok(1), Ok(4), Err(ChildKilled), Ok(16), Ok(25)]; the pool still has 2 workers".to_owned(),
        "get() = 49, and its callback saw Some(49); Executor::submit(x*x, 12).result() = 144".to_owned(),
        "futures::as_completed over 3 submissions gave [16, 25, 36]; Executor::map(x*x, 7..10) = [49, 64, 81]".to_owned(),
        "active_children() = []".to_owned(),
    ];
    for fact in facts {
        assert!(all.contains(&fact), "the tour does not say {fact:?}:\n{all}");
    }
    assert!(
        run.stderr.contains("cannot take the square root of -4"),
        "the panicking child prints its panic on stderr:\n{}",
        run.stderr
    );
}

#[test]
fn channels_example_talks_to_its_children() {
    let run = run("channels");
    let expected = [
        "1. echo: BONJOUR",
        "2. the echo process ended when the pipe closed: exitcode Some(0)",
        "3. all jobs done, squares: [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]",
        "4. wait() says the connection is ready first: true",
        "5. hello from process <child>",
        "6. every process joined; queue empty: true",
    ];
    assert_eq!(run.lines, expected, "stderr:\n{}", run.stderr);
}
