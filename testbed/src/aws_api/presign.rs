//! SigV4 in the query string ("presigned URLs"): presigning the testbed's own StreamUrls
//! and checking presigned requests (data-channel upgrades, EC2 Instance Connect Endpoint
//! tunnels), with the canonical-request pieces of [`crate::aws_api::sigv4`].

use std::fmt::Write as _;

use hyper::http::request::Parts;

use crate::aws_api::sigv4::{
    ALGORITHM, AuthError, UNSIGNED_PAYLOAD, canonical_request, constant_time_eq, header_values,
    hex, hmac_sha256, parse_authorization, percent_decode, signing_key, string_to_sign, uri_encode,
};

/// The query parameters whose presence makes a URL presigned (docs/protocol.md §2.6): a client
/// then dials it without signing headers.
pub const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// Whether `query` carries any presign parameter.
pub fn is_presigned(query: &str) -> bool {
    query_pairs(query).any(|(k, _)| PRESIGN_PARAMS.iter().any(|p| k == *p))
}

/// Decoded `(key, value)` pairs of a query string.
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let dec = |s: &str| String::from_utf8_lossy(&percent_decode(s)).into_owned();
    (query.split('&').filter(|p| !p.is_empty()))
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(move |(k, v)| (dec(k), dec(v)))
}

/// The payload hash of a presigned request. Unverified: what MGS would put there (S3 uses
/// this literal for presigned URLs); the testbed only checks URLs it presigned itself.
const PRESIGNED_PAYLOAD: &str = UNSIGNED_PAYLOAD;

/// Presigns `GET {path}?{query}` for `host`: returns `query` followed by the `X-Amz-*`
/// parameters (signed header `host` only, valid `expires_secs` from `amz_date`).
#[allow(clippy::too_many_arguments)]
pub fn presign_query(
    host: &str,
    path: &str,
    query: &str,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
    expires_secs: u64,
) -> String {
    let date = amz_date.get(..8).unwrap_or_default();
    let credential = format!("{access_key_id}/{date}/{region}/{service}/aws4_request");
    let mut out = String::from(query);
    for (k, v) in [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", &credential),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", &expires_secs.to_string()),
        ("X-Amz-SignedHeaders", "host"),
    ] {
        if !out.is_empty() {
            out.push('&');
        }
        let _ = write!(out, "{k}={}", uri_encode(v.as_bytes()));
    }
    let lookup = |name: &str| (name == "host").then(|| host.to_owned());
    let creq = canonical_request("GET", path, &out, &lookup, &["host"], PRESIGNED_PAYLOAD);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = string_to_sign(amz_date, &scope, &creq);
    let key = signing_key(secret, date, region, service);
    let sig = hex(&hmac_sha256(&key, sts.as_bytes()));
    let _ = write!(out, "&X-Amz-Signature={sig}");
    out
}

/// Checks a presigned request (query-string SigV4) at `now` (Unix seconds): algorithm,
/// scope, expiry, signature. Returns the access key ID that signed.
/// Unverified: MGS's error texts for presigned URLs; these follow S3's.
pub fn verify_presigned(
    parts: &Parts,
    expected_region: &str,
    expected_service: &str,
    now: i64,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<String, AuthError> {
    let rules = PresignRules {
        region: expected_region,
        service: expected_service,
        host: None,
        payload_hash: PRESIGNED_PAYLOAD,
        max_expires: 604_800,
    };
    verify_presigned_with(parts, &rules, now, secret_for)
}

/// The SHA-256 of an empty body, hex: the payload hash of a presigned request whose signer
/// hashes the (empty) body, as botocore's `SigV4QueryAuth` does (docs/protocol.md §10.3).
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a presigned request is checked against besides its key and signature.
pub struct PresignRules<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// The host the signature must cover (e.g. the DNS name the service handed out);
    /// None: whatever the request's `Host` header says.
    pub host: Option<&'a str>,
    /// The payload hash of the canonical request.
    pub payload_hash: &'a str,
    /// The largest `X-Amz-Expires` accepted, in seconds.
    pub max_expires: i64,
}

/// [`verify_presigned`] under explicit rules.
pub fn verify_presigned_with(
    parts: &Parts,
    rules: &PresignRules<'_>,
    now: i64,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<String, AuthError> {
    let (expected_region, expected_service) = (rules.region, rules.service);
    let query = parts.uri.query().unwrap_or("");
    let pairs: Vec<(String, String)> = query_pairs(query).collect();
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let missing = || {
        AuthError::incomplete(
            "Query-string authentication version 4 requires the X-Amz-Algorithm,              X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and              X-Amz-Expires parameters.",
        )
    };
    let (Some(alg), Some(cred), Some(sig), Some(amz_date), Some(signed), Some(expires)) = (
        param("X-Amz-Algorithm"),
        param("X-Amz-Credential"),
        param("X-Amz-Signature"),
        param("X-Amz-Date"),
        param("X-Amz-SignedHeaders"),
        param("X-Amz-Expires"),
    ) else {
        return Err(missing());
    };
    if alg != ALGORITHM {
        return Err(AuthError::incomplete(format!(
            "X-Amz-Algorithm only supports \"{ALGORITHM}\""
        )));
    }
    let fake = format!("{ALGORITHM} Credential={cred}, SignedHeaders={signed}, Signature={sig}");
    let auth = parse_authorization(&fake)?;
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(missing());
    }
    let secret = secret_for(&auth.access_key_id).ok_or_else(AuthError::unknown_access_key)?;
    if auth.region != expected_region || auth.service != expected_service {
        return Err(AuthError::invalid_signature(format!(
            "Credential should be scoped to '{expected_region}/{expected_service}', not              '{}/{}'.",
            auth.region, auth.service
        )));
    }
    let signed_at = crate::world::clock::parse_amz_date(amz_date)
        .filter(|_| amz_date.starts_with(&auth.date))
        .ok_or_else(|| AuthError::incomplete(format!("X-Amz-Date '{amz_date}' is invalid")))?;
    let max_expires = rules.max_expires;
    let expires: i64 = (expires.parse().ok())
        .filter(|e| (1..=max_expires).contains(e))
        .ok_or_else(|| {
            AuthError::incomplete(format!(
                "X-Amz-Expires must be a number of seconds from 1 to {max_expires}"
            ))
        })?;
    if let Some(why) = crate::world::clock::skew_error(signed_at, now).filter(|_| signed_at > now) {
        return Err(AuthError::clock_skew(why));
    }
    if now > signed_at + expires {
        return Err(AuthError::invalid_signature("Request has expired"));
    }
    // The canonical query is everything but the signature, in the order AWS sorts it.
    let rest: Vec<&str> = (query.split('&'))
        .filter(|p| !p.is_empty())
        .filter(|p| p.split('=').next() != Some("X-Amz-Signature"))
        .collect();
    let host = match rules.host {
        Some(h) => h.to_owned(),
        None => header_values(parts, "host").unwrap_or_default(),
    };
    let lookup = |name: &str| match name {
        "host" => Some(host.clone()),
        other => header_values(parts, other),
    };
    let signed: Vec<&str> = auth.signed_headers.iter().map(String::as_str).collect();
    let path = parts.uri.path();
    let creq = canonical_request(
        "GET",
        path,
        &rest.join("&"),
        &lookup,
        &signed,
        rules.payload_hash,
    );
    let (date, region, service) = (&auth.date, &auth.region, &auth.service);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = string_to_sign(amz_date, &scope, &creq);
    let key = signing_key(&secret, date, region, service);
    let expected = hex(&hmac_sha256(&key, sts.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        tracing::debug!(creq = %crate::aws_api::sigv4::loggable(&creq), %sts, "presigned sigv4 mismatch");
        return Err(AuthError::invalid_signature(
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(auth.access_key_id)
}
