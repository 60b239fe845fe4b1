//! The hostile instance tells each lie it is asked to, as OpenSSH's own `sftp` and
//! `ssh-keyscan` see it: without this, a client test against it could pass because the
//! server was honest. (The endless listing is proved in `hostile_sftp.rs`'s unit tests:
//! OpenSSH's `ls` reads a whole directory before it prints, so it would never show it.)
//! Needs openssh-client (else skipped; under `CI=true` it fails).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sallyport_testbed::instance::hostile::HostileServer;
use sallyport_testbed::instance::hostile::names::{SHORT_EOF, content};
use sallyport_testbed::instance::sshd::TempDir;
use sallyport_testbed::world::hostile_ssh::HostileSsh;

fn openssh_missing() -> bool {
    let found = Command::new("sftp").arg("-V").output().is_ok()
        && Command::new("ssh-keygen").arg("-?").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but sftp/ssh-keygen are missing (install openssh-client)"
        );
        eprintln!("skipping: openssh-client (sftp, ssh-keygen) is not installed");
    }
    !found
}

struct Fx {
    server: HostileServer,
    dir: TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Fx {
    fn new(lies: &[HostileSsh]) -> Fx {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime
            .block_on(HostileServer::start(lies.to_vec()))
            .unwrap();
        let dir = TempDir::new("sallyport-hostile-server").unwrap();
        let key = dir.path().join("id");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        Fx {
            server,
            dir,
            _runtime: runtime,
        }
    }

    /// OpenSSH `sftp -b -` with these commands, hermetic, any host key.
    fn sftp(&self) -> Command {
        let mut cmd = Command::new("sftp");
        cmd.args(["-b", "-", "-F", "/dev/null", "-i"])
            .arg(self.dir.path().join("id"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-P",
            ])
            .arg(self.server.addr.port().to_string())
            .arg("root@127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn batch(&self, commands: &str) -> Output {
        let mut child = self.sftp().spawn().unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(commands.as_bytes())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "sftp did not end within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    /// The host key the server presents on a new connection.
    fn host_key(&self) -> String {
        let out = Command::new("ssh-keyscan")
            .args(["-T", "10", "-t", "ed25519", "-p"])
            .arg(self.server.addr.port().to_string())
            .arg("127.0.0.1")
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("ssh-ed25519"), "no key scanned: {text}");
        text
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn evil_names_reach_the_client() {
    if openssh_missing() {
        return;
    }
    let fx = Fx::new(&[HostileSsh::EvilNames]);
    let out = fx.batch("ls -1 /d\n");
    let err = text(&out.stderr);
    for name in ["../hostile-up", "/tmp/sallyport-hostile-absolute", "a/b"] {
        assert!(
            err.contains(&format!("suspect path \"{name}\"")),
            "{name}: {err}"
        );
    }
}

#[test]
fn huge_sizes_short_reads_and_loops_are_claimed() {
    if openssh_missing() {
        return;
    }
    let fx = Fx::new(&[HostileSsh::HugeSize]);
    let out = fx.batch("ls -l /d /f\n");
    assert!(
        text(&out.stdout).contains("18446744073709551615"),
        "{out:?}"
    );

    let fx = Fx::new(&[HostileSsh::ShortRead]);
    let local = fx.dir.path().join("short");
    let out = fx.batch(&format!("ls -l /f\nget /f {}\n", local.display()));
    assert!(text(&out.stdout).contains(" 1048576 "), "{out:?}");
    let got = std::fs::read(&local).unwrap();
    assert_eq!(
        got,
        content(0, SHORT_EOF as usize),
        "data ends at EOF early"
    );

    let fx = Fx::new(&[HostileSsh::SymlinkLoop]);
    let out = fx.batch("ls -l /d/loop/loop/loop\n");
    assert!(text(&out.stdout).contains("loop"), "{out:?}");
}

#[test]
fn writes_are_acknowledged_and_closing_fails_under_lying_status() {
    if openssh_missing() {
        return;
    }
    let fx = Fx::new(&[HostileSsh::LyingStatus]);
    let src = fx.dir.path().join("src");
    std::fs::write(&src, vec![7u8; 100_000]).unwrap();
    let out = fx.batch(&format!("put {} /up/x\n", src.display()));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("close remote"), "{out:?}");
}

#[test]
fn a_new_host_key_comes_on_each_connection() {
    if openssh_missing() {
        return;
    }
    let fx = Fx::new(&[HostileSsh::NewHostKey]);
    assert_ne!(fx.host_key(), fx.host_key());
    let fx = Fx::new(&[HostileSsh::HugeSize]);
    assert_eq!(fx.host_key(), fx.host_key(), "one key without new-host-key");
}
