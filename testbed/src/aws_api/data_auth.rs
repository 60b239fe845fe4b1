//! Who may open a data channel: the SigV4 check of the websocket upgrade (docs/protocol.md §2.6).
//!
//! Since session-manager-plugin 1.2.764.0 the upgrade GET to the StreamUrl carries SigV4
//! headers (service `ssmmessages`, the session's region, GET with an empty body, the query
//! included), unless the StreamUrl is presigned. The testbed checks either form with its own
//! verifier ([`crate::aws_api::sigv4`]) and records every dial ([`DialRecord`]), so tests can prove
//! which credentials the client used on the first dial and on each resume.

use std::collections::VecDeque;
use std::sync::Mutex;

use hyper::http::request::Parts;
use serde::Serialize;

use crate::aws_api::sigv4::AuthError;

/// The signing name of the data channel (and of the agent's MGS calls).
pub const SERVICE: &str = "ssmmessages";
/// The access key ID the testbed presigns StreamUrls with. It is not a caller's key: API
/// calls signed with it are refused.
pub const PRESIGN_ACCESS_KEY_ID: &str = "AKIASALLYPORTMGSURLS";
/// How long a presigned StreamUrl is valid. Unverified: what MGS would choose.
pub const PRESIGN_EXPIRES_SECS: u64 = 300;
/// Dials remembered (the oldest are forgotten first).
const MAX_RECORDS: usize = 4096;

/// How a data-channel upgrade authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DialAuth {
    /// SigV4 `Authorization` header.
    Signed,
    /// SigV4 query parameters (a presigned StreamUrl), no signing headers.
    Presigned,
    /// Neither.
    Unsigned,
}

/// One websocket upgrade to a data channel, accepted or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DialRecord {
    pub session_id: String,
    pub auth: DialAuth,
    /// The key that signed (the presign key for a presigned URL); none when unsigned or
    /// when the signature could not be parsed.
    pub access_key_id: Option<String>,
    /// The AWS error code it was refused with; none when it got in.
    pub refused: Option<String>,
}

/// Every dial so far, bounded.
#[derive(Default)]
pub struct DialLog(Mutex<VecDeque<DialRecord>>);

impl DialLog {
    pub fn push(&self, record: DialRecord) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == MAX_RECORDS {
            log.pop_front();
        }
        log.push_back(record);
    }

    pub fn all(&self) -> Vec<DialRecord> {
        let log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }
}

/// Which form the upgrade uses: an `Authorization` header wins over presign parameters.
pub fn classify(parts: &Parts) -> DialAuth {
    if parts.headers.contains_key(hyper::header::AUTHORIZATION) {
        DialAuth::Signed
    } else if crate::aws_api::sigv4::is_presigned(parts.uri.query().unwrap_or("")) {
        DialAuth::Presigned
    } else {
        DialAuth::Unsigned
    }
}

/// The access key ID an `Authorization` header or `X-Amz-Credential` names, if any.
pub fn claimed_key(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(hyper::header::AUTHORIZATION) {
        let h = String::from_utf8_lossy(h.as_bytes());
        return crate::aws_api::sigv4::parse_authorization(&h)
            .ok()
            .map(|a| a.access_key_id);
    }
    let query = parts.uri.query().unwrap_or("");
    let cred = query
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Credential="))?;
    let cred = String::from_utf8_lossy(&crate::aws_api::sigv4::percent_decode(cred)).into_owned();
    cred.split('/').next().map(str::to_owned)
}

/// The refusal of an unsigned upgrade under [`crate::world::config::UnsignedPolicy::Refuse`].
/// Unverified: what MGS answers (status and text); this is AWS's missing-signature error.
pub fn unsigned_refusal() -> AuthError {
    AuthError::missing()
}
