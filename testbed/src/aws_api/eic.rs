//! EC2 Instance Connect in the JSON 1.1 protocol (`POST /` with
//! `X-Amz-Target: AWSEC2InstanceConnectService.<Operation>`, SigV4 signing name
//! `ec2-instance-connect`): `SendSSHPublicKey` (docs/protocol.md §10.1).
//!
//! A successful push is appended to the key store ([`crate::instance::eic_keys`]), where the instance
//! side (`sallyport-testbed authorized-keys`, run by a test sshd as its
//! `AuthorizedKeysCommand`) finds it for 60 seconds.
//!
//! Checks, in order: signature; input constraints from the service model
//! (`ValidationException`, every violation listed); the key itself (`InvalidArgsException`);
//! the caller's permission (`AccessDeniedException`, when the instance is configured with
//! `instance_connect_denied`); the instance exists (`EC2InstanceNotFoundException`); its EC2
//! state is `running` (`EC2InstanceStateInvalidException`, or `EC2InstanceUnavailableException`
//! while `pending`). Unverified: the order in which AWS applies the last four checks.
//!
//! As on AWS, the OS user is not checked against the instance's accounts: a push for a user
//! that does not exist succeeds, and the ssh login then fails.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aws_api::account::Account;
use crate::aws_api::json11::{ApiError, error_response};
use crate::instance::eic_keys::{KeyError, parse_public_key};
use crate::world::config::ACCOUNT_ID;
use crate::world::config::InstanceConfig;
use crate::world::state::ApiCall;

pub const TARGET_PREFIX: &str = "AWSEC2InstanceConnectService.";
pub const SIGNING_NAME: &str = "ec2-instance-connect";

/// The service model's `InstanceOSUser` pattern (both alternatives).
pub const OS_USER_PATTERN: &str = r"(^[A-Za-z_][A-Za-z0-9\@\._-]{0,30}[A-Za-z0-9\$_-]?$)|(^(?=.{2,32}$)[0-9]{1,32}[A-Za-z\@\._-][A-Za-z0-9\@\._-]*[A-Za-z0-9\$_-]?$)";
const INSTANCE_ID_PATTERN: &str = "^i-[a-f0-9]+$";
const AZ_PATTERN: &str = r"^(\w+-){2,3}\d+\w+$";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendSshPublicKeyRequest {
    instance_id: Option<String>,
    #[serde(rename = "InstanceOSUser")]
    instance_os_user: Option<String>,
    #[serde(rename = "SSHPublicKey")]
    ssh_public_key: Option<String>,
    availability_zone: Option<String>,
}

/// Reads the body (bounded), checks the signature for `ec2-instance-connect`, answers.
pub async fn handle(state: &Account, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body, target) = match crate::aws_api::json11::read_json11(req).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = state
        .authenticate(&parts, &body, SIGNING_NAME)
        .map_err(ApiError::from)
        .and_then(|(access_key_id, cred)| {
            let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or(&target);
            let fields = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
            let field = |name: &str| fields.get(name)?.as_str().map(str::to_owned);
            state.record_call(ApiCall {
                service: SIGNING_NAME,
                operation: operation.to_owned(),
                access_key_id,
                target: field("InstanceId"),
                os_user: field("InstanceOSUser"),
                ssh_public_key: field("SSHPublicKey"),
            });
            dispatch(state, &cred.arn, operation, &body, &request_id)
        });
    match result {
        Ok(value) => {
            let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::aws_api::json11::CONTENT_TYPE),
            );
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                h.insert("x-amzn-requestid", v);
            }
            resp
        }
        Err(e) => {
            tracing::debug!(code = e.code, "EC2 Instance Connect error: {}", e.message);
            error_response(&e)
        }
    }
}

/// Runs one operation on a JSON body (no signature check) for the caller `caller_arn`.
pub fn dispatch(
    state: &Account,
    caller_arn: &str,
    operation: &str,
    body: &[u8],
    request_id: &str,
) -> Result<Value, ApiError> {
    match operation {
        "SendSSHPublicKey" => {
            let req: SendSshPublicKeyRequest = crate::aws_api::json11::parse(body)?;
            send_ssh_public_key(state, caller_arn, req)?;
            Ok(json!({"RequestId": request_id, "Success": true}))
        }
        // Serial console access is off by default in an AWS account, and the testbed has no
        // serial console: this is what such an account gets.
        "SendSerialConsoleSSHPublicKey" => Err(modeled(
            StatusCode::FORBIDDEN,
            "SerialConsoleAccessDisabledException",
            "Your account is not authorized to use the EC2 Serial Console. To authorize your \
             account, run the EnableSerialConsoleAccess API.",
        )),
        _ => Err(ApiError::frontend(
            "UnknownOperationException",
            format!("Unknown operation '{TARGET_PREFIX}{operation}'."),
        )),
    }
}

/// An error from the service model: its HTTP status (from the model's `httpError` traits)
/// and a `Message` member.
fn modeled(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        ..ApiError::modeled(code, message)
    }
}

fn send_ssh_public_key(
    state: &Account,
    caller_arn: &str,
    req: SendSshPublicKeyRequest,
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let id = check_field(
        &mut errors,
        "instanceId",
        req.instance_id.as_deref(),
        (10, 32),
        Some((INSTANCE_ID_PATTERN, instance_id_ok)),
    );
    let user = check_field(
        &mut errors,
        "instanceOSUser",
        req.instance_os_user.as_deref(),
        (1, 32),
        Some((OS_USER_PATTERN, os_user_ok)),
    );
    // Unverified: AWS names members in these messages with the first letter lowered, which
    // gives 'sSHPublicKey'.
    let key = check_field(
        &mut errors,
        "sSHPublicKey",
        req.ssh_public_key.as_deref(),
        (80, 4096),
        None,
    );
    if let Some(az) = req.availability_zone.as_deref() {
        check_field(
            &mut errors,
            "availabilityZone",
            Some(az),
            (6, 32),
            Some((AZ_PATTERN, availability_zone_ok)),
        );
    }
    let (Some(id), Some(user), Some(key), true) = (id, user, key, errors.is_empty()) else {
        let n = errors.len();
        let s = if n == 1 { "" } else { "s" };
        return Err(ApiError::frontend(
            "ValidationException",
            format!("{n} validation error{s} detected: {}", errors.join("; ")),
        ));
    };

    let key = parse_public_key(key).map_err(|e| {
        // Texts AWS was seen to send (aws-cli #6811 for an sk- key, danmx/sigil #116 for RSA).
        let what = match e {
            KeyError::BadBlob if key.trim_start().starts_with("ssh-rsa") => "RSA - SSH Public key",
            _ => "SSH Public key",
        };
        modeled(
            StatusCode::BAD_REQUEST,
            "InvalidArgsException",
            format!(
                "Invalid input parameter received for Illegal argument exception: {what} is invalid"
            ),
        )
    })?;

    let instance = state.instance(id);
    if instance.is_some_and(|i| i.instance_connect_denied) {
        return Err(access_denied(state, caller_arn, id));
    }
    // Unverified: the exact texts of the three instance errors; these are the service
    // model's descriptions.
    let Some(instance) = instance else {
        return Err(modeled(
            StatusCode::NOT_FOUND,
            "EC2InstanceNotFoundException",
            "The specified instance was not found.",
        ));
    };
    check_state(instance)?;

    let now = crate::world::clock::now_secs(state.config.clock_offset_secs);
    state.eic.push(user, id, &key, now).map_err(|e| {
        tracing::error!("cannot record the pushed key: {e:#}");
        modeled(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "The service encountered an error. Follow the instructions in the error message \
             and try again.",
        )
    })?;
    tracing::info!(instance = id, user, "EC2 Instance Connect key pushed");
    Ok(())
}

/// `running` is the only state that takes keys. The model documents
/// `EC2InstanceStateInvalidException` for "a stopped or terminated instance", so every
/// stopping/stopped/shutting-down/terminated state gets it; `pending` (booting) gets
/// `EC2InstanceUnavailableException` ("currently unavailable. Wait a few minutes", HTTP 503,
/// which SDKs retry). Unverified: which of the two AWS sends for `pending` and `stopping`.
fn check_state(instance: &InstanceConfig) -> Result<(), ApiError> {
    match instance.ec2_state() {
        "running" => Ok(()),
        "pending" => Err(modeled(
            StatusCode::SERVICE_UNAVAILABLE,
            "EC2InstanceUnavailableException",
            "The instance is currently unavailable. Wait a few minutes and try again.",
        )),
        _ => Err(modeled(
            StatusCode::BAD_REQUEST,
            "EC2InstanceStateInvalidException",
            "Unable to connect because the instance is not in a valid state. Connecting to a \
             stopped or terminated instance is not supported. If the instance is stopped, \
             start your instance, and try to connect again.",
        )),
    }
}

/// What IAM answers a caller without `ec2-instance-connect:SendSSHPublicKey` on the
/// instance. AWS sends `AccessDeniedException` (not the modelled `AuthException`) for this,
/// e.g. "User: arn:… is not authorized to perform: ec2-instance-connect:SendSSHPublicKey on
/// resource: arn:aws:ec2:…:instance/i-… with an explicit deny …" (seen in public issue
/// reports). Unverified: the HTTP status (400 here, as for SSM's AccessDeniedException).
fn access_denied(state: &Account, caller_arn: &str, id: &str) -> ApiError {
    let region = &state.config.region;
    ApiError::modeled(
        "AccessDeniedException",
        format!(
            "User: {caller_arn} is not authorized to perform: \
             ec2-instance-connect:SendSSHPublicKey on resource: \
             arn:aws:ec2:{region}:{ACCOUNT_ID}:instance/{id} because no identity-based policy \
             allows the ec2-instance-connect:SendSSHPublicKey action"
        ),
    )
}

type PatternCheck = (&'static str, fn(&str) -> bool);

/// Adds the constraint violations of one member to `errors`, in AWS's wording; returns the
/// value when it is present.
fn check_field<'a>(
    errors: &mut Vec<String>,
    member: &str,
    value: Option<&'a str>,
    (min, max): (usize, usize),
    pattern: Option<PatternCheck>,
) -> Option<&'a str> {
    let Some(v) = value else {
        errors.push(format!(
            "Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ));
        return None;
    };
    let at = format!("Value '{v}' at '{member}' failed to satisfy constraint: Member must");
    let n = v.chars().count();
    if n < min {
        errors.push(format!("{at} have length greater than or equal to {min}"));
    } else if n > max {
        errors.push(format!("{at} have length less than or equal to {max}"));
    }
    if let Some((text, ok)) = pattern
        && !ok(v)
    {
        errors.push(format!("{at} satisfy regular expression pattern: {text}"));
    }
    Some(v)
}

/// `^i-[a-f0-9]+$` (the 10–32 length is checked separately).
pub fn instance_id_ok(id: &str) -> bool {
    id.strip_prefix("i-")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// [`OS_USER_PATTERN`], without a regex engine.
pub fn os_user_ok(user: &str) -> bool {
    let b = user.as_bytes();
    let middle = |c: &u8| c.is_ascii_alphanumeric() || b"@._-".contains(c);
    let last = |c: &u8| c.is_ascii_alphanumeric() || b"$_-".contains(c);
    // `M*` then an optional `L`, with at most `max_middle` M characters.
    let tail_ok = |rest: &[u8], max_middle: usize| {
        let all_middle = rest.iter().all(middle) && rest.len() <= max_middle;
        let middle_then_last = rest.split_last().is_some_and(|(l, init)| {
            last(l) && init.iter().all(middle) && init.len() <= max_middle
        });
        all_middle || middle_then_last
    };
    // ^[A-Za-z_][A-Za-z0-9\@\._-]{0,30}[A-Za-z0-9\$_-]?$
    let first = b
        .split_first()
        .is_some_and(|(c, rest)| (c.is_ascii_alphabetic() || *c == b'_') && tail_ok(rest, 30));
    // ^(?=.{2,32}$)[0-9]{1,32}[A-Za-z\@\._-][A-Za-z0-9\@\._-]*[A-Za-z0-9\$_-]?$
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let second = (2..=32).contains(&b.len())
        && digits >= 1
        && b.get(digits)
            .is_some_and(|c| c.is_ascii_alphabetic() || b"@._-".contains(c))
        && tail_ok(&b[digits + 1..], usize::MAX);
    first || second
}

/// `^(\w+-){2,3}\d+\w+$`, e.g. `us-east-1a`.
pub fn availability_zone_ok(az: &str) -> bool {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    let parts: Vec<&str> = az.split('-').collect();
    let Some((last, init)) = parts.split_last() else {
        return false;
    };
    (2..=3).contains(&init.len())
        && init.iter().all(|p| word(p))
        && last.len() >= 2
        && last.starts_with(|c: char| c.is_ascii_digit())
        && word(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::config::{InstanceConfig, TestbedConfig};

    const RUNNING: &str = "i-0123456789abcdef0";
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXR6Gmf1kUbUIe2mJvlP8Ph8EP+0G9fNn2uv7Jl5zOa test@host";

    fn state() -> Account {
        let config = TestbedConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![InstanceConfig::named(RUNNING, "web")],
        );
        Account::new(config, "127.0.0.1:4567".parse().unwrap())
    }

    fn call(st: &Account, body: Value) -> Result<Value, ApiError> {
        let arn = "arn:aws:iam::123456789012:user/x";
        dispatch(
            st,
            arn,
            "SendSSHPublicKey",
            body.to_string().as_bytes(),
            "r-1",
        )
    }

    #[test]
    fn validation_lists_every_violation() {
        let st = state();
        let err = call(&st, json!({})).unwrap_err();
        assert_eq!(err.code, "ValidationException");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "3 validation errors detected: Value null at 'instanceId' failed to satisfy \
             constraint: Member must not be null; Value null at 'instanceOSUser' failed to \
             satisfy constraint: Member must not be null; Value null at 'sSHPublicKey' failed \
             to satisfy constraint: Member must not be null"
        );
        let err = call(
            &st,
            json!({"InstanceId": "i-1", "InstanceOSUser": "root", "SSHPublicKey": KEY}),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "1 validation error detected: Value 'i-1' at 'instanceId' failed to satisfy \
             constraint: Member must have length greater than or equal to 10"
        );
        let err = call(
            &st,
            json!({"InstanceId": "x", "InstanceOSUser": "-bad", "SSHPublicKey": "short",
                   "AvailabilityZone": "us-east-1"}),
        )
        .unwrap_err();
        assert!(
            err.message.starts_with("5 validation errors detected: "),
            "{}",
            err.message
        );
        let long_key = format!("{KEY} {}", "c".repeat(4096));
        let err = call(
            &st,
            json!({"InstanceId": RUNNING, "InstanceOSUser": "root", "SSHPublicKey": long_key}),
        )
        .unwrap_err();
        assert!(
            err.message
                .ends_with("Member must have length less than or equal to 4096")
        );
        // A parseable-looking but wrong key passes validation and fails as InvalidArgs.
        let junk = format!("ssh-rsa {}", "A".repeat(100));
        let err = call(
            &st,
            json!({"InstanceId": RUNNING, "InstanceOSUser": "root", "SSHPublicKey": junk}),
        )
        .unwrap_err();
        assert_eq!(err.code, "InvalidArgsException");
        let ok = call(
            &st,
            json!({"InstanceId": RUNNING, "InstanceOSUser": "root", "SSHPublicKey": KEY}),
        )
        .unwrap();
        assert_eq!(ok, json!({"RequestId": "r-1", "Success": true}));
        let err = dispatch(&st, "x", "Nope", b"{}", "r").unwrap_err();
        assert_eq!(err.code, "UnknownOperationException");
    }

    #[test]
    fn patterns() {
        for ok in ["i-0123456789", "i-0123456789abcdef0"] {
            assert!(instance_id_ok(ok), "{ok}");
        }
        for bad in [
            "i-",
            "i-0123456789ABCDEF",
            "mi-0123456789",
            "i-xyz",
            "0123456789",
        ] {
            assert!(!instance_id_ok(bad), "{bad}");
        }
        let ok_users = [
            "root",
            "ec2-user",
            "_svc",
            "a",
            "user.name@corp",
            "machine$",
            "x@",
            "1user",
            "12.x",
            &"a".repeat(32),
        ];
        for ok in ok_users {
            assert!(os_user_ok(ok), "{ok}");
        }
        let bad_users = [
            "",
            "-x",
            ".x",
            "1",
            "123",
            "a$b",
            "us er",
            "a/b",
            &"a".repeat(33),
            "ünï",
        ];
        for bad in bad_users {
            assert!(!os_user_ok(bad), "{bad}");
        }
        for ok in ["us-east-1a", "us-gov-west-1b", "ap-northeast-3c"] {
            assert!(availability_zone_ok(ok), "{ok}");
        }
        for bad in [
            "us-east-1",
            "useast1a",
            "us-east-a1",
            "a-b-c-d-1a",
            "us--1a",
        ] {
            assert!(!availability_zone_ok(bad), "{bad}");
        }
    }
}
