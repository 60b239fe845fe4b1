//! EC2 Instance Connect end to end inside the testbed: keys pushed with the real SDK reach
//! `sallyport-testbed authorized-keys`, and an Instance-Connect-only sshd lets the key in
//! for 60 seconds only. The sshd test needs root and openssh-server (else it is skipped;
//! under `CI=true` it fails instead).

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2instanceconnect::config::{BehaviorVersion, Credentials, Region};
use sallyport_testbed::instance::eic_keys::parse_public_key;
use sallyport_testbed::instance::sshd::{InstanceConnect, SshdOptions, TempDir, TestSshd};
use sallyport_testbed::{InstanceConfig, Testbed, TestbedConfig};

const BIN: &str = env!("CARGO_BIN_EXE_sallyport-testbed");
const INSTANCE: &str = "i-0123456789abcdef0";
const OTHER: &str = "i-0fedcba9876543210";

struct Fixture {
    testbed: Testbed,
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_ec2instanceconnect::Client,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let instances = vec![
            InstanceConfig::named(INSTANCE, "web"),
            InstanceConfig::named(OTHER, "other"),
        ];
        let config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), instances);
        let testbed = runtime.block_on(Testbed::start(config)).expect("testbed");
        let conf = aws_sdk_ec2instanceconnect::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(testbed.region.clone()))
            .endpoint_url(&testbed.endpoint)
            .credentials_provider(Credentials::new(
                &testbed.access_key_id,
                &testbed.secret_access_key,
                None,
                None,
                "test",
            ))
            .build();
        let client = aws_sdk_ec2instanceconnect::Client::from_conf(conf);
        Fixture {
            testbed,
            runtime,
            client,
        }
    }

    fn push(&self, instance: &str, user: &str, key: &str) {
        let req = self
            .client
            .send_ssh_public_key()
            .instance_id(instance)
            .instance_os_user(user)
            .ssh_public_key(key);
        let out = self.runtime.block_on(req.send()).expect("SendSSHPublicKey");
        assert!(out.success());
    }
}

/// Runs `cmd` with a deadline, killing it if it overruns.
fn run(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_end(&mut stdout);
            }
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_end(&mut stderr);
            }
            return Output {
                status,
                stdout,
                stderr,
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn authorized_keys(state: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("authorized-keys")
        .arg("--state")
        .arg(state)
        .args(args);
    run(&mut cmd, Duration::from_secs(20))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXR6Gmf1kUbUIe2mJvlP8Ph8EP+0G9fNn2uv7Jl5zOa test@host";

#[test]
fn authorized_keys_command_serves_what_the_api_pushed() {
    let fx = Fixture::new();
    let state = fx.testbed.eic_state_dir();
    let out = authorized_keys(&state, &["root"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "no pushes yet");

    fx.push(INSTANCE, "root", &format!("{KEY}\n"));
    let fp = parse_public_key(KEY).unwrap().fingerprint();
    let want = format!("{KEY}\n");
    for args in [
        &["root"][..],
        &["--instance", INSTANCE, "root"],
        &["--instance", INSTANCE, "--", "root", &fp],
    ] {
        let out = authorized_keys(&state, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), want, "{args:?}");
    }
    for args in [
        &["ec2-user"][..],
        &["--instance", OTHER, "root"],
        &["root", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
        // The instance's clock is 60 s ahead: the push is already 60 s old there.
        &["--clock-offset", "60", "root"],
    ] {
        let out = authorized_keys(&state, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    // 59 s behind it is still fresh; after aging by 61 s it is gone.
    let out = authorized_keys(&state, &["--clock-offset=-59", "root"]);
    assert_eq!(text(&out.stdout), want);
    fx.testbed.age_pushed_keys(61).unwrap();
    assert!(authorized_keys(&state, &["root"]).stdout.is_empty());

    let calls = fx.testbed.calls();
    let call = calls.last().unwrap();
    assert_eq!(
        (
            call.service,
            call.operation.as_str(),
            call.target.as_deref()
        ),
        ("ec2-instance-connect", "SendSSHPublicKey", Some(INSTANCE))
    );
    assert_eq!(call.os_user.as_deref(), Some("root"));

    let missing = state.join("nope");
    let out = authorized_keys(&missing, &["root"]);
    assert!(out.status.success() && out.stdout.is_empty());
}

/// Why the sshd test cannot run here, if it cannot.
fn sshd_unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root (sshd privilege separation needs it)".to_owned());
    }
    let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
    if !sshd.iter().any(|p| Path::new(p).exists()) {
        return Some("no sshd (install openssh-server)".to_owned());
    }
    let ssh = Command::new("ssh").arg("-V").stderr(Stdio::null()).status();
    if !ssh.is_ok_and(|s| s.success()) {
        return Some("no ssh client (install openssh-client)".to_owned());
    }
    None
}

/// `ssh … root@127.0.0.1 true` with the sshd's user key; extra options go first.
fn ssh_true(sshd: &TestSshd, extra: &[&str]) -> Output {
    let mut cmd = Command::new("ssh");
    cmd.args(extra)
        .args(sshd.client_options())
        .arg("-p")
        .arg(sshd.addr.port().to_string())
        .arg("root@127.0.0.1")
        .arg("true");
    run(&mut cmd, Duration::from_secs(40))
}

#[test]
fn instance_connect_only_sshd_takes_a_pushed_key_for_sixty_seconds() {
    if let Some(why) = sshd_unavailable() {
        // In CI a missing prerequisite is a failure, never a silent pass.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {why} (`bash .ci/install-deps` installs openssh-server and openssh-client)"
        );
        eprintln!(
            "skipping instance_connect_only_sshd_takes_a_pushed_key_for_sixty_seconds: {why}"
        );
        return;
    }
    let fx = Fixture::new();
    let dir = TempDir::new("sallyport-eic-sshd").unwrap();
    let mut eic = InstanceConnect::new(BIN, fx.testbed.eic_state_dir());
    eic.instance_id = Some(INSTANCE.to_owned());
    let options = SshdOptions {
        instance_connect: Some(eic),
        host_key: None,
        ..SshdOptions::default()
    };
    let sshd = TestSshd::start_with(dir.path(), &options).expect("start sshd");
    let key = sshd.user_public_key().unwrap();
    let denied = |why: &str| {
        let out = ssh_true(&sshd, &[]);
        assert!(!out.status.success(), "{why}: ssh got in");
        assert!(
            text(&out.stderr).contains("Permission denied"),
            "{why}: {}",
            text(&out.stderr)
        );
    };

    denied("nothing pushed");
    // Pushed for another user, or to another instance: still no way in.
    fx.push(INSTANCE, "ec2-user", &key);
    fx.push(OTHER, "root", &key);
    denied("pushed for ec2-user and to another instance");

    fx.push(INSTANCE, "root", &key);
    let out = ssh_true(&sshd, &[]);
    assert!(out.status.success(), "ssh: {}", text(&out.stderr));

    fx.testbed.age_pushed_keys(61).unwrap();
    denied("pushed 61 s ago");

    // A second sshd with the same host key has the same identity: a known_hosts entry made
    // from the first one's key lets ssh in with strict checking.
    let dir2 = TempDir::new("sallyport-eic-sshd2").unwrap();
    let same = SshdOptions {
        instance_connect: None,
        host_key: Some(sshd.host_key.clone()),
        ..SshdOptions::default()
    };
    let sshd2 = TestSshd::start_with(dir2.path(), &same).expect("second sshd");
    assert_eq!(sshd2.host_public_key(), sshd.host_public_key());
    assert_ne!(sshd2.addr, sshd.addr);
    let known = dir2.path().join("known_hosts");
    let host_key = sshd.host_public_key();
    let mut fields = host_key.split_whitespace();
    let (kind, b64) = (fields.next().unwrap(), fields.next().unwrap());
    let line = format!("[127.0.0.1]:{} {kind} {b64}\n", sshd2.addr.port());
    std::fs::write(&known, line).unwrap();
    let strict = format!("UserKnownHostsFile={}", known.display());
    let out = ssh_true(&sshd2, &["-o", "StrictHostKeyChecking=yes", "-o", &strict]);
    assert!(out.status.success(), "ssh: {}", text(&out.stderr));
}
