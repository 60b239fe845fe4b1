//! TLS end to end: the testbed serves HTTPS and WSS with a CA it made at start, sallyport
//! trusts it only through `AWS_CA_BUNDLE` (the harness passes it; most e2e tests run over
//! TLS this way), and without the bundle it refuses the testbed with a line naming the
//! CA bundle.

use std::time::Duration;

use sallyport_testbed::aws_api::data_auth::DialAuth;

use crate::harness::{Fixture, ok, run};

#[test]
fn ssh_over_wss_with_the_testbeds_ca_bundle() {
    let f = Fixture::with_config(|c| c.tls = true);
    assert!(f.testbed.endpoint.starts_with("https://127.0.0.1:"));
    let bundle = f.testbed.ca_bundle.clone().expect("a CA bundle");
    let mut cmd = f.ssh();
    cmd.arg("echo over-tls");
    let out = run(&mut cmd, None, Duration::from_secs(30));
    assert_eq!(ok(&out), "over-tls\n");
    let envs: Vec<_> = cmd.get_envs().collect();
    let ca = envs.iter().find(|(k, _)| *k == "AWS_CA_BUNDLE").unwrap().1;
    assert_eq!(ca, Some(bundle.as_os_str()));
    let dials = f.testbed.data_channel_dials();
    assert_eq!(dials.len(), 1, "{dials:#?}");
    assert_eq!(
        (dials[0].auth, &dials[0].refused),
        (DialAuth::Signed, &None)
    );
}

#[test]
fn without_the_ca_bundle_the_tls_testbed_is_refused_clearly() {
    let f = Fixture::with_config(|c| c.tls = true);
    let mut cmd = f.proxy(&f.instance);
    cmd.env_remove("AWS_CA_BUNDLE");
    let out = run(
        &mut cmd,
        Some(b"SSH-2.0-sallyport_test\r\n"),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("AWS_CA_BUNDLE"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    // The API call already failed: no session, no data channel.
    assert!(f.testbed.calls().is_empty(), "{:?}", f.testbed.calls());
    assert!(f.testbed.data_channel_dials().is_empty());
}

/// A bundle that holds some other CA is no better than none.
#[test]
fn a_bundle_with_another_ca_is_refused_too() {
    let f = Fixture::with_config(|c| c.tls = true);
    let other = sallyport_testbed::tls::TlsIdentity::generate().unwrap();
    let path = f.path("other-ca.pem");
    other.write_ca(&path).unwrap();
    let mut cmd = f.proxy(&f.instance);
    cmd.env("AWS_CA_BUNDLE", &path);
    let out = run(
        &mut cmd,
        Some(b"SSH-2.0-sallyport_test\r\n"),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("AWS_CA_BUNDLE"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}
