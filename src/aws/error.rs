//! AWS failures, sorted by what the user can do about them.

use std::error::Error as StdError;

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    NoRegion,
    /// No credentials found, or they are expired / not recognised.
    Credentials,
    AccessDenied,
    /// The agent on the target is not connected (or the target does not exist).
    TargetNotConnected,
    /// The target string is not a valid target.
    InvalidTarget,
    Throttled,
    /// The request's signing time is more than 5 minutes off the service's clock.
    ClockSkew,
    /// The endpoint could not be reached (DNS, TCP, TLS, timeout).
    Unreachable,
    /// Any other service error.
    Service,
    /// A local setting cannot be used: a bad proxy URL, a CA bundle that is missing or
    /// holds no certificate.
    Config,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AwsError {
    pub kind: AwsErrorKind,
    /// The service's error code, when there is one.
    pub code: Option<String>,
    pub message: String,
    /// What the user can do about it, when the code that saw the error knows better than
    /// the generic advice for its kind (see [`crate::error::Failure::aws`]).
    pub hint: Option<String>,
}

impl AwsError {
    pub fn new(kind: AwsErrorKind, message: impl Into<String>) -> AwsError {
        AwsError {
            kind,
            code: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> AwsError {
        self.hint = Some(hint.into());
        self
    }

    /// Classifies an SDK error from `operation`.
    pub fn from_sdk<E, R>(operation: &str, err: SdkError<E, R>) -> AwsError
    where
        E: ProvideErrorMetadata + StdError + 'static,
        R: std::fmt::Debug + 'static,
    {
        let chain = error_chain(&err);
        if !matches!(err, SdkError::ServiceError(_)) {
            if let Some(proxy) = find_in_chain::<crate::transport::ProxyFailure>(&err) {
                return AwsError::new(
                    AwsErrorKind::Unreachable,
                    format!("{operation} failed: {proxy}"),
                )
                .with_hint(PROXY_HINT);
            }
            if crate::transport::is_unknown_issuer(&err) || chain.contains("UnknownIssuer") {
                return AwsError::new(
                    AwsErrorKind::Unreachable,
                    format!(
                        "{operation} failed: the endpoint's TLS certificate is signed by an unknown authority"
                    ),
                )
                .with_hint(CA_HINT);
            }
        }
        match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let code = inner.code().unwrap_or("Unknown").to_owned();
                let text = inner.message().unwrap_or_default().to_owned();
                AwsError {
                    kind: if is_clock_skew(&text) {
                        AwsErrorKind::ClockSkew
                    } else {
                        kind_for_code(&code)
                    },
                    message: if text.is_empty() {
                        format!("{operation} failed: {code}")
                    } else {
                        format!("{operation} failed: {code}: {text}")
                    },
                    code: Some(code),
                    hint: None,
                }
            }
            _ if mentions_credentials(&chain) => AwsError::new(
                AwsErrorKind::Credentials,
                format!("{operation} failed: no usable AWS credentials ({chain})"),
            ),
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => AwsError::new(
                AwsErrorKind::Unreachable,
                format!("{operation} failed: could not reach the endpoint ({chain})"),
            ),
            _ => AwsError::new(
                AwsErrorKind::Service,
                format!("{operation} failed: {chain}"),
            ),
        }
    }
}

/// What to do about a proxy that refused or failed.
pub const PROXY_HINT: &str = "check --proxy, `proxy` in the config file, HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY (--no-proxy goes direct)";
/// What to do about a certificate from an unknown authority.
pub const CA_HINT: &str = "if a proxy inspects TLS, point AWS_CA_BUNDLE (or ca_bundle in your AWS profile) at its CA certificate (PEM)";

/// The first error of type `T` in `err`'s source chain.
fn find_in_chain<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// AWS answers a request signed too far from its own clock with InvalidSignatureException
/// and one of these texts (the SigV4 5-minute rule).
fn is_clock_skew(message: &str) -> bool {
    message.starts_with("Signature expired") || message.starts_with("Signature not yet current")
}

fn kind_for_code(code: &str) -> AwsErrorKind {
    match code {
        "TargetNotConnected" => AwsErrorKind::TargetNotConnected,
        "InvalidTarget"
        | "InvalidInstanceId"
        | "ValidationException"
        | "InvalidInstanceID.NotFound"
        | "InvalidInstanceID.Malformed" => AwsErrorKind::InvalidTarget,
        "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" => {
            AwsErrorKind::AccessDenied
        }
        // EC2's names: bad or unknown keys, and a request signed too long ago.
        "AuthFailure" => AwsErrorKind::Credentials,
        "RequestExpired" => AwsErrorKind::ClockSkew,
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationTokenException"
        | "IncompleteSignatureException" => AwsErrorKind::Credentials,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => AwsErrorKind::Throttled,
        _ => AwsErrorKind::Service,
    }
}

fn mentions_credentials(chain: &str) -> bool {
    let lower = chain.to_ascii_lowercase();
    lower.contains("credential") || lower.contains("no identity")
}

/// "outer: inner: innermost", the whole `source()` chain on one line.
fn error_chain(err: &dyn StdError) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_skew_is_recognised_by_its_text() {
        assert!(is_clock_skew(
            "Signature expired: 20261123T010000Z is now earlier than 20261123T010500Z (20261123T011000Z - 5 min.)"
        ));
        assert!(is_clock_skew(
            "Signature not yet current: 20261123T013000Z is still later than 20261123T011500Z (20261123T011000Z + 5 min.)"
        ));
        assert!(!is_clock_skew(
            "The request signature we calculated does not match"
        ));
    }

    /// A dispatch failure as the SDK reports one for `source`.
    fn dispatch(
        source: Box<dyn StdError + Send + Sync>,
    ) -> SdkError<aws_sdk_ssm::operation::start_session::StartSessionError, ()> {
        SdkError::dispatch_failure(
            aws_smithy_runtime_api::client::result::ConnectorError::other(source, None),
        )
    }

    #[test]
    fn a_proxy_refusing_credentials_is_unreachable_not_a_credentials_error() {
        let failure = crate::transport::ProxyFailure::BadCredentials {
            proxy: "http://u:***@p:3128".into(),
        };
        let e = AwsError::from_sdk("StartSession", dispatch(Box::new(failure)));
        assert_eq!(e.kind, AwsErrorKind::Unreachable, "{e}");
        assert_eq!(
            e.message,
            "StartSession failed: the proxy http://u:***@p:3128 refused the credentials in its URL"
        );
        assert_eq!(e.hint.as_deref(), Some(PROXY_HINT));
    }

    #[test]
    fn an_unknown_issuer_points_at_the_ca_bundle() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = AwsError::from_sdk(
            "StartSession",
            dispatch(Box::new(std::io::Error::other(tls))),
        );
        assert_eq!(e.kind, AwsErrorKind::Unreachable, "{e}");
        assert!(
            e.hint
                .as_deref()
                .unwrap_or_default()
                .contains("AWS_CA_BUNDLE"),
            "{e:?}"
        );
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            kind_for_code("TargetNotConnected"),
            AwsErrorKind::TargetNotConnected
        );
        assert_eq!(
            kind_for_code("AccessDeniedException"),
            AwsErrorKind::AccessDenied
        );
        assert_eq!(
            kind_for_code("UnrecognizedClientException"),
            AwsErrorKind::Credentials
        );
        assert_eq!(
            kind_for_code("ExpiredTokenException"),
            AwsErrorKind::Credentials
        );
        assert_eq!(
            kind_for_code("ThrottlingException"),
            AwsErrorKind::Throttled
        );
        assert_eq!(kind_for_code("InvalidDocument"), AwsErrorKind::Service);
    }
}
