//! Authenticating the websocket upgrade (docs/protocol.md §2.6).
//!
//! Since session-manager-plugin 1.2.764.0 the upgrade `GET <StreamUrl>` carries SigV4
//! headers (service `ssmmessages`, the session's region) unless the StreamUrl is already
//! presigned. The signing itself needs credentials, which live in `aws`; this layer only
//! asks an [`UpgradeSigner`] for headers at every dial (first dial and every resume
//! redial), so rotated credentials are used on resume.

use std::future::Future;
use std::pin::Pin;

/// Headers to add to one websocket upgrade request, and whose key signed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeAuth {
    /// `(name, value)` pairs: `Authorization`, `X-Amz-Date`, and `X-Amz-Security-Token`
    /// for temporary credentials.
    pub headers: Vec<(&'static str, String)>,
    /// The access key ID that signed (for the debug log; never the secret).
    pub access_key_id: String,
}

/// Why a signer produced no headers.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct SignError {
    pub message: String,
    /// No usable credentials (none found, expired): the user can fix that.
    pub credentials: bool,
}

/// Signs `GET url` for the websocket upgrade with fresh credentials.
pub trait UpgradeSigner: Send + Sync + 'static {
    /// `host` is the exact `Host` header the upgrade request will carry (tungstenite's:
    /// the URL's authority without userinfo), so the signature covers what is sent.
    fn sign<'a>(
        &'a self,
        url: &'a str,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<UpgradeAuth, SignError>> + Send + 'a>>;
}

/// The query parameters that make a StreamUrl presigned (the plugin's `isPresignedURL`).
const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// True when the URL's query carries any SigV4 presign parameter: then the upgrade is
/// sent without signing headers. Names are compared ignoring ASCII case (Go's lookup is
/// exact; a differently cased name is no less a presigned URL).
pub fn is_presigned(url: &str) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or(pair);
        PRESIGN_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_urls_are_recognised_by_any_presign_parameter() {
        let base = "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s";
        for p in PRESIGN_PARAMS {
            assert!(
                is_presigned(&format!("{base}?role=publish_subscribe&{p}=x")),
                "{p}"
            );
            assert!(is_presigned(&format!("{base}?{p}=x")), "{p} first");
        }
        assert!(is_presigned(&format!("{base}?x-amz-signature=abc")));
        assert!(!is_presigned(base));
        assert!(!is_presigned(&format!(
            "{base}?role=publish_subscribe&cell-number=AAE%3D"
        )));
        // A value that merely mentions a parameter name is not one.
        assert!(!is_presigned(&format!("{base}?role=X-Amz-Signature")));
        assert!(!is_presigned(&format!("{base}?X-Amz-Signatures=1")));
    }
}
