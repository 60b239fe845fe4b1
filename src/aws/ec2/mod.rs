//! A small EC2 Query API client for exactly `DescribeInstances` and
//! `DescribeInstanceConnectEndpoints` (docs/protocol.md §10.4), on the SDK's own runtime
//! (the orchestrator with sallyport's HTTP client: proxies, CA bundle, timeouts, retries of
//! 5xx and network errors) and `aws-sigv4`. `aws-sdk-ec2` would do the same with a crate
//! that takes gigabytes of compiler memory and many minutes to build.
//!
//! The endpoint is looked up as the SDK's clients look theirs up (`AWS_ENDPOINT_URL_EC2`,
//! an `ec2` entry in the profile's `services` section, then `--endpoint-url` /
//! `AWS_ENDPOINT_URL`), else `ec2[-fips].REGION.amazonaws.com`.

mod xml;

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_sdk_ssm::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime::client::orchestrator::operation::Operation;
use aws_smithy_runtime::client::retries::classifiers::{
    HttpStatusCodeClassifier, TransientErrorClassifier,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;

pub use xml::{ConnectEndpoint, Ec2Instance};

use super::{AwsError, AwsErrorKind};

/// The Query API version every call names.
const API_VERSION: &str = "2016-11-15";
/// Largest answer read (a full page of 1000 instances with tags is well under this).
const MAX_BODY: usize = 8 << 20;
/// Most pages followed in one lookup.
const MAX_PAGES: usize = 20;
/// Most items kept over all pages of one lookup.
const MAX_TOTAL: usize = 5000;
/// Page size asked for (the services' maximum for both calls is 1000; endpoints allow 50).
const PAGE_SIZE: &str = "50";

/// One EC2 lookup's selection.
#[derive(Clone, Debug, Default)]
pub struct InstanceQuery {
    /// `InstanceId.N`: exactly these.
    pub ids: Vec<String>,
    /// `Filter.N`: name and values (`tag:Name`, `instance-state-name`, `vpc-id`, …).
    pub filters: Vec<(String, Vec<String>)>,
}

/// The EC2 client; cheap to clone.
#[derive(Clone, Debug)]
pub struct Ec2 {
    config: SdkConfig,
    endpoint: String,
    region: String,
    provider: Option<SharedCredentialsProvider>,
    fips: bool,
}

impl Ec2 {
    pub fn new(config: &SdkConfig) -> Ec2 {
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        let fips = config.use_fips().unwrap_or(false);
        Ec2 {
            endpoint: endpoint_url(config, &region, fips),
            region,
            provider: config.credentials_provider(),
            config: config.clone(),
            fips,
        }
    }

    /// Whether FIPS endpoints are asked for (`AWS_USE_FIPS_ENDPOINT`, the profile's
    /// `use_fips_endpoint`): then the tunnel uses an endpoint's `FipsDnsName` too.
    pub fn fips(&self) -> bool {
        self.fips
    }

    /// The endpoint the calls go to, for `doctor`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `DescribeInstances`, every page.
    pub async fn describe_instances(
        &self,
        query: &InstanceQuery,
    ) -> Result<Vec<Ec2Instance>, AwsError> {
        let mut params = Vec::new();
        for (i, id) in query.ids.iter().enumerate() {
            params.push((format!("InstanceId.{}", i + 1), id.clone()));
        }
        push_filters(&mut params, &query.filters);
        if query.ids.is_empty() {
            params.push(("MaxResults".into(), PAGE_SIZE.into()));
        }
        self.paginate("DescribeInstances", params, xml::describe_instances)
            .await
    }

    /// `DescribeInstanceConnectEndpoints` in `vpc_id` (all VPCs when `None`), every page.
    pub async fn describe_endpoints(
        &self,
        vpc_id: Option<&str>,
    ) -> Result<Vec<ConnectEndpoint>, AwsError> {
        let mut params = vec![("MaxResults".to_owned(), PAGE_SIZE.to_owned())];
        if let Some(vpc) = vpc_id {
            push_filters(&mut params, &[("vpc-id".into(), vec![vpc.to_owned()])]);
        }
        self.paginate(
            "DescribeInstanceConnectEndpoints",
            params,
            xml::describe_endpoints,
        )
        .await
    }

    async fn paginate<T>(
        &self,
        action: &'static str,
        params: Vec<(String, String)>,
        parse: fn(&str) -> Result<xml::Page<T>, xml::BadAnswer>,
    ) -> Result<Vec<T>, AwsError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut p = params.clone();
            if let Some(t) = &token {
                p.push(("NextToken".into(), t.clone()));
            }
            let body = self.call(action, &p).await?;
            let page = parse(&body).map_err(|e| {
                AwsError::new(
                    AwsErrorKind::Service,
                    format!("{action} failed: EC2's answer cannot be read: {e}"),
                )
            })?;
            all.extend(page.items);
            if all.len() > MAX_TOTAL {
                return Err(AwsError::new(
                    AwsErrorKind::Service,
                    format!("{action} answered more than {MAX_TOTAL} items; narrow the query"),
                ));
            }
            match page.next_token {
                Some(t) if token.as_ref() != Some(&t) => token = Some(t),
                _ => return Ok(all),
            }
        }
        Err(AwsError::new(
            AwsErrorKind::Service,
            format!("{action} answered more than {MAX_PAGES} pages; narrow the query"),
        ))
    }

    /// One signed `POST` of `Action=…&Version=…&params`; the body of a 2xx answer.
    async fn call(
        &self,
        action: &'static str,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        let creds = self.credentials(action).await?;
        let mut body = String::new();
        let mut writer = aws_smithy_query::QueryWriter::new(&mut body, action, API_VERSION);
        for (k, v) in params {
            writer.prefix(k).string(v);
        }
        writer.finish();
        let mut op = Operation::builder()
            .service_name("EC2")
            .operation_name(action)
            .endpoint_url(&self.endpoint)
            .no_auth()
            .standard_retry(&RetryConfig::standard().with_max_attempts(3))
            .retry_classifier(HttpStatusCodeClassifier::default())
            .retry_classifier(TransientErrorClassifier::<ErrorMetadata>::new())
            .interceptor(Signer {
                creds,
                region: self.region.clone(),
            });
        op = match self.config.http_client() {
            Some(c) => op.http_client(c),
            // A configuration built by hand (tests, library users): the SDK's default client.
            None => op.http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
                    ))
                    .build_https(),
            ),
        };
        if let Some(s) = self.config.sleep_impl() {
            op = op.sleep_impl(s);
        }
        if let Some(t) = self.config.timeout_config() {
            op = op.timeout_config(t.clone());
        }
        let op = op
            .serializer(move |body: String| {
                let mut req = HttpRequest::new(SdkBody::from(body));
                req.set_method("POST")?;
                req.set_uri("/")?;
                req.headers_mut().insert(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                );
                Ok(req)
            })
            .deserializer(deserialize)
            .build();
        op.invoke(body)
            .await
            .map_err(|e| AwsError::from_sdk(action, e))
    }

    async fn credentials(&self, action: &str) -> Result<Credentials, AwsError> {
        let Some(provider) = &self.provider else {
            return Err(AwsError::new(
                AwsErrorKind::Credentials,
                format!("{action} failed: no AWS credentials are configured"),
            ));
        };
        provider.provide_credentials().await.map_err(|e| {
            AwsError::new(
                AwsErrorKind::Credentials,
                format!("{action} failed: no usable AWS credentials ({e})"),
            )
        })
    }
}

fn push_filters(params: &mut Vec<(String, String)>, filters: &[(String, Vec<String>)]) {
    for (i, (name, values)) in filters.iter().enumerate() {
        params.push((format!("Filter.{}.Name", i + 1), name.clone()));
        for (j, v) in values.iter().enumerate() {
            params.push((format!("Filter.{}.Value.{}", i + 1, j + 1), v.clone()));
        }
    }
}

/// The EC2 endpoint for `region`, honouring the SDK's endpoint settings.
fn endpoint_url(config: &SdkConfig, region: &str, fips: bool) -> String {
    let configured = config.service_config().and_then(|s| {
        let key = aws_types::service_config::ServiceConfigKey::builder()
            .service_id("EC2")
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .ok()?;
        s.load_config(key)
    });
    if let Some(u) = configured.or_else(|| config.endpoint_url().map(str::to_owned)) {
        return u;
    }
    default_endpoint(region, fips, config.use_dual_stack().unwrap_or(false))
}

/// `https://ec2[-fips].REGION.amazonaws.com` (`.api.aws` dual-stack; China's own suffix).
fn default_endpoint(region: &str, fips: bool, dual_stack: bool) -> String {
    let name = if fips { "ec2-fips" } else { "ec2" };
    let suffix = match (region.starts_with("cn-"), dual_stack) {
        (true, false) => "amazonaws.com.cn",
        (true, true) => "api.amazonwebservices.com.cn",
        (false, false) => "amazonaws.com",
        (false, true) => "api.aws",
    };
    format!("https://{name}.{region}.{suffix}")
}

/// 2xx: the body; otherwise EC2's error document as the operation's error.
fn deserialize(resp: &HttpResponse) -> Result<String, OrchestratorError<ErrorMetadata>> {
    let bytes = resp.body().bytes().unwrap_or_default();
    if bytes.len() > MAX_BODY {
        return Err(OrchestratorError::other(format!(
            "EC2's answer is larger than {MAX_BODY} bytes"
        )));
    }
    let text = String::from_utf8_lossy(bytes);
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(text.into_owned());
    }
    let meta = match xml::error(&text) {
        Some((code, message)) => ErrorMetadata::builder().code(code).message(message),
        None => ErrorMetadata::builder()
            .code(format!("HTTP{status}"))
            .message(format!("HTTP {status} with no EC2 error document")),
    };
    Err(OrchestratorError::operation(meta.build()))
}

/// Signs each attempt (SigV4, service `ec2`) as it is sent, and refuses an answer that
/// announces more than [`MAX_BODY`] before it is read.
#[derive(Debug)]
struct Signer {
    creds: Credentials,
    region: String,
}

impl Intercept for Signer {
    fn name(&self) -> &'static str {
        "sallyport EC2 SigV4"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request_mut();
        let body = req.body().bytes().unwrap_or_default().to_vec();
        let headers = sign_post(
            req.uri(),
            &body,
            &self.creds,
            &self.region,
            SystemTime::now(),
        )?;
        for (name, value) in headers {
            req.headers_mut().insert(name, value);
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let announced = context
            .response()
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(format!("EC2's answer announces more than {MAX_BODY} bytes").into());
        }
        Ok(())
    }
}

/// The SigV4 headers for a form `POST` of `body` to `uri` (service `ec2`).
fn sign_post(
    uri: &str,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ec2")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let request = SignableRequest::new(
        "POST",
        uri,
        [("content-type", content_type)].into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign the EC2 request: {e}"))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| format!("signing the EC2 request failed: {e}"))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect())
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod client_tests;
