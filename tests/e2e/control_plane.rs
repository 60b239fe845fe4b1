//! The control plane end to end: every target form, the config file, the lookup cache,
//! errors a person can act on (message and exit code), `--wait`, throttling retries, and
//! credentials from `credential_process` and an assume-role profile chain — all against the
//! testbed, with `sallyport proxy` as ssh would run it (its stdin carries an SSH banner and
//! the test sshd must answer with its own).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sallyport_testbed::instance::sshd::{TempDir, TestSshd};
use sallyport_testbed::{InstanceConfig, Testbed, TestbedConfig};

use crate::harness::{SALLYPORT, run};

const QUICK: Duration = Duration::from_secs(60);
const BANNER: &[u8] = b"SSH-2.0-sallyport_test\r\n";

const WEB1: &str = "i-0a00000000000001a";
const WEB2: &str = "i-0a00000000000002a";
const RACK: &str = "mi-0a00000000000003a";
const API_ON: &str = "i-0a00000000000004a";
const API_LOST: &str = "i-0a00000000000005a";

/// A testbed in front of one throw-away sshd, with its own temp dir for config and cache.
struct Bed {
    testbed: Testbed,
    _runtime: tokio::runtime::Runtime,
    _sshd: TestSshd,
    dir: TempDir,
}

impl Bed {
    fn new(instances: impl FnOnce(SocketAddr) -> Vec<InstanceConfig>) -> Bed {
        Bed::with(instances, |_| {})
    }

    /// A bed whose testbed configuration `adjust` may change (e.g. its clock).
    fn with(
        instances: impl FnOnce(SocketAddr) -> Vec<InstanceConfig>,
        adjust: impl FnOnce(&mut TestbedConfig),
    ) -> Bed {
        let dir = TempDir::new("sallyport-cp").expect("temp dir");
        let sshd = TestSshd::start(dir.path()).expect("start sshd");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), instances(sshd.addr));
        adjust(&mut config);
        let testbed = runtime
            .block_on(Testbed::start(config))
            .expect("start testbed");
        Bed {
            testbed,
            _runtime: runtime,
            _sshd: sshd,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes the default config file (under this bed's XDG_CONFIG_HOME).
    fn config(&self, text: &str) {
        self.write("xdg-config/sallyport/config.toml", text);
    }

    /// `sallyport ARGS… proxy TARGET --port 22`, pointed at the testbed and nothing of the
    /// developer's own AWS or XDG setup.
    fn proxy(&self, target: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(SALLYPORT);
        cmd.args(args).args(["proxy", target, "--port", "22"]);
        crate::harness::hermetic_env(&mut cmd, &self.testbed, &self.path(""));
        cmd
    }

    /// Runs the proxy with an SSH banner on stdin.
    fn run(&self, cmd: &mut Command) -> Output {
        run(cmd, Some(BANNER), QUICK)
    }

    /// Targets of the StartSession calls so far.
    fn started(&self) -> Vec<String> {
        (self.testbed.calls().into_iter())
            .filter(|c| c.operation == "StartSession")
            .filter_map(|c| c.target)
            .collect()
    }

    fn count(&self, operation: &str) -> usize {
        let calls = self.testbed.calls();
        calls.iter().filter(|c| c.operation == operation).count()
    }
}

fn instance(id: &str, name: &str, ssh: SocketAddr) -> InstanceConfig {
    let mut i = InstanceConfig::ssh_shortcut(ssh);
    i.id = id.to_owned();
    i.tags = [("Name".to_owned(), name.to_owned())].into();
    i
}

/// Five named nodes and 60 fillers, so listing everything takes two pages.
fn fleet(ssh: SocketAddr) -> Vec<InstanceConfig> {
    let mut web1 = instance(WEB1, "web-1", ssh);
    web1.ip_address = Some("10.1.0.11".into());
    web1.computer_name = Some("web-1.corp.internal".into());
    let mut web2 = instance(WEB2, "web-2", ssh);
    web2.ip_address = Some("10.1.0.12".into());
    web2.tags.insert("Team".into(), "red".into());
    let mut rack = instance(RACK, "rack-7", ssh);
    rack.tags.clear();
    rack.name = Some("rack-7".into());
    rack.computer_name = Some("rack7.dc.example".into());
    let api_on = instance(API_ON, "api", ssh);
    let mut api_lost = instance(API_LOST, "api", ssh);
    api_lost.ping_status = "ConnectionLost".into();
    let mut all = vec![web1, web2, rack, api_on, api_lost];
    for k in 0..60 {
        let mut f = instance(&format!("i-0f{k:015x}"), &format!("filler-{k}"), ssh);
        f.ip_address = Some(format!("10.2.0.{k}"));
        all.push(f);
    }
    all
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The proxy reached the test sshd and exited 0.
fn connected(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("SSH-2.0-OpenSSH"),
        "exit {:?}, stdout {stdout:?}, stderr: {}",
        out.status.code(),
        stderr(out)
    );
}

/// Exit code and a stderr that contains each of `words`.
fn fails(out: &Output, code: i32, words: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    for w in words {
        assert!(err.contains(w), "{w:?} missing in: {err}");
    }
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    err
}

#[test]
fn every_target_form_resolves() {
    let bed = Bed::new(fleet);
    bed.config(
        r#"
        [alias]
        jupyter = "web-2"
        notebook = { tag = "Team=red" }
        "#,
    );
    let cases = [
        (WEB1, WEB1),
        ("I-0A00000000000001A.", WEB1),
        (RACK, RACK),
        ("web-1", WEB1),
        ("tag:Team=red", WEB2),
        ("tag:Name=api", "ambiguous"),
        ("10.1.0.12", WEB2),
        ("10.2.0.59", "i-0f00000000000003b"),
        ("web-1.corp.internal", WEB1),
        ("rack7", RACK),
        ("rack-7", RACK),
        ("jupyter", WEB2),
        ("Notebook", WEB2),
    ];
    for (target, want) in cases {
        let out = bed.run(&mut bed.proxy(target, &[]));
        if want == "ambiguous" {
            fails(&out, 12, &[API_ON, API_LOST]);
            continue;
        }
        connected(&out);
        assert_eq!(
            bed.started().last().map(String::as_str),
            Some(want),
            "{target}"
        );
    }
    assert_eq!(bed.count("StartSession"), cases.len() - 1);
}

#[test]
fn several_matches_are_listed_unless_picked() {
    let bed = Bed::new(fleet);
    let out = bed.run(&mut bed.proxy("api", &[]));
    let err = fails(
        &out,
        12,
        &["\"api\" matches 2 managed nodes", "--pick first"],
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "sentence, header, two rows: {err}");
    assert!(
        lines[1].contains("ID") && lines[1].contains("STATUS"),
        "{err}"
    );
    let online: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(online[..2], [API_ON, "api"], "online first: {err}");
    assert_eq!(online[3], "Online");
    assert!(
        lines[3].contains("ConnectionLost") && lines[3].contains("last seen"),
        "{err}"
    );
    assert_eq!(bed.count("StartSession"), 0);

    let out = bed.run(&mut bed.proxy("api", &["--pick", "first"]));
    connected(&out);
    assert_eq!(bed.started(), [API_ON]);
    // The pick is not cached: without the flag it is ambiguous again.
    fails(&bed.run(&mut bed.proxy("api", &[])), 12, &["matches 2"]);
}

#[test]
fn no_match_suggests_close_names() {
    let bed = Bed::new(fleet);
    bed.config("[alias]\njupyter = \"web-2\"\n");
    let out = bed.run(&mut bed.proxy("wbe-1", &[]));
    fails(
        &out,
        5,
        &[
            "\"wbe-1\" is not an instance ID",
            "no alias, Name tag",
            "did you mean web-1 (host name)?",
        ],
    );
    // An alias spelt wrong.
    let out = bed.run(&mut bed.proxy("jupiter", &[]));
    fails(&out, 5, &["did you mean jupyter (alias)?"]);
    let out = bed.run(&mut bed.proxy("tag:Team=green", &[]));
    fails(
        &out,
        5,
        &["no managed node in us-east-1 has the tag Team=green"],
    );
    let out = bed.run(&mut bed.proxy("10.9.9.9", &[]));
    fails(
        &out,
        5,
        &["no managed node in us-east-1 has the IP address 10.9.9.9"],
    );
    let out = bed.run(&mut bed.proxy("tag:Team", &[]));
    fails(&out, 5, &["tag:Key=Value"]);
    assert_eq!(bed.count("StartSession"), 0);
}

#[test]
fn lookups_are_cached_briefly_in_private_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let bed = Bed::new(fleet);
    connected(&bed.run(&mut bed.proxy("10.1.0.11", &[])));
    let first = bed.count("DescribeInstanceInformation");
    assert!(first >= 2, "listing 65 nodes takes two pages: {first}");
    connected(&bed.run(&mut bed.proxy("10.1.0.11", &[])));
    assert_eq!(
        bed.count("DescribeInstanceInformation"),
        first,
        "served from the cache"
    );
    assert_eq!(bed.started(), [WEB1, WEB1]);
    let dir = bed.path("xdg-cache/sallyport/targets");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Another region is another key.
    let out = bed.run(&mut bed.proxy("10.1.0.11", &["--region", "eu-west-1"]));
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn config_file_defaults_and_explicit_paths() {
    let bed = Bed::new(fleet);
    // The region from the config file, when nothing else sets one.
    bed.config("region = \"us-east-1\"\n");
    let mut cmd = bed.proxy(WEB1, &[]);
    cmd.env_remove("AWS_REGION");
    connected(&bed.run(&mut cmd));
    // A flag beats it (and the testbed, which signs for us-east-1, refuses eu-west-1).
    let mut cmd = bed.proxy(WEB1, &["--region", "eu-west-1"]);
    cmd.env_remove("AWS_REGION");
    fails(&bed.run(&mut cmd), 3, &["InvalidSignatureException"]);

    let other = bed.write("other.toml", "[alias]\nbox = \"web-1\"\n");
    let out = bed.run(&mut bed.proxy("box", &["--config", other.to_str().unwrap()]));
    connected(&out);
    let mut cmd = bed.proxy("box", &[]);
    cmd.env("SALLYPORT_CONFIG", &other);
    connected(&bed.run(&mut cmd));

    let out = bed.run(&mut bed.proxy(WEB1, &["--config", "/nonexistent/sp.toml"]));
    fails(
        &out,
        13,
        &["cannot read the config file /nonexistent/sp.toml"],
    );
    bed.config("[alias]\nx = { tag = \"Name\" }\n");
    let out = bed.run(&mut bed.proxy(WEB1, &[]));
    fails(
        &out,
        13,
        &["invalid config file", "config.toml", "Key=Value"],
    );
}

#[test]
fn no_region_says_how_to_set_one() {
    let bed = Bed::new(fleet);
    for region in [None, Some("")] {
        let mut cmd = bed.proxy("web-1", &[]);
        match region {
            None => cmd.env_remove("AWS_REGION"),
            Some(r) => cmd.env("AWS_REGION", r),
        };
        let out = bed.run(&mut cmd);
        fails(
            &out,
            9,
            &["no AWS region is configured", "--region", "config file"],
        );
    }
    assert!(bed.testbed.calls().is_empty());
}

fn trouble(ssh: SocketAddr) -> Vec<InstanceConfig> {
    let mut denied = instance("i-0d00000000000000d", "denied", ssh);
    denied.access_denied = true;
    let mut lost = instance("i-0c00000000000000c", "lost", ssh);
    lost.ping_status = "ConnectionLost".into();
    lost.last_ping_ago_secs = Some(600);
    let mut booting = instance("i-0b00000000000000b", "booting", ssh);
    booting.not_connected_for_secs = 3;
    let mut busy = instance("i-0e00000000000000e", "busy", ssh);
    busy.throttle_first = 3;
    let mut swamped = instance("i-0e00000000000000f", "swamped", ssh);
    swamped.throttle_first = 1_000;
    vec![denied, lost, booting, busy, swamped]
}

#[test]
fn access_denied_names_the_action_and_resource() {
    let bed = Bed::new(trouble);
    let out = bed.run(&mut bed.proxy("denied", &[]));
    fails(
        &out,
        4,
        &[
            "AccessDeniedException",
            "your IAM identity needs ssm:StartSession on arn:aws:ec2:us-east-1:123456789012:instance/i-0d00000000000000d",
        ],
    );
}

#[test]
fn not_connected_says_when_it_was_last_seen() {
    let bed = Bed::new(trouble);
    let out = bed.run(&mut bed.proxy("lost", &[]));
    fails(
        &out,
        5,
        &[
            "TargetNotConnected",
            "its SSM agent is ConnectionLost, last seen 10 minutes ago (",
            "--wait 90s",
        ],
    );
    // The lookup that led there is not kept in the cache.
    let cached = std::fs::read_dir(bed.path("xdg-cache/sallyport/targets")).unwrap();
    assert_eq!(cached.count(), 0);
    let out = bed.run(&mut bed.proxy("i-0ffffffffffffffff", &[]));
    fails(
        &out,
        5,
        &["SSM does not know i-0ffffffffffffffff in this account and region"],
    );
}

#[test]
fn wait_rides_out_an_agent_that_is_still_connecting() {
    let bed = Bed::new(trouble);
    let started = Instant::now();
    let out = bed.run(&mut bed.proxy("booting", &["--wait", "30s"]));
    connected(&out);
    let err = stderr(&out);
    assert!(err.contains("is not connected yet; waiting up to"), "{err}");
    assert!(err.contains("i-0b00000000000000b is connected"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(bed.count("StartSession") >= 2);
}

/// Stopped while `--wait` waits for an agent (SIGTERM, as ssh's ProxyCommand gets when a
/// user gives up): the waiting stops with it. It kept retrying in the background until
/// the command's 10 s budget for background calls ran out, and StartSession calls went on
/// meanwhile.
#[test]
fn a_stop_ends_the_wait_for_an_agent_at_once() {
    use std::io::BufRead;
    let bed = Bed::new(trouble);
    let mut cmd = bed.proxy("lost", &["--wait", "60s"]);
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("is not connected yet; waiting up to") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    if rx.recv_timeout(QUICK).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no waiting notice: {:?}", reader.join().unwrap());
    }
    let stopped = Instant::now();
    crate::parallel::signal(&child, "TERM");
    let out = crate::parallel::wait_exit(&mut child, Duration::from_secs(30));
    let took = stopped.elapsed();
    let err = reader.join().unwrap().join("\n");
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        took < Duration::from_secs(4),
        "stopped after {took:?}: {err}"
    );
    let calls = bed.count("StartSession");
    assert!(calls >= 1);
    // The exit was the end: no attempt follows it. The process is gone, so the count can
    // only have grown by calls it made before exiting.
    assert_eq!(bed.count("StartSession"), calls);
}

#[test]
fn expired_credentials_and_throttling() {
    let bed = Bed::new(trouble);
    // Throttled three times, then through: sallyport's own backoff (the SDK's is off here).
    connected(&bed.run(&mut bed.proxy("busy", &[])));
    assert_eq!(bed.count("StartSession"), 4);
    // Throttled for good: gives up inside the budget.
    let started = Instant::now();
    let out = bed.run(&mut bed.proxy("i-0e00000000000000f", &["--wait", "2s"]));
    fails(&out, 9, &["ThrottlingException", "kept throttling"]);
    assert!(started.elapsed() < Duration::from_secs(15));

    assert!(bed.testbed.expire_credentials(&bed.testbed.access_key_id));
    let mut cmd = bed.proxy("i-0b00000000000000b", &["--profile", "research"]);
    // A named profile that does not exist would fail first: give it the env keys.
    bed.write("aws-config", "[profile research]\nregion = us-east-1\n");
    cmd.env("AWS_CONFIG_FILE", bed.path("aws-config"));
    let out = bed.run(&mut cmd);
    fails(
        &out,
        3,
        &[
            "ExpiredTokenException",
            "have expired",
            "aws sso login --profile research",
        ],
    );
}

#[test]
fn credential_process_profile_is_used() {
    let bed = Bed::new(fleet);
    let (akid, secret) = (&bed.testbed.access_key_id, &bed.testbed.secret_access_key);
    let marker = bed.path("credential-process-ran");
    let script = bed.write(
        "creds.sh",
        &format!(
            "#!/bin/sh\ntouch '{}'\nprintf '%s' '{{\"Version\":1,\"AccessKeyId\":\"{akid}\",\"SecretAccessKey\":\"{secret}\"}}'\n",
            marker.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let config = bed.write(
        "aws-config",
        &format!(
            "[profile proc]\nregion = us-east-1\ncredential_process = {}\n",
            script.display()
        ),
    );
    let mut cmd = bed.proxy(WEB1, &["--profile", "proc"]);
    cmd.env("AWS_CONFIG_FILE", &config)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION");
    connected(&bed.run(&mut cmd));
    assert!(marker.exists(), "the credential_process script ran");
    assert_eq!(bed.started(), [WEB1]);
}

#[test]
fn assume_role_chain_reaches_the_testbed_through_sts() {
    let bed = Bed::new(fleet);
    let (akid, secret) = (&bed.testbed.access_key_id, &bed.testbed.secret_access_key);
    let config = bed.write(
        "aws-config",
        &format!(
            "[profile base]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n\
             region = us-east-1\n\n\
             [profile ops]\nrole_arn = arn:aws:iam::123456789012:role/sallyport-ops\n\
             source_profile = base\nregion = us-east-1\n\n\
             [profile elsewhere]\nrole_arn = arn:aws:iam::999999999999:role/nope\n\
             source_profile = base\nregion = us-east-1\n"
        ),
    );
    let profile_cmd = |profile: &str| {
        let mut cmd = bed.proxy("web-1", &["--profile", profile]);
        cmd.env("AWS_CONFIG_FILE", &config)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_REGION");
        cmd
    };
    connected(&bed.run(&mut profile_cmd("ops")));
    let calls = bed.testbed.calls();
    let assume = calls.iter().find(|c| c.operation == "AssumeRole");
    assert_eq!(
        assume.map(|c| c.access_key_id.as_str()),
        Some(akid.as_str()),
        "{calls:?}"
    );
    let start = calls
        .iter()
        .find(|c| c.operation == "StartSession")
        .unwrap();
    assert!(
        start.access_key_id.starts_with("ASIA"),
        "temporary keys: {calls:?}"
    );
    assert_eq!(start.target.as_deref(), Some(WEB1));
    // The data channel was signed with a temporary key and its session token (the testbed
    // refuses a temporary key without `x-amz-security-token`).
    let dials = bed.testbed.data_channel_dials();
    assert_eq!(dials.len(), 1, "{dials:?}");
    let dial_key = dials[0].access_key_id.as_deref().unwrap_or_default();
    assert!(dial_key.starts_with("ASIA"), "{dials:?}");
    assert_eq!(dials[0].refused, None, "{dials:?}");

    let out = bed.run(&mut profile_cmd("elsewhere"));
    fails(&out, 3, &["AccessDenied"]);
}

/// Our clock 15 minutes behind the service's: AWS's 5-minute rule refuses the request; the
/// message says so and how to fix it (exit 14), before any session starts.
#[test]
fn clock_skew_is_named_with_the_fix() {
    let bed = Bed::with(fleet, |c| c.clock_offset_secs = 900);
    let out = bed.run(&mut bed.proxy(WEB1, &[]));
    fails(&out, 14, &["Signature expired", "clock", "timedatectl"]);
    let ahead = Bed::with(fleet, |c| c.clock_offset_secs = -900);
    let out = ahead.run(&mut ahead.proxy(WEB1, &[]));
    fails(&out, 14, &["Signature not yet current", "clock"]);
}

/// No credentials anywhere (environment, files, roles, metadata): exit 3, no API call.
#[test]
fn no_credentials_at_all_says_where_they_come_from() {
    let bed = Bed::new(fleet);
    let mut cmd = bed.proxy(WEB1, &[]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = bed.run(&mut cmd);
    fails(&out, 3, &["no usable AWS credentials", "AWS_PROFILE"]);
    assert!(bed.testbed.calls().is_empty());
}
