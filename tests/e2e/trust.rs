//! What sallyport trusts, end to end: host keys follow the name typed, remote names reach
//! the terminal as text, and a SOCKS server beyond loopback has to be asked for.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sallyport_testbed::instance::sshd::{InstanceConnect, SshdOptions, TempDir, TestSshd};
use sallyport_testbed::{InstanceConfig, Testbed, TestbedConfig};

use crate::harness::{Fixture, SALLYPORT, hermetic_env, ok, run, testbed_bin};

const LIMIT: Duration = Duration::from_secs(60);

const A: &str = "i-0aaaaaaaaaaaaaaaa";
const B: &str = "i-0bbbbbbbbbbbbbbbb";

/// Two instances, each its own sshd with its own host key, taking keys pushed through
/// any testbed sharing `eic`; a testbed is started per arrangement of their Name tags.
struct TwoInstances {
    dir: TempDir,
    eic: PathBuf,
    a: TestSshd,
    b: TestSshd,
    runtime: tokio::runtime::Runtime,
}

impl TwoInstances {
    fn start() -> TwoInstances {
        let dir = TempDir::new("sallyport-e2e-trust").expect("temp dir");
        let eic = dir.path().join("eic-state");
        let sshd = |name: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            let options = SshdOptions {
                instance_connect: Some(InstanceConnect::new(testbed_bin(), &eic)),
                host_key: None,
                ..SshdOptions::default()
            };
            TestSshd::start_with(&d, &options).expect("start sshd")
        };
        let (a, b) = (sshd("a"), sshd("b"));
        assert_ne!(a.host_public_key(), b.host_public_key());
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        TwoInstances {
            dir,
            eic,
            a,
            b,
            runtime,
        }
    }

    /// A testbed where A is named `name_a` and B `name_b` (Name tags).
    fn world(&self, name_a: &str, name_b: &str) -> Testbed {
        let instance = |id: &str, sshd: &TestSshd, name: &str| {
            let mut i = InstanceConfig::ssh_shortcut(sshd.addr);
            i.id = id.to_owned();
            i.tags.insert("Name".to_owned(), name.to_owned());
            i
        };
        let mut config = TestbedConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![instance(A, &self.a, name_a), instance(B, &self.b, name_b)],
        );
        config.eic_state_dir = Some(self.eic.clone());
        config.tls = crate::harness::TLS_BY_DEFAULT;
        self.runtime
            .block_on(Testbed::start(config))
            .expect("start testbed")
    }

    /// `sallyport ARGS` against `testbed`, with its own lookup cache (`cache`), so a name
    /// is looked up afresh in each world.
    fn sallyport(&self, testbed: &Testbed, cache: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(SALLYPORT);
        cmd.args(args);
        hermetic_env(&mut cmd, testbed, self.dir.path());
        cmd.env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", self.dir.path())
            .env("XDG_CACHE_HOME", self.dir.path().join(cache))
            .env_remove("SSH_AUTH_SOCK");
        cmd
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }
}

/// An ssh-agent on a socket in `dir`, killed on drop: where `proxy --push-key
/// --ephemeral` puts the key OpenSSH then offers.
struct Agent {
    child: std::process::Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, sock }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TwoInstances {
    /// Real OpenSSH `ssh root@HOST` through `sallyport proxy %h`, checking host keys
    /// strictly against our known_hosts file only.
    fn openssh(&self, testbed: &Testbed, cache: &str, agent: &Agent, host: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
            ])
            .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20", "-o"])
            .arg(format!(
                "ProxyCommand={SALLYPORT} proxy %h --port %p --user %r --push-key --ephemeral"
            ))
            .arg(format!("root@{host}"));
        hermetic_env(&mut cmd, testbed, self.dir.path());
        cmd.env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", self.dir.path())
            .env("XDG_CACHE_HOME", self.dir.path().join(cache))
            .env("SSH_AUTH_SOCK", &agent.sock);
        cmd
    }
}

fn key_fields(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether OpenSSH's own lookup (`ssh-keygen -F`) finds `host` in `file`.
fn openssh_knows(host: &str, file: &Path) -> bool {
    Command::new("ssh-keygen")
        .arg("-F")
        .arg(host)
        .arg("-f")
        .arg(file)
        .output()
        .expect("ssh-keygen (openssh-client)")
        .status
        .success()
}

/// Someone allowed to tag instances names another instance `db-1`: the key recorded for
/// `db-1` no longer matches, so a copy to `db-1` is refused (exit 15), as OpenSSH through
/// the ProxyCommand (keyed on %h) refuses it, and nothing is written or recorded.
#[test]
fn a_name_tag_moved_to_an_instance_with_another_host_key_is_refused() {
    let two = TwoInstances::start();
    let kh = two.known_hosts();
    let kh_arg = kh.to_str().unwrap();
    let first = two.world("db-1", "build-box");
    let out = run(
        two.sallyport(
            &first,
            "cache-1",
            &["ssh", "root@db-1", "--known-hosts", kh_arg],
        )
        .arg("echo reached"),
        None,
        LIMIT,
    );
    assert_eq!(ok(&out), "reached\n");
    let recorded = std::fs::read_to_string(&kh).unwrap();
    let key_a = key_fields(&two.a.host_public_key());
    assert_eq!(recorded, format!("{A} {key_a}\ndb-1 {key_a}\n"));
    assert!(
        openssh_knows("db-1", &kh),
        "OpenSSH finds the name's entry: {recorded}"
    );
    // `ssh db-1` through the ProxyCommand, strict, trusts what sallyport recorded.
    let agent = Agent::start(two.dir.path());
    let out = run(
        two.openssh(&first, "cache-1", &agent, "db-1")
            .arg("echo via-openssh"),
        None,
        LIMIT,
    );
    assert_eq!(ok(&out), "via-openssh\n");
    drop(first);

    // The tag moves to B, whose host key is another.
    let second = two.world("old-db", "db-1");
    let secret = two.dir.path().join("secret.txt");
    std::fs::write(&secret, "do not hand over\n").unwrap();
    let remote = two.dir.path().join("landed.txt");
    let dest = format!("root@db-1:{}", remote.display());
    let out = run(
        two.sallyport(&second, "cache-2", &["scp", "--known-hosts", kh_arg])
            .arg(&secret)
            .arg(&dest),
        None,
        LIMIT,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(15), "{err}");
    assert!(err.contains("db-1") && err.contains(B), "names both: {err}");
    assert!(!remote.exists(), "nothing was copied");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        recorded,
        "nothing recorded"
    );

    // OpenSSH, keyed on %h, refuses the moved name the same way.
    let out = run(
        two.openssh(&second, "cache-2", &agent, "db-1")
            .arg("echo reached"),
        None,
        LIMIT,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains("Host key verification failed"), "{err}");
    assert!(out.stdout.is_empty());

    // By its ID, B is simply a new host.
    let out = run(
        two.sallyport(&second, "cache-2", &["ssh", &format!("root@{B}")])
            .args(["--known-hosts", kh_arg, "echo b"]),
        None,
        LIMIT,
    );
    assert_eq!(ok(&out), "b\n");
}

/// A Name tag holding a terminal escape is listed as text: the escape shows, the terminal
/// never receives it.
#[test]
fn ls_shows_a_name_tag_with_an_escape_sequence_as_text() {
    let fx = Fixture::with_config(|c| {
        c.instances[0]
            .tags
            .insert("Name".to_owned(), "\x1b]0;pwned\x07".to_owned());
        c.instances[0].computer_name = Some("host\u{9b}2J\u{202e}.corp".to_owned());
    });
    let out = run(&mut fx.sallyport(&["ls"]), None, LIMIT);
    let listed = ok(&out);
    assert!(
        !listed.contains(['\x1b', '\x07', '\u{9b}', '\u{202e}']),
        "{listed:?}"
    );
    assert!(listed.contains("\\x1b]0;pwned\\x07"), "{listed}");
    assert!(listed.contains("host\\u{9b}2J\\u{202e}.corp"), "{listed}");
    let out = run(&mut fx.sallyport(&["ls", "--json"]), None, LIMIT);
    let json = ok(&out);
    assert!(
        !json.contains(['\x1b', '\x07', '\u{9b}', '\u{202e}']),
        "{json:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["name"], "\x1b]0;pwned\x07", "the value itself is kept");
}

/// `-D` beyond loopback: one line, exit 2, and not a single AWS call.
#[test]
fn socks_beyond_loopback_is_refused_before_any_aws_call() {
    let fx = Fixture::new();
    for bind in ["0.0.0.0:0", "*:0", "[::]:0"] {
        let out = run(
            &mut fx.sallyport(&["forward", &fx.instance, "-D", bind]),
            None,
            LIMIT,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bind}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains("--allow-remote-socks"), "{err}");
    }
    assert!(fx.testbed.calls().is_empty(), "{:?}", fx.testbed.calls());
}

/// Remote file names holding an escape sequence or a bidi override appear escaped in
/// scp's errors, at -j 1 and at -j 4.
#[test]
fn scp_shows_hostile_remote_file_names_as_text() {
    let fx = Fixture::instance_connect();
    let kh = fx.path("known_hosts");
    let to = fx.path("to");
    for (name, shown) in [
        ("invoice\u{202e}fdp.exe", "invoice\\u{202e}fdp.exe"),
        ("d\x1b]0;pwned\x07", "d\\x1b]0;pwned\\x07"),
    ] {
        let dir = fx.path(name);
        std::fs::create_dir(&dir).unwrap();
        for lanes in ["1", "4"] {
            let mut cmd = fx.sallyport(&["scp", "-j", lanes, "--known-hosts"]);
            cmd.arg(&kh)
                .arg(format!("root@{}:{}", fx.instance, dir.display()))
                .arg(&to);
            let out = run(&mut cmd, None, LIMIT);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(17), "-j {lanes}: {err}");
            assert!(
                !err.contains(['\x1b', '\x07', '\u{202e}']),
                "-j {lanes}: {err:?}"
            );
            assert!(err.contains(shown), "-j {lanes}: {err}");
        }
    }
}
