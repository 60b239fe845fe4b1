//! Commands that open Session Manager sessions (`exec`, `proxy`, `shell`, `ssh`, `scp`,
//! `sftp`, `forward`) stopped (Ctrl-C, SIGTERM, ssh's SIGHUP) while a session is being set
//! up: StartSession answered or in flight, the data channel not yet open. Every session
//! StartSession started must be ended with TerminateSession before the command exits, and
//! the exit is the one for a stop, not a death by signal.
//!
//! The StreamUrls name a loopback listener the test holds and never answers, so the data
//! channel's opening hangs (until its 45 s handshake timeout) for as long as the test
//! wants. To stop a command while StartSession's answer is on its way, the AWS API is
//! reached through a delay proxy: the testbed records the call half a round trip before
//! the answer reaches the command.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sallyport_testbed::tools::delay_proxy::{self, DelayProxy};

use crate::harness::{Fixture, SALLYPORT};

const LIMIT: Duration = Duration::from_secs(30);

/// A TCP listener that completes handshakes (the kernel does) and never says a word.
struct Silent {
    listener: TcpListener,
    held: Vec<std::net::TcpStream>,
}

impl Silent {
    fn new() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Silent {
            listener,
            held: Vec::new(),
        }
    }

    fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    /// Waits (bounded) for one more connection, kept open and unanswered.
    fn wait_dial(&mut self) {
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => return self.held.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no data-channel dial within {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// When the signal is sent.
#[derive(Clone, Copy, Debug)]
enum When {
    /// As soon as the testbed has seen StartSession: its answer on the way (always so
    /// behind the delay proxy), or the data channel dialling.
    Started,
    /// Once the data channel's connection reached the StreamUrl's host.
    Dialled,
}

fn count(f: &Fixture, operation: &str) -> usize {
    (f.testbed.calls().iter())
        .filter(|c| c.operation == operation)
        .count()
}

/// Runs `cmd`, stops it with `sig` at `when`, and checks every session it started was
/// terminated; returns the exit code (`None`: killed by the signal) and stderr.
fn stop(
    f: &Fixture,
    silent: &mut Silent,
    mut cmd: Command,
    sig: &str,
    when: When,
) -> (Option<i32>, String) {
    let starts = count(f, "StartSession");
    let terminates = count(f, "TerminateSession");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    match when {
        When::Started => {
            while count(f, "StartSession") == starts {
                assert!(
                    Instant::now() < deadline,
                    "no StartSession within {LIMIT:?}"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        When::Dialled => silent.wait_dial(),
    }
    crate::parallel::signal(&child, sig);
    let out = crate::parallel::wait_exit(
        &mut child,
        deadline.saturating_duration_since(Instant::now()),
    );
    let (status, stderr) = (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    // Connections a stopped command left behind.
    while silent.listener.accept().is_ok() {}
    silent.held.clear();
    let started = count(f, "StartSession") - starts;
    let ended = count(f, "TerminateSession") - terminates;
    assert_eq!(started, 1, "{sig} at {when:?}: one StartSession; {stderr}");
    assert_eq!(
        ended,
        started,
        "{sig} at {when:?}: every session started was terminated (exit {:?}); {stderr}",
        status.code()
    );
    (status.code(), stderr)
}

fn fixture(silent: &Silent) -> Fixture {
    let addr = silent.addr();
    Fixture::with_config(|c| c.stream_host = Some(addr))
}

fn exec(f: &Fixture) -> Command {
    let mut cmd = Command::new(SALLYPORT);
    cmd.args(["exec", &f.instance, "--", "true"]);
    f.aws_env(&mut cmd);
    cmd
}

/// A delay proxy with this round-trip time in front of the testbed, and its address as an
/// AWS endpoint URL (the runtime serves the proxy).
fn slow_api(f: &Fixture, rtt: Duration) -> (tokio::runtime::Runtime, DelayProxy, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let to = f.testbed.addr.to_string();
    let proxy = rt
        .block_on(delay_proxy::spawn("127.0.0.1:0".parse().unwrap(), to, rtt))
        .unwrap();
    let scheme = if f.testbed.config().tls {
        "https"
    } else {
        "http"
    };
    let endpoint = format!("{scheme}://{}", proxy.addr());
    (rt, proxy, endpoint)
}

#[test]
fn exec_stopped_during_set_up_ends_its_session() {
    let mut silent = Silent::new();
    let f = fixture(&silent);
    for when in [When::Dialled, When::Started] {
        for sig in ["INT", "TERM", "HUP"] {
            let (code, stderr) = stop(&f, &mut silent, exec(&f), sig, when);
            assert_eq!(code, Some(130), "{sig} at {when:?}: {stderr}");
            assert!(stderr.contains(&format!("SIG{sig}")), "{stderr}");
        }
    }
}

#[test]
fn proxy_stopped_during_set_up_ends_its_session() {
    let mut silent = Silent::new();
    let f = fixture(&silent);
    for when in [When::Dialled, When::Started] {
        for sig in ["INT", "TERM", "HUP"] {
            let (code, stderr) = stop(&f, &mut silent, f.proxy(&f.instance), sig, when);
            // ssh sends SIGHUP to its ProxyCommand when it is done: not a failure.
            let expected = if sig == "HUP" { 0 } else { 130 };
            assert_eq!(code, Some(expected), "{sig} at {when:?}: {stderr}");
        }
    }
}

/// StartSession's answer is half a second away when the signal comes: the session it
/// starts must still be ended (the call runs on, and its session is terminated, before
/// the command exits).
#[test]
fn exec_and_proxy_stopped_while_start_session_answers_end_its_session() {
    let mut silent = Silent::new();
    let f = fixture(&silent);
    let (_rt, _proxy, endpoint) = slow_api(&f, Duration::from_secs(1));
    for sig in ["INT", "HUP"] {
        let mut cmd = exec(&f);
        cmd.env("AWS_ENDPOINT_URL", &endpoint);
        let (code, stderr) = stop(&f, &mut silent, cmd, sig, When::Started);
        assert_eq!(code, Some(130), "exec, {sig}: {stderr}");
        let mut cmd = f.proxy(&f.instance);
        cmd.env("AWS_ENDPOINT_URL", &endpoint);
        let (code, stderr) = stop(&f, &mut silent, cmd, sig, When::Started);
        let expected = if sig == "HUP" { 0 } else { 130 };
        assert_eq!(code, Some(expected), "proxy, {sig}: {stderr}");
    }
}

fn shell(f: &Fixture) -> Command {
    let mut cmd = Command::new(SALLYPORT);
    cmd.args(["shell", &f.instance]);
    f.aws_env(&mut cmd);
    cmd
}

/// `shell` on a pipe (no terminal to put in raw mode): a stop signal while the session is
/// set up ends it, with the exit for a stop.
#[test]
fn shell_stopped_during_set_up_ends_its_session() {
    let mut silent = Silent::new();
    let f = fixture(&silent);
    for when in [When::Dialled, When::Started] {
        for sig in ["INT", "TERM", "HUP"] {
            let (code, stderr) = stop(&f, &mut silent, shell(&f), sig, when);
            assert_eq!(code, Some(130), "{sig} at {when:?}: {stderr}");
            assert!(stderr.contains(&format!("SIG{sig}")), "{stderr}");
        }
    }
    // StartSession's answer still on its way.
    let (_rt, _proxy, endpoint) = slow_api(&f, Duration::from_secs(1));
    let mut cmd = shell(&f);
    cmd.env("AWS_ENDPOINT_URL", &endpoint);
    let (code, stderr) = stop(&f, &mut silent, cmd, "INT", When::Started);
    assert_eq!(code, Some(130), "INT while StartSession answers: {stderr}");
}

/// The embedded SSH client's commands: `ssh` runs one command, `scp` copies one file
/// (striped by default), `sftp` runs a batch file; each connects over one session first.
fn embedded(f: &Fixture, which: &str) -> Command {
    let dest = format!("root@{}", f.instance);
    let remote = format!("{dest}:/etc/hostname");
    let local = f.path("copied").display().to_string();
    let batch = f.path("batch");
    std::fs::write(&batch, "ls /\n").unwrap();
    let args: Vec<&str> = match which {
        "ssh" => vec!["ssh", &dest, "true"],
        "scp" => vec!["scp", &remote, &local],
        "scp -j 1" => vec!["scp", "-j", "1", &remote, &local],
        "sftp" => vec!["sftp", "-b", batch.to_str().unwrap(), &dest],
        other => panic!("{other}"),
    };
    f.sallyport(&args)
}

/// `ssh`, `scp` and `sftp` stopped while their first session is set up end it.
#[test]
fn ssh_scp_and_sftp_stopped_during_set_up_end_their_session() {
    let mut silent = Silent::new();
    let f = fixture(&silent);
    for which in ["ssh", "scp", "scp -j 1", "sftp"] {
        for when in [When::Dialled, When::Started] {
            for sig in ["INT", "TERM", "HUP"] {
                let cmd = embedded(&f, which);
                let (code, stderr) = stop(&f, &mut silent, cmd, sig, when);
                assert_eq!(code, Some(130), "{which}, {sig} at {when:?}: {stderr}");
                assert!(stderr.contains(&format!("SIG{sig}")), "{which}: {stderr}");
            }
        }
    }
    // StartSession's answer still on its way.
    let (_rt, _proxy, endpoint) = slow_api(&f, Duration::from_secs(1));
    for which in ["ssh", "scp", "sftp"] {
        let mut cmd = embedded(&f, which);
        cmd.env("AWS_ENDPOINT_URL", &endpoint);
        let (code, stderr) = stop(&f, &mut silent, cmd, "INT", When::Started);
        assert_eq!(
            code,
            Some(130),
            "{which}, INT while StartSession answers: {stderr}"
        );
    }
}

/// `forward` opens a listener's session at once: stopped before its data channel is up,
/// it still ends that session before exiting.
#[test]
fn forward_stopped_while_its_session_opens_ends_it() {
    let mut silent = Silent::new();
    let f = fixture(&silent);
    for when in [When::Dialled, When::Started] {
        for sig in ["INT", "TERM", "HUP"] {
            let mut cmd = Command::new(SALLYPORT);
            cmd.args(["forward", &f.instance, "0:22"]);
            f.aws_env(&mut cmd);
            let (code, stderr) = stop(&f, &mut silent, cmd, sig, when);
            assert_eq!(code, Some(0), "{sig} at {when:?}: {stderr}");
        }
    }
    // StartSession's answer still on its way.
    let (_rt, _proxy, endpoint) = slow_api(&f, Duration::from_secs(1));
    let mut cmd = Command::new(SALLYPORT);
    cmd.args(["forward", &f.instance, "0:22"]);
    f.aws_env(&mut cmd);
    cmd.env("AWS_ENDPOINT_URL", &endpoint);
    let (code, stderr) = stop(&f, &mut silent, cmd, "INT", When::Started);
    assert_eq!(code, Some(0), "INT while StartSession answers: {stderr}");
}
