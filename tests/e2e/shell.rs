//! `sallyport exec` and `sallyport shell` against the testbed's command and shell
//! sessions (this machine plays the instance).

use std::process::Command;
use std::time::Duration;

use crate::harness::{Fixture, SALLYPORT, run};

const QUICK: Duration = Duration::from_secs(60);

fn sallyport(f: &Fixture, args: &[&str]) -> Command {
    let mut cmd = Command::new(SALLYPORT);
    cmd.args(args);
    f.aws_env(&mut cmd);
    cmd
}

#[test]
fn exec_separates_streams_and_returns_the_exit_code() {
    let f = Fixture::new();
    let out = run(
        &mut sallyport(
            &f,
            &[
                "exec",
                &f.instance,
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
        ),
        None,
        QUICK,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn exec_streams_large_output_intact() {
    let f = Fixture::new();
    // 200 000 bytes of stdout: ~200 agent messages, paced as the agent paces them.
    let out = run(
        &mut sallyport(
            &f,
            &[
                "exec",
                &f.instance,
                "--",
                "head -c 200000 /dev/zero | tr '\\0' x",
            ],
        ),
        None,
        QUICK,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 200_000);
    assert!(out.stdout.iter().all(|b| *b == b'x'));
}

#[test]
fn exec_session_is_terminated_afterwards() {
    let f = Fixture::new();
    let out = run(
        &mut sallyport(&f, &["exec", &f.instance, "--", "true"]),
        None,
        QUICK,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = f.testbed.calls();
    assert!(
        calls.iter().any(|c| c.operation == "TerminateSession"),
        "{calls:?}"
    );
}
