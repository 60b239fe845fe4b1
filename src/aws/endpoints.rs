//! Where the calls go on private networks: the data channel's host override (a VPC
//! interface endpoint for ssmmessages without private DNS, docs/protocol.md §2.8) and the
//! FIPS / dual-stack choice, as one resolved value ([`Endpoints`]) on [`super::AwsConfig`].
//!
//! The SDK's clients take FIPS and dual-stack from the same `SdkConfig` (`AWS_USE_FIPS_ENDPOINT`,
//! `AWS_USE_DUALSTACK_ENDPOINT`, the profile's `use_fips_endpoint` / `use_dualstack_endpoint`);
//! what is kept here serves the connections made outside the SDK: a host sallyport builds
//! itself (`doctor`'s probes) and the EC2 Instance Connect Endpoint's `FipsDnsName`.

use aws_config::SdkConfig;
use tokio_tungstenite::tungstenite::http::Uri;

/// The environment variable that names the ssmmessages endpoint (the SDK's naming for a
/// service ID `SSMMessages`).
pub const SSMMESSAGES_ENV: &str = "AWS_ENDPOINT_URL_SSMMESSAGES";

/// The endpoint choices every connection follows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// FIPS endpoints (`AWS_USE_FIPS_ENDPOINT`, `use_fips_endpoint`).
    pub use_fips: bool,
    /// Dual-stack (IPv4 and IPv6) endpoints (`AWS_USE_DUALSTACK_ENDPOINT`,
    /// `use_dualstack_endpoint`).
    pub use_dual_stack: bool,
    /// Where the data channel goes instead of the StreamUrl's host.
    pub ssmmessages: Option<StreamHost>,
}

impl Endpoints {
    /// The choices as the SDK resolved them, with the ssmmessages override `ssmmessages`
    /// (already resolved by [`ssmmessages_override`]).
    pub fn new(sdk: &SdkConfig, ssmmessages: Option<StreamHost>) -> Endpoints {
        Endpoints {
            use_fips: sdk.use_fips().unwrap_or(false),
            use_dual_stack: sdk.use_dual_stack().unwrap_or(false),
            ssmmessages,
        }
    }

    /// The default host of `service` in `region` under these choices (no override):
    /// `ssm.us-east-1.amazonaws.com`, `ssmmessages-fips.us-east-1.amazonaws.com`,
    /// `ssm.us-east-1.api.aws` (dual-stack), `….amazonaws.com.cn` in China.
    /// Unverified: that every service sallyport calls has a dual-stack name in every region
    /// (the SDK's endpoint rules build the same names for ssm, kms and sts).
    pub fn default_host(&self, service: &str, region: &str) -> String {
        let china = region.starts_with("cn-");
        let suffix = match (self.use_dual_stack, china) {
            (false, false) => "amazonaws.com",
            (false, true) => "amazonaws.com.cn",
            (true, false) => "api.aws",
            (true, true) => "api.amazonwebservices.com.cn",
        };
        let fips = if self.use_fips { "-fips" } else { "" };
        format!("{service}{fips}.{region}.{suffix}")
    }
}

/// Where StartSession's StreamUrl will most likely lead (`wss://host[:port]`), so the
/// data channel's connection can open while StartSession is in flight: the ssmmessages
/// endpoint when one is named; else, when the SSM API has its own endpoint (a testbed,
/// an emulator), that endpoint's host, which serves both there; else AWS's ssmmessages
/// host for the region under FIPS / dual-stack. A wrong guess costs one unused connection.
pub fn stream_origin_guess(endpoints: &Endpoints, sdk: &SdkConfig) -> Option<String> {
    if let Some(h) = &endpoints.ssmmessages {
        return Some(h.origin());
    }
    let api = sdk.endpoint_url().map(str::to_owned).or_else(|| {
        let key = aws_types::service_config::ServiceConfigKey::builder()
            .service_id("SSM")
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .ok()?;
        sdk.service_config()?.load_config(key)
    });
    match api {
        Some(url) => StreamHost::parse(&url, "the SSM endpoint")
            .ok()
            .map(|h| h.origin()),
        None => sdk.region().map(|r| {
            format!(
                "wss://{}",
                endpoints.default_host("ssmmessages", r.as_ref())
            )
        }),
    }
}

/// Whether two websocket URLs lead to the same scheme, host and port.
pub fn same_origin(a: &str, b: &str) -> bool {
    let key = |u: &str| {
        let uri: Uri = u.parse().ok()?;
        let tls = uri.scheme_str()? == "wss";
        let host = uri.host()?.to_ascii_lowercase();
        Some((
            tls,
            host,
            uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        ))
    };
    key(a).is_some_and(|k| Some(k) == key(b))
}

/// An ssmmessages endpoint that replaces the StreamUrl's scheme and host (and port),
/// keeping its path and query: `https://vpce-…` makes `wss://vpce-…`, `http://127.0.0.1:…`
/// (a local testbed only) makes `ws://…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHost {
    tls: bool,
    /// `host`, `host:port`, `[v6]` or `[v6]:port`.
    authority: String,
    /// Where the setting came from, for messages (`AWS_ENDPOINT_URL_SSMMESSAGES`, …).
    pub source: String,
}

impl StreamHost {
    /// Checks `url` from `source`: `https://HOST[:PORT]` (or `http://` to this machine), no
    /// user, path, query or fragment. The error is one sentence naming `source`.
    pub fn parse(url: &str, source: &str) -> Result<StreamHost, String> {
        let shown = crate::transport::redact_userinfo(url);
        let bad = |why: &str| format!("{source} {shown:?} {why}");
        if url.trim().is_empty() {
            return Err(format!(
                "{source} is set but empty: unset it, or set it to the endpoint's URL"
            ));
        }
        crate::config_file::plain_http_check(url).map_err(|m| format!("{source} {m}"))?;
        let uri: Uri = url
            .parse()
            .map_err(|_| bad("is not a URL; give https://HOST[:PORT]"))?;
        let tls = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("must start with https://")),
        };
        let Some(authority) = uri.authority().map(|a| a.as_str().to_owned()) else {
            return Err(bad("has no host; give https://HOST[:PORT]"));
        };
        if authority.contains('@') {
            return Err(bad("has a user name; give https://HOST[:PORT]"));
        }
        if uri.host().is_none_or(|h| h.is_empty()) {
            return Err(bad("has no host; give https://HOST[:PORT]"));
        }
        let path = uri.path();
        if (path != "/" && !path.is_empty()) || uri.query().is_some() || url.contains('#') {
            return Err(bad(
                "has a path or query; give only https://HOST[:PORT] (the StreamUrl's path and query are kept)",
            ));
        }
        Ok(StreamHost {
            tls,
            authority: authority.to_ascii_lowercase(),
            source: source.to_owned(),
        })
    }

    /// The endpoint as a URL (`https://host[:port]`), for `doctor`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// The websocket origin on this endpoint (`wss://host[:port]`).
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}", self.authority)
    }

    /// `stream_url` with this scheme and authority, its path and query kept. A StreamUrl
    /// that does not parse is left as it is (the dial reports it).
    pub fn rewrite(&self, stream_url: &str) -> String {
        let Ok(uri) = stream_url.parse::<Uri>() else {
            return stream_url.to_owned();
        };
        let Some(rest) = uri.path_and_query() else {
            return stream_url.to_owned();
        };
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority, rest.as_str())
    }
}

/// The ssmmessages endpoint override: `from_settings` (the config file's, resolved by the
/// CLI), else [`SSMMESSAGES_ENV`], else the AWS profile's `services` section
/// (`ssmmessages = \n  endpoint_url = …`) as the SDK reads it. The generic
/// `AWS_ENDPOINT_URL` and a profile's top-level `endpoint_url` are for the APIs and do not
/// move the data channel. `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` ignores the last two.
pub fn ssmmessages_override(
    from_settings: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    sdk: &SdkConfig,
) -> Result<Option<StreamHost>, String> {
    if let Some(u) = from_settings {
        return StreamHost::parse(u, "`endpoint_url_ssmmessages` in the config file").map(Some);
    }
    if env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if let Some(u) = env(SSMMESSAGES_ENV) {
        return StreamHost::parse(&u, SSMMESSAGES_ENV).map(Some);
    }
    match profile_services_url(sdk) {
        Some(u) => StreamHost::parse(
            &u,
            "the ssmmessages endpoint_url in the AWS profile's services section",
        )
        .map(Some),
        None => Ok(None),
    }
}

/// `endpoint_url` under `ssmmessages` in the selected AWS profile's `services` section.
/// The SDK's lookup falls back to the profile's top-level `endpoint_url`, so a value equal
/// to that fallback (what a service the section does not name gets) counts as unset.
fn profile_services_url(sdk: &SdkConfig) -> Option<String> {
    let services = sdk.service_config()?;
    let lookup = |service_id: &str| {
        let key = aws_types::service_config::ServiceConfigKey::builder()
            .service_id(service_id)
            // No variable has this name: the environment is read by the caller.
            .env("SALLYPORT_NO_SUCH_VARIABLE")
            .profile("endpoint_url")
            .build()
            .ok()?;
        services.load_config(key)
    };
    let url = lookup("SSMMessages")?;
    (lookup("sallyport no such service").as_ref() != Some(&url)).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/alice-0123456789abcdef0?role=publish_subscribe&cell-number=AAEAAb%2Bx";

    fn host(url: &str) -> StreamHost {
        StreamHost::parse(url, "TEST").unwrap()
    }

    #[test]
    fn the_host_is_replaced_and_the_path_and_query_kept() {
        let vpce = "https://vpce-0abc-123.ssmmessages.eu-west-1.vpce.amazonaws.com";
        assert_eq!(
            host(vpce).rewrite(STREAM),
            "wss://vpce-0abc-123.ssmmessages.eu-west-1.vpce.amazonaws.com/v1/data-channel/alice-0123456789abcdef0?role=publish_subscribe&cell-number=AAEAAb%2Bx"
        );
        // A trailing slash is no path; upper case is a host's same name.
        assert_eq!(
            host("HTTPS://VPCE.example.com:8443/").rewrite(STREAM),
            "wss://vpce.example.com:8443/v1/data-channel/alice-0123456789abcdef0?role=publish_subscribe&cell-number=AAEAAb%2Bx"
        );
    }

    #[test]
    fn ipv6_hosts_and_ports_and_plain_ws_to_this_machine() {
        assert_eq!(
            host("https://[fd00::10]:8443").rewrite(STREAM),
            "wss://[fd00::10]:8443/v1/data-channel/alice-0123456789abcdef0?role=publish_subscribe&cell-number=AAEAAb%2Bx"
        );
        assert_eq!(
            host("https://[fd00::10]").rewrite("wss://[::1]:9/x?y=1"),
            "wss://[fd00::10]/x?y=1"
        );
        assert_eq!(
            host("http://127.0.0.1:4566")
                .rewrite("wss://ssmmessages.invalid:443/v1/data-channel/s?role=publish_subscribe"),
            "ws://127.0.0.1:4566/v1/data-channel/s?role=publish_subscribe"
        );
        // The port goes with the StreamUrl's host: none given, none kept.
        assert_eq!(
            host("https://vpce.example.com").rewrite("wss://a.example.com:444/p"),
            "wss://vpce.example.com/p"
        );
        // Not a URL: left for the dial to report.
        assert_eq!(
            host("https://v.example").rewrite("wss://a b/"),
            "wss://a b/"
        );
    }

    #[test]
    fn bad_overrides_are_one_sentence_naming_their_source() {
        for (url, says) in [
            ("", "is set but empty"),
            ("  ", "is set but empty"),
            ("http://10.0.0.5:8080", "plain http://"),
            ("vpce.example.com", "must start with https://"),
            ("wss://vpce.example.com", "must start with https://"),
            ("https://vpce.example.com/v1", "has a path or query"),
            ("https://vpce.example.com?x=1", "has a path or query"),
            ("https://vpce.example.com/#f", "has a path or query"),
            ("https://u:s3cret@vpce.example.com", "user name"),
        ] {
            let e = StreamHost::parse(url, "AWS_ENDPOINT_URL_SSMMESSAGES").unwrap_err();
            assert!(e.starts_with("AWS_ENDPOINT_URL_SSMMESSAGES"), "{url}: {e}");
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("s3cret") && !e.contains('\n'), "{url}: {e}");
        }
    }

    fn sdk(fips: bool, dual: bool) -> SdkConfig {
        SdkConfig::builder()
            .use_fips(fips)
            .use_dual_stack(dual)
            .build()
    }

    #[test]
    fn fips_and_dual_stack_choose_the_host() {
        let e = |fips, dual| Endpoints::new(&sdk(fips, dual), None);
        let cases = [
            (
                false,
                false,
                "us-east-1",
                "ssmmessages.us-east-1.amazonaws.com",
            ),
            (
                true,
                false,
                "us-east-1",
                "ssmmessages-fips.us-east-1.amazonaws.com",
            ),
            (false, true, "us-east-1", "ssmmessages.us-east-1.api.aws"),
            (
                true,
                true,
                "us-gov-west-1",
                "ssmmessages-fips.us-gov-west-1.api.aws",
            ),
            (
                false,
                false,
                "cn-north-1",
                "ssmmessages.cn-north-1.amazonaws.com.cn",
            ),
            (
                false,
                true,
                "cn-north-1",
                "ssmmessages.cn-north-1.api.amazonwebservices.com.cn",
            ),
        ];
        for (fips, dual, region, want) in cases {
            assert_eq!(e(fips, dual).default_host("ssmmessages", region), want);
        }
        assert!(e(true, false).use_fips && !e(true, false).use_dual_stack);
        assert!(!Endpoints::new(&SdkConfig::builder().build(), None).use_fips);
    }

    /// The names built here are the SDK's own for the API calls (its endpoint rules), so a
    /// probe goes where the SDK's clients go.
    #[test]
    fn the_sdk_builds_the_same_names() {
        use aws_sdk_ssm::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        use futures_util::FutureExt;
        for (fips, dual) in [(false, false), (true, false), (false, true), (true, true)] {
            for region in ["us-east-1", "eu-west-1"] {
                let params = Params::builder()
                    .region(region)
                    .use_fips(fips)
                    .use_dual_stack(dual)
                    .build()
                    .unwrap();
                let resolved = DefaultResolver::new()
                    .resolve_endpoint(&params)
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                let ours = Endpoints::new(&sdk(fips, dual), None).default_host("ssm", region);
                assert_eq!(resolved.url(), format!("https://{ours}"), "{fips} {dual}");
            }
        }
    }

    #[test]
    fn the_stream_origin_is_guessed_from_the_endpoints_then_the_region() {
        let region = |fips, dual| {
            SdkConfig::builder()
                .region(aws_config::Region::new("eu-west-1"))
                .use_fips(fips)
                .use_dual_stack(dual)
                .build()
        };
        let guess = |e: &Endpoints, sdk: &SdkConfig| stream_origin_guess(e, sdk);
        let sdk = region(true, false);
        assert_eq!(
            guess(&Endpoints::new(&sdk, None), &sdk).as_deref(),
            Some("wss://ssmmessages-fips.eu-west-1.amazonaws.com")
        );
        let vpce = Endpoints::new(&sdk, Some(host("https://vpce-1.example:8443")));
        assert_eq!(
            guess(&vpce, &sdk).as_deref(),
            Some("wss://vpce-1.example:8443")
        );
        let testbed = SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:4566")
            .build();
        assert_eq!(
            guess(&Endpoints::new(&testbed, None), &testbed).as_deref(),
            Some("ws://127.0.0.1:4566")
        );
        assert_eq!(
            guess(&Endpoints::default(), &SdkConfig::builder().build()),
            None
        );
        assert!(same_origin("wss://A.example/x?y", "wss://a.example:443"));
        assert!(!same_origin("wss://a.example:444/x", "wss://a.example"));
        assert!(!same_origin("ws://a.example/x", "wss://a.example"));
        assert!(!same_origin("wss://b.example/x", "wss://a.example"));
    }

    #[test]
    fn the_environment_names_the_data_channel_host_and_settings_win() {
        let none = SdkConfig::builder().build();
        let env = |k: &str| (k == SSMMESSAGES_ENV).then(|| "https://vpce-1.example.com".to_owned());
        let got = ssmmessages_override(None, &env, &none).unwrap().unwrap();
        assert_eq!(got.url(), "https://vpce-1.example.com");
        assert_eq!(got.source, SSMMESSAGES_ENV);
        let got = ssmmessages_override(Some("https://vpce-2.example.com"), &env, &none)
            .unwrap()
            .unwrap();
        assert_eq!(got.url(), "https://vpce-2.example.com");
        let ignore = |k: &str| match k {
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS" => Some("true".to_owned()),
            _ => env(k),
        };
        assert_eq!(ssmmessages_override(None, &ignore, &none).unwrap(), None);
        let nothing = |_: &str| None;
        assert_eq!(ssmmessages_override(None, &nothing, &none).unwrap(), None);
        let empty = |k: &str| (k == SSMMESSAGES_ENV).then(String::new);
        let e = ssmmessages_override(None, &empty, &none).unwrap_err();
        assert!(
            e.contains("AWS_ENDPOINT_URL_SSMMESSAGES is set but empty"),
            "{e}"
        );
    }
}
