//! SigV4 for the data-channel websocket upgrade (docs/protocol.md §2.6), with the `aws-sigv4`
//! crate the SDK itself signs with: `GET <StreamUrl>` (query included, empty body),
//! service `ssmmessages`, the session's region, headers `host`, `x-amz-date` and
//! `x-amz-security-token` (temporary credentials). Like Go SDK v1's `v4.Signer`, which the
//! plugin uses (`aws/signer/v4/v4.go` `buildBodyDigest`: the header only for unsigned
//! payloads, s3, s3-object-lambda and glacier), no `x-amz-content-sha256` header is
//! added: the empty body's hash only enters the canonical request.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_sdk_ssm::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use crate::transport::{SignError, UpgradeAuth, UpgradeSigner};

/// The data channel's signing name.
pub const SIGNING_NAME: &str = "ssmmessages";

/// Signs upgrades with credentials fetched from the SDK's provider chain at every call
/// (so a resume after a credential rotation signs with the new key).
pub struct SdkUpgradeSigner {
    provider: SharedCredentialsProvider,
    region: String,
}

impl SdkUpgradeSigner {
    /// Signs for `region` with credentials from `provider`.
    pub fn new(provider: SharedCredentialsProvider, region: impl Into<String>) -> Self {
        SdkUpgradeSigner {
            provider,
            region: region.into(),
        }
    }

    /// `None` when the configuration has no credentials provider or no region (then
    /// StartSession could not have succeeded either).
    pub fn from_config(config: &SdkConfig) -> Option<SdkUpgradeSigner> {
        Some(SdkUpgradeSigner {
            provider: config.credentials_provider()?,
            region: config.region()?.to_string(),
        })
    }
}

/// The provider's current credentials and the time to sign at, refused when they have
/// already expired (every signature sallyport makes: upgrades and EICE presigns).
pub(super) async fn fresh_credentials(
    provider: &SharedCredentialsProvider,
) -> Result<(Credentials, SystemTime), SignError> {
    let creds = provider
        .provide_credentials()
        .await
        .map_err(|e| SignError {
            message: format!("no usable AWS credentials: {e}"),
            credentials: true,
        })?;
    let now = SystemTime::now();
    if creds.expiry().is_some_and(|t| t <= now) {
        return Err(SignError {
            message: format!(
                "the AWS credentials for access key {} have expired",
                creds.access_key_id()
            ),
            credentials: true,
        });
    }
    Ok((creds, now))
}

impl UpgradeSigner for SdkUpgradeSigner {
    fn sign<'a>(
        &'a self,
        url: &'a str,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<UpgradeAuth, SignError>> + Send + 'a>> {
        Box::pin(async move {
            let (creds, now) = fresh_credentials(&self.provider).await?;
            let headers =
                sign_upgrade(url, host, &creds, &self.region, now).map_err(|message| {
                    SignError {
                        message,
                        credentials: false,
                    }
                })?;
            Ok(UpgradeAuth {
                headers,
                access_key_id: creds.access_key_id().to_owned(),
            })
        })
    }
}

/// The headers that sign `GET url` (sent with `Host: host`) at `time`: `Authorization`,
/// `X-Amz-Date`, and `X-Amz-Security-Token` when the credentials have a session token.
pub fn sign_upgrade(
    url: &str,
    host: &str,
    creds: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(&'static str, String)>, String> {
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let request = SignableRequest::new(
        "GET",
        url,
        [("host", host)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| format!("cannot sign the stream URL: {e}"))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| format!("signing the data channel upgrade failed: {e}"))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| {
            let name = match h.name() {
                "authorization" => "Authorization",
                "x-amz-date" => "X-Amz-Date",
                "x-amz-security-token" => "X-Amz-Security-Token",
                other => other,
            };
            (name, h.value().to_owned())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const URL: &str = "wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/alice-0123456789abcdef0?role=publish_subscribe&cell-number=AAEAAfF3Zm9v%2Bbar";
    const HOST: &str = "ssmmessages.eu-west-1.amazonaws.com";
    const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLETOKEN/+=";
    /// 2026-11-30T20:15:30Z
    const TIME: u64 = 1_796_069_730;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        )
    }

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The expected values were computed outside the project with botocore 1.43.11
    /// (python3), whose SigV4 signer is independent of aws-sigv4:
    ///
    /// ```python
    /// import datetime
    /// from unittest import mock
    /// import botocore.auth
    /// from botocore.auth import SigV4Auth
    /// from botocore.awsrequest import AWSRequest
    /// from botocore.credentials import Credentials
    ///
    /// URL = "wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/alice-0123456789abcdef0?role=publish_subscribe&cell-number=AAEAAfF3Zm9v%2Bbar"
    /// FIXED = datetime.datetime(2026, 11, 30, 20, 15, 30, tzinfo=datetime.timezone.utc)
    /// for token in (None, "IQoJb3JpZ2luX2VjEXAMPLETOKEN/+="):
    ///     creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ///     req = AWSRequest(method="GET", url=URL, data=b"")
    ///     with mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED):
    ///         SigV4Auth(creds, "ssmmessages", "eu-west-1").add_auth(req)
    ///     for k in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256"):
    ///         print(k, "=", req.headers.get(k))
    /// ```
    ///
    /// botocore added no `X-Amz-Content-SHA256` in either case, and neither do we.
    #[test]
    fn signature_matches_botocore_without_session_token() {
        let time = UNIX_EPOCH + Duration::from_secs(TIME);
        let headers = sign_upgrade(URL, HOST, &creds(None), "eu-west-1", time).unwrap();
        assert_eq!(
            header(&headers, "Authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/eu-west-1/ssmmessages/aws4_request, SignedHeaders=host;x-amz-date, Signature=1a552be987bab7b2c133ff87ee13bc7435ba87f1619634fb0f3604445b596628"
            )
        );
        assert_eq!(header(&headers, "X-Amz-Date"), Some("20261130T201530Z"));
        assert_eq!(header(&headers, "X-Amz-Security-Token"), None);
        assert_eq!(headers.len(), 2, "{headers:?}");
    }

    /// Same Python snippet as above, second iteration (with the session token).
    #[test]
    fn signature_matches_botocore_with_session_token() {
        let time = UNIX_EPOCH + Duration::from_secs(TIME);
        let headers = sign_upgrade(URL, HOST, &creds(Some(TOKEN)), "eu-west-1", time).unwrap();
        assert_eq!(
            header(&headers, "Authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/eu-west-1/ssmmessages/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=a3bf051aece197af4f5b2d07c32abf49960a2a588d0d242bd4b3557673ed69c3"
            )
        );
        assert_eq!(header(&headers, "X-Amz-Date"), Some("20261130T201530Z"));
        assert_eq!(header(&headers, "X-Amz-Security-Token"), Some(TOKEN));
        assert_eq!(headers.len(), 3, "{headers:?}");
    }

    #[test]
    fn the_host_header_sent_is_the_one_signed() {
        let time = UNIX_EPOCH + Duration::from_secs(TIME);
        let url = "ws://127.0.0.1:4567/v1/data-channel/s?role=publish_subscribe";
        let a = sign_upgrade(url, "127.0.0.1:4567", &creds(None), "eu-west-1", time).unwrap();
        let b = sign_upgrade(url, "127.0.0.1", &creds(None), "eu-west-1", time).unwrap();
        assert_ne!(header(&a, "Authorization"), header(&b, "Authorization"));
    }

    #[tokio::test]
    async fn expired_credentials_are_a_credentials_error() {
        let expired = Credentials::new(
            "AKIDEXPIRED",
            "secret",
            None,
            Some(UNIX_EPOCH + Duration::from_secs(1)),
            "test",
        );
        let signer = SdkUpgradeSigner {
            provider: SharedCredentialsProvider::new(expired),
            region: "eu-west-1".into(),
        };
        let err = signer.sign(URL, HOST).await.unwrap_err();
        assert!(err.credentials, "{err}");
        assert!(err.message.contains("AKIDEXPIRED"), "{err}");
    }
}
