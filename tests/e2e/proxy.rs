//! `sallyport proxy` as an ssh ProxyCommand, with real OpenSSH clients and server.

use std::time::{Duration, Instant};

use crate::harness::{Fixture, ok, random_bytes, run, sha256_file};

const QUICK: Duration = Duration::from_secs(60);
/// Downloads run at the agent's pacing (~0.5 MB/s), as on the real service.
const TRANSFER: Duration = Duration::from_secs(300);

#[test]
fn ssh_runs_a_command() {
    let f = Fixture::new();
    let out = run(f.ssh().arg("echo ok; echo to-stderr >&2"), None, QUICK);
    assert_eq!(ok(&out), "ok\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
}

#[test]
fn ssh_passes_the_remote_exit_status() {
    let f = Fixture::new();
    let out = run(f.ssh().arg("exit 7"), None, QUICK);
    assert_eq!(out.status.code(), Some(7));
}

/// An agent that acknowledges and drops input for a while after HandshakeComplete (a
/// stalled goroutine, docs/protocol.md §5.2): ssh's banner, sent at once, would be lost and
/// sshd would answer "Invalid SSH identification string". The proxy holds input until the
/// agent's first output (sshd's banner), which the agent sends only once it takes input.
#[test]
fn ssh_survives_an_agent_slow_to_mark_the_handshake_complete() {
    let f = Fixture::with_config(|c| c.agent.handshake_complete_lag = Duration::from_millis(600));
    for i in 0..3 {
        let out = run(f.ssh().arg(format!("echo lagged-{i}")), None, QUICK);
        assert_eq!(ok(&out), format!("lagged-{i}\n"));
    }
}

fn scp_round_trip(legacy: bool, up_size: usize, down_size: usize) {
    let f = Fixture::new();
    let local = f.path("local.bin");
    std::fs::write(&local, random_bytes(up_size, up_size as u64)).unwrap();
    ok(&run(
        f.scp(legacy).arg(&local).arg(f.remote("uploaded.bin")),
        None,
        TRANSFER,
    ));
    assert_eq!(sha256_file(&f.path("uploaded.bin")), sha256_file(&local));

    let remote_src = f.path("remote-src.bin");
    std::fs::write(&remote_src, random_bytes(down_size, 99)).unwrap();
    let back = f.path("downloaded.bin");
    ok(&run(
        f.scp(legacy).arg(f.remote("remote-src.bin")).arg(&back),
        None,
        TRANSFER,
    ));
    assert_eq!(sha256_file(&back), sha256_file(&remote_src));
}

#[test]
fn scp_20_mb_up_and_down_sftp_protocol() {
    scp_round_trip(false, 20_000_000, 20_000_000);
}

#[test]
fn scp_legacy_protocol_up_and_down() {
    scp_round_trip(true, 20_000_000, 3_000_000);
}

#[test]
fn sftp_batch() {
    let f = Fixture::new();
    let local = f.path("batch-src.bin");
    std::fs::write(&local, random_bytes(300_000, 5)).unwrap();
    let remote_dir = f.path("remote-dir");
    let batch = f.path("batch.txt");
    std::fs::write(
        &batch,
        format!(
            "mkdir {d}\ncd {d}\nput {src} a.bin\nrename a.bin b.bin\nls -l\nget b.bin {back}\nrm b.bin\nrmdir {d}\n",
            d = remote_dir.display(),
            src = local.display(),
            back = f.path("batch-back.bin").display(),
        ),
    )
    .unwrap();
    let out = run(
        f.sftp()
            .arg("-b")
            .arg(&batch)
            .arg(format!("root@{}", f.instance)),
        None,
        QUICK,
    );
    let stdout = ok(&out);
    assert!(stdout.contains("b.bin"), "ls output: {stdout}");
    assert_eq!(sha256_file(&f.path("batch-back.bin")), sha256_file(&local));
    assert!(!remote_dir.exists(), "rmdir ran");
}

#[test]
fn eight_concurrent_sessions() {
    let f = Fixture::new();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let mut cmd = f.ssh();
            cmd.arg(format!(
                "sleep 0.3; echo session-{i}; head -c 200000 /dev/zero | wc -c"
            ));
            std::thread::spawn(move || run(&mut cmd, None, QUICK))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.join().unwrap();
        assert_eq!(ok(&out), format!("session-{i}\n200000\n"));
    }
}

#[test]
fn unknown_instance_fails_fast_with_a_clear_message() {
    let f = Fixture::new();
    let started = Instant::now();
    let out = run(f.ssh_to("i-0fedcba9876543210").arg("true"), None, QUICK);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "ssh reports the failed proxy");
    assert!(
        stderr.contains(
            "sallyport: StartSession failed: TargetNotConnected: i-0fedcba9876543210 is not connected"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("SSM agent is online"),
        "says what to check: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "fails fast");

    // The proxy itself: exit code 5 and nothing on stdout.
    let out = run(&mut f.proxy("i-0fedcba9876543210"), Some(b""), QUICK);
    assert_eq!(out.status.code(), Some(5));
    assert!(out.stdout.is_empty());
}

#[test]
fn proxy_stdout_carries_only_remote_bytes() {
    let f = Fixture::new();
    let out = run(
        &mut f.proxy(&f.instance),
        Some(b"SSH-2.0-sallyport_test\r\n"),
        QUICK,
    );
    let stdout = ok(&out);
    assert!(stdout.starts_with("SSH-2.0-OpenSSH"), "{stdout:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn targets_that_are_not_ids_are_refused_before_any_call() {
    let f = Fixture::new();
    let out = run(&mut f.proxy("web server"), Some(b""), QUICK);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an instance ID"));
}

#[test]
fn rejected_credentials_exit_3_with_advice() {
    let f = Fixture::new();
    let mut cmd = f.proxy(&f.instance);
    cmd.env("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN00");
    let out = run(&mut cmd, Some(b""), QUICK);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("UnrecognizedClientException"), "{stderr}");
    assert!(stderr.contains("credentials"), "{stderr}");
}

#[test]
fn missing_region_exits_9_with_advice() {
    let f = Fixture::new();
    let mut cmd = f.proxy(&f.instance);
    cmd.env_remove("AWS_REGION");
    let out = run(&mut cmd, Some(b""), QUICK);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("--region"), "{stderr}");
}
