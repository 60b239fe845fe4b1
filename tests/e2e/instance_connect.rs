//! EC2 Instance Connect and the embedded SSH client, against an sshd that has no
//! authorized_keys at all: it takes only keys pushed through the testbed's
//! `SendSSHPublicKey` in the last 60 s (its AuthorizedKeysCommand reads them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Fixture, SALLYPORT, ok, run};

const LIMIT: Duration = Duration::from_secs(60);

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) => out.push(p),
                Err(_) => {}
            }
        }
    }
    out
}

/// Fails if any file under the fixture's HOME or TMPDIR holds a private key.
pub(crate) fn assert_no_private_keys(fx: &Fixture) {
    for dir in [fx.home(), fx.tmp()] {
        for f in files_under(&dir) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"),
                "a private key was left in {}",
                f.display()
            );
        }
    }
}

/// The keys pushed through the testbed so far: (OS user, key line).
fn pushes(fx: &Fixture) -> Vec<(String, String)> {
    fx.testbed
        .calls()
        .into_iter()
        .filter(|c| c.operation == "SendSSHPublicKey")
        .map(|c| {
            (
                c.os_user.unwrap_or_default(),
                c.ssh_public_key.unwrap_or_default(),
            )
        })
        .collect()
}

/// An ssh-agent on a socket in the fixture's directory, killed on drop.
struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(fx: &Fixture) -> Agent {
        let sock = fx.path("agent.sock");
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

    /// `ssh-add -l` output.
    fn list(&self) -> String {
        let out = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &self.sock)
            .output()
            .expect("ssh-add");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plain OpenSSH `ssh` whose keys come from the agent only (an empty HOME, no -i), with
/// `proxy` options for the ProxyCommand.
fn agent_ssh(fx: &Fixture, agent: &Agent, proxy_options: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args([
        "-F",
        "/dev/null",
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
    ])
    .arg("-o")
    .arg(format!(
        "ProxyCommand={SALLYPORT} proxy %h --port %p {proxy_options}"
    ))
    .arg(format!("root@{}", fx.instance));
    fx.aws_env(&mut cmd);
    cmd.env("HOME", fx.home())
        .env("TMPDIR", fx.tmp())
        .env("SSH_AUTH_SOCK", &agent.sock);
    cmd
}

#[test]
fn openssh_logs_in_only_with_a_pushed_ephemeral_key() {
    let fx = Fixture::instance_connect();
    let agent = Agent::start(&fx);
    // Control: nothing pushed, nothing in the agent, no authorized_keys: refused.
    let out = run(agent_ssh(&fx, &agent, "").arg("echo in"), None, LIMIT);
    assert_eq!(
        out.status.code(),
        Some(255),
        "sshd must refuse without a push"
    );

    let out = run(
        agent_ssh(&fx, &agent, "--user %r --push-key --ephemeral").arg("echo in"),
        None,
        LIMIT,
    );
    assert_eq!(ok(&out), "in\n");
    let pushed = pushes(&fx);
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(pushed[0].0, "root", "%r is the OS user");
    assert!(pushed[0].1.starts_with("ssh-ed25519 "), "{}", pushed[0].1);
    let listed = agent.list();
    assert!(
        listed.contains("ED25519"),
        "the ephemeral key is in the agent: {listed}"
    );
    assert_no_private_keys(&fx);

    // The same key, still in the agent, but its push is now 61 s old: refused.
    fx.testbed.age_pushed_keys(61).expect("age keys");
    let out = run(agent_ssh(&fx, &agent, "").arg("echo in"), None, LIMIT);
    assert_eq!(
        out.status.code(),
        Some(255),
        "a key pushed 61 s ago must be refused; stdout {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn agent_keys_expire_with_their_lifetime() {
    // The proxy adds its key with KEY_VALIDITY (60 s); the same call with 1 s shows that
    // the lifetime constraint reaches the agent and is honoured.
    let fx = Fixture::instance_connect();
    let agent = Agent::start(&fx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = sallyport::keys::ephemeral().unwrap();
    rt.block_on(sallyport::keys::add_to_agent_at(
        &agent.sock,
        &key,
        Duration::from_secs(1),
    ))
    .expect("add to agent");
    assert!(agent.list().contains("ED25519"), "{}", agent.list());
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.list().contains("ED25519") {
        assert!(Instant::now() < deadline, "the key outlived its lifetime");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sallyport::aws::KEY_VALIDITY, Duration::from_secs(60));
}

#[test]
fn proxy_pushes_the_key_openssh_offers() {
    let fx = Fixture::instance_connect();
    // -i names the private key; its .pub is pushed (the fixture's user key).
    let opts = format!("--user %r --push-key -i {}", fx.sshd.user_key.display());
    let out = run(fx.ssh_with(&opts).arg("id -un"), None, LIMIT);
    assert_eq!(ok(&out), "root\n");
    let pushed = pushes(&fx);
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        pushed[0].1.trim(),
        fx.sshd.user_public_key().unwrap().trim(),
        "the .pub next to -i"
    );
    // Without the push the same key is refused.
    fx.testbed.age_pushed_keys(61).expect("age keys");
    let out = run(fx.ssh().arg("true"), None, LIMIT);
    assert_eq!(out.status.code(), Some(255));
}

#[test]
fn push_key_errors_are_clear() {
    let fx = Fixture::instance_connect();
    // No agent for --ephemeral.
    let mut cmd = fx.proxy(&fx.instance);
    cmd.args(["--user", "root", "--push-key", "--ephemeral"])
        .env("HOME", fx.home())
        .env_remove("SSH_AUTH_SOCK");
    let out = run(&mut cmd, Some(b""), LIMIT);
    assert_eq!(out.status.code(), Some(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SSH_AUTH_SOCK"), "{err}");
    assert!(out.stdout.is_empty());
    // No key to push in an empty HOME.
    let mut cmd = fx.proxy(&fx.instance);
    cmd.args(["--user", "root", "--push-key"])
        .env("HOME", fx.home());
    let out = run(&mut cmd, Some(b""), LIMIT);
    assert_eq!(out.status.code(), Some(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("id_ed25519.pub") && err.contains("--ephemeral"),
        "{err}"
    );
    // An invalid OS user: the service's validation error, with advice.
    let mut cmd = fx.proxy(&fx.instance);
    cmd.args(["--user", "bad user!", "--push-key", "-i"])
        .arg(&fx.sshd.user_key);
    let out = run(&mut cmd, Some(b""), LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ValidationException") && err.contains("OS user"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// The embedded client against an agent slow to mark its handshake done (see
/// `proxy::ssh_survives_an_agent_slow_to_mark_the_handshake_complete`).
#[test]
fn sallyport_ssh_survives_an_agent_slow_to_mark_the_handshake_complete() {
    let fx = Fixture::instance_connect_with(|c| {
        c.agent.handshake_complete_lag = Duration::from_millis(600)
    });
    let kh = fx.path("known_hosts");
    let dest = format!("root@{}", fx.instance);
    let mut cmd = fx.sallyport(&["ssh", &dest, "--known-hosts"]);
    cmd.arg(&kh).arg("wc -c");
    let out = run(&mut cmd, Some(&[b'x'; 5000]), LIMIT);
    assert_eq!(ok(&out).trim(), "5000");
}

#[test]
fn sallyport_ssh_runs_a_command_with_its_exit_status_and_streams() {
    let fx = Fixture::instance_connect();
    let kh = fx.path("known_hosts");
    let dest = format!("root@{}", fx.instance);
    let mut cmd = fx.sallyport(&["ssh", &dest, "--known-hosts"]);
    cmd.arg(&kh).arg("echo out; echo err >&2; exit 7");
    let out = run(&mut cmd, None, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(stderr.contains("err\n"), "{stderr}");
    assert!(!stderr.contains("out"), "{stderr}");
    assert!(
        stderr.contains("permanently added"),
        "TOFU notice: {stderr}"
    );
    // The host key was recorded under the instance ID, in OpenSSH's format.
    let host_key = fx.sshd.host_public_key();
    let mut fields = host_key.split_whitespace();
    let (alg, b64) = (fields.next().unwrap(), fields.next().unwrap());
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        format!("{} {alg} {b64}\n", fx.instance)
    );
    let pushed = pushes(&fx);
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].0, "root");
    assert!(pushed[0].1.starts_with("ssh-ed25519 "));

    // Stdin reaches the command; the second run knows the host (no notice).
    let mut cmd = fx.sallyport(&["ssh", &dest, "--known-hosts"]);
    cmd.arg(&kh).arg("wc -c");
    let out = run(&mut cmd, Some(&[b'x'; 100_000]), LIMIT);
    assert_eq!(ok(&out).trim(), "100000");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("permanently added"));
    // `-n`: nothing read from stdin.
    let mut cmd = fx.sallyport(&["ssh", "-n", &dest, "--known-hosts"]);
    cmd.arg(&kh).arg("wc -c");
    let out = run(&mut cmd, Some(b"abc"), LIMIT);
    assert_eq!(ok(&out).trim(), "0");
    assert_eq!(pushes(&fx).len(), 3, "a fresh key for every command");
    assert_no_private_keys(&fx);
}

#[test]
fn known_hosts_first_use_then_a_changed_key_is_refused() {
    let fx = Fixture::instance_connect();
    let kh = fx.path("known_hosts");
    let dest = format!("root@{}", fx.instance);
    // --strict-host-key-checking=yes refuses an unknown host and records nothing.
    let mut cmd = fx.sallyport(&["ssh", &dest, "--strict-host-key-checking", "yes"]);
    cmd.arg("--known-hosts").arg(&kh).arg("true");
    let out = run(&mut cmd, None, LIMIT);
    assert_eq!(out.status.code(), Some(15));
    assert!(!kh.exists());
    // Default: recorded on first use (default file: $HOME/.ssh/known_hosts).
    let out = run(&mut fx.sallyport(&["ssh", &dest, "true"]), None, LIMIT);
    ok(&out);
    let default_kh = fx.home().join(".ssh").join("known_hosts");
    let recorded = std::fs::read_to_string(&default_kh).expect("recorded");
    assert!(recorded.starts_with(&format!("{} ssh-ed25519 ", fx.instance)));
    // Someone else's key for this instance: refused, non-zero, OpenSSH-style warning.
    let other = fx.path("other_host_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut fields = other_pub.split_whitespace();
    std::fs::write(
        &default_kh,
        format!(
            "# a comment\n{} {} {}\n",
            fx.instance,
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    let out = run(
        &mut fx.sallyport(&["ssh", &dest, "echo reached"]),
        None,
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(15), "{err}");
    assert!(out.stdout.is_empty(), "the command must not run");
    assert!(
        err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{err}"
    );
    assert!(
        err.contains("known_hosts:2"),
        "names the offending line: {err}"
    );
    // The file is left as it was.
    assert!(
        std::fs::read_to_string(&default_kh)
            .unwrap()
            .starts_with("# a comment\n")
    );
}

#[test]
fn a_user_the_instance_does_not_have_is_refused_clearly() {
    let fx = Fixture::instance_connect();
    let dest = format!("nosuchuser@{}", fx.instance);
    let out = run(&mut fx.sallyport(&["ssh", &dest, "true"]), None, LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(16), "{err}");
    assert!(
        err.contains("\"nosuchuser\"") && err.contains("Instance Connect"),
        "{err}"
    );
}

#[test]
fn the_user_is_guessed_from_the_platform_and_said() {
    let fx = Fixture::instance_connect();
    // The testbed's instance is "Amazon Linux": ec2-user, which this sshd's machine
    // lacks, so the login fails, with the guess named.
    let out = run(
        &mut fx.sallyport(&["ssh", &fx.instance, "true"]),
        None,
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("logging in as \"ec2-user\" (guessed"), "{err}");
    let pushed = pushes(&fx);
    assert_eq!(pushed[0].0, "ec2-user");
    // A config-file default wins over the guess.
    std::fs::create_dir_all(fx.path("xdg-config/sallyport")).unwrap();
    std::fs::write(
        fx.path("xdg-config/sallyport/config.toml"),
        "user = \"root\"\n",
    )
    .unwrap();
    let out = run(
        &mut fx.sallyport(&["ssh", &fx.instance, "id -un"]),
        None,
        LIMIT,
    );
    assert_eq!(ok(&out), "root\n");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("guessed"));
}

/// Mode bits of a path.
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// A tree with awkward names: spaces, unicode, a leading dash, an empty directory,
/// and distinct modes.
fn odd_tree(root: &Path) {
    let sub = root.join("dir with spaces").join("日本語 é");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::create_dir_all(root.join("empty dir")).unwrap();
    std::fs::write(root.join("-leading dash.txt"), b"dash\n").unwrap();
    std::fs::write(
        root.join("dir with spaces").join("a b.bin"),
        crate::harness::random_bytes(300_000, 7),
    )
    .unwrap();
    std::fs::write(sub.join("ünïcødé ✓.txt"), "naïve café\n").unwrap();
    std::fs::write(sub.join("secret"), b"0600\n").unwrap();
    std::fs::write(root.join("run me.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    set_mode(&sub.join("secret"), 0o600);
    set_mode(&root.join("run me.sh"), 0o750);
    set_mode(&sub, 0o700);
}

/// Relative path → (mode, sha256 or "dir") for every entry under `root`.
fn tree_summary(root: &Path) -> std::collections::BTreeMap<String, (u32, String)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(rel, (mode(&p), "dir".to_owned()));
                stack.push(p);
            } else {
                out.insert(rel, (mode(&p), crate::harness::sha256_file(&p)));
            }
        }
    }
    out
}

#[test]
fn sallyport_scp_copies_20_mb_both_ways() {
    let fx = Fixture::instance_connect();
    let src = fx.path("big.bin");
    std::fs::write(&src, crate::harness::random_bytes(20_000_000, 42)).unwrap();
    set_mode(&src, 0o640);
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let remote = format!("root@{}:{}/", fx.instance, remote_dir.display());
    let t0 = Instant::now();
    let out = run(
        &mut fx.sallyport(&["scp", src.to_str().unwrap(), &remote]),
        None,
        Duration::from_secs(240),
    );
    ok(&out);
    let up = remote_dir.join("big.bin");
    assert_eq!(
        crate::harness::sha256_file(&up),
        crate::harness::sha256_file(&src)
    );
    assert_eq!(mode(&up), 0o640, "the source's mode");
    // No progress bars without a terminal: stderr holds only the first-use notice.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().all(|l| l.contains("permanently added")),
        "{stderr}"
    );

    eprintln!("upload: {:?}", t0.elapsed());
    let t0 = Instant::now();
    let back = fx.path("back.bin");
    let remote_file = format!("root@{}:{}", fx.instance, up.display());
    let out = run(
        // -v: should this ever fail, the data channel's story is in the panic message.
        &mut fx.sallyport(&["-v", "scp", &remote_file, back.to_str().unwrap()]),
        None,
        Duration::from_secs(240),
    );
    eprintln!("download: {:?}", t0.elapsed());
    ok(&out);
    assert_eq!(
        crate::harness::sha256_file(&back),
        crate::harness::sha256_file(&src)
    );
    assert_eq!(mode(&back), 0o640);
    assert_eq!(pushes(&fx).len(), 2);
    assert_no_private_keys(&fx);
}

#[test]
fn sallyport_scp_copies_a_tree_with_odd_names_both_ways() {
    let fx = Fixture::instance_connect();
    let local = fx.path("tree");
    odd_tree(&local);
    let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(local.join("run me.sh"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let remote_dir = fx.path("remote side");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let remote = format!("root@{}:{}", fx.instance, remote_dir.display());
    let out = run(
        &mut fx.sallyport(&["scp", "-r", "-p", local.to_str().unwrap(), &remote]),
        None,
        LIMIT,
    );
    ok(&out);
    let uploaded = remote_dir.join("tree");
    assert_eq!(tree_summary(&uploaded), tree_summary(&local));
    assert_eq!(
        std::fs::metadata(uploaded.join("run me.sh"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime,
        "-p keeps the modification time"
    );

    let down = fx.path("down");
    std::fs::create_dir_all(&down).unwrap();
    let remote_tree = format!("root@{}:{}", fx.instance, uploaded.display());
    let out = run(
        &mut fx.sallyport(&["scp", "-r", "-p", &remote_tree, down.to_str().unwrap()]),
        None,
        LIMIT,
    );
    ok(&out);
    assert_eq!(tree_summary(&down.join("tree")), tree_summary(&local));

    // A directory without -r: reported, non-zero, the file next to it still copied.
    let dest2 = fx.path("second");
    std::fs::create_dir_all(&dest2).unwrap();
    let out = run(
        &mut fx.sallyport(&[
            "scp",
            local.to_str().unwrap(),
            local.join("-leading dash.txt").to_str().unwrap(),
            &format!("root@{}:{}", fx.instance, dest2.display()),
        ]),
        None,
        LIMIT,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("-r"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dest2.join("-leading dash.txt").exists());
    assert_no_private_keys(&fx);
}

#[test]
fn sallyport_sftp_batch_file() {
    let fx = Fixture::instance_connect();
    let work = fx.path("sftp work");
    std::fs::create_dir_all(&work).unwrap();
    let local = fx.path("local.txt");
    std::fs::write(&local, "hello over sftp\n").unwrap();
    let fetched = fx.path("fetched.txt");
    let batch = fx.path("batch");
    std::fs::write(
        &batch,
        format!(
            "cd \"{w}\"\nmkdir new\nput \"{l}\" new/one.txt\nrename new/one.txt new/two.txt\n\
             ls new\nget new/two.txt \"{f}\"\n-rm no-such-file\nrm new/two.txt\nrmdir new\npwd\n",
            w = work.display(),
            l = local.display(),
            f = fetched.display()
        ),
    )
    .unwrap();
    let dest = format!("root@{}", fx.instance);
    let out = run(
        &mut fx.sallyport(&["sftp", "-b", batch.to_str().unwrap(), &dest]),
        None,
        LIMIT,
    );
    let stdout = ok(&out);
    assert!(stdout.contains("two.txt"), "ls output: {stdout}");
    assert_eq!(
        std::fs::read_to_string(&fetched).unwrap(),
        "hello over sftp\n"
    );
    assert!(!work.join("new").exists(), "rmdir ran");
    assert!(
        stdout.contains(&work.display().to_string()),
        "pwd: {stdout}"
    );

    // A failing command without `-` stops the batch with a non-zero exit.
    std::fs::write(
        &batch,
        format!("cd \"{}\"\nrm no-such-file\nmkdir after\n", work.display()),
    )
    .unwrap();
    let out = run(
        &mut fx.sallyport(&["sftp", "-b", batch.to_str().unwrap(), &dest]),
        None,
        LIMIT,
    );
    assert!(!out.status.success());
    assert!(!work.join("after").exists(), "the batch stopped");
    assert_no_private_keys(&fx);
}

/// The embedded client rides out websocket recycles like the proxy does: the session
/// stream under russh is resumed, nothing lost or repeated.
#[test]
fn sallyport_ssh_and_scp_survive_websocket_recycles() {
    let fx = Fixture::instance_connect_with(|c| {
        c.faults.recycle_every = Some(Duration::from_millis(1500));
    });
    let dest = format!("root@{}", fx.instance);
    let out = run(
        &mut fx.sallyport(&[
            "ssh",
            &dest,
            "for i in 1 2 3 4 5 6 7 8 9 10; do echo line-$i; sleep 0.5; done",
        ]),
        None,
        LIMIT,
    );
    let expected: String = (1..=10).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(ok(&out), expected);
    let src = fx.path("up.bin");
    std::fs::write(&src, crate::harness::random_bytes(30_000_000, 9)).unwrap();
    let remote = format!("root@{}:{}", fx.instance, fx.path("up-copy.bin").display());
    let out = run(
        &mut fx.sallyport(&["scp", src.to_str().unwrap(), &remote]),
        None,
        Duration::from_secs(240),
    );
    ok(&out);
    assert_eq!(
        crate::harness::sha256_file(&fx.path("up-copy.bin")),
        crate::harness::sha256_file(&src)
    );
    let resumes = fx
        .testbed
        .calls()
        .iter()
        .filter(|c| c.operation == "ResumeSession")
        .count();
    assert!(
        resumes >= 2,
        "the websocket was recycled and resumed ({resumes})"
    );
}
