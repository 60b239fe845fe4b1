//! `sallyport-testbed demo`: sallyport's main job, end to end, with no AWS account.
//!
//! Starts a throw-away sshd on 127.0.0.1 that has no authorized_keys at all (it takes only
//! keys pushed through the testbed's EC2 Instance Connect API, as an instance with the EIC
//! package does) and the testbed in front of it, then runs real `ssh` and `scp` with
//! `ProxyCommand sallyport proxy %h --port %p --user %r --push-key -i KEY`, and
//! sallyport's own `ssh` and `scp` (in-memory key), and says what happened.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::instance::sshd::{InstanceConnect, SshdOptions, TempDir, TestSshd};
use crate::server::Testbed;
use crate::world::config::{InstanceConfig, TestbedConfig};

/// Finds the `sallyport` binary: the given path, else next to this executable.
pub fn find_sallyport(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name("sallyport");
    if sibling.exists() {
        return Ok(sibling);
    }
    bail!(
        "no sallyport binary next to {}: build it first (cargo build --release --workspace) or pass --sallyport PATH",
        me.display()
    )
}

/// Runs the demo: starts an sshd and the testbed, then real OpenSSH and sallyport's own
/// client through it, printing what happened; an error says which step failed.
pub async fn run(sallyport: &Path, size_mb: usize) -> anyhow::Result<()> {
    let dir = TempDir::new("sallyport-demo")?;
    let (sshd, testbed) = start(dir.path()).await?;
    let instance = testbed.instance_ids[0].clone();
    introduce(sallyport, &sshd, &testbed, &instance);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    let demo = Demo {
        sallyport,
        dir: dir.path(),
        home: &home,
        env: testbed.env(),
        sshd: &sshd,
        dest: format!("root@{instance}"),
    };
    demo.openssh_command()?;
    let (up_dst, digest) = demo.openssh_copies(size_mb)?;
    demo.own_command()?;
    demo.own_copy(&up_dst, &digest, size_mb)?;
    conclude();
    Ok(())
}

/// A throw-away sshd that takes only keys pushed through Instance Connect, and the
/// testbed in front of it (HTTPS/WSS with its own CA, signed data channels only).
async fn start(dir: &Path) -> anyhow::Result<(TestSshd, Testbed)> {
    let eic_state = dir.join("eic-state");
    let options = SshdOptions {
        instance_connect: Some(InstanceConnect::new(std::env::current_exe()?, &eic_state)),
        ..SshdOptions::default()
    };
    let sshd = TestSshd::start_with(dir, &options).context("starting a throw-away sshd")?;
    let mut config = TestbedConfig::new(
        "127.0.0.1:0".parse()?,
        vec![InstanceConfig::ssh_shortcut(sshd.addr)],
    );
    config.eic_state_dir = Some(eic_state);
    // HTTPS/WSS with the testbed's own CA (AWS_CA_BUNDLE below), signed data channels only.
    config.tls = true;
    let testbed = Testbed::start(config).await?;
    Ok((sshd, testbed))
}

fn introduce(sallyport: &Path, sshd: &TestSshd, testbed: &Testbed, instance: &str) {
    println!("sallyport demo: no AWS account involved, everything on 127.0.0.1");
    println!(
        "  testbed (SSM API + Session Manager relay + agent): {}",
        testbed.endpoint
    );
    println!(
        "  instance {instance} plays an OpenSSH server at {} with no authorized_keys: it takes",
        sshd.addr
    );
    println!("  only keys pushed through EC2 Instance Connect in the last 60 s");
    if let Some(ca) = &testbed.ca_bundle {
        println!(
            "  TLS with a CA made at start: AWS_CA_BUNDLE={}",
            ca.display()
        );
    }
    println!(
        "  ssh_config: ProxyCommand {} proxy %h --port %p --user %r --push-key -i KEY\n",
        sallyport.display()
    );
}

fn conclude() {
    println!(
        "\nDownloads run at the agent's pace (1 KiB per message and a short sleep after each), as the official agent code runs on an idle small machine."
    );
    println!("Everything worked. To use sallyport with AWS, put this in ~/.ssh/config:\n");
    println!("  Host i-* mi-*\n      ProxyCommand sallyport proxy %h --port %p");
    println!(
        "\nor, to log in with a key pushed through EC2 Instance Connect (nothing on the instance):\n"
    );
    println!(
        "  Host i-*\n      ProxyCommand sallyport proxy %h --port %p --user %r --push-key --ephemeral"
    );
}

fn sha256(p: &Path) -> anyhow::Result<String> {
    Ok(format!("{:x}", Sha256::digest(std::fs::read(p)?)))
}

/// What each step of the demo runs with.
struct Demo<'a> {
    sallyport: &'a Path,
    /// The demo's temporary directory.
    dir: &'a Path,
    home: &'a Path,
    /// The testbed's environment (only its `AWS_` variables are passed on).
    env: Vec<(String, String)>,
    sshd: &'a TestSshd,
    /// `root@INSTANCE`.
    dest: String,
}

impl Demo<'_> {
    /// Points `cmd` at the testbed, and at nothing else the user has configured.
    fn aws_env(&self, cmd: &mut Command) {
        for (k, v) in &self.env {
            if k.starts_with("AWS_") {
                cmd.env(k, v);
            }
        }
        for name in ["aws-config", "aws-credentials"] {
            let _ = std::fs::write(self.dir.join(name), "");
        }
        cmd.env("AWS_CONFIG_FILE", self.dir.join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.join("aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL_SSM")
            .env_remove("AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT")
            .env_remove("SSH_AUTH_SOCK")
            .env("HOME", self.home);
    }

    /// OpenSSH's `program` (ssh, scp) with sallyport as its ProxyCommand.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(self.sshd.client_options()).arg("-o").arg(format!(
            "ProxyCommand={} proxy %h --port %p --user %r --push-key -i {}",
            self.sallyport.display(),
            self.sshd.user_key.display()
        ));
        self.aws_env(&mut cmd);
        cmd
    }

    /// sallyport itself with `args`.
    fn own(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.sallyport);
        cmd.args(args);
        self.aws_env(&mut cmd);
        cmd
    }

    fn openssh_command(&self) -> anyhow::Result<()> {
        let dest = &self.dest;
        let t = Instant::now();
        let out = tokio::task::block_in_place(|| {
            self.client("ssh")
                .arg(dest)
                .arg("echo \"hello from $(hostname) through Session Manager\"; uname -sr")
                .stdin(Stdio::null())
                .output()
        })?;
        if !out.status.success() {
            bail!("ssh failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        println!(
            "$ ssh {dest} 'echo hello …; uname -sr'   ({:.2} s)",
            t.elapsed().as_secs_f64()
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
        Ok(())
    }

    /// `size_mb` random bytes up and back down with OpenSSH's scp; returns the file on
    /// the instance and its sha256.
    fn openssh_copies(&self, size_mb: usize) -> anyhow::Result<(PathBuf, String)> {
        let (dest, size) = (&self.dest, size_mb * 1_000_000);
        let src = self.dir.join("demo-upload.bin");
        let mut data = vec![0u8; size];
        rand::fill(&mut data[..]);
        std::fs::write(&src, &data)?;
        let up_dst = self.dir.join("on-the-instance.bin");
        let down_dst = self.dir.join("downloaded.bin");
        for (label, from, to) in [
            (
                "upload",
                src.display().to_string(),
                format!("{dest}:{}", up_dst.display()),
            ),
            (
                "download",
                format!("{dest}:{}", up_dst.display()),
                down_dst.display().to_string(),
            ),
        ] {
            let t = Instant::now();
            let out = tokio::task::block_in_place(|| {
                self.client("scp")
                    .arg(&from)
                    .arg(&to)
                    .stdin(Stdio::null())
                    .output()
            })?;
            if !out.status.success() {
                bail!(
                    "scp {label} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "$ scp ({label}, {size_mb} MB)   {secs:.2} s, {:.2} MB/s",
                size as f64 / 1e6 / secs
            );
        }
        let (a, b, c) = (sha256(&src)?, sha256(&up_dst)?, sha256(&down_dst)?);
        if a != b || a != c {
            bail!("sha256 mismatch: sent {a}, instance has {b}, got back {c}");
        }
        println!("  sha256 identical on all three copies: {}", &a[..16]);
        Ok((up_dst, a))
    }

    fn own_command(&self) -> anyhow::Result<()> {
        println!(
            "\nNow without an ssh client or any key file: sallyport's own SSH client, with an"
        );
        println!("Ed25519 key made in memory and pushed through Instance Connect:");
        let dest = &self.dest;
        let t = Instant::now();
        let out = tokio::task::block_in_place(|| {
            self.own(&["ssh", dest, "echo \"hello again from $(hostname)\"; exit 3"])
                .stdin(Stdio::null())
                .output()
        })?;
        if out.status.code() != Some(3) {
            bail!(
                "sallyport ssh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!(
            "$ sallyport ssh {dest} 'echo hello again …; exit 3'   ({:.2} s, exit status {})",
            t.elapsed().as_secs_f64(),
            out.status.code().unwrap_or(-1)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            println!("  (stderr) {line}");
        }
        Ok(())
    }

    /// Downloads `up_dst` with sallyport's own scp and checks it against `digest`.
    fn own_copy(&self, up_dst: &Path, digest: &str, size_mb: usize) -> anyhow::Result<()> {
        let (dest, size) = (&self.dest, size_mb * 1_000_000);
        let own_dst = self.dir.join("own-scp.bin");
        let remote_src = format!("{dest}:{}", up_dst.display());
        let t = Instant::now();
        let out = tokio::task::block_in_place(|| {
            self.own(&["scp", &remote_src, &own_dst.display().to_string()])
                .stdin(Stdio::null())
                .output()
        })?;
        if !out.status.success() {
            bail!(
                "sallyport scp failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let secs = t.elapsed().as_secs_f64();
        if sha256(&own_dst)? != digest {
            bail!("sha256 mismatch after sallyport scp");
        }
        println!(
            "$ sallyport scp {dest}:…/on-the-instance.bin .   {secs:.2} s, {:.2} MB/s, sha256 identical",
            size as f64 / 1e6 / secs
        );
        Ok(())
    }
}
