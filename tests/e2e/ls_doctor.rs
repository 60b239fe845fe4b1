//! `sallyport config ssh`, `ls` and `doctor` end to end, against the testbed: the
//! installed ssh configuration used by real OpenSSH, listings, and diagnoses.

use std::time::Duration;

use crate::harness::{Fixture, SALLYPORT, ok, run};

const QUICK: Duration = Duration::from_secs(60);

/// `config ssh --install` on a HOME with an existing config: idempotent, a backup, other
/// lines untouched; then real ssh reaches the instance by ID and by alias through the
/// installed block alone (no ProxyCommand on its command line).
#[test]
fn config_ssh_install_works_with_real_ssh() {
    let f = Fixture::new();
    let config_toml = f.path("xdg-config/sallyport/config.toml");
    std::fs::create_dir_all(config_toml.parent().unwrap()).unwrap();
    std::fs::write(&config_toml, format!("[alias]\nbox = \"{}\"\n", f.instance)).unwrap();
    let ssh_dir = f.home().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let mine = "Host elsewhere\n    User someone\n    Port 2200\n";
    std::fs::write(ssh_dir.join("config"), mine).unwrap();

    let printed = ok(&run(&mut f.sallyport(&["config", "ssh"]), None, QUICK));
    assert!(printed.contains("Host i-* mi-* box\n"), "{printed}");
    assert!(
        printed.contains(&format!("ProxyCommand {SALLYPORT} proxy '%h' --port %p\n"))
            || printed.contains(&format!(
                "ProxyCommand {} proxy '%h' --port %p\n",
                std::fs::canonicalize(SALLYPORT).unwrap().display()
            )),
        "{printed}"
    );

    let first = run(
        &mut f.sallyport(&["config", "ssh", "--install"]),
        None,
        QUICK,
    );
    ok(&first);
    let conf = ssh_dir.join("sallyport.conf");
    let include = format!("Include \"{}\"\n", conf.display());
    let config = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
    assert_eq!(config, format!("{include}{mine}"));
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("config.sallyport.bak")).unwrap(),
        mine
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), printed);

    let second = run(
        &mut f.sallyport(&["config", "ssh", "--install"]),
        None,
        QUICK,
    );
    ok(&second);
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("up to date"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("config")).unwrap(),
        config
    );

    for host in [f.instance.as_str(), "box"] {
        let mut ssh = std::process::Command::new("ssh");
        // The fixture's client options minus their `-F /dev/null`: our config instead.
        let options: Vec<String> = f.sshd.client_options().into_iter().skip(2).collect();
        ssh.arg("-F").arg(ssh_dir.join("config")).args(options);
        f.aws_env(&mut ssh);
        ssh.arg(format!("root@{host}"))
            .arg("echo through-$((40+2))");
        let out = ok(&run(&mut ssh, None, QUICK));
        assert_eq!(out.trim(), "through-42", "{host}");
    }
}

const WEB1: &str = "i-0b00000000000001a";
const WEB2: &str = "i-0b00000000000002a";
const DB: &str = "i-0b00000000000003a";
const RACK: &str = "mi-0b00000000000004a";
const BARE: &str = "i-0b00000000000005a";

/// Five nodes: two tagged web servers (the first reaches the test sshd), an offline
/// database, an on-premises node, and an instance without a Name tag.
fn five_nodes(config: &mut sallyport_testbed::TestbedConfig) {
    let base = config.instances[0].clone();
    let node = |id: &str, name: Option<&str>| {
        let mut i = base.clone();
        i.id = id.to_owned();
        i.tags.clear();
        if let Some(n) = name {
            i.tags.insert("Name".into(), n.into());
        }
        i
    };
    let web1 = node(WEB1, Some("web-1"));
    let mut web2 = node(WEB2, Some("web-2"));
    web2.tags.insert("Team".into(), "red".into());
    web2.platform = "Ubuntu".into();
    web2.ip_address = Some("10.9.0.2".into());
    let mut db = node(DB, Some("db-1"));
    db.ping_status = "ConnectionLost".into();
    let mut rack = node(RACK, None);
    rack.name = Some("rack-7".into());
    rack.computer_name = Some("rack7.dc.example".into());
    let bare = node(BARE, None);
    config.instances = vec![web1, web2, db, rack, bare];
}

fn ls(f: &Fixture, args: &[&str]) -> (String, String) {
    let mut full = vec!["ls"];
    full.extend_from_slice(args);
    let out = run(&mut f.sallyport(&full), None, QUICK);
    let stdout = ok(&out);
    (stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The first column of each row after the header.
fn ids(table: &str) -> Vec<String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("ID "), "{table}");
    lines
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn ls_lists_filters_and_prints_json() {
    let f = Fixture::with_config(five_nodes);
    let (table, _) = ls(&f, &[]);
    let header = table.lines().next().unwrap();
    for col in [
        "ID",
        "NAME",
        "IP",
        "PLATFORM",
        "AGENT",
        "STATUS",
        "LAST SEEN",
        "COMPUTER NAME",
    ] {
        assert!(header.contains(col), "{col}: {table}");
    }
    // Online first (named before unnamed), the offline node last.
    assert_eq!(ids(&table), [RACK, WEB1, WEB2, BARE, DB], "{table}");
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_owned()
    };
    assert!(
        row(WEB2).contains(" web-2 ") && row(WEB2).contains("10.9.0.2"),
        "{table}"
    );
    assert!(
        row(WEB2).contains("Ubuntu") && row(WEB2).contains(" Online "),
        "{table}"
    );
    assert!(
        row(DB).contains("ConnectionLost") && row(DB).contains("minutes ago"),
        "{table}"
    );
    assert!(
        row(RACK).contains("rack-7") && row(RACK).contains("rack7.dc.example"),
        "{table}"
    );
    assert!(row(BARE).split_whitespace().nth(1) == Some("-"), "{table}");

    assert_eq!(ids(&ls(&f, &["web-*"]).0), [WEB1, WEB2]);
    assert_eq!(ids(&ls(&f, &["tag:Team=red"]).0), [WEB2]);
    assert_eq!(ids(&ls(&f, &["rack-?", DB]).0), [RACK, DB]);
    assert_eq!(ids(&ls(&f, &["10.9.0.2"]).0), [WEB2]);
    let (none, err) = ls(&f, &["nothing-*"]);
    assert!(
        ids(&none).is_empty() && err.contains("no managed node matches"),
        "{err}"
    );

    let (json, _) = ls(&f, &["--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let web2 = rows.iter().find(|r| r["id"] == WEB2).unwrap();
    for key in [
        "name",
        "name_tags_read",
        "ip_address",
        "platform",
        "agent_version",
        "ping_status",
        "last_ping",
        "computer_name",
    ] {
        assert!(web2.get(key).is_some(), "{key}: {web2}");
    }
    assert_eq!(web2["name"], "web-2");
    assert_eq!(web2["name_tags_read"], true);
    assert!(web2["last_ping"].is_i64());
    let calls = f.testbed.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.service == "tagging" && c.operation == "GetResources"),
        "Name tags come from the Tagging API"
    );
}

#[test]
fn ls_without_tag_permission_says_so() {
    let f = Fixture::with_config(|c| {
        five_nodes(c);
        c.tagging_denied = true;
    });
    let (table, err) = ls(&f, &[]);
    assert!(err.contains("no permission to read Name tags"), "{err}");
    assert_eq!(ids(&table).len(), 5, "{table}");
    for id in [WEB1, WEB2, DB, BARE] {
        let row = table.lines().find(|l| l.starts_with(id)).unwrap();
        assert!(row.contains("(no tag permission)"), "{table}");
    }
    let rack = table.lines().find(|l| l.starts_with(RACK)).unwrap();
    assert!(rack.contains("rack-7"), "{table}");
    // A plain name still filters, through SSM's tag filter.
    assert_eq!(ids(&ls(&f, &["web-1"]).0), [WEB1]);
    let (json, _) = ls(&f, &["--json", "db-1"]);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["id"], DB);
    assert_eq!(rows[0]["name_tags_read"], false);
    assert_eq!(rows[0]["name"], serde_json::Value::Null);
}

const APP: [&str; 3] = [
    "i-0c00000000000001a",
    "i-0c00000000000002a",
    "i-0c00000000000003a",
];

/// Three online instances all named `app`, each reaching the test sshd / this machine.
fn three_apps(config: &mut sallyport_testbed::TestbedConfig) {
    let base = config.instances[0].clone();
    config.instances = (APP.iter().enumerate())
        .map(|(k, id)| {
            let mut i = base.clone();
            i.id = (*id).to_owned();
            i.tags = [("Name".to_owned(), "app".to_owned())].into();
            i.ip_address = Some(format!("10.5.0.{}", k + 1));
            i.computer_name = Some(format!("host-{}.internal", k + 1));
            i
        })
        .collect();
}

fn started(f: &Fixture) -> Vec<String> {
    (f.testbed.calls().into_iter())
        .filter(|c| c.operation == "StartSession")
        .filter_map(|c| c.target)
        .collect()
}

/// Not on a terminal (a script, a ProxyCommand): an ambiguous target still fails with
/// exit 12 and the table, and no target at all is a usage error; nothing waits for input.
#[test]
fn without_a_terminal_there_is_no_prompt() {
    let f = Fixture::with_config(three_apps);
    let out = run(
        &mut f.sallyport(&["exec", "app", "--", "true"]),
        None,
        QUICK,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{err}");
    for id in APP {
        assert!(err.contains(id), "{err}");
    }
    let out = run(&mut f.sallyport(&["shell"]), None, QUICK);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no target given") && err.contains("sallyport ls"),
        "{err}"
    );
    assert!(started(&f).is_empty());
}

/// `sallyport ARGS` with a fresh pty as its controlling terminal (stdin, stdout and
/// stderr): what it shows, and the keyboard.
struct OnPty {
    child: std::process::Child,
    screen: crate::shell::Screen,
    keys: std::fs::File,
    _pty: crate::shell::Pty,
}

impl OnPty {
    fn start(f: &Fixture, args: &[&str]) -> OnPty {
        let pty = crate::shell::Pty::open(30, 120);
        let mut cmd = std::process::Command::new("setsid");
        cmd.arg("--ctty").arg(SALLYPORT).args(args);
        f.aws_env(&mut cmd);
        cmd.stdin(pty.slave.try_clone().unwrap())
            .stdout(pty.slave.try_clone().unwrap())
            .stderr(pty.slave.try_clone().unwrap());
        let child = cmd.spawn().expect("spawn sallyport");
        let screen = crate::shell::Screen::start(pty.master.try_clone().unwrap());
        let keys = pty.master.try_clone().unwrap();
        OnPty {
            child,
            screen,
            keys,
            _pty: pty,
        }
    }

    /// Its exit status within `limit`; `None` (and killed) if it is still running.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// On a real pty: the ambiguous target brings up the list, typing filters it, Enter
/// picks, and the command runs on the picked node.
#[test]
fn picker_on_a_terminal_runs_on_the_picked_node() {
    use std::io::Write;
    let f = Fixture::with_config(three_apps);
    for (args, want) in [
        (vec!["exec", "app", "--", "echo picked-$((40+2))"], APP[1]),
        (vec!["exec", "--", "echo picked-$((40+2))"], APP[2]),
    ] {
        let mut run = OnPty::start(&f, &args);
        let (screen, keys) = (&run.screen, &mut run.keys);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert!(
                screen.wait_for("type to filter", Duration::from_secs(30)),
                "no picker; screen:\n{}",
                screen.text()
            );
            // Rows carry Name tags (from tag:GetResources) even with no name typed.
            assert!(screen.text().contains(" app "), "{}", screen.text());
            // The ID's tail, typed: only one row matches it.
            let filter = &want[want.len() - 5..];
            keys.write_all(filter.as_bytes()).unwrap();
            keys.write_all(b"\r").unwrap();
            assert!(
                screen.wait_for("picked-42", Duration::from_secs(30)),
                "no command output; screen:\n{}",
                screen.text()
            );
        }));
        let status = run.wait_exit(Duration::from_secs(30));
        let screen = &run.screen;
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", screen.text());
        assert_eq!(
            started(&f).last().map(String::as_str),
            Some(want),
            "{args:?}"
        );
    }
}

/// `forward` with no target (its first word is a SPEC) on a real pty: the picker comes
/// up, the picked node gets the session, and bytes go through the forward to a server
/// the node reaches; Ctrl-C (SIGINT) ends it with exit 0.
#[test]
fn picker_on_a_terminal_picks_the_node_for_forward() {
    use crate::forward::{HttpServer, body_for, http_get};
    use std::io::Write;
    let f = Fixture::with_config(three_apps);
    let web = HttpServer::start("picked-forward");
    let spec = format!("0:{}", web.port());
    let want = APP[0];
    let mut run = OnPty::start(&f, &["forward", &spec]);
    let (screen, keys) = (&run.screen, &mut run.keys);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(
            screen.wait_for("type to filter", Duration::from_secs(30)),
            "no picker; screen:\n{}",
            screen.text()
        );
        keys.write_all(&want.as_bytes()[want.len() - 5..]).unwrap();
        keys.write_all(b"\r").unwrap();
        assert!(
            screen.wait_for(" -> ", Duration::from_secs(30)),
            "no forward; screen:\n{}",
            screen.text()
        );
        let text = screen.text();
        let line = &text[text.rfind("forwarding ").expect("a forwarding line")..];
        let local: std::net::SocketAddr = (line.split_whitespace().nth(1))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no local address in {line:?}"));
        assert!(
            line.contains(&format!("-> {want}:{}", web.port())),
            "{line}"
        );
        let body = http_get(local, "/through-the-picked-node").unwrap();
        assert_eq!(body, body_for("picked-forward", "/through-the-picked-node"));
    }));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &run.child.id().to_string()])
        .status();
    let status = run.wait_exit(Duration::from_secs(30));
    let screen = &run.screen;
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", screen.text());
    assert_eq!(started(&f), [want]);
}

/// Off a terminal, `forward` with no target is a usage error (exit 2) that says how to
/// name one, as for `shell`; with nothing to forward as well, it says that first.
#[test]
fn forward_without_a_target_off_a_terminal_exits_2() {
    let f = Fixture::with_config(three_apps);
    for args in [
        &["forward", "8888:localhost:8888"][..],
        &["forward", "-D", "0"],
    ] {
        let out = run(&mut f.sallyport(args), None, QUICK);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("no target given") && err.contains("sallyport ls"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    for args in [&["forward"][..], &["forward", "app"]] {
        let out = run(&mut f.sallyport(args), None, QUICK);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("nothing to forward"), "{args:?}: {err}");
    }
    assert!(started(&f).is_empty());
}

/// `sallyport doctor ARGS` with extra environment; (exit code, stdout).
fn doctor(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut full = vec!["doctor"];
    full.extend_from_slice(args);
    let mut cmd = f.sallyport(&full);
    // A proxy in the test's environment would carry the probes (tested in http_proxy.rs).
    cmd.env_remove("HTTPS_PROXY").env_remove("https_proxy");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd, None, QUICK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), stdout)
}

/// The line of check `name`.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(name)))
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{report}"))
}

#[test]
fn doctor_on_a_healthy_target_is_all_ok() {
    let f = Fixture::new();
    let (code, report) = doctor(&f, &[&f.instance], &[]);
    assert_eq!(code, Some(0), "{report}");
    let checks: Vec<&str> = report
        .lines()
        .filter(|l| !l.starts_with("all checks"))
        .collect();
    for l in &checks {
        assert!(l.starts_with("ok "), "{report}");
    }
    for name in [
        "region",
        "credentials",
        "clock",
        "endpoint ssm",
        "endpoint ssmmessages",
        "endpoint ec2-instance-connect",
        "endpoint kms",
        "endpoint sts",
        "ssm:DescribeInstanceInformation",
        "tag:GetResources",
        "target",
        "agent ping",
        "agent version",
        "platform",
        "instance connect",
        "session preferences",
    ] {
        line(&report, name);
    }
    assert!(
        line(&report, "session preferences").contains("not KMS-encrypted"),
        "{report}"
    );
    assert!(
        line(&report, "credentials").contains("arn:aws:iam::"),
        "{report}"
    );
    assert!(line(&report, "target").contains("by an ID"), "{report}");
    assert!(report.ends_with("all checks passed\n"), "{report}");

    let (code, json) = doctor(&f, &["--json", "testbed-ssh"], &[]);
    assert_eq!(code, Some(0), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true);
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["status"] == "ok"), "{json}");
    let target = checks.iter().find(|c| c["check"] == "target").unwrap();
    assert!(
        target["detail"].as_str().unwrap().contains("Name tag"),
        "{json}"
    );
}

#[test]
fn doctor_fails_an_old_agent() {
    let f = Fixture::with_config(|c| c.instances[0].agent_version = "2.3.500.0".into());
    let (code, report) = doctor(&f, &[&f.instance], &[]);
    assert_eq!(code, Some(5), "{report}");
    let l = line(&report, "agent version");
    assert!(
        l.starts_with("FAIL") && l.contains("2.3.672.0") && l.contains("AWS-UpdateSSMAgent"),
        "{report}"
    );
}

#[test]
fn doctor_fails_a_node_that_is_not_connected() {
    let f = Fixture::with_config(|c| c.instances[0].ping_status = "ConnectionLost".into());
    let (code, report) = doctor(&f, &[&f.instance], &[]);
    assert_eq!(code, Some(5), "{report}");
    let l = line(&report, "agent ping");
    assert!(
        l.starts_with("FAIL") && l.contains("ConnectionLost") && l.contains("last seen"),
        "{report}"
    );
    assert!(l.contains("amazon-ssm-agent"), "{report}");
}

#[test]
fn doctor_fails_a_denied_action() {
    let f = Fixture::with_config(|c| c.describe_denied = true);
    let (code, report) = doctor(&f, &[&f.instance], &[]);
    assert_eq!(code, Some(4), "{report}");
    let l = line(&report, "ssm:DescribeInstanceInformation");
    assert!(
        l.starts_with("FAIL") && l.contains("AccessDenied") && l.contains("fix: allow"),
        "{report}"
    );
    assert!(line(&report, "credentials").starts_with("ok"), "{report}");
}

#[test]
fn doctor_fails_a_skewed_clock() {
    let f = Fixture::with_config(|c| c.clock_offset_secs = 900);
    let (code, report) = doctor(&f, &[], &[]);
    assert_eq!(code, Some(14), "{report}");
    let l = line(&report, "clock");
    assert!(
        l.starts_with("FAIL") && l.contains("behind AWS") && l.contains("timedatectl"),
        "{report}"
    );
    // 900 s, give or take the second the Date header rounds to.
    assert!(
        ["899 s", "900 s", "901 s"].iter().any(|s| l.contains(s)),
        "{report}"
    );
}

#[test]
fn doctor_fails_an_unreachable_endpoint() {
    let f = Fixture::new();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}");
    let (code, report) = doctor(&f, &[], &[("AWS_ENDPOINT_URL_KMS", &url)]);
    assert_eq!(code, Some(6), "{report}");
    let l = line(&report, "endpoint kms");
    assert!(
        l.starts_with("FAIL") && l.contains("TCP") && l.contains(&closed.to_string()),
        "{report}"
    );
    assert!(line(&report, "endpoint ssm ").starts_with("ok"), "{report}");
}

#[test]
fn doctor_names_the_session_kms_key() {
    let key = "alias/session-key";
    let f = Fixture::with_config(|c| c.instances[0].kms_key_id = Some(key.into()));
    let (code, report) = doctor(&f, &[], &[]);
    assert_eq!(code, Some(0), "{report}");
    let l = line(&report, "session preferences");
    assert!(
        l.starts_with("ok") && l.contains(key) && l.contains("kms:GenerateDataKey"),
        "{report}"
    );
}

/// Esc in the picker cancels: exit 12, no session started.
#[test]
fn cancelling_the_picker_exits_12() {
    use std::io::Write;
    let f = Fixture::with_config(three_apps);
    let mut run = OnPty::start(&f, &["exec", "app", "--", "true"]);
    let shown = run
        .screen
        .wait_for("type to filter", Duration::from_secs(30));
    if shown {
        run.keys.write_all(b"\x1b").unwrap();
    }
    let status = run.wait_exit(Duration::from_secs(30));
    let screen = &run.screen;
    assert!(shown, "no picker; screen:\n{}", screen.text());
    assert_eq!(status.and_then(|s| s.code()), Some(12), "{}", screen.text());
    assert!(
        screen.wait_for("no node picked", Duration::from_secs(5)),
        "{}",
        screen.text()
    );
    assert!(started(&f).is_empty());
}

#[test]
fn ls_without_describe_permission_exits_4_with_advice() {
    let f = Fixture::with_config(|c| c.describe_denied = true);
    let out = run(&mut f.sallyport(&["ls"]), None, QUICK);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("needs ssm:DescribeInstanceInformation"),
        "{err}"
    );
}

#[test]
fn doctor_without_the_ca_bundle_names_it_in_the_endpoint_fix() {
    let f = Fixture::new();
    let mut cmd = f.sallyport(&["doctor", &f.instance]);
    cmd.env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("AWS_CA_BUNDLE");
    let out = run(&mut cmd, None, QUICK);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_ne!(out.status.code(), Some(0), "{report}");
    let ssm = line(&report, "endpoint ssm ");
    assert!(ssm.starts_with("FAIL"), "{report}");
    assert!(ssm.contains("AWS_CA_BUNDLE"), "{report}");
}
