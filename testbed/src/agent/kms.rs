//! The agent end's KMS steps (docs/protocol.md §5.2, §5.4), for sessions the agent encrypts
//! (Standard_Stream and command sessions when `kms_key_id` is set; never port sessions):
//!
//! 1. [`kms_action`]: the `KMSEncryption` action in the HandshakeRequest, with a random
//!    16-byte challenge;
//! 2. [`accept_data_key`]: the client's HandshakeResponse -> KMS `Decrypt` of its blob with
//!    the `{aws:ssm:SessionId, aws:ssm:TargetId}` context -> the agent's [`AgentCipher`]
//!    (counter nonces from a random start, as the agent's);
//! 3. [`Challenge`]: 64 random bytes sealed with the agent's key as EncChallengeRequest; the
//!    client's EncChallengeResponse must open with the client's key to the same bytes;
//! 4. then Output, StdErr and ExitCode are sealed and client Output opened
//!    ([`crate::agent::cipher`], written apart from the client's cipher).
//!
//! [`EncryptedAgent`] runs all of it for one session as a sans-IO state machine (frames in,
//! frames out), so a test can drive a client against it in memory; the websocket agents
//! can use the functions one by one.
//!
//! Guesses: the agent's texts for a failed KMS step or challenge (the session ends with
//! them as the channel_closed output).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::agent::channel::{AgentDataChannel, AgentEvent};
use crate::agent::cipher::{AgentCipher, agent_encrypts};
use crate::agent::payloads::{
    EncChallenge, HandshakeComplete, HandshakeRequest, HandshakeResponse, KmsEncryptionRequest,
    KmsEncryptionResult, PayloadType, RequestedClientAction, SessionTypeRequest,
};

use crate::world::kms_keys::KmsState;

/// The notice the agent puts in HandshakeComplete for an encrypted session.
pub const KMS_NOTICE: &str = "This session is encrypted using AWS KMS.";

/// The `KMSEncryption` action for a HandshakeRequest.
pub fn kms_action(key_id: &str, challenge: &[u8]) -> RequestedClientAction {
    RequestedClientAction {
        action_type: "KMSEncryption".to_owned(),
        action_parameters: serde_json::to_value(KmsEncryptionRequest {
            kms_key_id: key_id.to_owned(),
            challenge: B64.encode(challenge),
        })
        .unwrap_or_default(),
    }
}

/// The encryption context the agent decrypts with: its session ID and its own instance ID.
pub fn encryption_context(session_id: &str, target: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("aws:ssm:SessionId".to_owned(), session_id.to_owned()),
        ("aws:ssm:TargetId".to_owned(), target.to_owned()),
    ])
}

/// Reads the client's KMS answer from its HandshakeResponse and decrypts the data key with
/// The client's HandshakeResponse; the agent fails the session if any action failed.
pub fn parse_handshake_response(payload: &[u8]) -> Result<HandshakeResponse, String> {
    let resp: HandshakeResponse =
        serde_json::from_slice(payload).map_err(|e| format!("invalid handshake response: {e}"))?;
    if let Some(a) = resp
        .processed_client_actions
        .iter()
        .find(|a| a.action_status != crate::agent::payloads::ACTION_SUCCESS)
    {
        return Err(format!(
            "client failed action {}: {}",
            a.action_type, a.error
        ));
    }
    Ok(resp)
}

/// KMS: the agent's cipher, or the text the agent ends the session with.
pub fn accept_data_key(
    kms: &KmsState,
    key_id: &str,
    response: &HandshakeResponse,
    session_id: &str,
    target: &str,
    nonce_start: [u32; 3],
) -> Result<AgentCipher, String> {
    let action = response
        .processed_client_actions
        .iter()
        .find(|a| a.action_type == "KMSEncryption")
        .ok_or("the client did not answer the KMSEncryption action")?;
    if action.action_status != crate::agent::payloads::ACTION_SUCCESS {
        return Err(format!(
            "client failed action KMSEncryption: {}",
            action.error
        ));
    }
    let result: KmsEncryptionResult = serde_json::from_value(action.action_result.clone())
        .map_err(|e| format!("invalid KMSEncryption result: {e}"))?;
    let (key, _) = kms
        .decrypt(
            &result.kms_cipher_text_key,
            &encryption_context(session_id, target),
            Some(key_id),
        )
        .map_err(|e| format!("Failed to decrypt the data key with KMS: {e}"))?;
    AgentCipher::new(&key, nonce_start)
}

/// The challenge the agent sent and must get back.
pub struct Challenge {
    secret: [u8; 64],
}

impl Challenge {
    /// 64 random bytes and the EncChallengeRequest payload carrying them, sealed with
    /// `cipher` (the agent's).
    pub fn new(cipher: &mut AgentCipher) -> Result<(Challenge, Vec<u8>), String> {
        let mut secret = [0u8; 64];
        secret.iter_mut().for_each(|b| *b = rand::random());
        let sealed = cipher.seal(&secret).map_err(|e| e.to_string())?;
        let payload =
            serde_json::to_vec(&EncChallenge { challenge: sealed }).map_err(|e| e.to_string())?;
        Ok((Challenge { secret }, payload))
    }

    /// Checks the client's EncChallengeResponse payload.
    pub fn verify(&self, cipher: &AgentCipher, payload: &[u8]) -> Result<(), String> {
        let resp: EncChallenge = serde_json::from_slice(payload)
            .map_err(|e| format!("invalid encryption challenge response: {e}"))?;
        let plain = cipher
            .open(&resp.challenge)
            .map_err(|e| format!("Encryption challenge response failed to decrypt: {e}"))?;
        if plain != self.secret {
            return Err("Encryption challenge response does not match the challenge".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingResponse,
    AwaitingChallenge,
    Established,
    Failed,
}

/// The agent end of one encrypted session, sans-IO: feed it the client's frames, send
/// what [`EncryptedAgent::poll_transmit`] yields. On failure it yields a
/// `channel_closed` frame with the reason, as the service would deliver it.
pub struct EncryptedAgent {
    channel: AgentDataChannel,
    kms: Arc<KmsState>,
    key_id: String,
    session_id: String,
    target: String,
    phase: Phase,
    cipher: Option<AgentCipher>,
    challenge: Option<Challenge>,
    received: Vec<u8>,
    failure: Option<String>,
    /// Test fault: seal the challenge with a key other than the session's.
    wrong_challenge_key: bool,
    started: Instant,
    /// The channel_closed frame to deliver after a failure.
    closed_frame: Option<Vec<u8>>,
}

impl EncryptedAgent {
    /// Queues the HandshakeRequest (`session_type` plus KMSEncryption for `key_id`).
    pub fn new(
        kms: Arc<KmsState>,
        key_id: &str,
        session_id: &str,
        target: &str,
        session_type: &str,
        now: Instant,
    ) -> EncryptedAgent {
        let mut channel = AgentDataChannel::new(1024, now);
        let challenge: [u8; 16] = rand::random();
        let request = HandshakeRequest {
            agent_version: "3.3.987.0".to_owned(),
            requested_client_actions: vec![
                RequestedClientAction {
                    action_type: "SessionType".to_owned(),
                    action_parameters: serde_json::to_value(SessionTypeRequest {
                        session_type: session_type.to_owned(),
                        properties: serde_json::Value::Null,
                    })
                    .unwrap_or_default(),
                },
                kms_action(key_id, &challenge),
            ],
        };
        channel.send(
            now,
            PayloadType::HandshakeRequest as u32,
            serde_json::to_vec(&request).unwrap_or_default(),
        );
        EncryptedAgent {
            channel,
            kms,
            key_id: key_id.to_owned(),
            session_id: session_id.to_owned(),
            target: target.to_owned(),
            phase: Phase::AwaitingResponse,
            cipher: None,
            challenge: None,
            received: Vec::new(),
            failure: None,
            wrong_challenge_key: false,
            started: now,
            closed_frame: None,
        }
    }

    /// Fault for tests: the challenge is sealed under an unrelated key, as if the agent
    /// had decrypted a different data key.
    pub fn seal_challenge_with_wrong_key(&mut self) {
        self.wrong_challenge_key = true;
    }

    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// Why the agent ended the session, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Client Output received so far (decrypted), taken.
    pub fn take_received(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.received)
    }

    /// Handles one client frame. `Err` (also kept in [`EncryptedAgent::failure`]) when
    /// the agent ends the session.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), String> {
        if self.phase == Phase::Failed {
            return Err(self.failure.clone().unwrap_or_default());
        }
        if let Err(e) = self.channel.handle_frame(now, frame) {
            // The agent logs and ignores messages it cannot parse.
            tracing::debug!("agent ignored a message: {e}");
        }
        while let Some(ev) = self.channel.poll_event() {
            let AgentEvent::Message(m) = ev else {
                continue;
            };
            if let Err(why) = self.on_message(now, m.payload_type, &m.payload) {
                self.fail(why.clone());
                return Err(why);
            }
        }
        Ok(())
    }

    fn on_message(&mut self, now: Instant, kind: u32, payload: &[u8]) -> Result<(), String> {
        let kind = PayloadType::from_u32(kind);
        match (self.phase, kind) {
            (Phase::AwaitingResponse, Some(PayloadType::HandshakeResponse)) => {
                let resp = parse_handshake_response(payload)?;
                let mut cipher = accept_data_key(
                    &self.kms,
                    &self.key_id,
                    &resp,
                    &self.session_id,
                    &self.target,
                    rand::random(),
                )?;
                let (challenge, request) = if self.wrong_challenge_key {
                    let other = rand::random::<[[u8; 32]; 2]>().concat();
                    let mut wrong = AgentCipher::new(&other, [0; 3])?;
                    Challenge::new(&mut wrong)?
                } else {
                    Challenge::new(&mut cipher)?
                };
                self.channel
                    .send(now, PayloadType::EncChallengeRequest as u32, request);
                self.cipher = Some(cipher);
                self.challenge = Some(challenge);
                self.phase = Phase::AwaitingChallenge;
            }
            (Phase::AwaitingChallenge, Some(PayloadType::EncChallengeResponse)) => {
                let (Some(cipher), Some(challenge)) = (&self.cipher, &self.challenge) else {
                    return Err("no challenge outstanding".into());
                };
                challenge.verify(cipher, payload)?;
                let done = HandshakeComplete {
                    handshake_time_to_complete: now
                        .saturating_duration_since(self.started)
                        .as_nanos() as i64,
                    customer_message: KMS_NOTICE.to_owned(),
                };
                self.channel.send(
                    now,
                    PayloadType::HandshakeComplete as u32,
                    serde_json::to_vec(&done).unwrap_or_default(),
                );
                self.phase = Phase::Established;
            }
            (Phase::Established, Some(PayloadType::Output)) => {
                let cipher = self.cipher.as_ref().ok_or("no session key")?;
                let plain = cipher
                    .open(payload)
                    .map_err(|e| format!("Failed to decrypt client data: {e}"))?;
                self.received.extend(plain);
            }
            // Before HandshakeComplete the agent acknowledges and drops other data; after
            // it, Size and Flag mean nothing to this in-memory end.
            (phase, kind) => tracing::debug!(?phase, ?kind, "agent dropped a payload"),
        }
        Ok(())
    }

    fn fail(&mut self, why: String) {
        self.phase = Phase::Failed;
        self.failure = Some(why.clone());
        self.closed_frame = Some(crate::mgs::frames::channel_closed_frame(
            &self.session_id,
            &why,
        ));
    }

    /// Sends a payload of `kind`, sealed when the agent encrypts that type, in chunks of
    /// at most 1 KiB of plaintext. Nothing before the handshake is complete.
    pub fn send(&mut self, now: Instant, kind: PayloadType, data: &[u8]) -> Result<(), String> {
        if self.phase != Phase::Established {
            return Err("the handshake is not complete".into());
        }
        let cipher = self.cipher.as_mut().ok_or("no session key")?;
        for chunk in data.chunks(self.channel.max_payload()) {
            let payload = if agent_encrypts(kind as u32) {
                cipher.seal(chunk).map_err(|e| e.to_string())?
            } else {
                chunk.to_vec()
            };
            self.channel.send(now, kind as u32, payload);
        }
        Ok(())
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.channel.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.channel.handle_timeout(now);
    }

    /// The next frame for the client (acks, stream data, then a channel_closed on failure).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.channel
            .poll_transmit()
            .or_else(|| self.closed_frame.take())
    }
}
