use std::net::SocketAddr;

use super::*;
use crate::commands::doctor_probe::{split_url, tcp_fix};

#[test]
fn the_probed_hosts_are_the_ones_used() {
    let no_env = |_: &str| None;
    let urls = |e: &[Endpoint]| -> Vec<String> { e.iter().map(|e| e.url.clone()).collect() };
    let fips = crate::aws::Endpoints {
        use_fips: true,
        ..Default::default()
    };
    let got = endpoints(None, "us-east-1", &no_env, &fips);
    assert_eq!(
        urls(&got)[..2],
        [
            "https://ssm-fips.us-east-1.amazonaws.com",
            "https://ssmmessages-fips.us-east-1.amazonaws.com"
        ]
    );
    assert!(got.iter().all(|e| e.source == "default, FIPS"), "{got:?}");
    let dual = crate::aws::Endpoints {
        use_dual_stack: true,
        ..Default::default()
    };
    let got = endpoints(None, "eu-west-1", &no_env, &dual);
    assert_eq!(got[4].url, "https://sts.eu-west-1.api.aws");
    // The data channel's endpoint, wherever the APIs go.
    let vpce = crate::aws::Endpoints {
        ssmmessages: Some(
            crate::aws::StreamHost::parse(
                "https://vpce-1.ssmmessages.eu-west-1.vpce.amazonaws.com",
                "AWS_ENDPOINT_URL_SSMMESSAGES",
            )
            .unwrap(),
        ),
        ..Default::default()
    };
    for api in [
        None,
        Some("https://vpce-2.ssm.eu-west-1.vpce.amazonaws.com"),
    ] {
        let got = endpoints(api, "eu-west-1", &no_env, &vpce);
        assert_eq!(got[1].service, "ssmmessages");
        assert_eq!(
            got[1].url,
            "https://vpce-1.ssmmessages.eu-west-1.vpce.amazonaws.com"
        );
        assert_eq!(got[1].source, "AWS_ENDPOINT_URL_SSMMESSAGES");
    }
    let plain = endpoints(None, "cn-north-1", &no_env, &Default::default());
    assert_eq!(
        plain[1].url,
        "https://ssmmessages.cn-north-1.amazonaws.com.cn"
    );
    assert_eq!(plain[1].source, "default");
}

#[test]
fn http_dates() {
    assert_eq!(
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(
        parse_http_date("Mon, 30 Nov 2026 20:10:00 GMT"),
        Some(1_796_069_400)
    );
    for bad in [
        "",
        "Sun, 06 Nov 1994",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
    ] {
        assert_eq!(parse_http_date(bad), None, "{bad}");
    }
}

#[test]
fn urls() {
    assert_eq!(
        split_url("https://ssm.us-east-1.amazonaws.com"),
        Some((true, "ssm.us-east-1.amazonaws.com".into(), 443))
    );
    assert_eq!(
        split_url("http://127.0.0.1:4566/x"),
        Some((false, "127.0.0.1".into(), 4566))
    );
    assert_eq!(
        split_url("https://[::1]:8443"),
        Some((true, "::1".into(), 8443))
    );
    assert_eq!(split_url("ftp://x"), None);
    assert_eq!(split_url("https://"), None);
}

#[test]
fn public_addresses_that_fail_get_the_privatelink_hint() {
    let public: SocketAddr = "52.94.1.1:443".parse().unwrap();
    let private: SocketAddr = "10.0.0.5:443".parse().unwrap();
    assert!(tcp_fix(&[public]).contains("VPC interface endpoints"));
    assert!(!tcp_fix(&[private]).contains("VPC interface endpoints"));
}

#[test]
fn clock_lines() {
    assert_eq!(clock_check(&[(1000, 1002)], false).status, Status::Ok);
    assert_eq!(clock_check(&[(1000, 1100)], false).status, Status::Warn);
    let c = clock_check(&[(1000, 100)], false);
    assert_eq!((c.status, c.blame), (Status::Fail, Some(Blame::Clock)));
    assert!(c.detail.contains("900 s behind"), "{}", c.detail);
    assert_eq!(clock_check(&[], true).status, Status::Fail);
    assert_eq!(clock_check(&[], false).status, Status::Warn);
}

fn node(version: &str, status: &str, id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        ping_status: status.into(),
        last_ping: Some(unix_now()),
        ip_address: None,
        computer_name: None,
        name: None,
        platform: Some("Ubuntu".into()),
        agent_version: Some(version.into()),
    }
}

#[test]
fn agent_versions_against_features() {
    let status = |v: &str| {
        let mut r = Report::default();
        node_checks(&node(v, "Online", "i-1"), &mut r);
        r.checks
            .iter()
            .find(|c| c.check == "agent version")
            .unwrap()
            .status
    };
    assert_eq!(status("2.3.500.0"), Status::Fail);
    assert_eq!(status("2.3.672.0"), Status::Warn);
    assert_eq!(status("3.0.196.0"), Status::Warn);
    assert_eq!(status("3.0.197.0"), Status::Ok);
    let mut r = Report::default();
    node_checks(&node("3.3.0.0", "ConnectionLost", "mi-1"), &mut r);
    assert_eq!(r.first_failure(), Some(Blame::Target));
    let ic = r
        .checks
        .iter()
        .find(|c| c.check == "instance connect")
        .unwrap();
    assert_eq!(ic.status, Status::Warn);
}
#[test]
fn what_the_node_says_is_reported_as_text() {
    let mut n = node("3.3.0.0", "Online", "i-1");
    n.platform = Some("Amazon\x1b]0;pwned\x07 Linux\u{9b}".into());
    let mut r = Report::default();
    node_checks(&n, &mut r);
    let text = r.text();
    assert!(!text.contains(['\x1b', '\x07', '\u{9b}']), "{text:?}");
    assert!(
        text.contains("Amazon\\x1b]0;pwned\\x07 Linux\\u{9b}"),
        "{text}"
    );
    let json = r.json();
    assert!(!json.contains(['\x1b', '\x07', '\u{9b}']), "{json:?}");
}
