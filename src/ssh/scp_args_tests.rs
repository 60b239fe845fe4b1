use super::*;

fn ok(ops: &[&str]) -> ScpOperands {
    parse_operands(ops).unwrap_or_else(|e| panic!("{ops:?}: {e}"))
}

fn err(ops: &[&str]) -> String {
    parse_operands(ops).expect_err("should fail").0
}

#[test]
fn remote_needs_a_colon_before_any_slash() {
    let r = split_remote("i-0abc:/etc/hosts").unwrap();
    assert_eq!((r.user, r.target, r.path), (None, "i-0abc", "/etc/hosts"));
    let r = split_remote("ec2-user@web-1:").unwrap();
    assert_eq!((r.user, r.target, r.path), (Some("ec2-user"), "web-1", ""));
    let r = split_remote("a@b@host:x:y").unwrap();
    assert_eq!((r.user, r.target, r.path), (Some("a@b"), "host", "x:y"));
    assert_eq!(split_remote("./a:b"), None);
    assert_eq!(split_remote("dir/a:b"), None);
    assert_eq!(split_remote("/abs:path"), None);
    assert_eq!(split_remote(":leading"), None);
    assert_eq!(split_remote("plain"), None);
}

#[test]
fn upload_takes_the_destination_target() {
    let p = ok(&["a", "b c", "ec2-user@i-0abc:dir/"]);
    assert_eq!(p.target, "i-0abc");
    assert_eq!(p.user.as_deref(), Some("ec2-user"));
    assert_eq!(p.plan.direction, Direction::Upload);
    assert_eq!(p.plan.sources, ["a", "b c"]);
    assert_eq!(p.plan.destination, "dir/");
    let p = ok(&["./x:y", "web:"]);
    assert_eq!(
        (p.target.as_str(), p.user, p.plan.destination.as_str()),
        ("web", None, "")
    );
    assert_eq!(p.plan.sources, ["./x:y"]);
}

#[test]
fn download_takes_the_sources_target() {
    let p = ok(&["i-0abc:/var/log/*.log", "i-0abc:notes", "."]);
    assert_eq!(p.target, "i-0abc");
    assert_eq!(p.user, None);
    assert_eq!(p.plan.direction, Direction::Download);
    assert_eq!(p.plan.sources, ["/var/log/*.log", "notes"]);
    assert_eq!(p.plan.destination, ".");
}

#[test]
fn one_side_exactly_must_be_remote() {
    assert!(err(&["a", "b"]).contains("neither source nor destination is remote"));
    assert!(err(&["h:a", "h:b"]).contains("two remote ends"));
    assert!(err(&["h:a", "local", "dest"]).contains("some sources are local"));
    assert!(err(&["h:a", "g:b", "dest"]).contains("one target"));
    assert!(err(&["u@h:a", "h:b", "dest"]).contains("one target"));
    assert!(err(&["only"]).contains("source and a destination"));
    assert!(err(&[]).contains("source and a destination"));
    assert!(err(&["a", ":b"]).contains("neither"));
    assert!(err(&["a", "@h:b"]).contains("no user"));
    assert!(err(&["a", "u@:b"]).contains("no target"));
    assert!(err(&["a", "scp://h/x"]).contains("not supported"));
    assert!(err(&["", "h:x"]).contains("empty operand"));
}
