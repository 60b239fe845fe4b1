//! The client side of the session handshake (docs/protocol.md §5) as a typestate:
//! [`AwaitingRequest`] -> [`AwaitingComplete`] -> [`Established`], and for sessions the
//! agent wants encrypted with KMS, [`AwaitingRequest`] -> [`AwaitingDataKey`] (the caller
//! asks KMS for a data key) -> [`AwaitingChallenge`] -> [`AwaitingComplete`] ->
//! [`Established`]. Each step consumes the previous state, so data cannot be sent before
//! HandshakeComplete by construction. Nothing here calls KMS: the key comes in.

use serde_json::Value;

use super::channel::Role;
use super::crypto::{CryptoError, SessionCipher};
use super::payload::{
    EncChallenge, HandshakeComplete, HandshakeRequest, HandshakeResponse, KmsEncryptionRequest,
    KmsEncryptionResult, ProcessedClientAction, SessionTypeRequest, action_status,
};

/// The version we report to the agent. The agent gates features on it (docs/protocol.md §7.1,
/// §7.2): it must be at least 1.1.70 for smux port forwarding and above 1.2.331.0 so the
/// agent keeps smux keep-alives off; 1.2.0.0 would switch those off. We report a current
/// plugin release number because we implement that release's behaviour.
pub const CLIENT_VERSION: &str = "1.2.707.0";

const KMS_ACTION: &str = "KMSEncryption";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the agent's handshake request is not valid JSON: {0}")]
    BadRequest(String),
    #[error("the agent's handshake request has no session type")]
    NoSessionType,
    #[error("the target requires KMS encryption for this session, but {0}")]
    Kms(String),
    #[error(
        "the agent's encryption challenge failed ({0}): the agent and sallyport do not hold the same KMS data key"
    )]
    Challenge(String),
    #[error("the agent's handshake-complete message is not valid JSON: {0}")]
    BadComplete(String),
}

/// What the agent asked for and we agreed to.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionParams {
    pub agent_version: String,
    /// `Port`, `Standard_Stream`, `InteractiveCommands` or `NonInteractiveCommands`.
    pub session_type: String,
    /// The document's substituted properties (for Port: portNumber, type, host …).
    pub properties: Value,
}

/// Waiting for the agent's HandshakeRequest.
#[derive(Debug, Clone)]
pub struct AwaitingRequest {
    pub client_version: String,
}

impl Default for AwaitingRequest {
    fn default() -> Self {
        AwaitingRequest {
            client_version: CLIENT_VERSION.to_owned(),
        }
    }
}

/// What a HandshakeRequest leads to.
#[derive(Debug)]
pub enum Requested {
    /// No encryption: send this HandshakeResponse and wait for HandshakeComplete.
    Respond(AwaitingComplete, Vec<u8>),
    /// The agent wants the session encrypted: get a data key from KMS first.
    NeedDataKey(AwaitingDataKey),
}

/// The agent asked for KMS encryption; waiting for the caller to get a data key from KMS
/// (`GenerateDataKey` with [`AwaitingDataKey::key_id`], 64 bytes, and the session's
/// encryption context, docs/protocol.md §5.4).
#[derive(Debug)]
pub struct AwaitingDataKey {
    client_version: String,
    params: SessionParams,
    /// Every requested action's answer, in request order; the KMS one is filled in later.
    processed: Vec<ProcessedClientAction>,
    errors: Vec<String>,
    key_id: String,
}

/// The HandshakeResponse went out with the encrypted data key; waiting for the agent's
/// EncChallengeRequest.
#[derive(Debug)]
pub struct AwaitingChallenge {
    params: SessionParams,
    cipher: SessionCipher,
}

/// The handshake failed on our side; `response` (a HandshakeResponse saying so) should
/// still be sent so the agent ends the session at once instead of timing out.
#[derive(Debug)]
pub struct Refusal {
    pub error: HandshakeError,
    pub response: Vec<u8>,
}

/// Our response went out; waiting for HandshakeComplete.
#[derive(Debug)]
pub struct AwaitingComplete {
    pub params: SessionParams,
    /// Present when the session is encrypted.
    pub cipher: Option<SessionCipher>,
}

/// The handshake is over; stream data may flow.
#[derive(Debug)]
pub struct Established {
    pub params: SessionParams,
    /// Text the agent wants shown to the user (e.g. the KMS notice); often empty.
    pub customer_message: String,
    /// Present when the session is encrypted.
    pub cipher: Option<SessionCipher>,
}

fn processed(
    action_type: &str,
    status: i32,
    result: Value,
    error: String,
) -> ProcessedClientAction {
    ProcessedClientAction {
        action_type: action_type.to_owned(),
        action_status: status,
        action_result: result,
        error,
    }
}

fn response_bytes(
    client_version: String,
    processed_client_actions: Vec<ProcessedClientAction>,
    errors: Vec<String>,
) -> Vec<u8> {
    let response = HandshakeResponse {
        client_version,
        processed_client_actions,
        errors: if errors.is_empty() {
            None
        } else {
            Some(errors)
        },
    };
    serde_json::to_vec(&response).unwrap_or_default()
}

impl AwaitingRequest {
    /// Answers a HandshakeRequest payload: either the HandshakeResponse to send, or a
    /// request for a KMS data key.
    pub fn on_request(self, payload: &[u8]) -> Result<Requested, HandshakeError> {
        let req: HandshakeRequest = serde_json::from_slice(payload)
            .map_err(|e| HandshakeError::BadRequest(e.to_string()))?;
        let mut session: Option<SessionTypeRequest> = None;
        let mut kms: Option<KmsEncryptionRequest> = None;
        let mut processed_actions = Vec::new();
        let mut errors = Vec::new();
        for action in &req.requested_client_actions {
            match action.action_type.as_str() {
                "SessionType" => {
                    let st: SessionTypeRequest =
                        serde_json::from_value(action.action_parameters.clone())
                            .map_err(|e| HandshakeError::BadRequest(e.to_string()))?;
                    session = Some(st);
                    processed_actions.push(processed(
                        &action.action_type,
                        action_status::SUCCESS,
                        Value::Null,
                        String::new(),
                    ));
                }
                KMS_ACTION => {
                    let k: KmsEncryptionRequest =
                        serde_json::from_value(action.action_parameters.clone()).map_err(|e| {
                            HandshakeError::BadRequest(format!("KMSEncryption parameters: {e}"))
                        })?;
                    kms = Some(k);
                    // Filled in once KMS answers.
                    processed_actions.push(processed(
                        KMS_ACTION,
                        action_status::FAILED,
                        Value::Null,
                        String::new(),
                    ));
                }
                other => {
                    // Say so instead of pretending (the plugin leaves ActionStatus 0 here).
                    errors.push(format!("Unsupported action {other}"));
                    processed_actions.push(processed(
                        other,
                        action_status::UNSUPPORTED,
                        Value::Null,
                        format!("Unsupported action {other}"),
                    ));
                }
            }
        }
        let session = session.ok_or(HandshakeError::NoSessionType)?;
        let params = SessionParams {
            agent_version: req.agent_version,
            session_type: session.session_type,
            properties: session.properties,
        };
        match kms {
            Some(k) => Ok(Requested::NeedDataKey(AwaitingDataKey {
                client_version: self.client_version,
                params,
                processed: processed_actions,
                errors,
                key_id: k.kms_key_id,
            })),
            None => Ok(Requested::Respond(
                AwaitingComplete {
                    params,
                    cipher: None,
                },
                response_bytes(self.client_version, processed_actions, errors),
            )),
        }
    }
}

impl AwaitingDataKey {
    /// The KMS key (ID or ARN) the agent named.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// KMS answered: `ciphertext_blob` goes to the agent, `plaintext_key` (64 bytes) keys
    /// the session. `nonce_seed` starts our nonce counter (pass fresh randomness).
    pub fn on_data_key(
        self,
        ciphertext_blob: &[u8],
        plaintext_key: &[u8],
        nonce_seed: u128,
    ) -> Result<(AwaitingChallenge, Vec<u8>), Refusal> {
        let cipher = match SessionCipher::new(Role::Client, plaintext_key, nonce_seed) {
            Ok(c) => c,
            Err(e) => return Err(self.refuse(format!("KMS returned an unusable data key: {e}"))),
        };
        let result = KmsEncryptionResult {
            kms_cipher_text_key: ciphertext_blob.to_vec(),
            kms_cipher_text_hash: None,
        };
        let mut processed_actions = self.processed;
        for a in processed_actions
            .iter_mut()
            .filter(|a| a.action_type == KMS_ACTION)
        {
            a.action_status = action_status::SUCCESS;
            a.action_result = serde_json::to_value(&result).unwrap_or_default();
        }
        let response = response_bytes(self.client_version, processed_actions, self.errors);
        Ok((
            AwaitingChallenge {
                params: self.params,
                cipher,
            },
            response,
        ))
    }

    /// No data key (KMS refused or failed): the response reports the KMS action failed
    /// with `reason`, and the session cannot go on.
    pub fn refuse(self, reason: String) -> Refusal {
        let mut processed_actions = self.processed;
        for a in processed_actions
            .iter_mut()
            .filter(|a| a.action_type == KMS_ACTION)
        {
            a.action_status = action_status::FAILED;
            a.error = reason.clone();
        }
        let mut errors = self.errors;
        errors.push(reason.clone());
        Refusal {
            error: HandshakeError::Kms(reason),
            response: response_bytes(self.client_version, processed_actions, errors),
        }
    }
}

impl AwaitingChallenge {
    /// Answers an EncChallengeRequest: decrypts the agent's challenge with the
    /// agent-to-client key and encrypts it again with ours; returns the
    /// EncChallengeResponse payload.
    pub fn on_challenge(
        mut self,
        payload: &[u8],
    ) -> Result<(AwaitingComplete, Vec<u8>), HandshakeError> {
        let request: EncChallenge = serde_json::from_slice(payload)
            .map_err(|e| HandshakeError::Challenge(format!("not valid JSON: {e}")))?;
        let plain = self
            .cipher
            .open(&request.challenge)
            .map_err(|e: CryptoError| HandshakeError::Challenge(e.to_string()))?;
        let sealed = self
            .cipher
            .seal(&plain)
            .map_err(|e| HandshakeError::Challenge(e.to_string()))?;
        let response = serde_json::to_vec(&EncChallenge { challenge: sealed }).unwrap_or_default();
        Ok((self.into_awaiting_complete(), response))
    }

    /// For an agent that completes the handshake without a challenge.
    pub fn into_awaiting_complete(self) -> AwaitingComplete {
        AwaitingComplete {
            params: self.params,
            cipher: Some(self.cipher),
        }
    }
}

impl AwaitingComplete {
    pub fn on_complete(self, payload: &[u8]) -> Result<Established, HandshakeError> {
        let done: HandshakeComplete = serde_json::from_slice(payload)
            .map_err(|e| HandshakeError::BadComplete(e.to_string()))?;
        Ok(Established {
            params: self.params,
            customer_message: done.customer_message,
            cipher: self.cipher,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn respond(r: Result<Requested, HandshakeError>) -> (AwaitingComplete, Vec<u8>) {
        match r.unwrap() {
            Requested::Respond(next, resp) => (next, resp),
            other => panic!("expected a response, got {other:?}"),
        }
    }

    const REQ: &str = r#"{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"52983"}}}]}"#;

    #[test]
    fn answers_like_the_plugin_in_the_capture() {
        let start = AwaitingRequest {
            client_version: "1.2.0.0".into(),
        };
        let (next, resp) = respond(start.on_request(REQ.as_bytes()));
        assert_eq!(
            std::str::from_utf8(&resp).unwrap(),
            r#"{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
        assert_eq!(next.params.session_type, "Port");
        assert_eq!(next.params.agent_version, "3.3.0.0");
        let done = next
            .on_complete(br#"{"HandshakeTimeToComplete":631840026,"CustomerMessage":""}"#)
            .unwrap();
        assert_eq!(done.params.properties["portNumber"], "52983");
    }

    const KMS_REQ: &str = r#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:us-east-1:1:key/k","Challenge":"AAAA"}}]}"#;

    fn need_key() -> AwaitingDataKey {
        match AwaitingRequest::default().on_request(KMS_REQ.as_bytes()) {
            Ok(Requested::NeedDataKey(k)) => k,
            other => panic!("expected a data-key request, got {other:?}"),
        }
    }

    #[test]
    fn kms_handshake_sends_the_blob_and_answers_the_challenge() {
        let waiting = need_key();
        assert_eq!(waiting.key_id(), "arn:aws:kms:us-east-1:1:key/k");
        assert_eq!(waiting.params().session_type, "Standard_Stream");
        let key: Vec<u8> = (100u8..164).collect();
        let (challenge_wait, resp) = waiting.on_data_key(b"blob", &key, 9).unwrap();
        assert_eq!(
            std::str::from_utf8(&resp).unwrap(),
            r#"{"ClientVersion":"1.2.707.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"YmxvYg==","KMSCipherTextHash":null},"Error":""}],"Errors":null}"#
        );
        // The agent's side: challenge under its key, check our answer under ours.
        let mut agent = SessionCipher::new(Role::Agent, &key, 1).unwrap();
        let secret: Vec<u8> = (0u8..64).collect();
        let req = EncChallenge {
            challenge: agent.seal(&secret).unwrap(),
        };
        let (complete_wait, answer) = challenge_wait
            .on_challenge(&serde_json::to_vec(&req).unwrap())
            .unwrap();
        let answer: EncChallenge = serde_json::from_slice(&answer).unwrap();
        assert_ne!(answer.challenge, req.challenge);
        assert_eq!(agent.open(&answer.challenge).unwrap(), secret);
        let done = complete_wait
            .on_complete(br#"{"HandshakeTimeToComplete":1,"CustomerMessage":"This session is encrypted using AWS KMS."}"#)
            .unwrap();
        assert!(done.cipher.is_some());
    }

    #[test]
    fn a_challenge_under_another_key_fails_clearly() {
        let key: Vec<u8> = (0u8..64).collect();
        let (challenge_wait, _) = need_key().on_data_key(b"blob", &key, 0).unwrap();
        let mut wrong = key.clone();
        wrong[3] ^= 0x80;
        let mut agent = SessionCipher::new(Role::Agent, &wrong, 0).unwrap();
        let req = EncChallenge {
            challenge: agent.seal(&[7; 64]).unwrap(),
        };
        let err = challenge_wait
            .on_challenge(&serde_json::to_vec(&req).unwrap())
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Challenge(_)));
        assert!(err.to_string().contains("same KMS data key"), "{err}");
    }

    #[test]
    fn kms_failure_and_bad_keys_are_reported_to_the_agent() {
        let refusal = need_key().refuse("GenerateDataKey failed: AccessDeniedException".into());
        let resp: HandshakeResponse = serde_json::from_slice(&refusal.response).unwrap();
        assert_eq!(resp.processed_client_actions[0].action_status, 1);
        assert_eq!(resp.processed_client_actions[1].action_status, 2);
        assert!(
            resp.processed_client_actions[1]
                .error
                .contains("AccessDenied")
        );
        assert!(refusal.error.to_string().contains("KMS encryption"));
        let refusal = need_key().on_data_key(b"blob", &[0; 32], 0).unwrap_err();
        assert!(
            refusal.error.to_string().contains("32 bytes"),
            "{}",
            refusal.error
        );
    }

    #[test]
    fn garbage_and_missing_session_type_are_errors() {
        assert!(matches!(
            AwaitingRequest::default().on_request(b"{nope"),
            Err(HandshakeError::BadRequest(_))
        ));
        assert_eq!(
            AwaitingRequest::default()
                .on_request(br#"{"AgentVersion":"1","RequestedClientActions":[]}"#)
                .unwrap_err(),
            HandshakeError::NoSessionType
        );
    }

    #[test]
    fn unknown_actions_are_reported_unsupported() {
        let req = r#"{"AgentVersion":"9","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{}}},{"ActionType":"Teleport","ActionParameters":null}]}"#;
        let (_, resp) = respond(AwaitingRequest::default().on_request(req.as_bytes()));
        let resp: HandshakeResponse = serde_json::from_slice(&resp).unwrap();
        assert_eq!(resp.processed_client_actions[1].action_status, 3);
        assert_eq!(resp.errors.unwrap(), ["Unsupported action Teleport"]);
    }
}
