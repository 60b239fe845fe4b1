//! A throw-away OpenSSH server on 127.0.0.1 with its own host key, user key and config,
//! for tests, benchmarks and the demo. It needs root (sshd privilege separation) and the
//! `openssh-server` package; `TestSshd::start` says so when either is missing.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A directory removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<TempDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestSshd {
    pub addr: SocketAddr,
    /// A fresh client key pair (`user_key` and `user_key.pub`). With the default options its
    /// public half is authorized for every user; with Instance Connect only, nothing is
    /// authorized until the public half is pushed (`SendSSHPublicKey`).
    pub user_key: PathBuf,
    /// The host private key sshd uses (pass it as [`SshdOptions::host_key`] to start another
    /// sshd with the same identity).
    pub host_key: PathBuf,
    host_public_key: String,
    child: Child,
}

/// How [`TestSshd::start_with`] sets sshd up. The default is what [`TestSshd::start`] does.
#[derive(Clone, Debug, Default)]
pub struct SshdOptions {
    /// None: keys come from `<dir>/authorized_keys`, which holds `user_key.pub`.
    /// Some: EC2 Instance Connect only (`AuthorizedKeysFile none`, keys from the
    /// testbed's key store through `AuthorizedKeysCommand`).
    pub instance_connect: Option<InstanceConnect>,
    /// Use this host private key (its `.pub` beside it, or derived with `ssh-keygen -y`)
    /// instead of generating one. It must be readable by its owner only, as sshd demands.
    pub host_key: Option<PathBuf>,
    /// Leave out `Subsystem sftp`: a server with SFTP turned off (OpenSSH's sshd then
    /// refuses the subsystem request and keeps the channel open).
    pub no_sftp: bool,
    /// `PermitTTY no`: the server refuses every pty request (the session goes on without
    /// one).
    pub no_tty: bool,
}

/// The instance side of EC2 Instance Connect, as the EIC package installs it: sshd asks
/// `<testbed_bin> authorized-keys --state <state_dir> … %u %f` for each key offered.
#[derive(Clone, Debug)]
pub struct InstanceConnect {
    /// The `sallyport-testbed` executable (in tests: `env!("CARGO_BIN_EXE_sallyport-testbed")`).
    pub testbed_bin: PathBuf,
    /// The key store: `Testbed::eic_state_dir()`, or `serve --eic-state DIR`.
    pub state_dir: PathBuf,
    /// Serve only keys pushed to this instance ID (as the real package checks its own ID).
    pub instance_id: Option<String>,
    /// The instance's clock offset from this machine's, in seconds.
    pub clock_offset_secs: i64,
}

impl InstanceConnect {
    /// Keys pushed to any instance, on this machine's clock.
    pub fn new(testbed_bin: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        InstanceConnect {
            testbed_bin: testbed_bin.into(),
            state_dir: state_dir.into(),
            instance_id: None,
            clock_offset_secs: 0,
        }
    }
}

/// `text` in single quotes for /bin/sh.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The script sshd runs (via /bin/sh, so sshd's ownership checks apply to /bin/sh only,
/// not to a temp dir).
fn eic_script(eic: &InstanceConnect) -> String {
    let mut cmd = format!(
        "exec {} authorized-keys --state {}",
        sh_quote(&eic.testbed_bin.display().to_string()),
        sh_quote(&eic.state_dir.display().to_string())
    );
    if let Some(id) = &eic.instance_id {
        cmd.push_str(&format!(" --instance {}", sh_quote(id)));
    }
    cmd.push_str(&format!(
        " --clock-offset={} -- \"$@\"\n",
        eic.clock_offset_secs
    ));
    format!("#!/bin/sh\n# EC2 Instance Connect stand-in (sallyport-testbed)\n{cmd}")
}

fn sshd_path() -> anyhow::Result<PathBuf> {
    for p in ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("no sshd found: install the openssh-server package")
}

fn keygen(path: &Path) -> anyhow::Result<()> {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "sallyport-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("running ssh-keygen (install openssh-client)")?;
    anyhow::ensure!(status.success(), "ssh-keygen failed");
    Ok(())
}

/// The public half of a private key file: `<key>.pub`, else `ssh-keygen -y`.
fn public_key_of(private: &Path) -> anyhow::Result<String> {
    let mut pub_path = private.as_os_str().to_owned();
    pub_path.push(".pub");
    if let Ok(text) = std::fs::read_to_string(&pub_path) {
        return Ok(text.trim().to_owned());
    }
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(private)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen -y")?;
    anyhow::ensure!(
        out.status.success(),
        "ssh-keygen -y -f {} failed: {}",
        private.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A path sshd's config can take as one word (sshd splits `AuthorizedKeysCommand` on spaces).
fn config_word(path: &Path) -> anyhow::Result<String> {
    let s = path.display().to_string();
    anyhow::ensure!(
        !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\''),
        "path {s:?} cannot go into sshd_config unquoted"
    );
    Ok(s)
}

impl TestSshd {
    /// Starts sshd in `dir` on a free loopback port and waits until it answers; `user_key`
    /// is authorized for every user.
    pub fn start(dir: &Path) -> anyhow::Result<TestSshd> {
        TestSshd::start_with(dir, &SshdOptions::default())
    }

    /// [`TestSshd::start`] with other authorization or a given host key.
    pub fn start_with(dir: &Path, options: &SshdOptions) -> anyhow::Result<TestSshd> {
        let sshd = sshd_path()?;
        // Privilege separation directory; exists on a normal install, not in containers.
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = match &options.host_key {
            Some(path) => path.clone(),
            None => {
                let path = dir.join("ssh_host_ed25519_key");
                keygen(&path)?;
                path
            }
        };
        let host_public_key = public_key_of(&host_key)?;
        let user_key = dir.join("id_ed25519");
        keygen(&user_key)?;
        let auth = match &options.instance_connect {
            None => {
                std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys"))?;
                format!("AuthorizedKeysFile {}/authorized_keys\n", dir.display())
            }
            Some(eic) => {
                let script = dir.join("eic-keys.sh");
                std::fs::write(&script, eic_script(eic))?;
                format!(
                    "AuthorizedKeysFile none\n\
                     AuthorizedKeysCommand /bin/sh {} %u %f\n\
                     AuthorizedKeysCommandUser root\n",
                    config_word(&script)?
                )
            }
        };
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {hk}\n\
                 {auth}UsePAM no\nStrictModes no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PidFile none\n{sftp}{tty}MaxStartups 64:30:128\n\
                 MaxSessions 64\nLogLevel ERROR\n",
                hk = host_key.display(),
                tty = if options.no_tty { "PermitTTY no\n" } else { "" },
                sftp = if options.no_sftp {
                    ""
                } else {
                    "Subsystem sftp internal-sftp\n"
                },
            ),
        )?;
        let log = std::fs::File::create(dir.join("sshd.log"))?;
        let child = Command::new(&sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", sshd.display()))?;
        let mut me = TestSshd {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            user_key,
            host_key,
            host_public_key,
            child,
        };
        me.wait_ready(dir)?;
        Ok(me)
    }

    fn wait_ready(&mut self, dir: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
                bail!("sshd exited ({status}) before listening (it must run as root): {log}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("sshd did not listen on {} within 10 s", self.addr)
    }

    /// The host public key line (`ssh-ed25519 AAAA… comment`), e.g. for a known_hosts entry
    /// `[127.0.0.1]:PORT <type> <base64>`.
    pub fn host_public_key(&self) -> String {
        self.host_public_key.clone()
    }

    /// The public half of `user_key` (one line, no newline): what a test pushes with
    /// `SendSSHPublicKey`.
    pub fn user_public_key(&self) -> anyhow::Result<String> {
        public_key_of(&self.user_key)
    }

    /// ssh/scp/sftp options that make a client hermetic: no user config, this key only,
    /// no known_hosts, never prompt.
    pub fn client_options(&self) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-i",
            &self.user_key.display().to_string(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
