//! KMS data keys for encrypted sessions (docs/protocol.md §5.4), as a driver sees them.
//!
//! When the agent asks for KMS encryption, the sans-IO core yields a
//! [`DataKeyRequest`](crate::proto::client::DataKeyRequest); a driver answers it with
//! [`answer_data_key_request`], which calls a [`DataKeyProvider`]. The trait keeps this
//! layer free of the AWS SDK (only [`DataKeyError`] names our own `AwsError`):
//! `crate::aws::KmsDataKeys` implements it with KMS
//! `GenerateDataKey` and the session's encryption context.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::proto::client::{ClientSession, NotAwaitingDataKey, ProvideKeyError};

use super::DriveError;

/// How long KMS may take: the agent itself waits 15 s for the handshake response
/// (docs/protocol.md §5.2), so a slower key is of no use.
pub const DATA_KEY_TIMEOUT: Duration = Duration::from_secs(15);

/// A data key as KMS `GenerateDataKey` returns it.
pub struct DataKey {
    /// The key encrypted under the KMS key; sent to the agent, which asks KMS to decrypt it.
    pub ciphertext_blob: Vec<u8>,
    /// The 64 plaintext bytes; wiped from memory when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("ciphertext_blob", &self.ciphertext_blob.len())
            .field("plaintext", &"<redacted>")
            .finish()
    }
}

/// Why no data key could be had.
#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    /// AWS (KMS) refused or failed `GenerateDataKey`; the error says which IAM permission
    /// is missing.
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    /// KMS did not answer in time.
    #[error("KMS did not answer GenerateDataKey within {0:?}")]
    Timeout(Duration),
    /// The agent asked for encryption on a session kind that has no key provider.
    #[error("this kind of session cannot be KMS-encrypted yet")]
    Unsupported,
    /// The core was handed a key it had not asked for: a bug on our side, or an agent
    /// that changed its mind mid-handshake.
    #[error(transparent)]
    NotAwaiting(#[from] NotAwaitingDataKey),
}

/// Gets data keys for one session (it knows the session ID and target that make up the
/// encryption context; the agent names the key).
pub trait DataKeyProvider: Send + Sync {
    fn data_key<'a>(
        &'a self,
        key_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<DataKey, DataKeyError>> + Send + 'a>>;
}

impl std::fmt::Debug for dyn DataKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKeyProvider")
    }
}

/// If the session waits for a KMS data key, gets one from `keys` and hands it over (or
/// tells the agent that KMS failed). Call it each time after feeding frames to the
/// session, then send what the session queued, also when this returns an error: the
/// HandshakeResponse then tells the agent why, so it ends the session at once.
///
/// Without a provider, a session that demands encryption fails with a clear error.
pub async fn answer_data_key_request(
    session: &mut ClientSession,
    keys: Option<&dyn DataKeyProvider>,
) -> Result<(), DriveError> {
    let Some(request) = session.poll_data_key_request() else {
        return Ok(());
    };
    tracing::debug!(key_id = request.key_id, "the agent asks for KMS encryption");
    let Some(keys) = keys else {
        let reason = DataKeyError::Unsupported;
        let _ = session.kms_failed(now(), &reason.to_string());
        return Err(DriveError::DataKey(reason));
    };
    let answer = tokio::time::timeout(DATA_KEY_TIMEOUT, keys.data_key(&request.key_id))
        .await
        .unwrap_or(Err(DataKeyError::Timeout(DATA_KEY_TIMEOUT)));
    match answer {
        Ok(key) => session
            .provide_data_key(now(), &key.ciphertext_blob, &key.plaintext)
            .map_err(|e| match e {
                ProvideKeyError::Failed(e) => DriveError::Protocol(e),
                ProvideKeyError::NotAwaiting(e) => DriveError::DataKey(e.into()),
            }),
        Err(e) => {
            let _ = session.kms_failed(now(), &e.to_string());
            Err(DriveError::DataKey(e))
        }
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::{Message, MessageType};
    use crate::proto::payload::{HandshakeResponse, PayloadType};

    const KMS_REQ: &[u8] = br#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"alias/k","Challenge":""}}]}"#;

    fn waiting_session() -> ClientSession {
        let mut s = ClientSession::with_defaults(now(), 1, 1);
        let frame = Message {
            message_type: MessageType::OutputStreamData,
            schema_version: 1,
            created_date: 1,
            sequence_number: 0,
            flags: 1,
            message_id: uuid::Uuid::from_u128(1),
            payload_type: PayloadType::HandshakeRequest as u32,
            payload: KMS_REQ.to_vec(),
        };
        s.handle_frame(now(), &frame.encode()).unwrap();
        s
    }

    /// The KMS action's status in the HandshakeResponse the session queued.
    fn kms_status(s: &mut ClientSession) -> i32 {
        let resp = std::iter::from_fn(|| s.poll_transmit())
            .map(|f| Message::decode(&f).unwrap())
            .find(|m| m.payload_type == PayloadType::HandshakeResponse as u32)
            .unwrap();
        let resp: HandshakeResponse = serde_json::from_slice(&resp.payload).unwrap();
        resp.processed_client_actions[1].action_status
    }

    struct Fixed(Option<Duration>);

    impl DataKeyProvider for Fixed {
        fn data_key<'a>(
            &'a self,
            _key_id: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<DataKey, DataKeyError>> + Send + 'a>> {
            Box::pin(async move {
                if let Some(d) = self.0 {
                    tokio::time::sleep(d).await;
                }
                Ok(DataKey {
                    ciphertext_blob: b"blob".to_vec(),
                    plaintext: Zeroizing::new(vec![7; 64]),
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn provider_key_is_handed_over() {
        let mut s = waiting_session();
        answer_data_key_request(&mut s, Some(&Fixed(None)))
            .await
            .unwrap();
        assert_eq!(kms_status(&mut s), 1);
        // Nothing more to do once answered.
        answer_data_key_request(&mut s, None).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn no_provider_or_a_silent_kms_fails_and_tells_the_agent() {
        let mut s = waiting_session();
        let err = answer_data_key_request(&mut s, None).await.unwrap_err();
        assert!(matches!(err, DriveError::DataKey(_)));
        assert!(err.to_string().contains("requires KMS encryption"), "{err}");
        assert_eq!(kms_status(&mut s), 2);

        let mut s = waiting_session();
        let slow = Fixed(Some(DATA_KEY_TIMEOUT * 2));
        let err = answer_data_key_request(&mut s, Some(&slow))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err}");
        assert_eq!(kms_status(&mut s), 2);
    }
}
