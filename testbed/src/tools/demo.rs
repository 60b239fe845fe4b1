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

pub async fn run(sallyport: &Path, size_mb: usize) -> anyhow::Result<()> {
    let dir = TempDir::new("sallyport-demo")?;
    let eic_state = dir.path().join("eic-state");
    let options = SshdOptions {
        instance_connect: Some(InstanceConnect::new(std::env::current_exe()?, &eic_state)),
        ..SshdOptions::default()
    };
    let sshd = TestSshd::start_with(dir.path(), &options).context("starting a throw-away sshd")?;
    let mut config = TestbedConfig::new(
        "127.0.0.1:0".parse()?,
        vec![InstanceConfig::ssh_shortcut(sshd.addr)],
    );
    config.eic_state_dir = Some(eic_state);
    // HTTPS/WSS with the testbed's own CA (AWS_CA_BUNDLE below), signed data channels only.
    config.tls = true;
    let testbed = Testbed::start(config).await?;
    let instance = testbed.instance_ids[0].clone();
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

    let dir_path = dir.path().to_owned();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    let aws_env = |cmd: &mut Command| {
        for (k, v) in testbed.env() {
            if k.starts_with("AWS_") {
                cmd.env(k, v);
            }
        }
        for name in ["aws-config", "aws-credentials"] {
            let _ = std::fs::write(dir_path.join(name), "");
        }
        cmd.env("AWS_CONFIG_FILE", dir_path.join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir_path.join("aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL_SSM")
            .env_remove("AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT")
            .env_remove("SSH_AUTH_SOCK")
            .env("HOME", &home);
    };
    let client = |program: &str| {
        let mut cmd = Command::new(program);
        cmd.args(sshd.client_options()).arg("-o").arg(format!(
            "ProxyCommand={} proxy %h --port %p --user %r --push-key -i {}",
            sallyport.display(),
            sshd.user_key.display()
        ));
        aws_env(&mut cmd);
        cmd
    };
    let own = |args: &[&str]| {
        let mut cmd = Command::new(sallyport);
        cmd.args(args);
        aws_env(&mut cmd);
        cmd
    };

    let t = Instant::now();
    let out = tokio::task::block_in_place(|| {
        client("ssh")
            .arg(format!("root@{instance}"))
            .arg("echo \"hello from $(hostname) through Session Manager\"; uname -sr")
            .stdin(Stdio::null())
            .output()
    })?;
    if !out.status.success() {
        bail!("ssh failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    println!(
        "$ ssh root@{instance} 'echo hello …; uname -sr'   ({:.2} s)",
        t.elapsed().as_secs_f64()
    );
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  {line}");
    }

    let size = size_mb * 1_000_000;
    let src = dir.path().join("demo-upload.bin");
    let mut data = vec![0u8; size];
    rand::fill(&mut data[..]);
    std::fs::write(&src, &data)?;
    let up_dst = dir.path().join("on-the-instance.bin");
    let down_dst = dir.path().join("downloaded.bin");
    for (label, from, to) in [
        (
            "upload",
            src.display().to_string(),
            format!("root@{instance}:{}", up_dst.display()),
        ),
        (
            "download",
            format!("root@{instance}:{}", up_dst.display()),
            down_dst.display().to_string(),
        ),
    ] {
        let t = Instant::now();
        let out = tokio::task::block_in_place(|| {
            client("scp")
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
    let digest = |p: &Path| -> anyhow::Result<String> {
        Ok(format!("{:x}", Sha256::digest(std::fs::read(p)?)))
    };
    let (a, b, c) = (digest(&src)?, digest(&up_dst)?, digest(&down_dst)?);
    if a != b || a != c {
        bail!("sha256 mismatch: sent {a}, instance has {b}, got back {c}");
    }
    println!("  sha256 identical on all three copies: {}", &a[..16]);

    println!("\nNow without an ssh client or any key file: sallyport's own SSH client, with an");
    println!("Ed25519 key made in memory and pushed through Instance Connect:");
    let dest = format!("root@{instance}");
    let t = Instant::now();
    let out = tokio::task::block_in_place(|| {
        own(&[
            "ssh",
            &dest,
            "echo \"hello again from $(hostname)\"; exit 3",
        ])
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
    let own_dst = dir.path().join("own-scp.bin");
    let remote_src = format!("{dest}:{}", up_dst.display());
    let t = Instant::now();
    let out = tokio::task::block_in_place(|| {
        own(&["scp", &remote_src, &own_dst.display().to_string()])
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
    if digest(&own_dst)? != a {
        bail!("sha256 mismatch after sallyport scp");
    }
    println!(
        "$ sallyport scp {dest}:…/on-the-instance.bin .   {secs:.2} s, {:.2} MB/s, sha256 identical",
        size as f64 / 1e6 / secs
    );
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
    Ok(())
}
