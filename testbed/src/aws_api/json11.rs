//! The AWS JSON 1.1 wire that SSM, KMS, EC2 Instance Connect and the tagging API share:
//! `POST /` with `X-Amz-Target`, a bounded body, and errors as HTTP 4xx with
//! `x-amzn-ErrorType: <Code>` and `{"__type":"<Code>", …}`, which is what the smithy
//! `awsJson1_1` clients read the error code and message from.

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::aws_api::account::Account;
use crate::aws_api::sigv4::AuthError;
use crate::world::state::ApiCall;

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The largest request body the JSON 1.1 APIs (SSM, KMS, Instance Connect) read: far
/// above any real request; only guards memory.
const MAX_BODY: usize = 1 << 20;

/// An error the API returns to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Errors modelled by SSM carry their text in a `Message` member (as in the service model);
    /// errors raised by the AWS front end (auth, validation, serialization) use `message`.
    pub modeled: bool,
}

impl ApiError {
    pub(crate) fn new(modeled: bool, code: &'static str, message: impl Into<String>) -> Self {
        let (status, message) = (StatusCode::BAD_REQUEST, message.into());
        ApiError {
            status,
            code,
            message,
            modeled,
        }
    }

    pub(crate) fn frontend(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(false, code, message)
    }

    pub(crate) fn modeled(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(true, code, message)
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::frontend(
            "ValidationException",
            format!("1 validation error detected: {}", message.into()),
        )
    }

    fn body(&self) -> Value {
        let key = if self.modeled { "Message" } else { "message" };
        serde_json::json!({ "__type": self.code, key: self.message })
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let AuthError {
            status,
            code,
            message,
        } = e;
        ApiError {
            status,
            code,
            message,
            modeled: false,
        }
    }
}

/// One JSON 1.1 request to `service` (its signing name, `X-Amz-Target` prefix
/// `target_prefix`): reads the body (bounded), checks the signature, records the call and
/// answers with what `run(operation, body, caller_arn)` gives.
pub async fn serve(
    state: &Account,
    req: Request<Incoming>,
    service: &'static str,
    target_prefix: &str,
    run: impl FnOnce(&str, &[u8], &str) -> Result<Value, ApiError>,
) -> Response<Full<Bytes>> {
    let (parts, body, target) = match read_json11(req).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let result = state
        .authenticate(&parts, &body, service)
        .map_err(ApiError::from)
        .and_then(|(access_key_id, cred)| {
            let operation = target.strip_prefix(target_prefix).unwrap_or(&target);
            state.record_call(ApiCall {
                service,
                operation: operation.to_owned(),
                access_key_id,
                target: None,
                os_user: None,
                ssh_public_key: None,
            });
            run(operation, &body, &cred.arn)
        });
    match result {
        Ok(value) => {
            let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        Err(e) => {
            tracing::debug!(code = e.code, service, "API error: {}", e.message);
            error_response(&e)
        }
    }
}

/// A JSON 1.1 request read whole: its head, its body (at most `MAX_BODY` bytes) and its
/// `X-Amz-Target`. `Err` is the AWS-shaped answer for a body that cannot be read.
pub async fn read_json11(
    req: Request<Incoming>,
) -> Result<(Parts, Bytes, String), Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => {
            let target = parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            Ok((parts, body.to_bytes(), target))
        }
        Err(e) => {
            let too_large = e.is::<http_body_util::LengthLimitError>();
            let status = if too_large {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            let err =
                ApiError::frontend("SerializationException", format!("cannot read body: {e}"));
            Err(error_response(&ApiError { status, ..err }))
        }
    }
}

pub(crate) fn required(v: Option<String>, field: &str) -> Result<String, ApiError> {
    v.ok_or_else(|| {
        ApiError::validation(format!(
            "Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // The SDKs send `{}` for an operation without input; an empty body is treated the same.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ApiError::frontend(
            "SerializationException",
            format!("cannot parse request body: {e}"),
        )
    })
}

pub(crate) fn reply<T: Serialize>(resp: T) -> Result<Value, ApiError> {
    serde_json::to_value(resp).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        ..ApiError::modeled("InternalServerError", e.to_string())
    })
}

pub fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    respond(e.status, &e.body(), Some(e.code))
}

pub(crate) fn respond(
    status: StatusCode,
    body: &Value,
    error_type: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(v) = error_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("x-amzn-errortype", v);
    }
    resp
}
