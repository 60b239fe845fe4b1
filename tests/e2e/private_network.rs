//! Private networks (docs/protocol.md §2.8): a StreamUrl naming a host this machine cannot
//! reach (a VPC interface endpoint without private DNS) is dialled on the ssmmessages
//! endpoint the user names, its path and query kept.

use std::time::Duration;

use crate::harness::{Fixture, ok, run};

/// What StartSession's StreamUrls name: `.invalid` never resolves (RFC 6761).
const UNREACHABLE: &str = "ssmmessages.us-east-1.invalid:443";

fn unreachable_stream_host() -> Fixture {
    Fixture::with_config(|c| c.stream_host = Some(UNREACHABLE.to_owned()))
}

/// The testbed's own listener, as an ssmmessages endpoint URL.
fn endpoint(f: &Fixture) -> String {
    let scheme = if f.testbed.config().tls {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", f.testbed.addr)
}

#[test]
fn aws_endpoint_url_ssmmessages_moves_the_data_channel_to_the_endpoint() {
    let f = unreachable_stream_host();
    let mut cmd = f.ssh();
    cmd.env("AWS_ENDPOINT_URL_SSMMESSAGES", endpoint(&f))
        .arg("echo through-the-endpoint");
    let out = run(&mut cmd, None, Duration::from_secs(60));
    assert_eq!(ok(&out), "through-the-endpoint\n");
    let dials = f.testbed.data_channel_dials();
    assert_eq!(dials.len(), 1, "{dials:#?}");
    assert_eq!(
        dials[0].refused, None,
        "signed for the host it reached: {dials:#?}"
    );
}

#[test]
fn the_config_files_endpoint_url_ssmmessages_does_the_same() {
    let f = unreachable_stream_host();
    let config = f.path("config.toml");
    std::fs::write(
        &config,
        format!("endpoint_url_ssmmessages = \"{}\"\n", endpoint(&f)),
    )
    .unwrap();
    let mut cmd = f.sallyport(&["exec", &f.instance, "--", "echo", "from-the-file"]);
    cmd.env("SALLYPORT_CONFIG", &config);
    let out = run(&mut cmd, None, Duration::from_secs(60));
    assert_eq!(ok(&out), "from-the-file\n");
}

/// Without the override the StreamUrl's own host is dialled, and cannot be reached.
#[test]
fn without_the_endpoint_the_unreachable_host_is_dialled() {
    let f = unreachable_stream_host();
    let mut cmd = f.proxy(&f.instance);
    let out = run(&mut cmd, None, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("ssmmessages.us-east-1.invalid"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_bad_ssmmessages_endpoint_is_one_line_and_exit_13() {
    let f = unreachable_stream_host();
    for (value, says) in [
        ("", "AWS_ENDPOINT_URL_SSMMESSAGES is set but empty"),
        ("http://10.0.0.5:8080", "plain http://"),
        ("https://vpce.example/v1", "has a path or query"),
    ] {
        let mut cmd = f.proxy(&f.instance);
        cmd.env("AWS_ENDPOINT_URL_SSMMESSAGES", value);
        let out = run(&mut cmd, None, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(13), "{value}: {stderr}");
        assert!(stderr.contains(says), "{value}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{value}: {stderr}");
        assert!(f.testbed.data_channel_dials().is_empty());
    }
}

/// `doctor` probes the data channel's endpoint, not the host StartSession would name.
#[test]
fn doctor_probes_the_ssmmessages_endpoint_in_use() {
    let f = unreachable_stream_host();
    let mut cmd = f.sallyport(&["doctor"]);
    cmd.env("AWS_ENDPOINT_URL_SSMMESSAGES", endpoint(&f));
    let out = run(&mut cmd, None, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("ssmmessages"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("AWS_ENDPOINT_URL_SSMMESSAGES"), "{stdout}");
    assert!(line.contains(&f.testbed.addr.to_string()), "{stdout}");
}
