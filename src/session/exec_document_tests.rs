use super::*;
use crate::aws::AwsErrorKind;
use std::os::unix::fs::PermissionsExt as _;

fn user(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    let mut m = BTreeMap::<String, Vec<String>>::new();
    for (k, v) in pairs {
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    m
}

fn error(code: &str, message: &str) -> AwsError {
    AwsError {
        kind: AwsErrorKind::Service,
        code: Some(code.to_owned()),
        message: message.to_owned(),
        hint: None,
    }
}

fn params(p: &Plan) -> Vec<(&str, &str)> {
    p.parameters
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.as_str(), v.as_str())))
        .collect()
}

#[test]
fn separate_output_is_asked_for_unless_the_document_lacks_it() {
    let yes = plan("ls", Declared::Yes, &user(&[]));
    assert_eq!(
        params(&yes),
        [("command", "ls"), ("separateOutputStream", "true")]
    );
    assert!(yes.added_separate);
    // Not knowing (GetDocument denied) sends it too; StartSession may refuse it.
    assert_eq!(plan("ls", Declared::Unknown, &user(&[])), yes);
    let no = plan("ls", Declared::No, &user(&[]));
    assert_eq!(params(&no), [("command", "ls")]);
    assert!(!no.added_separate);
}

#[test]
fn the_users_parameters_win() {
    let p = plan(
        "ls",
        Declared::Yes,
        &user(&[
            ("separateOutputStream", "false"),
            ("stdoutSeparatorPrefix", "O:"),
        ]),
    );
    assert_eq!(
        params(&p),
        [
            ("command", "ls"),
            ("separateOutputStream", "false"),
            ("stdoutSeparatorPrefix", "O:")
        ]
    );
    assert!(!p.added_separate, "the user's own value is never dropped");
    let p = plan("ls", Declared::No, &user(&[("command", "id")]));
    assert_eq!(params(&p), [("command", "id")]);
}

#[test]
fn a_refused_parameter_we_added_is_dropped_once() {
    let first = plan("ls", Declared::Unknown, &user(&[("x", "1")]));
    let refused = error(
        "InvalidParameters",
        "Parameter separateOutputStream is not declared",
    );
    let again = retry_without_separate(&first, &refused).expect("start again");
    assert_eq!(params(&again), [("command", "ls"), ("x", "1")]);
    assert_eq!(retry_without_separate(&again, &refused), None, "only once");

    let named = error(
        "ValidationException",
        "1 validation error: parameter separateOutputStream is not allowed",
    );
    assert!(retry_without_separate(&first, &named).is_some());
    for other in [
        error("ValidationException", "Value 'x' at 'target' failed"),
        error("AccessDeniedException", "no separateOutputStream for you"),
        error("TargetNotConnected", "i-0 is not connected."),
    ] {
        assert_eq!(retry_without_separate(&first, &other), None, "{other:?}");
    }
    // The user's own separateOutputStream is theirs: a refusal is reported, not hidden.
    let theirs = plan(
        "ls",
        Declared::Unknown,
        &user(&[("separateOutputStream", "true")]),
    );
    assert_eq!(retry_without_separate(&theirs, &refused), None);
}

#[test]
fn declared_parameters_come_from_the_content() {
    let content = r#"{"schemaVersion":"1.0","sessionType":"NonInteractiveCommands",
        "parameters":{"command":{"type":"String"},
        "separateOutputStream":{"type":"String","allowedValues":["true","false"],"default":"false"}}}"#;
    assert_eq!(declares(content, SEPARATE_OUTPUT), Some(true));
    let without = r#"{"sessionType":"NonInteractiveCommands","parameters":{"command":{}}}"#;
    assert_eq!(declares(without, SEPARATE_OUTPUT), Some(false));
    assert_eq!(
        declares(r#"{"sessionType":"x"}"#, SEPARATE_OUTPUT),
        Some(false)
    );
    for hostile in [
        "",
        "not json",
        "[1,2]",
        r#"{"parameters":["separateOutputStream"]}"#,
        r#"{"parameters":"separateOutputStream"}"#,
    ] {
        assert_eq!(declares(hostile, SEPARATE_OUTPUT), None, "{hostile}");
    }
    let huge = format!(
        r#"{{"parameters":{{"separateOutputStream":{{}}}},"pad":"{}"}}"#,
        "x".repeat(MAX_CONTENT)
    );
    assert_eq!(declares(&huge, SEPARATE_OUTPUT), None, "bounded");
}

#[test]
fn cache_round_trip_private_files_expiry_and_hostile_content() {
    let dir = std::env::temp_dir().join(format!("sallyport-doccache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let c = DocumentCache::at(dir.clone(), TTL);
    let k = DocumentCache::key("default|us-east-1|", "AWS-StartNonInteractiveCommand");
    assert_ne!(
        k,
        DocumentCache::key("other|us-east-1|", "AWS-StartNonInteractiveCommand")
    );
    assert_eq!(c.get(&k), None);
    c.put(&k, true);
    assert_eq!(c.get(&k), Some(true));
    c.put(&k, false);
    assert_eq!(c.get(&k), Some(false));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join(&k)), 0o600);
    assert_eq!(mode(&dir), 0o700);

    let write = |v: serde_json::Value| std::fs::write(dir.join(&k), v.to_string()).unwrap();
    write(serde_json::json!({"separate_output": true, "at": now_secs() - 301}));
    assert_eq!(c.get(&k), None, "expired");
    write(serde_json::json!({"separate_output": true, "at": now_secs() + 3600}));
    assert_eq!(c.get(&k), None, "from the future");
    write(serde_json::json!({"separate_output": "yes", "at": now_secs()}));
    assert_eq!(c.get(&k), None, "wrong type");
    let big = format!(
        r#"{{"separate_output":true,"at":{},"pad":"{}"}}"#,
        now_secs(),
        "x".repeat(300)
    );
    std::fs::write(dir.join(&k), big).unwrap();
    assert_eq!(c.get(&k), None, "oversized");
    std::fs::write(dir.join(&k), b"{garbage").unwrap();
    assert_eq!(c.get(&k), None, "corrupt");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The document cache keeps the target cache's rules: an entry of another user, a
/// symlinked entry or a directory others can write is not believed (it would decide
/// whether `exec` asks for the exit code).
#[test]
fn the_document_cache_believes_only_its_own_private_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("sallyport-doccache-own-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let c = DocumentCache::at(dir.clone(), TTL);
    let k = DocumentCache::key("default|us-east-1|", "AWS-StartNonInteractiveCommand");
    c.put(&k, false);
    assert_eq!(c.get(&k), Some(false));
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(dir.join(&k), Some(4242), None).unwrap();
        assert_eq!(c.get(&k), None, "an entry of another user");
        std::fs::remove_file(dir.join(&k)).unwrap();
        c.put(&k, false);
    }
    let elsewhere = dir.with_extension("elsewhere");
    std::fs::write(&elsewhere, std::fs::read(dir.join(&k)).unwrap()).unwrap();
    std::fs::remove_file(dir.join(&k)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join(&k)).unwrap();
    assert_eq!(c.get(&k), None, "a symlinked entry");
    std::fs::remove_file(dir.join(&k)).unwrap();
    c.put(&k, false);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(c.get(&k), None, "a directory others can write");
    let _ = std::fs::remove_file(&elsewhere);
    let _ = std::fs::remove_dir_all(&dir);
}
