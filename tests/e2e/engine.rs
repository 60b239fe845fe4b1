//! The session engine under a hostile peer and a stalled local reader: peer violations
//! end the session at once, and a reader that stops reading holds the remote side back
//! through unacknowledged data, not through our memory, while everything else goes on.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sallyport_testbed::world::faults::Hostile;
use sha2::{Digest, Sha256};

use crate::harness::{Fixture, SALLYPORT, peak_rss_kib, random_bytes};

/// Waits for `child` to exit, killing it after `limit` (and showing its stderr, written
/// to `stderr`).
fn wait_exit(child: &mut Child, limit: Duration, stderr: &Path) -> std::process::ExitStatus {
    if let Some(status) = crate::harness::exit_within(child, limit) {
        return status;
    }
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(stderr).unwrap_or_default();
    panic!("sallyport did not exit within {limit:?}; stderr: {stderr}");
}

/// Waits until `cond` holds, failing after `limit`.
fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A message over the websocket size limit (5 MB against 1 MiB) is a protocol violation:
/// `sallyport proxy` exits 7 at once with one line, never resumes (before the fix it
/// resumed in a tight loop, the relay sending the same message on every new websocket).
#[test]
fn an_oversized_message_ends_the_proxy_with_exit_7() {
    let f = Fixture::with_config(|c| c.faults.hostile = Some(Hostile::Oversized));
    let started = Instant::now();
    // stdin stays open: the session must end because of the peer, not our input.
    let stderr_path = f.path("proxy-stderr.log");
    let mut child = f
        .proxy(&f.instance)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"SSH-2.0-sallyport_test\r\n").unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(20), &stderr_path);
    let took = started.elapsed();
    let mut stdout = Vec::new();
    let mut pipe = child.stdout.take().unwrap();
    pipe.read_to_end(&mut stdout).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    drop(stdin);
    eprintln!(
        "oversized message: exit {:?} after {took:.2?}",
        status.code()
    );
    assert_eq!(status.code(), Some(7), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}; {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("sallyport: "), "{stderr}");
    assert!(stderr.contains("Message too long"), "{stderr}");
    assert!(
        stdout.is_empty(),
        "stdout: {:?}",
        String::from_utf8_lossy(&stdout)
    );
    let resumes = f
        .testbed
        .calls()
        .iter()
        .filter(|c| c.operation == "ResumeSession")
        .count();
    assert_eq!(resumes, 0);
}

/// Remote output pending while the local reader does not read.
const PENDING: usize = 30_000_000;
/// Local input sent while the reader is stalled.
const UPLOAD: usize = 1_000_000;
/// Bytes the remote side sends before the upload is complete.
const FIRST_PART: usize = 2_000_000;
/// How long the reader stalls.
const STALL: Duration = Duration::from_secs(10);
/// The proxy's peak RSS allowed while 30 MB wait for it: the engine holds at most its
/// 1 MiB output bound and the link 256 frames; the rest is the binary and its runtime.
const PEAK_RSS_LIMIT_KIB: u64 = 48 * 1024;

/// stdout unread for 10 s while the remote side has 30 MB to send (the agent unpaced):
/// the engine keeps going (local input still goes up, with `--dead-after 1500ms` the link
/// is not declared dead and nothing resumes), the proxy's memory stays bounded, and once
/// reading resumes every byte arrives.
#[test]
fn a_stalled_reader_keeps_the_engine_going_with_bounded_memory() {
    let f = Fixture::with_config(|c| c.agent.pace = Duration::ZERO);
    let download = random_bytes(PENDING, 41);
    let upload = random_bytes(UPLOAD, 42);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let uploaded = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let served = download.clone();
        let received_by_reader = received.clone();
        let received = received.clone();
        let uploaded = uploaded.clone();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = conn.try_clone().unwrap();
            // Reads what the client uploads; ends on EOF or after a minute.
            std::thread::spawn(move || {
                reader
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    uploaded.lock().unwrap().extend_from_slice(&buf[..n]);
                    received_by_reader.fetch_add(n, Ordering::SeqCst);
                }
            });
            // 2 MB first: more than the engine's output bound (1 MiB), less than what it
            // keeps taking from the link while output is stalled (output bound + core
            // hold bound, 5 MiB), so acks for the upload keep arriving. The rest once the
            // upload is in: then the stall holds the agent back.
            let _ = conn.write_all(&served[..FIRST_PART]);
            let deadline = Instant::now() + Duration::from_secs(60);
            while received.load(Ordering::SeqCst) < UPLOAD && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = conn.write_all(&served[FIRST_PART..]);
        });
    }
    let stderr_path = f.path("proxy-stderr.log");
    let mut cmd = Command::new(SALLYPORT);
    cmd.args(["proxy", &f.instance, "--port", &port.to_string()])
        .args(["--keepalive", "300ms", "--dead-after", "1500ms", "-v"]);
    f.aws_env(&mut cmd);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut child = cmd.spawn().expect("spawn sallyport proxy");
    let pid = child.id();
    let stalled_at = Instant::now();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    // Nobody reads stdout; input still goes up, so the engine is not stuck on output.
    let to_send = upload.clone();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&to_send).unwrap();
        stdin
    });
    wait_for("the upload during the stall", STALL, || {
        received.load(Ordering::SeqCst) >= UPLOAD
    });
    let upload_took = stalled_at.elapsed();
    // The rest of the stall.
    std::thread::sleep(STALL.saturating_sub(stalled_at.elapsed()));
    let peak_kib = peak_rss_kib(pid);

    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut got = vec![0u8; PENDING];
        let _ = tx.send(stdout.read_exact(&mut got).map(|()| got));
    });
    let got = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("timed out reading the output; stderr: {}", stderr()))
        .unwrap_or_else(|e| panic!("reading the output: {e}; stderr: {}", stderr()));
    let drain_took = t.elapsed();
    drop(writer.join().unwrap());
    wait_exit(&mut child, Duration::from_secs(30), &stderr_path);
    eprintln!(
        "stalled reader: upload of {UPLOAD} B done after {upload_took:.2?} of the stall, \
         peak RSS {peak_kib} KiB with {PENDING} B pending, drained in {drain_took:.2?}"
    );

    let stderr = stderr();
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&download),
        "output differs; stderr: {stderr}"
    );
    assert!(*uploaded.lock().unwrap() == upload, "upload differs");
    assert!(
        peak_kib < PEAK_RSS_LIMIT_KIB,
        "peak RSS {peak_kib} KiB; stderr: {stderr}"
    );
    assert!(!stderr.contains("data channel lost"), "{stderr}");
    let resumes = f
        .testbed
        .calls()
        .iter()
        .filter(|c| c.operation == "ResumeSession")
        .count();
    assert_eq!(resumes, 0, "{stderr}");
}
