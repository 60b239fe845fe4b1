//! The control plane, on the official SDK: shared configuration, the SSM calls, target
//! lookup ([`Instances`]) and retries ([`start_session`]). Errors are classified here so the
//! CLI can say one clear sentence for each.

pub mod account;
mod eic;
mod error;
mod instances;
mod kms;
mod network;
mod retry;
mod ssm;
mod tagging;
mod upgrade_signer;

pub use eic::{InstanceConnect, KEY_VALIDITY};
pub use error::{AwsError, AwsErrorKind, CA_HINT, PROXY_HINT};
pub use instances::{Instances, NodeFilter, NodeInfo, ago};
pub use kms::{CONTEXT_SESSION_ID, CONTEXT_TARGET_ID, Kms, KmsDataKeys};
pub use retry::{StartOptions, advise, retry_throttled, start_session};
pub use ssm::{SessionDocument, Ssm, StartedSession};
pub use tagging::{Tagging, is_denied as tagging_denied};
pub use upgrade_signer::{SIGNING_NAME, SdkUpgradeSigner, sign_upgrade};

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Control-plane settings after the CLI resolved them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub profile: Option<String>,
    pub region: Option<String>,
    /// Overrides every service's endpoint (the SDK also reads `AWS_ENDPOINT_URL[_SSM]`).
    pub endpoint_url: Option<String>,
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
}

/// An SDK configuration built elsewhere (tests, library users), with the direct path and
/// the platform's trust roots for connections outside the SDK.
impl From<SdkConfig> for AwsConfig {
    fn from(sdk: SdkConfig) -> AwsConfig {
        AwsConfig {
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
    // AWS_REGION="" reads as a region named "", which only fails later and obscurely.
    if config.region().is_none_or(|r| r.as_ref().trim().is_empty()) {
        return Err(AwsError::new(
            AwsErrorKind::NoRegion,
            "no AWS region is configured",
        ));
    }
    Ok(AwsConfig {
        sdk: config,
        network,
    })
}
