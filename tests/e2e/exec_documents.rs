//! `sallyport exec` against documents modelled on the agent's NonInteractiveCommands
//! plugin: `AWS-StartNonInteractiveCommand` declares `separateOutputStream` with the
//! default `"false"` (without it the agent merges stdout and stderr and sends no exit
//! code), an account's own command document does not declare it, and GetDocument may be
//! denied. `exec` must ask for separate streams where it can and never report an unknown
//! result as success.

use std::process::{Command, Output};
use std::time::Duration;

use sallyport_testbed::world::config::TestbedConfig;

use crate::harness::{Fixture, SALLYPORT, run};

const LIMIT: Duration = Duration::from_secs(60);
const FAILING: [&str; 3] = ["sh", "-c", "echo out; echo err >&2; exit 3"];
/// A document the account owns that takes only `command`.
const LEGACY: &str = "Legacy-RunCommand";
/// The exit code for "the command ran, its exit status is unknown".
const NO_EXIT_STATUS: i32 = 18;

fn fixture(adjust: impl FnOnce(&mut TestbedConfig)) -> Fixture {
    Fixture::with_config(|c| {
        c.tls = false;
        c.command_documents = vec![LEGACY.to_owned()];
        adjust(c);
    })
}

fn exec(f: &Fixture, flags: &[&str]) -> Output {
    let mut cmd = Command::new(SALLYPORT);
    cmd.args(["exec", &f.instance])
        .args(flags)
        .arg("--")
        .args(FAILING);
    f.aws_env(&mut cmd);
    run(&mut cmd, None, LIMIT)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How often the testbed answered `operation`.
fn calls(f: &Fixture, operation: &str) -> usize {
    (f.testbed.calls().iter())
        .filter(|c| c.operation == operation)
        .count()
}

fn assert_apart_with_exit_3(out: &Output) {
    assert_eq!(text(&out.stdout), "out\n", "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(3));
}

/// The one line that says why there is no exit status, and the exit code for it.
fn assert_unknown_status(out: &Output, document: &str) {
    assert_eq!(
        out.status.code(),
        Some(NO_EXIT_STATUS),
        "stderr: {}",
        text(&out.stderr)
    );
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("sallyport: "), "{stderr}");
    assert!(
        lines[0].contains(document) && lines[0].contains("without separate output streams"),
        "{stderr}"
    );
    // The agent merged both streams into Output.
    let stdout = text(&out.stdout);
    assert!(stdout.contains("out") && stdout.contains("err"), "{stdout}");
}

#[test]
fn exec_asks_the_default_document_for_separate_streams() {
    let f = fixture(|_| {});
    assert_apart_with_exit_3(&exec(&f, &[]));
    assert_eq!(calls(&f, "GetDocument"), 1);
    // The answer is cached: the next run asks StartSession only.
    assert_apart_with_exit_3(&exec(&f, &[]));
    assert_eq!(calls(&f, "GetDocument"), 1, "cached");
    assert_eq!(calls(&f, "StartSession"), 2);
}

#[test]
fn a_document_without_the_parameter_gives_the_distinct_exit_code() {
    let f = fixture(|_| {});
    let out = exec(&f, &["--document", LEGACY]);
    assert_unknown_status(&out, LEGACY);
    assert_eq!(calls(&f, "StartSession"), 1, "not asked for what it lacks");
}

#[test]
fn a_denied_get_document_still_gets_separate_streams() {
    let f = fixture(|c| c.get_document_denied = true);
    assert_apart_with_exit_3(&exec(&f, &[]));
    assert_eq!(calls(&f, "GetDocument"), 1);
}

#[test]
fn a_denied_get_document_falls_back_when_start_session_refuses_the_parameter() {
    let f = fixture(|c| c.get_document_denied = true);
    let out = exec(&f, &["--document", LEGACY]);
    assert_unknown_status(&out, LEGACY);
    assert_eq!(
        calls(&f, "StartSession"),
        2,
        "refused once, then without it"
    );
    // What StartSession taught is cached: no refused attempt the next time.
    let out = exec(&f, &["--document", LEGACY]);
    assert_unknown_status(&out, LEGACY);
    assert_eq!(calls(&f, "StartSession"), 3);
}

#[test]
fn the_users_parameter_wins() {
    let f = fixture(|_| {});
    let out = exec(&f, &["--parameter", "separateOutputStream=false"]);
    assert_unknown_status(&out, "AWS-StartNonInteractiveCommand");
    // A parameter the document does not take is the service's refusal, told as such.
    let out = exec(&f, &["--parameter", "nope=1"]);
    assert_eq!(out.status.code(), Some(9), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
    // That refusal was not about separateOutputStream: the next run still asks for it.
    assert_apart_with_exit_3(&exec(&f, &[]));
}
