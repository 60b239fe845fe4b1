//! The control plane, on the official SDK: shared configuration, the SSM calls, target
//! lookup ([`Instances`]) and retries ([`start_session`]). Errors are classified here so the
//! CLI can say one clear sentence for each.

pub mod account;
mod ec2;
mod eic;
mod eice_signer;
mod endpoints;
mod error;
mod instances;
mod kms;
mod network;
mod retry;
mod ssm;
mod tagging;
mod upgrade_signer;

pub use ec2::{ConnectEndpoint, Ec2, Ec2Instance, InstanceQuery};
pub use eic::{InstanceConnect, KEY_VALIDITY};
pub use eice_signer::{SdkTunnelPresigner, presign_tunnel};
pub use endpoints::{Endpoints, SSMMESSAGES_ENV, StreamHost, same_origin, stream_origin_guess};
pub use error::{AwsError, AwsErrorKind, CA_HINT, PROXY_HINT};
pub use instances::{Instances, NodeFilter, NodeInfo, ago};
pub use kms::{CONTEXT_SESSION_ID, CONTEXT_TARGET_ID, Kms, KmsDataKeys};
pub use retry::{Abandon, StartOptions, advise, retry_throttled, start_session};
pub use ssm::{SessionDocument, Ssm, StartedSession};
pub use tagging::{Tagging, is_denied as tagging_denied};
pub use upgrade_signer::{SIGNING_NAME, SdkUpgradeSigner, sign_upgrade};
/// Answers parsed by hand, for the fuzz properties.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use {retry::missing_permission, tagging::instance_id};

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Control-plane settings after the CLI resolved them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub profile: Option<String>,
    pub region: Option<String>,
    /// Overrides every service's endpoint (the SDK also reads `AWS_ENDPOINT_URL[_SSM]`).
    pub endpoint_url: Option<String>,
    /// The config file's `endpoint_url_ssmmessages`: the data channel's host
    /// (docs/protocol.md §2.8); `AWS_ENDPOINT_URL_SSMMESSAGES` is read at load.
    pub endpoint_url_ssmmessages: Option<String>,
    /// `--proxy` / `--no-proxy` / `proxy` in the config file (the environment is read at
    /// load).
    pub proxy: crate::transport::ProxyRequest,
}

/// What [`load`] resolved for one command: the SDK's configuration, and the network path
/// (proxy routes, TLS trust) that every connection made outside the SDK takes too (the
/// data channel's websockets, `doctor`'s probes). The command builds it once and passes it
/// down; nothing of it is kept in process-wide state, so two configurations in one
/// process (tests, a future daemon) cannot see each other's.
#[derive(Clone)]
pub struct AwsConfig {
    pub sdk: SdkConfig,
    pub network: crate::transport::Network,
    /// FIPS, dual-stack and the data channel's host override, for connections outside
    /// the SDK (the SDK's clients read the first two from `sdk`).
    pub endpoints: Endpoints,
}

/// An SDK configuration built elsewhere (tests, library users), with the direct path and
/// the platform's trust roots for connections outside the SDK.
impl From<SdkConfig> for AwsConfig {
    fn from(sdk: SdkConfig) -> AwsConfig {
        AwsConfig {
            endpoints: Endpoints::new(&sdk, None),
            sdk,
            network: crate::transport::Network::default(),
        }
    }
}

/// Loads configuration through the SDK's default chain, with sallyport's HTTP client
/// (proxies and CA bundles, see [`network`]), (environment, shared files,
/// profiles, SSO, roles, credential_process, web identity, container and instance roles).
/// A bad proxy setting or CA bundle is an [`AwsErrorKind::Config`] error.
pub async fn load(settings: &AwsSettings) -> Result<AwsConfig, AwsError> {
    refuse_plain_http(settings.endpoint_url.as_deref(), std::env::vars())?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(p) = &settings.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &settings.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(u) = &settings.endpoint_url {
        loader = loader.endpoint_url(u);
    }
    let env = |k: &str| std::env::var(k).ok();
    let (network, bundle) = network::resolve(settings, &env).await?;
    loader = loader.http_client(network::http_client(&network, bundle.as_ref())?);
    let config = loader.load().await;
    // The AWS profile's own `endpoint_url` (~/.aws/config), as the SDK resolved it.
    if let Some(u) = config.endpoint_url() {
        crate::config_file::plain_http_check(u)
            .map_err(|m| AwsError::new(AwsErrorKind::Config, format!("the endpoint {m}")))?;
    }
    refuse_plain_http_services(&config)?;
    // AWS_REGION="" reads as a region named "", which only fails later and obscurely.
    if config.region().is_none_or(|r| r.as_ref().trim().is_empty()) {
        return Err(AwsError::new(
            AwsErrorKind::NoRegion,
            "no AWS region is configured",
        ));
    }
    let ssmmessages = endpoints::ssmmessages_override(
        settings.endpoint_url_ssmmessages.as_deref(),
        &env,
        &config,
    )
    .map_err(|m| AwsError::new(AwsErrorKind::Config, m))?;
    Ok(AwsConfig {
        endpoints: Endpoints::new(&config, ssmmessages),
        sdk: config,
        network,
    })
}

/// The SDK's service IDs of every API sallyport calls, as each client looks up its own
/// endpoint (`AWS_ENDPOINT_URL_<ID>`, `endpoint_url` in a profile's `services` section).
const SERVICE_IDS: [&str; 6] = [
    "SSM",
    "EC2",
    "KMS",
    "STS",
    "EC2 Instance Connect",
    "Resource Groups Tagging API",
];

/// Refuses a plain `http://` endpoint to another machine that a client would take from the
/// shared config's `services` sections (or the environment), looked up as the SDK's
/// clients look it up, before any call.
fn refuse_plain_http_services(config: &SdkConfig) -> Result<(), AwsError> {
    let Some(services) = config.service_config() else {
        return Ok(());
    };
    for id in SERVICE_IDS {
        let Ok(key) = aws_types::service_config::ServiceConfigKey::builder()
            .service_id(id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
        else {
            continue;
        };
        if let Some(url) = services.load_config(key) {
            crate::config_file::plain_http_check(&url).map_err(|m| {
                AwsError::new(
                    AwsErrorKind::Config,
                    format!("the {id} endpoint from the AWS config {m}"),
                )
            })?;
        }
    }
    Ok(())
}

/// Refuses a plain `http://` endpoint to another machine before any call: the resolved
/// `--endpoint-url` / config file one, and every `AWS_ENDPOINT_URL*` variable (the SDK
/// reads those itself).
fn refuse_plain_http(
    endpoint_url: Option<&str>,
    env: impl Iterator<Item = (String, String)>,
) -> Result<(), AwsError> {
    let mut from_env = Vec::new();
    for (k, v) in env.filter(|(k, _)| k.starts_with("AWS_ENDPOINT_URL")) {
        // The SDK takes a set-but-empty variable as an endpoint and panics on it.
        if v.trim().is_empty() {
            return Err(AwsError::new(
                AwsErrorKind::Config,
                format!("{k} is set but empty: unset it, or set it to the endpoint's URL"),
            ));
        }
        from_env.push((k, v));
    }
    let named = endpoint_url.map(|u| ("the endpoint".to_owned(), u.to_owned()));
    for (source, url) in named.into_iter().chain(from_env) {
        crate::config_file::plain_http_check(&url)
            .map_err(|m| AwsError::new(AwsErrorKind::Config, format!("{source} {m}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        for ok in [
            "https://ssm.eu-west-1.amazonaws.com",
            "http://127.0.0.1:4566",
            "http://localhost:8080/",
            "HTTP://[::1]:9000",
            "http://user:pw@127.0.0.2",
        ] {
            assert!(refuse_plain_http(Some(ok), vars(&[])).is_ok(), "{ok}");
        }
        let e = refuse_plain_http(Some("http://ssm.example.com"), vars(&[])).unwrap_err();
        assert_eq!(e.kind, AwsErrorKind::Config);
        assert!(
            e.message
                .starts_with("the endpoint \"http://ssm.example.com\""),
            "{}",
            e.message
        );
        for (k, v) in [
            ("AWS_ENDPOINT_URL", "http://10.0.0.5:4566"),
            ("AWS_ENDPOINT_URL_SSM", "http://localhost.evil.example"),
            ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1@kms.example.com"),
        ] {
            let e = refuse_plain_http(None, vars(&[("HOME", "/"), (k, v)])).unwrap_err();
            assert_eq!(e.kind, AwsErrorKind::Config, "{k}");
            assert!(e.message.starts_with(k), "{}", e.message);
            assert!(!e.message.contains('\n'), "{}", e.message);
        }
        let e = refuse_plain_http(
            None,
            vars(&[("AWS_ENDPOINT_URL_STS", "http://u:s3cret@10.1.1.1")]),
        )
        .unwrap_err();
        assert!(!e.message.contains("s3cret"), "{}", e.message);
        // Set but empty: the SDK would panic on it, so it is refused, naming the variable.
        let e = refuse_plain_http(None, vars(&[("AWS_ENDPOINT_URL", "")])).unwrap_err();
        assert!(
            e.message.contains("AWS_ENDPOINT_URL is set but empty"),
            "{}",
            e.message
        );
    }
}
