//! AWS Signature Version 4 verification for the fake SSM API.
//!
//! The testbed recomputes the signature the way AWS does (canonical request, string to sign,
//! HMAC-SHA256 key chain) so a client that signs wrongly fails here as it would against AWS.
//! The `Authorization` header form is what the SDKs use for JSON APIs and what the plugin puts
//! on the data-channel upgrade; the query-string ("presigned URL") form is only what the
//! testbed's own presigned StreamUrls carry ([`presign_query`], [`verify_presigned`]). Clock
//! skew of the header form is checked by the caller ([`crate::aws_api::account::Account::authenticate`]), not here.

use std::fmt::Write as _;

use hyper::StatusCode;
use hyper::http::request::Parts;
use sha2::{Digest, Sha256};

pub use crate::aws_api::presign::{
    EMPTY_PAYLOAD_SHA256, PRESIGN_PARAMS, PresignRules, is_presigned, presign_query,
    verify_presigned, verify_presigned_with,
};

pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The literal an SDK may put in `x-amz-content-sha256` instead of the body's hash.
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Why a request was refused, as the client sees it.
///
/// Statuses follow the SSM "Common Errors" page where it lists one (MissingAuthenticationToken
/// 403, IncompleteSignature 400); for the others they are what AWS JSON services were seen to
/// return. The exact statuses for SSM are a guess; the codes and messages are AWS's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AuthError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let message = message.into();
        AuthError {
            status,
            code,
            message,
        }
    }

    pub fn missing() -> Self {
        let message = "Missing Authentication Token";
        Self::new(403, "MissingAuthenticationTokenException", message)
    }

    /// The header is there but cannot be parsed, or lacks a required part.
    pub fn incomplete(message: impl Into<String>) -> Self {
        Self::new(400, "IncompleteSignatureException", message)
    }

    /// An access key ID the testbed does not know; the text is what AWS answers.
    pub fn unknown_access_key() -> Self {
        let message = "The security token included in the request is invalid.";
        Self::new(400, "UnrecognizedClientException", message)
    }

    /// A temporary key past its expiry (or one the testbed was told to expire); the text is
    /// what AWS answers.
    /// The signing time is more than 5 minutes off the service's clock.
    pub fn clock_skew(message: String) -> Self {
        Self::new(400, "InvalidSignatureException", message)
    }

    pub fn expired() -> Self {
        let message = "The security token included in the request is expired";
        Self::new(400, "ExpiredTokenException", message)
    }

    /// Well-formed, known key, but the wrong scope or signature.
    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::new(403, "InvalidSignatureException", message)
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` from the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Lower-case hex.
    pub signature: String,
}

impl std::fmt::Display for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, signed) = (self, self.signed_headers.join(";"));
        let scope = format!("{}/{}/{}/{}", a.access_key_id, a.date, a.region, a.service);
        let sig = &a.signature;
        write!(
            f,
            "{ALGORITHM} Credential={scope}/aws4_request, SignedHeaders={signed}, Signature={sig}"
        )
    }
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthError> {
    let rest = value.strip_prefix(ALGORITHM).ok_or_else(|| {
        AuthError::incomplete(format!(
            "Authorization header must start with '{ALGORITHM}'. Authorization={value}"
        ))
    })?;
    let field = |name: &str| {
        let prefix = format!("{name}=");
        rest.split(',')
            .find_map(|p| p.trim().strip_prefix(prefix.as_str()))
            .filter(|v| !v.is_empty())
    };
    let (credential, signed) = (field("Credential"), field("SignedHeaders"));
    let signature = field("Signature");
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        let fields = [("Credential", credential), ("Signature", signature)];
        let missing: String = (fields.into_iter().chain([("SignedHeaders", signed)]))
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| format!("Authorization header requires '{name}' parameter. "))
            .collect();
        return Err(AuthError::incomplete(format!(
            "{missing}Authorization={value}"
        )));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, "aws4_request"] = scope[..] else {
        return Err(AuthError::incomplete(format!(
            "Credential should be of the form AKID/YYYYMMDD/region/service/aws4_request, \
             got '{credential}'."
        )));
    };
    Ok(Authorization {
        access_key_id: akid.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.to_ascii_lowercase(),
    })
}

/// Checks the request's signature; `secret_for` maps an access key ID to its secret.
/// Returns the access key ID that signed.
pub fn verify(
    parts: &Parts,
    body: &[u8],
    expected_region: &str,
    expected_service: &str,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<String, AuthError> {
    let header = parts.headers.get(hyper::header::AUTHORIZATION);
    let header = String::from_utf8_lossy(header.ok_or_else(AuthError::missing)?.as_bytes());
    let auth = parse_authorization(&header)?;
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let amz_date = header_values(parts, "x-amz-date")
        .or_else(|| header_values(parts, "date"))
        .ok_or_else(|| {
            AuthError::incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
                 header.",
            )
        })?;
    let secret = secret_for(&auth.access_key_id).ok_or_else(AuthError::unknown_access_key)?;
    if auth.date.len() != 8 || !amz_date.starts_with(&auth.date) {
        return Err(AuthError::invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{amz_date}'.",
            auth.date
        )));
    }
    if auth.region != expected_region {
        let region = &auth.region;
        let msg = format!("Credential should be scoped to a valid region, not '{region}'. ");
        return Err(AuthError::invalid_signature(msg));
    }
    if auth.service != expected_service {
        let msg = format!("Credential should be scoped to correct service: '{expected_service}'. ");
        return Err(AuthError::invalid_signature(msg));
    }
    let (creq, sts, expected) = compute(parts, body, &auth, &amz_date, &secret);
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        tracing::debug!(creq = %loggable(&creq), %sts, "sigv4 mismatch");
        return Err(AuthError::invalid_signature(format!(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details.\n\nThe Canonical String for this request should have \
             been\n'{creq}'\n\nThe String-to-Sign should have been\n'{sts}'\n"
        )));
    }
    Ok(auth.access_key_id)
}

/// The `Authorization` value that signs every header of `parts` (which must include `host`
/// and `x-amz-date`). The testbed only verifies; this lets tests sign without an SDK.
pub fn authorization_header(
    parts: &Parts,
    body: &[u8],
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
) -> String {
    let amz_date = header_values(parts, "x-amz-date").unwrap_or_default();
    let mut signed: Vec<String> = parts.headers.keys().map(|k| k.to_string()).collect();
    signed.sort();
    let mut auth = Authorization {
        access_key_id: access_key_id.to_owned(),
        date: amz_date.get(..8).unwrap_or_default().to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed,
        signature: String::new(),
    };
    auth.signature = compute(parts, body, &auth, &amz_date, secret).2;
    auth.to_string()
}

/// Canonical request, string to sign and hex signature of `parts` as `auth` scopes it.
fn compute(
    parts: &Parts,
    body: &[u8],
    auth: &Authorization,
    amz_date: &str,
    secret: &str,
) -> (String, String, String) {
    let payload_hash = match header_values(parts, "x-amz-content-sha256") {
        Some(v) if v == UNSIGNED_PAYLOAD => v,
        _ => hex(&Sha256::digest(body)),
    };
    let signed: Vec<&str> = auth.signed_headers.iter().map(String::as_str).collect();
    let (method, path) = (parts.method.as_str(), parts.uri.path());
    let query = parts.uri.query().unwrap_or("");
    let lookup = |name: &str| header_values(parts, name);
    let creq = canonical_request(method, path, query, &lookup, &signed, &payload_hash);
    let (date, region, service) = (&auth.date, &auth.region, &auth.service);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = string_to_sign(amz_date, &scope, &creq);
    let key = signing_key(secret, date, region, service);
    let sig = hex(&hmac_sha256(&key, sts.as_bytes()));
    (creq, sts, sig)
}

/// The canonical request: method, URI, query, headers, signed header list, payload hash.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    header: &dyn Fn(&str) -> Option<String>,
    signed_headers: &[&str],
    payload_hash: &str,
) -> String {
    let (path, query) = (canonical_path(path), canonical_query(query));
    let mut out = format!("{method}\n{path}\n{query}\n");
    for name in signed_headers {
        let _ = writeln!(out, "{name}:{}", header(name).unwrap_or_default());
    }
    let _ = write!(out, "\n{}\n{payload_hash}", signed_headers.join(";"));
    out
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex(&Sha256::digest(canonical_request.as_bytes()));
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}")
}

pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, region.as_bytes());
    let k = hmac_sha256(&k, service.as_bytes());
    hmac_sha256(&k, b"aws4_request")
}

/// HMAC-SHA256 (RFC 2104), aws-lc-rs's, as the client's TLS already compiles it.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// All values of one header, trimmed, inner runs of spaces collapsed, joined with `,`.
pub(crate) fn header_values(parts: &Parts, name: &str) -> Option<String> {
    let vals: Vec<String> = (parts.headers.get_all(name).iter())
        .map(|v| {
            let v = String::from_utf8_lossy(v.as_bytes());
            v.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect();
    (!vals.is_empty()).then(|| vals.join(","))
}

/// Non-S3 services normalise the path and URI-encode it once more (the SDKs'
/// "double URI encode"): the path as received is already percent-encoded.
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<String> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => drop(segments.pop()),
            s => segments.push(uri_encode(s.as_bytes())),
        }
    }
    let slash = if path.ends_with('/') && !segments.is_empty() {
        "/"
    } else {
        ""
    };
    format!("/{}{slash}", segments.join("/"))
}

/// Decode each `key=value`, re-encode with AWS's rules, sort by key then value.
fn canonical_query(query: &str) -> String {
    let enc = |s: &str| uri_encode(&percent_decode(s));
    let mut pairs: Vec<(String, String)> = (query.split('&').filter(|p| !p.is_empty()))
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (enc(k), enc(v)))
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join("&")
}

/// Everything but the unreserved set `A-Z a-z 0-9 - _ . ~` as `%XX` (upper-case hex).
pub(crate) fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Query decoding as `application/x-www-form-urlencoded` (`+` is a space); a bad `%`
/// escape is kept literally.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::with_capacity(s.len()), 0);
    while let Some(&c) = b.get(i) {
        let escaped = b
            .get(i + 1..i + 3)
            .filter(|h| c == b'%' && h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (escaped, c) {
            (Some(v), _) => (out.push(v), i += 3),
            (None, b'+') => (out.push(b' '), i += 1),
            (None, c) => (out.push(c), i += 1),
        };
    }
    out
}

/// A canonical request as it may be logged: the session token's value (a header line
/// `x-amz-security-token:` or a query parameter `X-Amz-Security-Token=`) replaced, since
/// a token is a secret even in a debug log.
pub(crate) fn loggable(creq: &str) -> String {
    creq.split('\n')
        .map(|line| {
            let line = match line.split_once(':') {
                Some((name, _)) if name.eq_ignore_ascii_case("x-amz-security-token") => {
                    return format!("{name}:<redacted>");
                }
                _ => line,
            };
            line.split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("X-Amz-Security-Token") => {
                        format!("{k}=<redacted>")
                    }
                    _ => pair.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("&")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compares signatures in time independent of where they differ (aws-lc-rs's compare).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    //! Vectors from the AWS SigV4 test suite (`aws-signing-test-suite/v4/<name>`, as shipped
    //! with aws-sigv4): key AKIDEXAMPLE, region us-east-1, service `service`, 20150830T123600Z.
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    #[test]
    fn a_logged_canonical_request_shows_no_session_token() {
        let creq = "GET\n/openTunnel\nA=1&X-Amz-Security-Token=SECRETTOKEN&b=2\n\
                    host:h\nx-amz-security-token:SECRETTOKEN2\n\nhost;x-amz-security-token\nabc";
        let shown = loggable(creq);
        assert!(!shown.contains("SECRETTOKEN"), "{shown}");
        assert!(
            shown.contains("A=1&X-Amz-Security-Token=<redacted>&b=2"),
            "{shown}"
        );
        assert!(shown.contains("x-amz-security-token:<redacted>"), "{shown}");
        assert!(shown.contains("host;x-amz-security-token\nabc"), "{shown}");
    }
    const SCOPE: &str = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = hyper::Request::builder().method(method).uri(uri);
        b = b.header("host", "example.amazonaws.com");
        b = b.header("x-amz-date", "20150830T123600Z");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn check(p: &Parts, body: &[u8]) -> Result<String, AuthError> {
        let secret = |k: &str| (k == "AKIDEXAMPLE").then(|| SECRET.to_owned());
        verify(p, body, "us-east-1", "service", secret)
    }

    fn authz(signed: &str, sig: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders={signed}, Signature={sig}")
    }

    #[test]
    fn hmac_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(hex(&mac), want);
    }

    #[test]
    fn get_vanilla_canonical_request_and_string_to_sign() {
        let p = parts("GET", "/", &[]);
        let signed = ["host", "x-amz-date"];
        let empty = hex(&Sha256::digest(b""));
        let creq = canonical_request("GET", "/", "", &|n| header_values(&p, n), &signed, &empty);
        let want = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
                    host;x-amz-date\n\
                    e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(creq, want);
        let sts = string_to_sign("20150830T123600Z", &SCOPE[12..], &creq);
        let want = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
                    bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63";
        assert_eq!(sts, want);
    }

    const FORM: &str = "Param1=value1";
    // (name, method, URI, extra headers, signed headers, signature)
    #[allow(clippy::type_complexity)]
    #[rustfmt::skip]
    const VECTORS: &[(&str, &str, &str, &[(&str, &str)], &str, &str)] = &[
        ("get-vanilla", "GET", "/", &[], "host;x-amz-date",
         "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1", &[],
         "host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        ("get-header-value-trim", "GET", "/", &[("My-Header1", " value1"), ("My-Header2", "\"a   b   c\"")],
         "host;my-header1;my-header2;x-amz-date",
         "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
        ("get-vanilla-with-session-token", "GET", "/",
         &[("X-Amz-Security-Token", "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267")],
         "host;x-amz-date;x-amz-security-token",
         "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"),
        ("post-x-www-form-urlencoded", "POST", "/",
         &[("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "13"),
           ("x-amz-content-sha256", "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e")],
         "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
         "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"),
    ];

    #[test]
    fn published_vectors_verify() {
        for (name, method, uri, headers, signed, sig) in VECTORS {
            let a = authz(signed, sig);
            let mut headers = headers.to_vec();
            headers.push(("authorization", &a));
            let p = parts(method, uri, &headers);
            let body = if *method == "POST" { FORM } else { "" }.as_bytes();
            assert!(check(&p, body).is_ok(), "{name}: {:?}", check(&p, body));
            // Any other body changes the payload hash, so the signature no longer matches.
            let err = check(&p, b"x").unwrap_err();
            assert_eq!(err.code, "InvalidSignatureException", "{name}");
        }
    }

    #[test]
    fn refusals_have_aws_codes() {
        let code = |auth: &str| {
            let p = parts("GET", "/", &[("authorization", auth)]);
            check(&p, b"").unwrap_err()
        };
        let missing = check(&parts("GET", "/", &[]), b"").unwrap_err();
        assert_eq!(missing.code, "MissingAuthenticationTokenException");
        assert_eq!(code("Bearer x").code, "IncompleteSignatureException");
        let no_sig = format!("AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host");
        assert!(code(&no_sig).message.contains("'Signature' parameter"));
        let wrong = authz("host;x-amz-date", &"0".repeat(64));
        assert_eq!(code(&wrong).code, "InvalidSignatureException");
        let unknown = code(&wrong.replace("AKIDEXAMPLE", "AKIDOTHER"));
        assert_eq!(unknown.code, "UnrecognizedClientException");
        assert!(unknown.message.starts_with("The security token included"));
        let region = code(&wrong.replace("us-east-1", "eu-west-1"));
        assert!(region.message.contains("valid region"));
        let unsigned_host = code(&authz("x-amz-date", &"0".repeat(64)));
        assert_eq!(unsigned_host.code, "IncompleteSignatureException");
    }

    #[test]
    fn authorization_header_round_trips() {
        let body = br#"{"Target":"i-0123456789abcdef0"}"#;
        let p = parts("POST", "/?a=b", &[("x-amz-target", "AmazonSSM.Op")]);
        let a = authorization_header(&p, body, "AKIDEXAMPLE", SECRET, "us-east-1", "service");
        let mut signed = p.clone();
        signed.headers.insert("authorization", a.parse().unwrap());
        assert_eq!(check(&signed, body).as_deref(), Ok("AKIDEXAMPLE"));
    }

    #[test]
    fn presigned_round_trip_and_refusals() {
        let now = crate::world::clock::parse_amz_date("20150830T123600Z").unwrap();
        let q = presign_query(
            "example.amazonaws.com",
            "/v1/data-channel/s-1",
            "role=publish_subscribe&cell-number=abc",
            "AKIDEXAMPLE",
            SECRET,
            "us-east-1",
            "service",
            "20150830T123600Z",
            60,
        );
        assert!(is_presigned(&q), "{q}");
        assert!(!is_presigned("role=publish_subscribe&cell-number=abc"));
        assert!(is_presigned("a=1&X-Amz-Security-Token=t"));
        assert!(q.starts_with("role=publish_subscribe&cell-number=abc&X-Amz-Algorithm="));
        assert!(q.contains("X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice"));
        let at = |q: &str, secs: i64| {
            let p = parts("GET", &format!("/v1/data-channel/s-1?{q}"), &[]);
            let secret = |k: &str| (k == "AKIDEXAMPLE").then(|| SECRET.to_owned());
            verify_presigned(&p, "us-east-1", "service", secs, secret)
        };
        assert_eq!(at(&q, now).as_deref(), Ok("AKIDEXAMPLE"));
        assert_eq!(at(&q, now + 60).as_deref(), Ok("AKIDEXAMPLE"));
        assert_eq!(at(&q, now + 61).unwrap_err().message, "Request has expired");
        assert_eq!(
            at(&q, now - 301).unwrap_err().code,
            "InvalidSignatureException"
        );
        // Any change to the signed query (or the signature) breaks it.
        let tampered = q.replace("cell-number=abc", "cell-number=abd");
        assert!(
            at(&tampered, now)
                .unwrap_err()
                .message
                .contains("does not match")
        );
        let other = q.replace("AKIDEXAMPLE", "AKIDOTHER");
        assert_eq!(
            at(&other, now).unwrap_err().code,
            "UnrecognizedClientException"
        );
        let unsigned = q.split("&X-Amz-Signature").next().unwrap();
        assert_eq!(
            at(unsigned, now).unwrap_err().code,
            "IncompleteSignatureException"
        );
    }

    #[test]
    fn path_and_query_canonicalisation() {
        assert_eq!(canonical_path("/"), "/");
        assert_eq!(canonical_path("//example//"), "/example/");
        assert_eq!(canonical_path("/a/./b/../c"), "/a/c");
        assert_eq!(canonical_path("/a%20b"), "/a%2520b");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("a-b=1&a=2"), "a=2&a-b=1");
        assert_eq!(canonical_query("k=a+b%2F"), "k=a%20b%2F");
        assert_eq!(canonical_query("%zz"), "%25zz=");
    }
}
