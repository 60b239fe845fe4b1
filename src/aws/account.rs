//! Account-wide facts `sallyport doctor` reports: who the credentials belong to (STS
//! `GetCallerIdentity`) and the KMS key the Session Manager preferences name (the
//! `SSM-SessionManagerRunShell` document's `inputs.kmsKeyId`).

use aws_config::SdkConfig;

use super::AwsError;

/// The caller's ARN and account.
pub async fn caller_identity(config: &SdkConfig) -> Result<(String, String), AwsError> {
    let out = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetCallerIdentity", e))?;
    Ok((
        out.arn().unwrap_or("an unnamed identity").to_owned(),
        out.account().unwrap_or("?").to_owned(),
    ))
}

/// What the Session Manager preferences say about KMS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionKms {
    /// No preferences were ever saved in this region (the document does not exist).
    NoPreferences,
    /// Preferences without a KMS key.
    Off,
    /// Shell and command sessions are encrypted with this key.
    Key(String),
}

pub async fn session_kms(config: &SdkConfig) -> Result<SessionKms, AwsError> {
    let out = aws_sdk_ssm::Client::new(config)
        .get_document()
        .name("SSM-SessionManagerRunShell")
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let e = AwsError::from_sdk("GetDocument", e);
            return match e.code.as_deref() {
                Some("InvalidDocument") => Ok(SessionKms::NoPreferences),
                _ => Err(e),
            };
        }
    };
    Ok(kms_of_document(out.content().unwrap_or("{}")))
}

/// The preferences document's `inputs.kmsKeyId` (GetDocument's `Content`: hostile text;
/// anything that is not such a JSON object means no key).
pub fn kms_of_document(content: &str) -> SessionKms {
    let content: serde_json::Value = serde_json::from_str(content).unwrap_or_default();
    match content["inputs"]["kmsKeyId"].as_str() {
        Some(k) if !k.is_empty() => SessionKms::Key(k.to_owned()),
        _ => SessionKms::Off,
    }
}
