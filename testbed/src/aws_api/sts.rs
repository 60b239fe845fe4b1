//! STS `AssumeRole` in the AWS Query protocol (form-encoded `POST /`, XML answers), so an
//! assume-role profile chain (`source_profile` + `role_arn`) reaches the testbed. The keys it
//! issues are temporary: requests signed with them must carry the session token.

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use rand::Rng as _;

use crate::aws_api::account::{Account, Credential};
use crate::aws_api::form::{field, parse_form};
use crate::aws_api::sigv4::AuthError;
use crate::world::config::ACCOUNT_ID;
use crate::world::state::ApiCall;

const SIGNING_NAME: &str = "sts";
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
const MAX_BODY: usize = 64 * 1024;

/// An STS error: HTTP status, Query-protocol code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl StsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        StsError {
            status,
            code,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }
}

impl From<AuthError> for StsError {
    /// The Query protocol names the signature errors differently from the JSON services.
    fn from(e: AuthError) -> Self {
        let code = match e.code {
            "UnrecognizedClientException" => "InvalidClientTokenId",
            "InvalidSignatureException" => "SignatureDoesNotMatch",
            "ExpiredTokenException" => "ExpiredToken",
            "MissingAuthenticationTokenException" => "MissingAuthenticationToken",
            "IncompleteSignatureException" => "IncompleteSignature",
            other => other,
        };
        StsError::new(e.status, code, e.message)
    }
}

/// Reads the form body (bounded), checks the signature, answers `Action`.
pub async fn handle(state: &Account, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(&StsError::validation(format!("cannot read body: {e}"))),
    };
    let result = state
        .authenticate(&parts, &body, SIGNING_NAME)
        .map_err(StsError::from)
        .and_then(|(akid, cred)| {
            let form = parse_form(&body);
            let action = field(&form, "Action").unwrap_or_default();
            state.record_call(ApiCall {
                service: SIGNING_NAME,
                operation: action.to_owned(),
                access_key_id: akid,
                target: None,
                os_user: None,
                ssh_public_key: None,
            });
            match action {
                "AssumeRole" => assume_role(state, &cred, &form),
                "GetCallerIdentity" => Ok(get_caller_identity(&cred)),
                _ => Err(StsError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidAction",
                    format!("Could not find operation {action} for version 2011-06-15"),
                )),
            }
        });
    match result {
        Ok(xml) => respond(StatusCode::OK, xml),
        Err(e) => {
            tracing::debug!(code = e.code, "STS error: {}", e.message);
            error_response(&e)
        }
    }
}

fn assume_role(
    state: &Account,
    caller: &Credential,
    form: &[(String, String)],
) -> Result<String, StsError> {
    let required = |name: &str| {
        field(form, name).ok_or_else(|| {
            StsError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: \
                 Member must not be null",
                lower_first(name)
            ))
        })
    };
    let role_arn = required("RoleArn")?;
    let session_name = required("RoleSessionName")?;
    let name_ok = (2..=64).contains(&session_name.len())
        && (session_name.bytes()).all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !name_ok {
        return Err(StsError::validation(format!(
            "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to \
             satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    let duration = match field(form, "DurationSeconds") {
        None => 3600,
        Some(d) => d
            .parse::<u64>()
            .ok()
            .filter(|d| (900..=43200).contains(d))
            .ok_or_else(|| {
                StsError::validation(format!(
                    "1 validation error detected: Value '{d}' at 'durationSeconds' failed to \
                     satisfy constraint: Member must have value between 900 and 43200"
                ))
            })?,
    };
    let role_name = role_arn
        .strip_prefix(&format!("arn:aws:iam::{ACCOUNT_ID}:role/"))
        .and_then(|path| path.rsplit('/').next())
        .filter(|n| !n.is_empty());
    let Some(role_name) = role_name else {
        return Err(StsError::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.arn
            ),
        ));
    };
    let access_key_id = format!("ASIA{}", random_upper(16));
    let secret = random_text(40);
    let token = random_text(356);
    let arn = format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/{session_name}");
    state.add_credential(
        &access_key_id,
        Credential {
            secret: secret.clone(),
            session_token: Some(token.clone()),
            expired: false,
            arn: arn.clone(),
        },
    );
    tracing::info!(%arn, %access_key_id, "role assumed");
    let expiration = crate::world::clock::format_rfc3339(
        crate::world::clock::now_secs(0).saturating_add_unsigned(duration),
    );
    let role_id = format!("AROA{}", random_upper(17));
    Ok(format!(
        "<AssumeRoleResponse xmlns=\"{XMLNS}\">\n  <AssumeRoleResult>\n    <AssumedRoleUser>\n      \
         <AssumedRoleId>{role_id}:{session}</AssumedRoleId>\n      <Arn>{arn}</Arn>\n    \
         </AssumedRoleUser>\n    <Credentials>\n      <AccessKeyId>{access_key_id}</AccessKeyId>\n      \
         <SecretAccessKey>{secret}</SecretAccessKey>\n      <SessionToken>{token}</SessionToken>\n      \
         <Expiration>{expiration}</Expiration>\n    </Credentials>\n  </AssumeRoleResult>\n  \
         <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n\
         </AssumeRoleResponse>\n",
        session = escape(session_name),
        arn = escape(&arn),
        request_id = uuid::Uuid::new_v4(),
    ))
}

fn get_caller_identity(caller: &Credential) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"{XMLNS}\">\n  <GetCallerIdentityResult>\n    \
         <Arn>{arn}</Arn>\n    <UserId>AIDASALLYPORTTESTBED</UserId>\n    <Account>{ACCOUNT_ID}</Account>\n  \
         </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{id}</RequestId>\n  \
         </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        arn = escape(&caller.arn),
        id = uuid::Uuid::new_v4(),
    )
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn random_upper(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn error_response(e: &StsError) -> Response<Full<Bytes>> {
    let kind = if e.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let xml = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
         <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n\
         </ErrorResponse>\n",
        e.code,
        escape(&e.message),
        uuid::Uuid::new_v4()
    );
    respond(e.status, xml)
}

fn respond(status: StatusCode, xml: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(xml)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f = parse_form(b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx&E=");
        assert_eq!(field(&f, "Action"), Some("AssumeRole"));
        assert_eq!(field(&f, "RoleArn"), Some("arn:aws:iam::1:role/x"));
        assert_eq!(field(&f, "E"), None);
        // Form encoding: `+` is a space.
        let f = parse_form(b"RoleSessionName=my+session");
        assert_eq!(field(&f, "RoleSessionName"), Some("my session"));
    }
}
