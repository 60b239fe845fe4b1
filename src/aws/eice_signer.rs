//! SigV4 query presigning of the EC2 Instance Connect Endpoint tunnel URL
//! (docs/protocol.md §10.3), as the AWS CLI's `eicesigner.py` does it: `GET`, service
//! `ec2-instance-connect`, only `host` signed (the DnsName, with its port if it has one),
//! `X-Amz-Expires=60`, the payload hash of an empty body. A fresh presign per tunnel.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_ssm::config::{Credentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;

use crate::transport::{SignError, TunnelPresigner};

/// The tunnel's signing name.
pub const TUNNEL_SIGNING_NAME: &str = "ec2-instance-connect";
/// How long a presigned tunnel URL is valid (the AWS CLI's 60 s).
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// Presigns with credentials fetched from the SDK's provider chain at every call.
pub struct SdkTunnelPresigner {
    provider: SharedCredentialsProvider,
    region: String,
}

impl SdkTunnelPresigner {
    /// `None` when the configuration has no credentials provider or no region.
    pub fn from_config(config: &SdkConfig) -> Option<SdkTunnelPresigner> {
        Some(SdkTunnelPresigner {
            provider: config.credentials_provider()?,
            region: config.region()?.to_string(),
        })
    }
}

impl TunnelPresigner for SdkTunnelPresigner {
    fn presign<'a>(
        &'a self,
        url: &'a str,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, SignError>> + Send + 'a>> {
        Box::pin(async move {
            let (creds, now) = super::upgrade_signer::fresh_credentials(&self.provider).await?;
            presign_tunnel(url, host, &creds, &self.region, now).map_err(|message| SignError {
                message,
                credentials: false,
            })
        })
    }
}

/// `url` with the SigV4 query parameters that presign `GET url` (sent with `Host: host`)
/// at `time`, the signature last.
pub fn presign_tunnel(
    url: &str,
    host: &str,
    creds: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<String, String> {
    let identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(TUNNEL_SIGNING_NAME)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let request = SignableRequest::new(
        "GET",
        url,
        [("host", host)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| format!("cannot sign the tunnel URL: {e}"))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| format!("signing the tunnel URL failed: {e}"))?
        .into_parts();
    let mut req = tokio_tungstenite::tungstenite::http::Request::builder()
        .uri(url)
        .body(())
        .map_err(|e| format!("the tunnel URL: {e}"))?;
    instructions.apply_to_request_http1x(&mut req);
    Ok(req.uri().to_string())
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const URL: &str = "wss://eice-0123456789abcdef0.b67b86ba.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com/openTunnel?instanceConnectEndpointId=eice-0123456789abcdef0&remotePort=22&privateIpAddress=10.0.1.12&maxTunnelDuration=3600";
    const HOST: &str =
        "eice-0123456789abcdef0.b67b86ba.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com";
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

    fn param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
        let query = url.split_once('?')?.1;
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
    }

    /// The expected signatures were computed outside the project with botocore 1.43.11
    /// (python3), whose query signer the AWS CLI's `eicesigner.py` uses:
    ///
    /// ```python
    /// import datetime
    /// from unittest import mock
    /// import botocore.auth
    /// from botocore.auth import SigV4QueryAuth
    /// from botocore.awsrequest import AWSRequest
    /// from botocore.credentials import Credentials
    /// URL = "wss://eice-0123456789abcdef0.b67b86ba.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com/openTunnel?instanceConnectEndpointId=eice-0123456789abcdef0&remotePort=22&privateIpAddress=10.0.1.12&maxTunnelDuration=3600"
    /// HOST = URL.split("/")[2]
    /// FIXED = datetime.datetime(2026, 11, 30, 20, 15, 30, tzinfo=datetime.timezone.utc)
    /// for token in (None, "IQoJb3JpZ2luX2VjEXAMPLETOKEN/+="):
    ///     creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ///     req = AWSRequest(method="GET", url=URL, headers={"host": HOST}, data=b"")
    ///     with mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED):
    ///         SigV4QueryAuth(creds, "ec2-instance-connect", "eu-west-1", expires=60).add_auth(req)
    ///     print(req.url)
    /// ```
    const SIG_NO_TOKEN: &str = "7dc7f68113ecafc0f06e23bec0fb8adf0db6c0ba79aaf60062a0a9a1e1f19b64";
    const SIG_TOKEN: &str = "81d4c6c8d7cf7d5cf69e5e6ae562b4a208df6ce6e3d3c683d644f3e509512f4b";

    #[test]
    fn presign_matches_botocore() {
        let time = UNIX_EPOCH + Duration::from_secs(TIME);
        for (token, expected) in [
            (None, SIG_NO_TOKEN),
            (Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN/+="), SIG_TOKEN),
        ] {
            let url = presign_tunnel(URL, HOST, &creds(token), "eu-west-1", time).unwrap();
            assert!(url.starts_with(URL), "{url}");
            assert_eq!(param(&url, "X-Amz-Signature"), Some(expected), "{url}");
            assert_eq!(param(&url, "X-Amz-Expires"), Some("60"));
            assert_eq!(param(&url, "X-Amz-SignedHeaders"), Some("host"));
            assert_eq!(param(&url, "X-Amz-Date"), Some("20261130T201530Z"));
            assert_eq!(
                param(&url, "X-Amz-Credential"),
                Some("AKIDEXAMPLE%2F20261130%2Feu-west-1%2Fec2-instance-connect%2Faws4_request")
            );
            assert_eq!(
                param(&url, "X-Amz-Security-Token").is_some(),
                token.is_some()
            );
            assert!(
                !url.contains("wJalrXUtnFEMI"),
                "the secret is never in the URL"
            );
        }
    }

    #[test]
    fn the_port_in_a_dns_name_is_part_of_the_signed_host() {
        let time = UNIX_EPOCH + Duration::from_secs(TIME);
        let url = "ws://127.0.0.1:4567/openTunnel?instanceConnectEndpointId=eice-1&remotePort=22&privateIpAddress=10.0.0.1&maxTunnelDuration=60";
        let a = presign_tunnel(url, "127.0.0.1:4567", &creds(None), "eu-west-1", time).unwrap();
        let b = presign_tunnel(url, "127.0.0.1", &creds(None), "eu-west-1", time).unwrap();
        assert_ne!(param(&a, "X-Amz-Signature"), param(&b, "X-Amz-Signature"));
    }
}
