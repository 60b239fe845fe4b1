//! HTTP proxies with a REAL proxy, tinyproxy (Debian package `tinyproxy`, installed by
//! `.ci/install-deps`), started per test on 127.0.0.1 with its own config and log: ssh
//! and a port forward through it, NO_PROXY, Basic auth, a proxy that is down, and
//! `doctor`'s endpoint probes through it.
//! Loopback is not special (like curl), so a proxy from the environment carries the
//! traffic to the testbed on 127.0.0.1: the API calls and the websocket (CONNECT tunnels:
//! the testbed serves TLS).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::forward::{Forwarder, HttpServer, body_for, http_get};
use crate::harness::{Fixture, ok, run};

const QUICK: Duration = Duration::from_secs(60);

/// A tinyproxy in the foreground; killed on drop.
pub(crate) struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy allowing CONNECT to `connect_port`, with Basic auth when `auth`.
    /// `None` (after printing why) when tinyproxy is missing and CI is not set.
    pub(crate) fn start(
        f: &Fixture,
        connect_port: u16,
        auth: Option<(&str, &str)>,
    ) -> Option<Tinyproxy> {
        let Some(bin) = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "tinyproxy is missing: install the Debian package `tinyproxy` (.ci/install-deps does)"
            );
            eprintln!("skipping: tinyproxy is not installed (apt-get install tinyproxy)");
            return None;
        };
        // tinyproxy has no `Port 0`: take a free port and release it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = f.path("tinyproxy.log");
        let conf = f.path("tinyproxy.conf");
        let mut text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\n\
             LogFile \"{}\"\nLogLevel Connect\nMaxClients 50\nConnectPort {connect_port}\n",
            log.display()
        );
        if let Some((user, pass)) = auth {
            text.push_str(&format!("BasicAuth {user} {pass}\n"));
        }
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tinyproxy");
        let proxy = Tinyproxy { child, port, log };
        proxy.wait_listening(Duration::from_secs(10));
        Some(proxy)
    }

    fn wait_listening(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}", self.port)
    }

    /// The request lines tinyproxy logged (`CONNECT host:port`, `POST http://…`).
    pub(crate) fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("Request (file descriptor ").map(|(_, r)| r))
            .filter_map(|r| r.split_once("): ").map(|(_, r)| r.to_owned()))
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_proxy(cmd: &mut Command, url: &str) {
    cmd.env("HTTPS_PROXY", url).env("HTTP_PROXY", url);
}

fn testbed_port(f: &Fixture) -> u16 {
    f.testbed.addr.port()
}

#[test]
fn ssh_and_a_port_forward_go_through_the_proxy() {
    let f = Fixture::new();
    let Some(proxy) = Tinyproxy::start(&f, testbed_port(&f), None) else {
        return;
    };
    let mut ssh = f.ssh();
    with_proxy(&mut ssh, &proxy.url(""));
    let out = run(ssh.arg("echo through-the-proxy"), None, QUICK);
    assert_eq!(ok(&out), "through-the-proxy\n");

    let tb = testbed_port(&f);
    let requests = proxy.requests();
    let websocket = format!("CONNECT 127.0.0.1:{tb} ");
    // The testbed serves TLS (the harness default): the API calls and the websocket are
    // CONNECT tunnels alike, one or more for the API and one for the websocket.
    assert!(f.testbed.endpoint.starts_with("https://"));
    let connects = requests
        .iter()
        .filter(|r| r.starts_with(&websocket))
        .count();
    assert!(
        connects >= 2,
        "CONNECTs to the testbed for the API and the websocket in the proxy's log: \
         {requests:#?}"
    );

    let before = proxy.requests().len();
    let server = HttpServer::start("behind-the-proxy");
    let spec = format!("0:{}", server.port());
    let mut fwd = Forwarder::start_with(&f, &[&f.instance, &spec, "-v"], |cmd| {
        with_proxy(cmd, &proxy.url(""));
    });
    let local = fwd.wait_forward();
    assert_eq!(
        http_get(local, "/p").unwrap(),
        body_for("behind-the-proxy", "/p")
    );
    let after = proxy.requests();
    assert!(
        after[before..].iter().any(|r| r.starts_with(&websocket)),
        "the forward's websocket did not use the proxy: {after:#?}"
    );
    let err = fwd.stderr();
    assert!(err.contains("data channel websocket via proxy"), "{err}");
    assert!(err.contains("AWS API call via proxy"), "{err}");
    assert_eq!(fwd.interrupt(), Some(0), "stderr: {}", fwd.stderr());
}

#[test]
fn no_proxy_matching_the_testbed_bypasses_the_proxy() {
    let f = Fixture::new();
    let Some(proxy) = Tinyproxy::start(&f, testbed_port(&f), None) else {
        return;
    };
    let mut ssh = f.ssh();
    with_proxy(&mut ssh, &proxy.url(""));
    ssh.env("NO_PROXY", "example.com,127.0.0.1");
    let out = run(ssh.arg("echo direct"), None, QUICK);
    assert_eq!(ok(&out), "direct\n");
    assert_eq!(proxy.requests(), Vec::<String>::new());
}

#[test]
fn basic_auth_right_credentials_work_and_wrong_ones_get_the_407_line() {
    let f = Fixture::new();
    let Some(proxy) = Tinyproxy::start(&f, testbed_port(&f), Some(("alice", "s3cret"))) else {
        return;
    };
    let mut ssh = f.ssh();
    with_proxy(&mut ssh, &proxy.url("alice:s3cret@"));
    let out = run(ssh.arg("echo authenticated"), None, QUICK);
    assert_eq!(ok(&out), "authenticated\n");
    assert!(
        proxy.requests().iter().any(|r| r.starts_with("CONNECT ")),
        "{:#?}",
        proxy.requests()
    );

    let mut bad = f.proxy(&f.instance);
    with_proxy(&mut bad, &proxy.url("alice:wrong@"));
    let out = run(&mut bad, None, QUICK);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert!(
        err.contains(&format!(
            "the proxy http://alice:***@127.0.0.1:{} refused the credentials in its URL",
            proxy.port
        )),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the password leaked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");

    let mut none = f.proxy(&f.instance);
    with_proxy(&mut none, &proxy.url(""));
    let out = run(&mut none, None, QUICK);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "stderr: {err}");
    assert!(out.stdout.is_empty());
    assert!(err.contains("needs credentials"), "{err}");
    assert!(err.contains("put them in the proxy URL"), "{err}");
}

#[test]
fn a_refused_connect_names_the_proxy_the_destination_and_the_status() {
    let f = Fixture::new();
    // CONNECT is allowed to port 443 only: the websocket's CONNECT to the testbed is not.
    let Some(proxy) = Tinyproxy::start(&f, 443, None) else {
        return;
    };
    let mut cmd = f.proxy(&f.instance);
    with_proxy(&mut cmd, &proxy.url(""));
    let out = run(&mut cmd, None, QUICK);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "stderr: {err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains(&format!(
            "the proxy http://127.0.0.1:{} refused CONNECT to 127.0.0.1:{} with HTTP 403",
            proxy.port,
            testbed_port(&f)
        )),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn a_proxy_that_is_down_gives_the_refused_line_naming_it() {
    let f = Fixture::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = f.proxy(&f.instance);
    let url = format!("http://bob:pw@127.0.0.1:{port}");
    with_proxy(&mut cmd, &url);
    let out = run(&mut cmd, None, QUICK);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "stderr: {err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains(&format!(
            "could not connect to the proxy http://bob:***@127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");

    // --no-proxy goes direct whatever the environment says.
    let mut direct = f.proxy(&f.instance);
    with_proxy(&mut direct, &url);
    direct.arg("--no-proxy");
    let out = run(&mut direct, Some(b""), QUICK);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.starts_with(b"SSH-2.0-"),
        "sshd's banner came through"
    );
}

/// `sallyport doctor` through `proxy_url`: (exit code, stdout, stderr).
fn doctor_via(f: &Fixture, proxy_url: &str) -> (Option<i32>, String, String) {
    let mut cmd = f.sallyport(&["doctor", &f.instance]);
    with_proxy(&mut cmd, proxy_url);
    let out = run(&mut cmd, None, QUICK);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn endpoint_lines(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|l| l.get(6..).is_some_and(|r| r.starts_with("endpoint ")))
        .collect()
}

#[test]
fn doctor_probes_the_endpoints_through_the_proxy() {
    let f = Fixture::new();
    let Some(proxy) = Tinyproxy::start(&f, testbed_port(&f), None) else {
        return;
    };
    let (code, report, err) = doctor_via(&f, &proxy.url(""));
    assert_eq!(code, Some(0), "{report}\n{err}");
    let lines = endpoint_lines(&report);
    assert_eq!(lines.len(), 5, "{report}");
    let via = format!(
        "via proxy http://127.0.0.1:{}, CONNECT, TLS, HTTP",
        proxy.port
    );
    for l in &lines {
        assert!(l.starts_with("ok"), "{report}");
        assert!(l.contains(&via), "{l}\nin:\n{report}");
        assert!(!l.contains("DNS"), "resolved by the proxy, not here: {l}");
    }
    // Five probes and the API calls, all CONNECTs to the testbed.
    let tb = format!("CONNECT 127.0.0.1:{} ", testbed_port(&f));
    let connects = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with(&tb))
        .count();
    assert!(connects >= 5, "{:#?}", proxy.requests());

    // NO_PROXY matching the endpoints: the probes go direct again.
    let before = proxy.requests().len();
    let mut cmd = f.sallyport(&["doctor"]);
    with_proxy(&mut cmd, &proxy.url(""));
    cmd.env("NO_PROXY", "127.0.0.1");
    let out = run(&mut cmd, None, QUICK);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{report}");
    for l in endpoint_lines(&report) {
        assert!(
            l.contains("DNS 127.0.0.1 (private address), TCP, TLS"),
            "{l}"
        );
    }
    assert_eq!(proxy.requests().len(), before, "{:#?}", proxy.requests());
}

#[test]
fn doctor_names_a_proxy_that_refuses_connect() {
    let f = Fixture::new();
    // CONNECT is allowed to port 443 only.
    let Some(proxy) = Tinyproxy::start(&f, 443, None) else {
        return;
    };
    let (code, report, err) = doctor_via(&f, &proxy.url(""));
    assert_eq!(code, Some(6), "{report}\n{err}");
    let refused = format!(
        "the proxy http://127.0.0.1:{} refused CONNECT to 127.0.0.1:{} with HTTP 403",
        proxy.port,
        testbed_port(&f)
    );
    let lines = endpoint_lines(&report);
    assert_eq!(lines.len(), 5, "{report}");
    for l in lines {
        assert!(l.starts_with("FAIL"), "{report}");
        assert!(l.contains(&refused), "{l}");
        assert!(l.contains("NO_PROXY"), "the fix names the settings: {l}");
    }
}
