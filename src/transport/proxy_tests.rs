use std::collections::HashMap;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn routes(req: &ProxyRequest, vars: &[(&str, &str)]) -> ProxyRoutes {
    ProxyRoutes::resolve(req, env(vars)).unwrap()
}

fn chosen(r: &ProxyRoutes, tls: bool, host: &str, port: u16) -> Option<String> {
    r.choose(tls, host, port).map(|p| p.origin())
}

#[test]
fn proxy_urls_parse_with_userinfo_ports_and_defaults() {
    let p = ProxyUrl::parse("http://al%40ice:p%3Ass@proxy.corp:3128/", "t").unwrap();
    assert_eq!(
        (p.tls, p.host.as_str(), p.port),
        (false, "proxy.corp", 3128)
    );
    assert_eq!(p.user.as_deref(), Some("al@ice"));
    assert_eq!(p.password.as_deref(), Some("p:ss"));
    assert_eq!(p.to_string(), "http://al@ice:***@proxy.corp:3128");
    assert_eq!(p.origin(), "http://proxy.corp:3128");
    // Basic base64("al@ice:p:ss")
    assert_eq!(p.basic_auth().unwrap(), "Basic YWxAaWNlOnA6c3M=");

    let p = ProxyUrl::parse("https://proxy.corp", "t").unwrap();
    assert_eq!((p.tls, p.port, p.user.clone()), (true, 443, None));
    assert_eq!(p.basic_auth(), None);
    let p = ProxyUrl::parse("proxy.corp:8080", "t").unwrap();
    assert_eq!((p.tls, p.port), (false, 8080));
    let p = ProxyUrl::parse("HTTP://[::1]:8080", "t").unwrap();
    assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
    assert_eq!(p.origin(), "http://[::1]:8080");
    assert_eq!(ProxyUrl::parse("http://p", "t").unwrap().port, 80);
}

#[test]
fn bad_proxy_urls_name_their_source_and_hide_the_password() {
    let e = ProxyUrl::parse("socks5://u:secret@p:1080", "ALL_PROXY").unwrap_err();
    assert!(e.message.contains("ALL_PROXY"), "{e}");
    assert!(e.message.contains("SOCKS"), "{e}");
    assert!(!e.message.contains("secret"), "{e}");
    let e = ProxyUrl::parse("ftp://p", "--proxy").unwrap_err();
    assert!(e.message.contains("--proxy"), "{e}");
    assert!(ProxyUrl::parse("http://p:notaport", "t").is_err());
    assert!(ProxyUrl::parse("http://:8080", "t").is_err());
    assert!(ProxyUrl::parse("http://u:%zz@p", "t").is_err());
}

#[test]
fn no_proxy_domains_match_the_host_and_its_subdomains_case_insensitively() {
    let n = NoProxy::parse("example.com, .corp.internal,*.svc");
    assert!(n.matches("example.com", 443));
    assert!(n.matches("API.Example.COM", 443));
    assert!(n.matches("a.b.example.com.", 443));
    assert!(!n.matches("badexample.com", 443));
    assert!(!n.matches("example.com.evil", 443));
    assert!(n.matches("corp.internal", 80));
    assert!(n.matches("x.corp.internal", 80));
    assert!(n.matches("svc", 80));
    assert!(n.matches("db.svc", 80));
    assert!(!n.matches("ssmmessages.us-east-1.amazonaws.com", 443));
}

#[test]
fn no_proxy_star_ips_cidrs_and_ports() {
    assert!(NoProxy::parse("*").matches("anything", 1));
    let n =
        NoProxy::parse("127.0.0.1,::1,[fd00::1]:8443,10.0.0.0/8,example.com:8443,192.168.1.7:22");
    assert!(n.matches("127.0.0.1", 9));
    assert!(!n.matches("127.0.0.2", 9));
    assert!(n.matches("[::1]", 443));
    assert!(n.matches("fd00::1", 8443));
    assert!(!n.matches("fd00::1", 443));
    assert!(n.matches("10.1.2.3", 443));
    assert!(!n.matches("11.1.2.3", 443));
    assert!(n.matches("example.com", 8443));
    assert!(!n.matches("example.com", 443));
    assert!(n.matches("192.168.1.7", 22));
    assert!(!n.matches("192.168.1.7", 23));
    assert!(NoProxy::parse("fd00::/8").matches("fd12::3", 1));
    assert!(NoProxy::parse("0.0.0.0/0").matches("8.8.8.8", 1));
    assert!(!NoProxy::parse("0.0.0.0/0").matches("::1", 1));
    // Junk is ignored, not fatal.
    assert!(!NoProxy::parse("1.2.3.4/99, :,").matches("1.2.3.4", 1));
    assert!(!NoProxy::parse("").matches("localhost", 1));
}

#[test]
fn environment_picks_by_destination_scheme_with_all_proxy_as_fallback() {
    let r = routes(
        &ProxyRequest::default(),
        &[("HTTPS_PROXY", "http://s:1"), ("HTTP_PROXY", "http://p:2")],
    );
    assert_eq!(chosen(&r, true, "h", 443).as_deref(), Some("http://s:1"));
    assert_eq!(chosen(&r, false, "h", 80).as_deref(), Some("http://p:2"));
    let r = routes(&ProxyRequest::default(), &[("ALL_PROXY", "http://a:3")]);
    assert_eq!(chosen(&r, true, "h", 443).as_deref(), Some("http://a:3"));
    assert_eq!(chosen(&r, false, "h", 80).as_deref(), Some("http://a:3"));
    let r = routes(&ProxyRequest::default(), &[]);
    assert!(r.is_direct());
    assert_eq!(chosen(&r, true, "h", 443), None);
}

#[test]
fn lower_case_variables_win_and_empty_ones_are_unset() {
    let r = routes(
        &ProxyRequest::default(),
        &[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
        ],
    );
    assert_eq!(
        chosen(&r, true, "h", 443).as_deref(),
        Some("http://lower:2")
    );
    let r = routes(
        &ProxyRequest::default(),
        &[("HTTPS_PROXY", "http://upper:1"), ("https_proxy", "")],
    );
    assert_eq!(
        chosen(&r, true, "h", 443).as_deref(),
        Some("http://upper:1")
    );
    let r = routes(
        &ProxyRequest::default(),
        &[
            ("HTTPS_PROXY", "http://p:1"),
            ("no_proxy", "x.com"),
            ("NO_PROXY", "h"),
        ],
    );
    assert_eq!(chosen(&r, true, "h", 443).as_deref(), Some("http://p:1"));
    assert_eq!(chosen(&r, true, "x.com", 443), None);
}

#[test]
fn loopback_is_proxied_unless_no_proxy_says_otherwise() {
    let r = routes(&ProxyRequest::default(), &[("HTTP_PROXY", "http://p:1")]);
    assert!(r.choose(false, "127.0.0.1", 8080).is_some());
    assert!(r.choose(false, "localhost", 8080).is_some());
    let r = routes(
        &ProxyRequest::default(),
        &[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "127.0.0.1")],
    );
    assert!(r.choose(false, "127.0.0.1", 8080).is_none());
}

#[test]
fn flag_beats_config_beats_environment_and_no_proxy_beats_all() {
    let vars = [("HTTPS_PROXY", "http://env:1"), ("NO_PROXY", "skip.me")];
    let req = ProxyRequest {
        flag: Some("http://flag:2".into()),
        config: Some("http://conf:3".into()),
        disabled: false,
    };
    let r = routes(&req, &vars);
    assert_eq!(chosen(&r, true, "h", 443).as_deref(), Some("http://flag:2"));
    assert_eq!(chosen(&r, false, "h", 80).as_deref(), Some("http://flag:2"));
    // NO_PROXY applies to an explicit proxy too.
    assert_eq!(chosen(&r, true, "skip.me", 443), None);
    let r = routes(
        &ProxyRequest {
            flag: None,
            ..req.clone()
        },
        &vars,
    );
    assert_eq!(chosen(&r, true, "h", 443).as_deref(), Some("http://conf:3"));
    let r = routes(
        &ProxyRequest {
            disabled: true,
            ..req
        },
        &vars,
    );
    assert!(r.is_direct());
}

#[test]
fn a_bad_proxy_in_the_environment_is_an_error_naming_the_variable() {
    let e = ProxyRoutes::resolve(&ProxyRequest::default(), env(&[("https_proxy", "ftp://x")]))
        .unwrap_err();
    assert!(e.message.contains("https_proxy"), "{e}");
    // --no-proxy ignores it.
    let ok = ProxyRoutes::resolve(
        &ProxyRequest {
            disabled: true,
            ..ProxyRequest::default()
        },
        env(&[("https_proxy", "ftp://x")]),
    );
    assert!(ok.is_ok());
}

#[test]
fn a_password_never_shows_in_an_error_even_when_the_url_does_not_parse() {
    for bad in [
        "http://alice:s3cr/et@proxy.corp:3128",
        "http://alice:s3cr?et@proxy.corp:3128",
        "http://alice:s3cr#et@proxy.corp:3128",
        "http://alice:s3cr%zzet@proxy.corp:3128",
        "http://alice:s3cret@proxy.corp:notaport",
        "socks5://alice:s3cret@proxy.corp:1080",
        "ftp://alice:s3cret@proxy.corp",
        "alice:s3cr/et@proxy.corp:3128",
        "http://alice:s3cret@[::1:3128",
    ] {
        let e = ProxyUrl::parse(bad, "HTTPS_PROXY").unwrap_err();
        assert!(!e.message.contains("s3c"), "{bad}: {}", e.message);
        assert!(e.message.contains("alice:***@"), "{bad}: {}", e.message);
    }
    // A `://` after the password (a mistyped `http:/`, a URL in the query) is no scheme.
    for bad in [
        "http:/alice:s3cret@proxy.corp:3128/?next=http://x",
        "proxy = \"https:/alice:s3cret@[::1]\"\nproxy = \"http://u:***@p\"",
    ] {
        let e = ProxyUrl::parse(bad, "HTTPS_PROXY").unwrap_err();
        assert!(!e.message.contains("s3c"), "{bad}: {}", e.message);
    }
}

#[test]
fn settings_debug_output_hides_proxy_passwords() {
    let req = ProxyRequest {
        flag: Some("http://alice:s3cret@proxy.corp:3128".into()),
        disabled: false,
        config: Some("http://bob:0ther@p:1".into()),
    };
    let shown = format!("{req:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("0ther"),
        "{shown}"
    );
    assert!(shown.contains("alice:***@proxy.corp:3128"), "{shown}");
}
