//! KMS for encrypted sessions (docs/protocol.md §5.4): `GenerateDataKey` for the key the agent
//! names, 64 bytes, with the encryption context the agent will decrypt with.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_config::SdkConfig;
use zeroize::Zeroizing;

use super::{AwsError, AwsErrorKind, Ssm, advise};
use crate::proto::crypto::DATA_KEY_LEN;
use crate::transport::{DataKey, DataKeyError, DataKeyProvider};

/// Encryption-context keys; the agent decrypts with exactly these.
pub const CONTEXT_SESSION_ID: &str = "aws:ssm:SessionId";
pub const CONTEXT_TARGET_ID: &str = "aws:ssm:TargetId";

#[derive(Clone, Debug)]
pub struct Kms {
    client: aws_sdk_kms::Client,
}

impl Kms {
    pub fn new(config: &SdkConfig) -> Kms {
        Kms {
            client: aws_sdk_kms::Client::new(config),
        }
    }

    pub(super) fn from_client(client: aws_sdk_kms::Client) -> Kms {
        Kms { client }
    }

    /// A 64-byte data key under `key_id`, bound to this session and target: `target` must
    /// be the instance ID StartSession was given (the agent uses its own ID).
    pub async fn generate_data_key(
        &self,
        key_id: &str,
        session_id: &str,
        target: &str,
    ) -> Result<DataKey, AwsError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .number_of_bytes(DATA_KEY_LEN as i32)
            .encryption_context(CONTEXT_SESSION_ID, session_id)
            .encryption_context(CONTEXT_TARGET_ID, target)
            .send()
            .await
            .map_err(|e| explain(AwsError::from_sdk("GenerateDataKey", e), key_id, target))?;
        let missing = |what: &str| {
            AwsError::new(
                AwsErrorKind::Service,
                format!("KMS GenerateDataKey returned no {what}"),
            )
        };
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| missing("CiphertextBlob"))?;
        let plaintext = out.plaintext.ok_or_else(|| missing("Plaintext"))?;
        Ok(DataKey {
            ciphertext_blob: blob.into_inner(),
            plaintext: Zeroizing::new(plaintext.into_inner()),
        })
    }
}

/// Says that the target demands encryption, and what to do about a refusal.
fn explain(mut e: AwsError, key_id: &str, target: &str) -> AwsError {
    e.message = format!(
        "{target} requires KMS-encrypted sessions (key {key_id}), but {}",
        e.message
    );
    let e = advise(e, None);
    if e.hint.is_some() {
        return e;
    }
    match (e.kind, e.code.as_deref()) {
        (AwsErrorKind::AccessDenied, _) => e.with_hint(format!(
            "your IAM identity needs kms:GenerateDataKey on the KMS key {key_id}; ask your AWS \
             administrator to allow it, or use a --profile that has it"
        )),
        (_, Some("NotFoundException" | "DisabledException" | "KMSInvalidStateException")) => e
            .with_hint(format!(
                "Session Manager preferences name the KMS key {key_id}: check that it exists, is \
                 enabled and is in this region"
            )),
        _ => e,
    }
}

/// Data keys for one session: the provider `transport` drivers call.
#[derive(Clone, Debug)]
pub struct KmsDataKeys {
    pub kms: Kms,
    pub session_id: String,
    /// The instance ID StartSession was given.
    pub target: String,
}

impl DataKeyProvider for KmsDataKeys {
    fn data_key<'a>(
        &'a self,
        key_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<DataKey, DataKeyError>> + Send + 'a>> {
        Box::pin(async move {
            self.kms
                .generate_data_key(key_id, &self.session_id, &self.target)
                .await
                .map_err(DataKeyError::Aws)
        })
    }
}

impl Ssm {
    /// KMS with the same configuration (credentials, region, endpoints) as this client.
    pub fn kms(&self) -> Kms {
        Kms::from_client(self.kms_client.clone())
    }

    /// The data-key provider for a session started with this client: pass it to a driver
    /// (`DriveOptions::data_keys`, or `transport::answer_data_key_request`). `target` is the
    /// resolved instance ID given to StartSession.
    pub fn data_keys(&self, session_id: &str, target: &str) -> Arc<dyn DataKeyProvider> {
        Arc::new(KmsDataKeys {
            kms: self.kms(),
            session_id: session_id.to_owned(),
            target: target.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_names_the_kms_permission() {
        let mut e = AwsError::new(
            AwsErrorKind::AccessDenied,
            "GenerateDataKey failed: AccessDeniedException: User: arn:aws:iam::1:user/u is not \
             authorized to perform: kms:GenerateDataKey on resource: \
             arn:aws:kms:us-east-1:1:key/k because no identity-based policy allows",
        );
        e.code = Some("AccessDeniedException".into());
        let e = explain(e, "alias/ssm", "i-0abc");
        assert!(
            e.message
                .starts_with("i-0abc requires KMS-encrypted sessions (key alias/ssm)")
        );
        let hint = e.hint.unwrap();
        assert!(
            hint.contains("kms:GenerateDataKey on arn:aws:kms:us-east-1:1:key/k"),
            "{hint}"
        );

        let e = explain(
            AwsError::new(
                AwsErrorKind::AccessDenied,
                "GenerateDataKey failed: AccessDenied",
            ),
            "alias/ssm",
            "i-0abc",
        );
        assert!(
            e.hint
                .unwrap()
                .contains("kms:GenerateDataKey on the KMS key alias/ssm")
        );
    }
}
