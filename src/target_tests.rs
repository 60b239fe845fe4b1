use super::*;
use crate::error::{ExitCode, Failure};

#[test]
fn forms_are_told_apart() {
    let id = |s: &str| Spec::Id(s.to_owned());
    assert_eq!(
        parse("i-0123456789abcdef0").unwrap(),
        id("i-0123456789abcdef0")
    );
    assert_eq!(
        parse("I-0123456789ABCDEF0.").unwrap(),
        id("i-0123456789abcdef0")
    );
    assert_eq!(
        parse("mi-0123456789abcdef0").unwrap(),
        id("mi-0123456789abcdef0")
    );
    assert_eq!(parse("i-12345678").unwrap(), id("i-12345678"));
    assert_eq!(
        parse("tag:Team=Red Ops").unwrap(),
        Spec::Tag {
            key: "Team".into(),
            value: "Red Ops".into()
        }
    );
    assert_eq!(
        parse("TAG:Name=a=b").unwrap(),
        Spec::Tag {
            key: "Name".into(),
            value: "a=b".into()
        }
    );
    assert_eq!(
        parse("10.0.1.7").unwrap(),
        Spec::Ip("10.0.1.7".parse().unwrap())
    );
    assert_eq!(
        parse("[fd00::7]").unwrap(),
        Spec::Ip("fd00::7".parse().unwrap())
    );
    for name in [
        "web-1",
        "i-xyz",
        "i-0123456789abcdef0123",
        "Web Server",
        "ip-10-0-1-7",
    ] {
        assert_eq!(parse(name).unwrap(), Spec::Name(name.to_owned()), "{name}");
    }
}

#[test]
fn malformed_targets_say_how_to_write_them() {
    for bad in ["", "  ", "tag:", "tag:Name", "tag:=x", "tag:Name="] {
        let e = Failure::from(parse(bad).unwrap_err());
        assert_eq!(e.code, ExitCode::Target, "{bad:?}");
        assert!(
            e.message.contains("tag:Key=Value") || e.message.contains("empty"),
            "{}",
            e.message
        );
    }
}

/// What a shell would act on, or a terminal, is never a target or a user: refused
/// before any lookup, naming the character but not echoing the name.
#[test]
fn shell_syntax_and_control_characters_are_refused() {
    for bad in [
        "i-$(touch /tmp/x)",
        "web`id`",
        "web;id",
        "a|b",
        "a&b",
        "a>b",
        "a<b",
        "(a)",
        "a\\b",
        "it's",
        "say\"x\"",
        "web\n1",
        "web\u{1b}[31m",
        "tag:Name=a$b",
        "web\u{7f}",
        "web\u{9b}1",
    ] {
        let e = Failure::from(parse(bad).unwrap_err());
        assert_eq!(e.code, ExitCode::Target, "{bad:?}");
        assert!(e.message.contains("the target holds"), "{}", e.message);
        assert!(!e.message.contains(bad), "not echoed: {}", e.message);
        let e = Failure::from(check_user(bad).unwrap_err());
        assert_eq!(e.code, ExitCode::Usage, "{bad:?}");
    }
    for good in ["ec2-user", "jane.doe", "svc_app", "user@corp", "Web Server"] {
        assert!(check_user(good).is_ok(), "{good}");
        assert!(parse(good).is_ok(), "{good}");
    }
}

fn node(id: &str, status: &str, host: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        ping_status: status.into(),
        last_ping: Some(1_700_000_000),
        ip_address: Some("10.0.0.1".into()),
        computer_name: Some(host.into()),
        name: None,
        platform: None,
        agent_version: None,
    }
}

#[test]
fn names_match_host_names_by_label() {
    let n = node("i-1", "Online", "Web-1.ec2.internal");
    assert!(name_matches(&n, "web-1"));
    assert!(name_matches(&n, "web-1.ec2.internal"));
    assert!(!name_matches(&n, "web"));
}

#[test]
fn listing_has_every_column() {
    let nodes = [
        node("i-0aaaaaaaaaaaaaaaa", "Online", "a.internal"),
        node("i-0bbbbbbbbbbbbbbbb", "ConnectionLost", "b.internal"),
    ];
    let t = table(&Spec::Name("web".into()), &nodes);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3, "{t}");
    assert!(
        lines[0].contains("ID") && lines[0].contains("STATUS"),
        "{t}"
    );
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cols,
        ["i-0aaaaaaaaaaaaaaaa", "web", "10.0.0.1", "Online"],
        "{t}"
    );
    assert!(lines[2].contains("ConnectionLost  last seen"), "{t}");
}

#[test]
fn the_ambiguity_table_and_picker_rows_show_remote_names_as_text() {
    let mut a = node("i-0aaaaaaaaaaaaaaaa", "Online", "a.internal");
    a.name = Some("\x1b]0;pwned\x07".into());
    let b = node("i-0bbbbbbbbbbbbbbbb", "Online", "b\u{202e}\u{9b}.in");
    let t = table(&Spec::Pick, &[a, b]);
    assert!(!t.contains(['\x1b', '\x07', '\u{202e}', '\u{9b}']), "{t:?}");
    assert!(t.contains("\\x1b]0;pwned\\x07") && t.contains("b\\u{202e}\\u{9b}.in"));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[1].find("10.0.0.1"), lines[2].find("10.0.0.1"), "{t}");
}
