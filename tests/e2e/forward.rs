//! `sallyport forward`: HTTP through smux and basic port sessions, several SPECs, remote
//! hosts, refused ports, the metadata deny list, SOCKS5, and Ctrl-C. Every server here is
//! a tiny HTTP/1.1 server on 127.0.0.1 run by the test itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Fixture, SALLYPORT};

const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A small HTTP/1.1 server: `GET /x` answers a body naming the server and the path,
/// padded to several KiB so responses span many agent messages.
pub struct HttpServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn body_for(name: &str, path: &str) -> String {
    let line = format!("{name} answers {path}\n");
    line.repeat(4000 / line.len() + 1)
}

impl HttpServer {
    pub fn start(name: &str) -> HttpServer {
        HttpServer::on(name, TcpListener::bind("127.0.0.1:0").expect("bind"))
    }

    pub fn on(name: &str, listener: TcpListener) -> HttpServer {
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (name, flag) = (name.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let name = name.clone();
                std::thread::spawn(move || serve_one(conn, &name));
            }
        });
        HttpServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(conn: TcpStream, name: &str) {
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let mut reader = BufReader::new(conn);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let body = body_for(name, path);
    let mut conn = reader.into_inner();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// GET `path` from `addr`; the body, read by Content-Length (in basic mode the remote
/// server's close does not reach us).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut reader = BufReader::new(s);
    let mut len = None;
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .map_err(|e| format!("read status: {e}"))?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("status line {status:?}"));
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("headers cut short".into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0u8; len.ok_or("no Content-Length")?];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("read body: {e}"))?;
    String::from_utf8(body).map_err(|e| e.to_string())
}

/// A running `sallyport forward`, its stderr collected; killed on drop.
pub struct Forwarder {
    child: Child,
    stderr: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl Forwarder {
    pub fn start(f: &Fixture, args: &[&str]) -> Forwarder {
        Forwarder::start_with(f, args, |_| {})
    }

    pub fn start_with(f: &Fixture, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Forwarder {
        let mut cmd = Command::new(SALLYPORT);
        cmd.arg("forward").args(args);
        f.aws_env(&mut cmd);
        adjust(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn sallyport forward");
        let pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let all = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                all.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        Forwarder {
            child,
            stderr,
            lines,
        }
    }

    /// Waits for the next stderr line containing `needle`.
    pub fn wait_line(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no stderr line with {needle:?} within {limit:?}; stderr so far:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for a `forwarding A -> B` line; returns A.
    pub fn wait_forward(&self) -> SocketAddr {
        let line = self.wait_line("forwarding ", Duration::from_secs(30));
        let addr = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        addr.parse()
            .unwrap_or_else(|_| panic!("bad address in {line:?}"))
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit code.
    pub fn interrupt(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        self.wait(Duration::from_secs(20))
    }

    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                // Let the stderr thread catch up.
                std::thread::sleep(Duration::from_millis(50));
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sallyport forward did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(f: &Fixture, op: &str) -> usize {
    f.testbed
        .calls()
        .iter()
        .filter(|c| c.operation == op)
        .count()
}

pub fn concurrent_gets(addr: SocketAddr, n: usize, server: &str) {
    let handles: Vec<_> = (0..n)
        .map(|i| std::thread::spawn(move || (i, http_get(addr, &format!("/req-{i}")))))
        .collect();
    for h in handles {
        let (i, body) = h.join().unwrap();
        assert_eq!(
            body.unwrap_or_else(|e| panic!("request {i}: {e}")),
            body_for(server, &format!("/req-{i}")),
            "request {i}"
        );
    }
}

#[test]
fn mux_forward_carries_50_concurrent_http_requests_and_ctrl_c_ends_cleanly() {
    let f = Fixture::new();
    let web = HttpServer::start("jupyter");
    let spec = format!("0:{}", web.port());
    let mut fwd = Forwarder::start(&f, &[&f.instance, &spec]);
    let local = fwd.wait_forward();
    assert_eq!(local.ip().to_string(), "127.0.0.1");
    let started = Instant::now();
    concurrent_gets(local, 50, "jupyter");
    eprintln!(
        "50 concurrent requests through smux took {:?}",
        started.elapsed()
    );
    assert_eq!(
        count(&f, "StartSession"),
        1,
        "one session for all connections"
    );
    assert_eq!(fwd.interrupt(), Some(0), "stderr: {}", fwd.stderr());
    assert_eq!(count(&f, "TerminateSession"), 1);
    let err = fwd.stderr();
    assert!(
        err.contains(&format!("-> {}:{}", f.instance, web.port())),
        "{err}"
    );
}

#[test]
fn basic_mode_forward_carries_sequential_http_requests() {
    let f = Fixture::with_config(|c| c.instances[0].agent_version = "3.0.100.0".into());
    let web = HttpServer::start("old-agent");
    let spec = format!("0:{}", web.port());
    let mut fwd = Forwarder::start(&f, &[&f.instance, &spec]);
    let local = fwd.wait_forward();
    let started = Instant::now();
    for i in 0..50 {
        let path = format!("/seq-{i}");
        let body = http_get(local, &path).unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(body, body_for("old-agent", &path));
    }
    eprintln!(
        "50 sequential requests in basic mode took {:?}",
        started.elapsed()
    );
    assert_eq!(fwd.interrupt(), Some(0), "stderr: {}", fwd.stderr());
}

#[test]
fn two_specs_in_one_process_one_to_a_remote_host() {
    let f = Fixture::new();
    let a = HttpServer::start("service-a");
    let b = HttpServer::start("service-b");
    let spec_a = format!("0:{}", a.port());
    // The second service as a "remote host" the instance reaches (ToRemoteHost).
    let spec_b = format!("127.0.0.1:0:127.0.0.1:{}", b.port());
    let mut fwd = Forwarder::start(&f, &[&f.instance, &spec_a, &spec_b]);
    let first = fwd.wait_forward();
    let second = fwd.wait_forward();
    let err = fwd.stderr();
    let (to_a, to_b) = if err.contains(&format!("{first} -> {}:", f.instance)) {
        (first, second)
    } else {
        (second, first)
    };
    assert!(
        err.contains(&format!(
            "{to_b} -> 127.0.0.1:{} via {}",
            b.port(),
            f.instance
        )),
        "{err}"
    );
    assert_eq!(http_get(to_a, "/a").unwrap(), body_for("service-a", "/a"));
    assert_eq!(http_get(to_b, "/b").unwrap(), body_for("service-b", "/b"));
    concurrent_gets(to_b, 10, "service-b");
    assert_eq!(count(&f, "StartSession"), 2, "one session per SPEC");
    assert_eq!(fwd.interrupt(), Some(0), "stderr: {}", fwd.stderr());
    assert_eq!(count(&f, "TerminateSession"), 2);
}

/// A port with nothing listening (bound, then released).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn refused_then_served(agent_version: Option<&str>) {
    let f = Fixture::with_config(|c| {
        if let Some(v) = agent_version {
            c.instances[0].agent_version = v.into();
        }
    });
    let port = free_port();
    let spec = format!("0:{port}");
    let fwd = Forwarder::start(&f, &[&f.instance, &spec]);
    let local = fwd.wait_forward();
    // Nothing listens there: this one connection is closed, with one message.
    let mut s = TcpStream::connect(local).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let n = s.read_to_end(&mut buf);
    assert!(matches!(n, Ok(0) | Err(_)), "got {buf:?}");
    fwd.wait_line(
        "could not connect to the destination",
        Duration::from_secs(10),
    );
    // The forward lives on: once a server listens there, requests go through.
    let web = HttpServer::on("late", TcpListener::bind(("127.0.0.1", port)).unwrap());
    assert_eq!(
        http_get(local, "/after").unwrap(),
        body_for("late", "/after")
    );
    assert_eq!(
        fwd.stderr()
            .matches("could not connect to the destination")
            .count(),
        1,
        "{}",
        fwd.stderr()
    );
    drop(web);
}

#[test]
fn refused_remote_port_is_reported_and_the_forward_survives() {
    refused_then_served(None);
}

#[test]
fn refused_remote_port_in_basic_mode_is_reported_and_the_forward_survives() {
    refused_then_served(Some("3.0.100.0"));
}

#[test]
fn metadata_address_is_refused_with_the_agents_message() {
    let f = Fixture::new();
    let mut fwd = Forwarder::start(&f, &[&f.instance, "0:169.254.169.254:80"]);
    let code = fwd.wait(Duration::from_secs(30));
    assert_ne!(code, Some(0));
    let err = fwd.stderr();
    assert!(
        err.contains("Forwarding to IP address 169.254.169.254 is forbidden."),
        "{err}"
    );
}

#[test]
fn open_launches_the_browser_on_the_first_forward() {
    let f = Fixture::new();
    let web = HttpServer::start("nb");
    let bin = f.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = f.path("opened.txt");
    let script = bin.join("xdg-open");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let spec = format!("0:{}", web.port());
    let mut fwd = Forwarder::start_with(&f, &[&f.instance, &spec, "--open"], |c| {
        c.env("PATH", &path);
    });
    let local = fwd.wait_forward();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut url = String::new();
    while !url.ends_with('\n') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        url = std::fs::read_to_string(&opened).unwrap_or_default();
    }
    assert_eq!(url.trim(), format!("http://127.0.0.1:{}/", local.port()));
    assert_eq!(fwd.interrupt(), Some(0));
}

fn curl_socks(proxy: SocketAddr, url: &str) -> String {
    let out = crate::harness::run(
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--noproxy",
                "",
                "--socks5-hostname",
            ])
            .arg(proxy.to_string())
            .arg(url),
        None,
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn socks5_reaches_two_services_and_reuses_sessions() {
    let f = Fixture::new();
    let a = HttpServer::start("socks-a");
    let b = HttpServer::start("socks-b");
    let mut fwd = Forwarder::start(&f, &[&f.instance, "-D", "0"]);
    let line = fwd.wait_line("socks5 proxy on ", Duration::from_secs(30));
    let proxy: SocketAddr = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    let url_a = format!("http://127.0.0.1:{}/one", a.port());
    // By name: the target resolves it (curl's --socks5-hostname).
    let url_b = format!("http://localhost:{}/two", b.port());
    assert_eq!(curl_socks(proxy, &url_a), body_for("socks-a", "/one"));
    assert_eq!(curl_socks(proxy, &url_b), body_for("socks-b", "/two"));
    assert_eq!(curl_socks(proxy, &url_a), body_for("socks-a", "/one"));
    assert_eq!(
        count(&f, "StartSession"),
        2,
        "one session per destination, reused"
    );
    assert_eq!(fwd.interrupt(), Some(0), "stderr: {}", fwd.stderr());
    assert_eq!(count(&f, "TerminateSession"), 2);
}

#[test]
fn mux_forward_to_an_agent_with_smux_keepalive() {
    // Agents up to 3.1.1511.0 keep smux keep-alive on (NOPs every 10 s both ways).
    let f = Fixture::with_config(|c| c.instances[0].agent_version = "3.1.1000.0".into());
    let web = HttpServer::start("keepalive");
    let spec = format!("0:{}", web.port());
    let mut fwd = Forwarder::start(&f, &[&f.instance, &spec]);
    let local = fwd.wait_forward();
    concurrent_gets(local, 10, "keepalive");
    assert_eq!(fwd.interrupt(), Some(0), "stderr: {}", fwd.stderr());
}
