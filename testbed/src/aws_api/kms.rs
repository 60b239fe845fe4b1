//! KMS in the JSON 1.1 protocol (`POST /` with `X-Amz-Target: TrentService.<Operation>`,
//! SigV4 signing name `kms`): `GenerateDataKey` and `Decrypt`, enough for KMS-encrypted
//! sessions (docs/protocol.md §5.4).
//!
//! The keys and the sealing live in [`crate::world::kms_keys`] (the agent decrypts data keys with
//! them too); this file is the API over them.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aws_api::account::Account;
use crate::aws_api::json11::ApiError;
use crate::world::kms_keys::{KmsError, KmsState};

pub const TARGET_PREFIX: &str = "TrentService.";
const SIGNING_NAME: &str = "kms";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyRequest {
    key_id: Option<String>,
    number_of_bytes: Option<u64>,
    key_spec: Option<String>,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: Option<String>,
    key_id: Option<String>,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

/// Reads the body (bounded), checks the signature for `kms`, answers the operation.
pub async fn handle(state: &Account, req: Request<Incoming>) -> Response<Full<Bytes>> {
    crate::aws_api::json11::serve(
        state,
        req,
        SIGNING_NAME,
        TARGET_PREFIX,
        |operation, body, _| dispatch(&state.kms, operation, body),
    )
    .await
}

fn dispatch(kms: &KmsState, operation: &str, body: &[u8]) -> Result<Value, ApiError> {
    let parse_err =
        |e: serde_json::Error| ApiError::frontend("SerializationException", e.to_string());
    let kms_err = |e: KmsError| ApiError::frontend(e.code, e.message);
    match operation {
        "GenerateDataKey" => {
            let req: GenerateDataKeyRequest = serde_json::from_slice(body).map_err(parse_err)?;
            let key_id = req.key_id.ok_or_else(|| {
                ApiError::validation(
                    "Value null at 'keyId' failed to satisfy constraint: Member must not be null",
                )
            })?;
            let n = match (req.number_of_bytes, req.key_spec.as_deref()) {
                (Some(n), None) if (1..=1024).contains(&n) => n as usize,
                (Some(n), None) => {
                    return Err(ApiError::validation(format!(
                        "Value '{n}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
                    )));
                }
                (None, Some("AES_256")) => 32,
                (None, Some("AES_128")) => 16,
                _ => {
                    return Err(ApiError::validation(
                        "Please specify either number of bytes or key spec.",
                    ));
                }
            };
            let key = kms
                .generate_data_key(&key_id, n, &req.encryption_context)
                .map_err(kms_err)?;
            Ok(json!({
                "CiphertextBlob": B64.encode(&key.ciphertext_blob),
                "Plaintext": B64.encode(&key.plaintext),
                "KeyId": key.key_arn,
            }))
        }
        "Decrypt" => {
            let req: DecryptRequest = serde_json::from_slice(body).map_err(parse_err)?;
            let blob = req.ciphertext_blob.ok_or_else(|| {
                ApiError::validation(
                    "Value null at 'ciphertextBlob' failed to satisfy constraint: Member must not be null",
                )
            })?;
            let blob = B64
                .decode(blob)
                .map_err(|e| ApiError::frontend("SerializationException", e.to_string()))?;
            let (plain, key_arn) = kms
                .decrypt(&blob, &req.encryption_context, req.key_id.as_deref())
                .map_err(kms_err)?;
            Ok(json!({
                "KeyId": key_arn,
                "Plaintext": B64.encode(plain),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            }))
        }
        _ => Err(ApiError::frontend(
            "UnknownOperationException",
            format!("Unknown operation '{TARGET_PREFIX}{operation}'."),
        )),
    }
}
