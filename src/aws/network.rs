//! The network path to AWS for everything sallyport sends: proxies (one decision,
//! [`ProxyRoutes`], for the SDK's HTTP client and the websocket) and trusted CAs
//! (platform roots plus `AWS_CA_BUNDLE` or the profile's `ca_bundle`).
//!
//! The SDK's own proxy support matches `NO_PROXY` with its own rules; to keep one
//! decision, [`RoutedClient`] decides per request with [`ProxyRoutes::choose`] and hands
//! the request to an SDK HTTP client built either without a proxy or with exactly the
//! chosen one. A failed proxied call is diagnosed with our own CONNECT
//! ([`open_tunnel`]) so the user reads one line naming the proxy and what it said.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use super::{AwsError, AwsErrorKind, AwsSettings};
use crate::transport::dns::Resolver;
use crate::transport::{
    CaBundle, Network, ProxyFailure, ProxyRoutes, ProxyUrl, client_config, open_tunnel,
};

/// How long a failed proxied API call's diagnosis (our own CONNECT) may take.
const DIAGNOSE_BUDGET: Duration = Duration::from_secs(10);

/// Resolves proxies and the CA bundle for `settings`; `env` reads one variable.
pub async fn resolve(
    settings: &AwsSettings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<(Network, Option<CaBundle>), AwsError> {
    let routes = ProxyRoutes::resolve(&settings.proxy, env)
        .map_err(|e| AwsError::new(AwsErrorKind::Config, e.message))?;
    let bundle = match ca_bundle_path(settings, env).await? {
        None => None,
        Some((path, origin)) => Some(
            CaBundle::load(&path, &origin)
                .map_err(|e| AwsError::new(AwsErrorKind::Config, e.to_string()))?,
        ),
    };
    let tls = client_config(bundle.as_ref().map_or(&[][..], |b| &b.certs));
    let network = Network {
        routes: Arc::new(routes),
        tls: Some(tls),
        ca_bundle: bundle
            .as_ref()
            .map(|b| format!("{} from {}", b.path.display(), b.source)),
        timeline: Default::default(),
        dns: Default::default(),
    };
    Ok((network, bundle))
}

/// `AWS_CA_BUNDLE`, else `ca_bundle` in the selected profile of the shared config file
/// (the AWS CLI's order).
async fn ca_bundle_path(
    settings: &AwsSettings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Option<(PathBuf, String)>, AwsError> {
    if let Some(p) = env("AWS_CA_BUNDLE").filter(|p| !p.trim().is_empty()) {
        return Ok(Some((PathBuf::from(p), "AWS_CA_BUNDLE".to_owned())));
    }
    let fs = aws_types::os_shim_internal::Fs::real();
    let os_env = aws_types::os_shim_internal::Env::real();
    // The non-deprecated name lives in aws-runtime, which we do not depend on directly.
    #[allow(deprecated)]
    let files = aws_config::profile::profile_file::ProfileFiles::default();
    let selected = settings
        .profile
        .clone()
        .map(std::borrow::Cow::<'static, str>::Owned);
    let profiles = match aws_config::profile::load(&fs, &os_env, &files, selected).await {
        Ok(p) => p,
        // A broken profile file is reported by the SDK's own loading with its details.
        Err(e) => {
            tracing::debug!("profile files not read for ca_bundle: {e}");
            return Ok(None);
        }
    };
    let name = profiles.selected_profile().to_owned();
    Ok(profiles
        .get_profile(&name)
        .and_then(|p| p.get("ca_bundle"))
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            (
                PathBuf::from(expand_home(p)),
                format!("ca_bundle in AWS profile {name:?}"),
            )
        }))
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest).display().to_string(),
        _ => p.to_owned(),
    }
}

/// The SDK's HTTP client for `network`: proxy per request by [`ProxyRoutes`], the CA
/// bundle added to the platform roots.
pub fn http_client(
    network: &Network,
    bundle: Option<&CaBundle>,
) -> Result<SharedHttpClient, AwsError> {
    let mut trust = TrustStore::default();
    if let Some(b) = bundle {
        trust.add_pem_certificate(b.pem.clone());
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| AwsError::new(AwsErrorKind::Config, format!("TLS setup failed: {e}")))?;
    let routes = network.routes.clone();
    let mut via = Vec::new();
    for proxy in [&routes.plain, &routes.tls].into_iter().flatten() {
        if !via.iter().any(|(p, _)| p == proxy) {
            via.push((
                proxy.clone(),
                sdk_client(Some(proxy), &tls_context, &network.dns)?,
            ));
        }
    }
    Ok(SharedHttpClient::new(RoutedClient {
        routes,
        direct: sdk_client(None, &tls_context, &network.dns)?,
        via,
        tls: network.tls.clone().unwrap_or_else(|| client_config(&[])),
    }))
}

/// The SDK's default HTTPS client (rustls with aws-lc, as `default-https-client`), with
/// our trust store, either no proxy or exactly `proxy`, and the command's address cache.
fn sdk_client(
    proxy: Option<&ProxyUrl>,
    tls_context: &TlsContext,
    dns: &Resolver,
) -> Result<SharedHttpClient, AwsError> {
    let proxy_config = match proxy {
        None => ProxyConfig::disabled(),
        Some(p) => {
            let config = ProxyConfig::all(p.origin())
                .map_err(|e| AwsError::new(AwsErrorKind::Config, format!("the proxy {p}: {e}")))?;
            match &p.user {
                Some(u) => config.with_basic_auth(u, p.password.as_deref().unwrap_or_default()),
                None => config,
            }
        }
    };
    let tls_context = tls_context.clone();
    let dns = dns.clone();
    Ok(
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut builder = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ));
            builder.set_connector_settings(settings.cloned());
            if let Some(c) = components {
                builder.set_sleep_impl(c.sleep_impl());
            }
            builder.set_proxy_config(Some(proxy_config.clone()));
            builder
                .tls_context(tls_context.clone())
                .build_with_resolver(dns.clone())
        }),
    )
}

/// Sends each request directly or through the proxy [`ProxyRoutes::choose`] picks.
#[derive(Debug)]
struct RoutedClient {
    routes: Arc<ProxyRoutes>,
    direct: SharedHttpClient,
    via: Vec<(ProxyUrl, SharedHttpClient)>,
    /// For diagnosing failures through an `https://` proxy.
    tls: Arc<rustls::ClientConfig>,
}

impl HttpClient for RoutedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The inner clients cache their connectors (and connection pools) per settings.
        SharedHttpConnector::new(RoutedConnector {
            routes: self.routes.clone(),
            direct: self.direct.http_connector(settings, components),
            via: self
                .via
                .iter()
                .map(|(p, c)| (p.clone(), c.http_connector(settings, components)))
                .collect(),
            tls: self.tls.clone(),
        })
    }
}

#[derive(Debug)]
struct RoutedConnector {
    routes: Arc<ProxyRoutes>,
    direct: SharedHttpConnector,
    via: Vec<(ProxyUrl, SharedHttpConnector)>,
    tls: Arc<rustls::ClientConfig>,
}

impl HttpConnector for RoutedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let Ok(uri) = request
            .uri()
            .parse::<tokio_tungstenite::tungstenite::http::Uri>()
        else {
            return self.direct.call(request);
        };
        let tls_dest = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(if tls_dest { 443 } else { 80 });
        let chosen = self.routes.choose(tls_dest, &host, port).and_then(|p| {
            self.via
                .iter()
                .find(|(q, _)| q == p)
                .map(|(q, c)| (q.clone(), c.clone()))
        });
        let Some((proxy, connector)) = chosen else {
            tracing::info!(host, port, "AWS API call direct (no proxy)");
            return self.direct.call(request);
        };
        tracing::info!(%proxy, host, port, "AWS API call via proxy");
        let tls = self.tls.clone();
        let fut = connector.call(request);
        HttpConnectorFuture::new(async move {
            match fut.await {
                // A plain-HTTP destination (the local testbed) goes to the proxy as a
                // forward request: its refusal arrives as a response. 407, or 401 when we
                // sent credentials: tinyproxy (1.11) answers wrong ones with 401.
                // Unverified: that no AWS API answers 401 (they use 400/403).
                Ok(resp)
                    if !tls_dest
                        && (resp.status().as_u16() == 407
                            || (resp.status().as_u16() == 401 && proxy.user.is_some())) =>
                {
                    let failure = if proxy.user.is_some() {
                        ProxyFailure::BadCredentials {
                            proxy: proxy.to_string(),
                        }
                    } else {
                        ProxyFailure::NeedsCredentials {
                            proxy: proxy.to_string(),
                        }
                    };
                    Err(ConnectorError::other(Box::new(failure), None))
                }
                Ok(resp) => Ok(resp),
                Err(e) => {
                    let bare = host.trim_start_matches('[').trim_end_matches(']');
                    let probe = tokio::time::timeout(
                        DIAGNOSE_BUDGET,
                        open_tunnel(&proxy, bare, port, &tls),
                    )
                    .await;
                    match probe {
                        // Not an IO error: retrying would only ask the proxy the same again.
                        Ok(Err(failure)) => Err(ConnectorError::other(Box::new(failure), None)),
                        // The proxy lets us through: the failure was elsewhere.
                        _ => Err(e),
                    }
                }
            }
        })
    }
}
