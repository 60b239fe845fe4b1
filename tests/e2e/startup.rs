//! Set-up: `-v` prints the timeline of the steps before the first remote byte, and the
//! data channel's connection opens while StartSession is in flight.

use std::time::Duration;

use crate::harness::{Fixture, ok, run};

const STEPS: [&str; 8] = [
    "credentials",
    "StartSession",
    "websocket DNS",
    "websocket TCP",
    "websocket TLS",
    "websocket upgrade",
    "handshake",
    "first byte",
];

/// The milliseconds of the `set-up: STEP N ms (done at M ms)` line for `step`.
fn step_ms(stderr: &str, step: &str) -> Option<(f64, f64)> {
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!("set-up: {step} ")))?;
    let rest = line.split(&format!("set-up: {step} ")).nth(1)?;
    let took = rest.split(" ms").next()?.parse().ok()?;
    let at = rest
        .split("done at ")
        .nth(1)?
        .split(" ms")
        .next()?
        .parse()
        .ok()?;
    Some((took, at))
}

#[test]
fn verbose_prints_the_set_up_timeline_once_per_step() {
    let f = Fixture::new();
    let mut cmd = f.ssh_with("-v");
    cmd.arg("echo up");
    let out = run(&mut cmd, None, Duration::from_secs(60));
    assert_eq!(ok(&out), "up\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut last_upgrade = 0.0;
    for step in STEPS {
        let (took, at) = step_ms(&stderr, step).unwrap_or_else(|| panic!("{step}: {stderr}"));
        assert!(took >= 0.0 && at >= took, "{step}: {stderr}");
        let lines = stderr.matches(&format!("set-up: {step} ")).count();
        assert_eq!(lines, 1, "{step} once: {stderr}");
        if step == "websocket upgrade" {
            last_upgrade = at;
        }
    }
    // The agent's steps follow the websocket's.
    assert!(
        step_ms(&stderr, "first byte").unwrap().1 >= last_upgrade,
        "{stderr}"
    );
    // The testbed's StreamUrl is on the API's host: the connection opened during
    // StartSession carries the websocket.
    assert!(
        stderr.contains("upgrading on the connection opened during StartSession"),
        "{stderr}"
    );
}

#[test]
fn without_verbose_there_is_no_timeline() {
    let f = Fixture::new();
    let mut cmd = f.ssh();
    cmd.arg("echo up");
    let out = run(&mut cmd, None, Duration::from_secs(60));
    assert_eq!(ok(&out), "up\n");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("set-up:"));
}

/// Every connection a command opens asks one address cache: `scp -j 4` (four
/// StartSessions and Instance Connect pushes through the SDK's HTTP client, four
/// websockets) looks the endpoint's host name up once.
#[test]
fn a_striped_copy_looks_each_host_up_once() {
    let f = Fixture::instance_connect();
    let src = f.path("src.bin");
    std::fs::write(&src, crate::harness::random_bytes(3 << 20, 7)).unwrap();
    let scheme = if f.testbed.config().tls {
        "https"
    } else {
        "http"
    };
    let endpoint = format!("{scheme}://localhost:{}", f.testbed.addr.port());
    let dest = f.path("copy.bin");
    let mut cmd = f.sallyport(&[
        "-v",
        "scp",
        "-j",
        "4",
        &f.remote("src.bin"),
        dest.to_str().unwrap(),
    ]);
    cmd.env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ENDPOINT_URL_SSMMESSAGES", &endpoint);
    let out = run(&mut cmd, None, Duration::from_secs(120));
    ok(&out);
    assert_eq!(
        crate::harness::sha256_file(&dest),
        crate::harness::sha256_file(&src)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let starts = f
        .testbed
        .calls()
        .iter()
        .filter(|c| c.operation == "StartSession")
        .count();
    assert!(starts >= 2, "several sessions: {starts}\n{stderr}");
    let lookups: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("address lookup"))
        .collect();
    assert_eq!(lookups.len(), 1, "{lookups:#?}\n{stderr}");
    assert!(lookups[0].contains("localhost"), "{lookups:#?}");
}
