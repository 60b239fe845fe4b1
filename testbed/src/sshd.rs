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
    /// Private key whose public half is authorized for every user.
    pub user_key: PathBuf,
    child: Child,
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

impl TestSshd {
    /// Starts sshd in `dir` on a free loopback port and waits until it answers.
    pub fn start(dir: &Path) -> anyhow::Result<TestSshd> {
        let sshd = sshd_path()?;
        // Privilege separation directory; exists on a normal install, not in containers.
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = dir.join("ssh_host_ed25519_key");
        let user_key = dir.join("id_ed25519");
        keygen(&host_key)?;
        keygen(&user_key)?;
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys"))?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {hk}\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nUsePAM no\nStrictModes no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PidFile none\nSubsystem sftp internal-sftp\nMaxStartups 64:30:128\n\
                 MaxSessions 64\nLogLevel ERROR\n",
                hk = host_key.display(),
                dir = dir.display(),
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
