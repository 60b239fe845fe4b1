//! SSM `GetDocument` for the Session Manager preferences document,
//! `SSM-SessionManagerRunShell`: `sallyport doctor` reads its `inputs.kmsKeyId` to say
//! whether shell and command sessions are KMS-encrypted.
//!
//! The testbed keeps the KMS key per instance (`InstanceConfig::kms_key_id`), where AWS
//! keeps one preferences document per account and region: the document names the first
//! configured instance's key. Without any, the document does not exist, as in an account
//! whose preferences were never saved (`InvalidDocument`). Other documents are
//! `InvalidDocument` too. Unverified: the exact error text.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::aws_api::account::Account;
use crate::aws_api::json11::ApiError;

pub const PREFERENCES: &str = "SSM-SessionManagerRunShell";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetDocumentRequest {
    name: Option<String>,
}

pub fn get_document(state: &Account, req: GetDocumentRequest) -> Result<Value, ApiError> {
    let name = req.name.ok_or_else(|| {
        ApiError::validation(
            "Value null at 'name' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let key = (state.config.instances.iter()).find_map(|i| i.kms_key_id.clone());
    match (name == PREFERENCES, key) {
        (true, Some(key)) => {
            let content = json!({
                "schemaVersion": "1.0",
                "description": "Document to hold regional settings for Session Manager",
                "sessionType": "Standard_Stream",
                "inputs": {
                    "s3BucketName": "",
                    "s3KeyPrefix": "",
                    "s3EncryptionEnabled": true,
                    "cloudWatchLogGroupName": "",
                    "cloudWatchEncryptionEnabled": true,
                    "idleSessionTimeout": "20",
                    "kmsKeyId": key,
                    "runAsEnabled": false,
                    "runAsDefaultUser": "",
                }
            });
            Ok(json!({
                "Name": PREFERENCES,
                "DocumentType": "Session",
                "DocumentFormat": "JSON",
                "DocumentVersion": "1",
                "Status": "Active",
                "Content": content.to_string(),
            }))
        }
        _ => Err(ApiError::modeled(
            "InvalidDocument",
            "The specified document does not exist.",
        )),
    }
}
