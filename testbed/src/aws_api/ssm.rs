//! The SSM JSON 1.1 API: `POST /` with `X-Amz-Target: AmazonSSM.<Operation>` (docs/protocol.md §1.1).
//!
//! Every request is SigV4-checked first ([`crate::aws_api::sigv4`]), then dispatched by operation name.
//! To add an operation, add an arm to [`dispatch`] and a request/response pair below it.
//! The wire (bounded body, error shape) is [`crate::aws_api::json11`].

use std::collections::BTreeMap;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws_api::account::Account;
use crate::aws_api::json11::{
    ApiError, error_response, parse, read_json11, reply, required, respond,
};
use crate::world::config::InstanceConfig;
use crate::world::config::{ACCOUNT_ID, CALLER};
use crate::world::state::{ApiCall, SessionRecord};

const TARGET_PREFIX: &str = "AmazonSSM.";
const SIGNING_NAME: &str = "ssm";
pub const DEFAULT_DOCUMENT: &str = "SSM-SessionManagerRunShell";
/// The AWS-owned session documents the testbed knows.
pub const KNOWN_DOCUMENTS: &[&str] = &[
    "AWS-StartSSHSession",
    "AWS-StartPortForwardingSession",
    "AWS-StartPortForwardingSessionToRemoteHost",
    "AWS-StartInteractiveCommand",
    "AWS-StartNonInteractiveCommand",
    DEFAULT_DOCUMENT,
];

/// Reads the body (bounded) and answers one API request.
pub async fn handle(state: &Account, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match read_json11(req).await {
        Ok((parts, body, _)) => handle_parts(state, &parts, &body),
        Err(response) => response,
    }
}

/// Signature check, then [`dispatch`].
pub fn handle_parts(state: &Account, parts: &Parts, body: &[u8]) -> Response<Full<Bytes>> {
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let result = state
        .authenticate(parts, body, SIGNING_NAME)
        .map_err(ApiError::from)
        .and_then(|(access_key_id, cred)| {
            let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or(target);
            let start_target = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("Target")?.as_str().map(str::to_owned));
            state.record_call(ApiCall {
                service: SIGNING_NAME,
                operation: operation.to_owned(),
                access_key_id,
                target: start_target,
                os_user: None,
                ssh_public_key: None,
            });
            dispatch_as(state, &cred.arn, target, body)
        });
    match result {
        Ok(value) => respond(StatusCode::OK, &value, None),
        Err(e) => {
            tracing::debug!(code = e.code, "API error: {}", e.message);
            error_response(&e)
        }
    }
}

/// Runs one operation named by `X-Amz-Target` on a JSON body (no signature check), as the
/// testbed's IAM user.
pub fn dispatch(state: &Account, target: &str, body: &[u8]) -> Result<Value, ApiError> {
    let caller = format!("arn:aws:iam::{ACCOUNT_ID}:user/{CALLER}");
    dispatch_as(state, &caller, target, body)
}

/// [`dispatch`] for the caller `caller_arn` (named in access-denied messages).
pub fn dispatch_as(
    state: &Account,
    caller_arn: &str,
    target: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or("");
    tracing::debug!(operation, "SSM API call");
    match operation {
        "StartSession" => reply(start_session(state, caller_arn, parse(body)?)?),
        "TerminateSession" => reply(terminate_session(state, parse(body)?)?),
        "DescribeInstanceInformation" if state.config.describe_denied => Err(ApiError::modeled(
            "AccessDeniedException",
            format!(
                "User: {caller_arn} is not authorized to perform: ssm:DescribeInstanceInformation on resource: arn:aws:ssm:{}:{ACCOUNT_ID}:* because no identity-based policy allows the ssm:DescribeInstanceInformation action",
                state.config.region
            ),
        )),
        "DescribeInstanceInformation" => reply(
            crate::aws_api::describe::describe_instance_information(state, parse(body)?)?,
        ),
        "ResumeSession" => reply(resume_session(state, parse(body)?)?),
        "GetDocument" => crate::aws_api::documents::get_document(state, caller_arn, parse(body)?),
        _ => Err(ApiError::frontend(
            "UnknownOperationException",
            format!("Unknown operation '{target}'."),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartSessionRequest {
    pub target: Option<String>,
    pub document_name: Option<String>,
    pub reason: Option<String>,
    pub parameters: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct StartSessionResponse {
    pub session_id: String,
    pub token_value: String,
    pub stream_url: String,
}

fn start_session(
    state: &Account,
    caller_arn: &str,
    req: StartSessionRequest,
) -> Result<StartSessionResponse, ApiError> {
    let target = required(req.target, "target")?;
    check_len("target", &target, 1, 400)?;
    if let Some(reason) = &req.reason {
        check_len("reason", reason, 1, 256)?;
    }
    let parameters = req.parameters.unwrap_or_default();
    for (name, values) in &parameters {
        check_len("parameters", name, 1, 255)?;
        for v in values {
            check_len("parameters", v, 1, 65535)?;
        }
    }
    let document = document_name(&state.config, req.document_name)?;
    if let Some(doc) = crate::aws_api::documents::session_document(&state.config, &document) {
        crate::aws_api::documents::check_parameters(&doc, &parameters)?;
    }
    if !well_formed_target(&target) {
        // The exact text AWS uses for a malformed target is a guess.
        return Err(ApiError::validation(format!(
            "Value '{target}' at 'target' failed to satisfy constraint: Member must be an \
             instance ID (i-…) or a managed node ID (mi-…)"
        )));
    }
    // Observed behaviour: AWS answers TargetNotConnected both for an instance that does not
    // exist (or is not visible to the caller) and for one whose agent is offline.
    let not_connected =
        || ApiError::modeled("TargetNotConnected", format!("{target} is not connected."));
    // Unverified: that StartSession answers TargetNotConnected, as for an unknown target,
    // to a running EC2 instance with no agent registered.
    let instance = (state.instance(&target))
        .filter(|i| i.managed)
        .ok_or_else(not_connected)?;
    if instance.access_denied {
        return Err(access_denied(state, caller_arn, instance));
    }
    let ordinal = state.count_start(&target);
    if ordinal < instance.throttle_first {
        return Err(ApiError::frontend("ThrottlingException", "Rate exceeded"));
    }
    if crate::aws_api::describe::ping_status(state, instance) != "Online" {
        return Err(not_connected());
    }
    let session_id = format!("{}-{:017x}", state.caller, random_bits(68));
    let token = random_text(200);
    let stream_url = state.stream_url(&session_id, &random_text(96));
    state.sessions.insert(SessionRecord {
        session_id: session_id.clone(),
        token: token.clone(),
        instance: instance.clone(),
        document,
        parameters,
    });
    if let Some(k) = &state.config.faults.kill_session {
        k.started(ordinal, &session_id);
    }
    tracing::info!(%session_id, %target, "session started");
    Ok(StartSessionResponse {
        session_id,
        token_value: token,
        stream_url,
    })
}

/// What IAM answers a caller without `ssm:StartSession` on the instance (the text follows
/// AWS's "no identity-based policy allows" form).
fn access_denied(state: &Account, caller_arn: &str, instance: &InstanceConfig) -> ApiError {
    let region = &state.config.region;
    let id = &instance.id;
    let resource = if id.starts_with("mi-") {
        format!("arn:aws:ssm:{region}:{ACCOUNT_ID}:managed-instance/{id}")
    } else {
        format!("arn:aws:ec2:{region}:{ACCOUNT_ID}:instance/{id}")
    };
    ApiError::modeled(
        "AccessDeniedException",
        format!(
            "User: {caller_arn} is not authorized to perform: ssm:StartSession on resource: \
             {resource} because no identity-based policy allows the ssm:StartSession action"
        ),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminateSessionRequest {
    pub session_id: Option<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct TerminateSessionResponse {
    pub session_id: String,
}

fn terminate_session(
    state: &Account,
    req: TerminateSessionRequest,
) -> Result<TerminateSessionResponse, ApiError> {
    let session_id = required(req.session_id, "sessionId")?;
    check_len("sessionId", &session_id, 1, 96)?;
    // AWS answers 200 with the ID for a session that is unknown or already terminated:
    // TerminateSession is idempotent, and the plugin calls it on sessions that may be gone.
    let existed = state.sessions.terminate(&session_id);
    tracing::info!(%session_id, existed, "session terminated");
    Ok(TerminateSessionResponse { session_id })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResumeSessionRequest {
    pub session_id: Option<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct ResumeSessionResponse {
    pub session_id: String,
    /// Null when the session cannot be resumed (the plugin then reports a timeout).
    pub token_value: Option<String>,
    pub stream_url: Option<String>,
}

/// ResumeSession: a fresh token (the old one stops working) and a StreamUrl with a new
/// cell number, as the 2026 plugin expects; a terminated or unknown session gets a null
/// TokenValue (docs/protocol.md §1.1, §2.4).
fn resume_session(
    state: &Account,
    req: ResumeSessionRequest,
) -> Result<ResumeSessionResponse, ApiError> {
    let session_id = required(req.session_id, "sessionId")?;
    check_len("sessionId", &session_id, 1, 96)?;
    if let Some(refusal) = state.config.faults.resume_refusal(&session_id) {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            ..ApiError::modeled("AccessDeniedException", refusal)
        });
    }
    let token = random_text(200);
    let Some(_) = state.sessions.resume(&session_id, token.clone()) else {
        return Ok(ResumeSessionResponse {
            session_id,
            token_value: None,
            stream_url: None,
        });
    };
    let stream_url = state.stream_url(&session_id, &random_text(96));
    tracing::info!(%session_id, "session resumed");
    Ok(ResumeSessionResponse {
        session_id,
        token_value: Some(token),
        stream_url: Some(stream_url),
    })
}

/// The document's short name, defaulting to `SSM-SessionManagerRunShell`. An ARN is reduced
/// to the name after `document/`.
fn document_name(
    config: &crate::world::config::TestbedConfig,
    name: Option<String>,
) -> Result<String, ApiError> {
    let Some(name) = name else {
        return Ok(DEFAULT_DOCUMENT.to_owned());
    };
    let pattern_ok = (3..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b));
    if !pattern_ok {
        return Err(ApiError::validation(format!(
            "Value '{name}' at 'documentName' failed to satisfy constraint: Member must \
             satisfy regular expression pattern: ^[a-zA-Z0-9_\\-.:/]{{3,128}}$"
        )));
    }
    let short = match name.strip_prefix("arn:") {
        Some(arn) => arn.rsplit('/').next().unwrap_or(arn),
        None => &name,
    };
    let known = KNOWN_DOCUMENTS.iter().find(|d| **d == short).copied();
    let owned = (config.command_documents.iter()).find(|d| d.as_str() == short);
    match known.or(owned.map(String::as_str)) {
        Some(d) => Ok(d.to_owned()),
        // The exact text for an unknown document is a guess.
        None => Err(ApiError::modeled(
            "InvalidDocument",
            format!("Document with name {name} does not exist."),
        )),
    }
}

/// `^(i|mi)-[0-9a-f]{8,17}$`: an instance or managed-node ID.
pub(crate) fn well_formed_id(t: &str) -> bool {
    !t.starts_with("ecs:") && well_formed_target(t)
}

/// `^(i|mi)-[0-9a-f]{8,17}$`, or an ECS target (`ecs:…`, which the testbed never has).
fn well_formed_target(t: &str) -> bool {
    if t.starts_with("ecs:") {
        return true;
    }
    let hex = t.strip_prefix("i-").or_else(|| t.strip_prefix("mi-"));
    hex.is_some_and(|h| {
        (8..=17).contains(&h.len()) && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn check_len(field: &str, v: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = v.chars().count();
    let bound = if n < min {
        format!("greater than or equal to {min}")
    } else if n > max {
        format!("less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(ApiError::validation(format!(
        "Value at '{field}' failed to satisfy constraint: Member must have length {bound}"
    )))
}

/// `bits` random bits (at most 128) as an integer.
fn random_bits(bits: u32) -> u128 {
    rand::rng().random::<u128>() >> (128 - bits.min(128))
}

/// Opaque text from the base64url alphabet, like AWS's tokens.
fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::config::ACCESS_KEY_ID;
    use crate::world::config::TestbedConfig;

    const ONLINE: &str = "i-0123456789abcdef0";
    const LOST: &str = "i-0fedcba9876543210";

    fn state() -> Account {
        let online = InstanceConfig::ssh_shortcut("127.0.0.1:2222".parse().unwrap());
        let mut lost = online.clone();
        lost.id = LOST.to_owned();
        lost.ping_status = "ConnectionLost".to_owned();
        let listen = "127.0.0.1:0".parse().unwrap();
        let st = Account::new(
            TestbedConfig::new(listen, vec![online, lost]),
            "127.0.0.1:4567".parse().unwrap(),
        );
        st.add_credentials(ACCESS_KEY_ID, "secret");
        st
    }

    fn call(st: &Account, op: &str, body: &str) -> Result<Value, ApiError> {
        dispatch(st, &format!("AmazonSSM.{op}"), body.as_bytes())
    }

    fn code(r: Result<Value, ApiError>) -> &'static str {
        r.unwrap_err().code
    }

    #[test]
    fn start_session_shape_and_record() {
        let st = state();
        let body = r#"{"Target":"i-0123456789abcdef0","DocumentName":"AWS-StartSSHSession",
                      "Parameters":{"portNumber":["22"]},"Reason":"test"}"#;
        let v = call(&st, "StartSession", body).unwrap();
        let id = v["SessionId"].as_str().unwrap();
        let suffix = id.strip_prefix("sallyport-testbed-").unwrap();
        assert_eq!(suffix.len(), 17);
        assert!(suffix.bytes().all(|b| b.is_ascii_hexdigit()));
        let token = v["TokenValue"].as_str().unwrap();
        assert_eq!(token.len(), 200);
        let url = v["StreamUrl"].as_str().unwrap();
        let want =
            format!("ws://127.0.0.1:4567/v1/data-channel/{id}?role=publish_subscribe&cell-number=");
        assert!(url.starts_with(&want), "{url}");
        assert_eq!(v.as_object().unwrap().len(), 3);
        let rec = st.sessions.get(id).unwrap();
        assert_eq!(rec.token, token);
        assert_eq!(rec.document, "AWS-StartSSHSession");
        assert_eq!(rec.instance.id, ONLINE);
        assert_eq!(rec.port_number(), Some(22));
    }

    #[test]
    fn start_session_defaults_and_errors() {
        let st = state();
        let v = call(&st, "StartSession", r#"{"Target":"i-0123456789abcdef0"}"#).unwrap();
        let rec = st.sessions.get(v["SessionId"].as_str().unwrap()).unwrap();
        assert_eq!(rec.document, DEFAULT_DOCUMENT);
        let arn = r#"{"Target":"i-0123456789abcdef0",
                     "DocumentName":"arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession"}"#;
        assert!(call(&st, "StartSession", arn).is_ok());

        let err = call(&st, "StartSession", r#"{"Target":"i-0aaaaaaaaaaaaaaaa"}"#).unwrap_err();
        assert_eq!(
            (err.code, err.status),
            ("TargetNotConnected", StatusCode::BAD_REQUEST)
        );
        assert_eq!(err.message, "i-0aaaaaaaaaaaaaaaa is not connected.");
        let err = call(&st, "StartSession", r#"{"Target":"i-0fedcba9876543210"}"#).unwrap_err();
        assert_eq!(err.message, "i-0fedcba9876543210 is not connected.");

        for bad in [
            r#"{"Target":"web-1"}"#,
            r#"{"Target":"i-XYZ"}"#,
            r#"{"Target":""}"#,
            "{}",
        ] {
            assert_eq!(
                code(call(&st, "StartSession", bad)),
                "ValidationException",
                "{bad}"
            );
        }
        let doc = r#"{"Target":"i-0123456789abcdef0","DocumentName":"My-Document"}"#;
        assert_eq!(code(call(&st, "StartSession", doc)), "InvalidDocument");
        let doc = r#"{"Target":"i-0123456789abcdef0","DocumentName":"a b"}"#;
        assert_eq!(code(call(&st, "StartSession", doc)), "ValidationException");
        for bad in ["{", r#"{"Target":5}"#, "[]"] {
            assert_eq!(
                code(call(&st, "StartSession", bad)),
                "SerializationException",
                "{bad}"
            );
        }
        assert_eq!(code(call(&st, "Nope", "{}")), "UnknownOperationException");
        assert_eq!(code(dispatch(&st, "", b"{}")), "UnknownOperationException");
    }

    #[test]
    fn terminate_session_is_idempotent() {
        let st = state();
        let v = call(&st, "StartSession", r#"{"Target":"i-0123456789abcdef0"}"#).unwrap();
        let id = v["SessionId"].as_str().unwrap();
        let body = format!(r#"{{"SessionId":"{id}"}}"#);
        for _ in 0..2 {
            let v = call(&st, "TerminateSession", &body).unwrap();
            assert_eq!(v, serde_json::json!({ "SessionId": id }));
        }
        assert!(st.sessions.is_terminated(id));
        assert!(st.sessions.get(id).is_none());
        let unknown = call(&st, "TerminateSession", r#"{"SessionId":"nobody-0"}"#).unwrap();
        assert_eq!(unknown["SessionId"], "nobody-0");
        assert_eq!(
            code(call(&st, "TerminateSession", "{}")),
            "ValidationException"
        );
    }
}
