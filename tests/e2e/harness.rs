//! One fixture per test: its own temp dir, sshd, and testbed. Every child process runs
//! under a deadline and is killed if it overruns; everything is torn down on drop.
//!
//! The testbed serves HTTPS/WSS with its own CA by default ([`TLS_BY_DEFAULT`]; sallyport
//! trusts it through `AWS_CA_BUNDLE`, which [`hermetic_env`] passes on) and refuses
//! unsigned data channels, as the real service may. A test that wants plain `http`/`ws`
//! sets `c.tls = false` in its configuration closure ([`Fixture::plain`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sallyport_testbed::instance::sshd::{InstanceConnect, SshdOptions, TempDir, TestSshd};
use sallyport_testbed::{InstanceConfig, Testbed, TestbedConfig};

pub const SALLYPORT: &str = env!("CARGO_BIN_EXE_sallyport");

/// Whether fixtures serve TLS unless a test says otherwise.
pub const TLS_BY_DEFAULT: bool = true;

/// The testbed's binary, for sshd's AuthorizedKeysCommand: built next to ours by
/// `cargo test --workspace` (the testbed's own integration tests need it).
pub fn testbed_bin() -> PathBuf {
    let path = Path::new(SALLYPORT).with_file_name("sallyport-testbed");
    assert!(
        path.exists(),
        "{} is missing: run the tests with --workspace, or `cargo build -p sallyport-testbed`",
        path.display()
    );
    path
}

pub struct Fixture {
    // Field order is drop order: testbed and runtime before sshd, temp dir last.
    pub testbed: Testbed,
    /// Serves the testbed while the test thread blocks on child processes.
    _runtime: tokio::runtime::Runtime,
    pub sshd: TestSshd,
    pub instance: String,
    dir: TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_config(|_| {})
    }

    /// A fixture whose testbed configuration `adjust` may change (faults, delay, agent,
    /// `tls`).
    pub fn with_config(adjust: impl FnOnce(&mut TestbedConfig)) -> Fixture {
        Fixture::build(false, adjust)
    }

    /// A fixture whose testbed serves plain `http://` and `ws://` (no TLS).
    pub fn plain() -> Fixture {
        Fixture::with_config(|c| c.tls = false)
    }

    /// A fixture whose sshd has no authorized_keys at all: it accepts only keys pushed
    /// through the testbed's Instance Connect API in the last 60 s, via
    /// `sallyport-testbed authorized-keys` as its AuthorizedKeysCommand.
    pub fn instance_connect() -> Fixture {
        Fixture::build(true, |_| {})
    }

    /// [`Fixture::instance_connect`] with a testbed configuration `adjust` may change.
    pub fn instance_connect_with(adjust: impl FnOnce(&mut TestbedConfig)) -> Fixture {
        Fixture::build(true, adjust)
    }

    /// [`Fixture::instance_connect`] with sshd options `adjust` may change.
    pub fn instance_connect_sshd(adjust: impl FnOnce(&mut SshdOptions)) -> Fixture {
        Fixture::build_with(true, adjust, |_| {})
    }

    fn build(instance_connect: bool, adjust: impl FnOnce(&mut TestbedConfig)) -> Fixture {
        Fixture::build_with(instance_connect, |_| {}, adjust)
    }

    fn build_with(
        instance_connect: bool,
        adjust_sshd: impl FnOnce(&mut SshdOptions),
        adjust: impl FnOnce(&mut TestbedConfig),
    ) -> Fixture {
        let dir = TempDir::new("sallyport-e2e").expect("temp dir");
        let eic_state = dir.path().join("eic-state");
        let mut options = SshdOptions::default();
        if instance_connect {
            options.instance_connect = Some(InstanceConnect::new(testbed_bin(), &eic_state));
        }
        adjust_sshd(&mut options);
        let sshd = TestSshd::start_with(dir.path(), &options).expect("start sshd");
        for sub in ["home", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("home and tmp dirs");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = TestbedConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![InstanceConfig::ssh_shortcut(sshd.addr)],
        );
        config.eic_state_dir = Some(eic_state);
        config.tls = TLS_BY_DEFAULT;
        adjust(&mut config);
        let testbed = runtime
            .block_on(Testbed::start(config))
            .expect("start testbed");
        let instance = testbed.instance_ids[0].clone();
        Fixture {
            testbed,
            _runtime: runtime,
            sshd,
            instance,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Environment for sallyport: the testbed's endpoint and keys, nothing from the
    /// developer's own AWS setup.
    pub fn aws_env(&self, cmd: &mut Command) {
        hermetic_env(cmd, &self.testbed, self.dir.path());
    }

    fn client(&self, program: &str) -> Command {
        self.client_with(program, "")
    }

    /// An OpenSSH client whose ProxyCommand is `sallyport proxy %h --port %p EXTRA`, plus
    /// `$SALLYPORT_E2E_PROXY_ARGS` when set (e.g. `-vv` to see a failing test's story).
    fn client_with(&self, program: &str, extra: &str) -> Command {
        let mut cmd = Command::new(program);
        let debug = std::env::var("SALLYPORT_E2E_PROXY_ARGS").unwrap_or_default();
        cmd.args(self.sshd.client_options()).arg("-o").arg(format!(
            "ProxyCommand={SALLYPORT} proxy %h --port %p {extra} {debug}"
        ));
        self.aws_env(&mut cmd);
        cmd
    }

    /// `ssh` to the instance with extra `sallyport proxy` options.
    pub fn ssh_with(&self, proxy_options: &str) -> Command {
        let mut cmd = self.client_with("ssh", proxy_options);
        cmd.arg(format!("root@{}", self.instance));
        cmd
    }

    /// `ssh` to the testbed instance through sallyport; append the remote command.
    pub fn ssh(&self) -> Command {
        self.ssh_to(&self.instance)
    }

    /// `ssh` to any instance ID through sallyport.
    pub fn ssh_to(&self, instance: &str) -> Command {
        let mut cmd = self.client("ssh");
        cmd.arg(format!("root@{instance}"));
        cmd
    }

    /// `scp` through sallyport (`-O` selects the legacy protocol).
    pub fn scp(&self, legacy: bool) -> Command {
        let mut cmd = self.client("scp");
        if legacy {
            cmd.arg("-O");
        }
        cmd
    }

    pub fn sftp(&self) -> Command {
        self.client("sftp")
    }

    /// `sallyport proxy` itself, with the testbed's environment.
    pub fn proxy(&self, target: &str) -> Command {
        let mut cmd = Command::new(SALLYPORT);
        cmd.args(["proxy", target, "--port", "22"]);
        self.aws_env(&mut cmd);
        cmd
    }

    /// `sallyport ARGS` with the testbed's environment, HOME and TMPDIR in the fixture's
    /// directory (`home()`, `tmp()`), and no ssh-agent.
    pub fn sallyport(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SALLYPORT);
        cmd.args(args);
        self.aws_env(&mut cmd);
        cmd.env("HOME", self.home())
            .env("TMPDIR", self.tmp())
            .env_remove("SSH_AUTH_SOCK");
        cmd
    }

    /// The HOME sallyport commands run with (empty at the start).
    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// The TMPDIR sallyport commands run with (empty at the start).
    pub fn tmp(&self) -> PathBuf {
        self.path("tmp")
    }

    pub fn remote(&self, name: &str) -> String {
        format!("root@{}:{}", self.instance, self.path(name).display())
    }
}

/// Points `cmd` at `testbed` and keeps it away from the developer's own AWS, sallyport
/// and XDG setup: config and cache live in `dir`.
pub fn hermetic_env(cmd: &mut Command, testbed: &Testbed, dir: &Path) {
    for var in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT",
        "AWS_ENDPOINT_URL_SSMMESSAGES",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "SALLYPORT_CONFIG",
        "RUST_LOG",
        // Set again below when the testbed serves TLS.
        "AWS_CA_BUNDLE",
        // Loopback is not special for proxies (like curl): a developer's proxy would
        // otherwise carry the test's traffic; proxy tests set their own.
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in testbed.env() {
        if k.starts_with("AWS_") {
            cmd.env(k, v);
        }
    }
    // Empty files, not absent ones: the SDK warns about an absent overridden path.
    for name in ["aws-config-empty", "aws-credentials-empty"] {
        let _ = std::fs::write(dir.join(name), "");
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("aws-config-empty"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("aws-credentials-empty"),
        )
        // The SDK's own retries off: what is retried here is retried by sallyport.
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .env("XDG_CACHE_HOME", dir.join("xdg-cache"));
}

/// Waits up to `limit` for `child` to exit (looking every 10 ms); `None` while it still
/// runs. The one wait-with-a-deadline loop of these tests: callers decide what an
/// overrun means (kill it, say what was seen).
pub fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` with `stdin` bytes, killing it if it overruns `limit`.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&data);
        });
    }
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let Some(status) = exit_within(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = err_t.join().unwrap_or_default();
        panic!(
            "{:?} did not finish within {limit:?}; stderr: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Asserts success, showing stderr otherwise.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}; stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("{:x}", Sha256::digest(bytes))
}

/// The peak resident set size of process `pid`, in KiB (VmHWM).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
