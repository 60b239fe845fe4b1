//! Payload types, flag values and the JSON documents carried in payloads (docs/protocol.md §3-5).
//!
//! Field names and order match what Go's `encoding/json` produces on the real peers, so what
//! we send is byte-identical to the plugin's where the content is the same.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The header's PayloadType field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PayloadType {
    /// Acknowledge and agent_session_state carry 0.
    Undefined = 0,
    Output = 1,
    Error = 2,
    Size = 3,
    Parameter = 4,
    HandshakeRequest = 5,
    HandshakeResponse = 6,
    HandshakeComplete = 7,
    EncChallengeRequest = 8,
    EncChallengeResponse = 9,
    Flag = 10,
    StdErr = 11,
    ExitCode = 12,
}

impl PayloadType {
    pub fn from_u32(v: u32) -> Option<PayloadType> {
        use PayloadType::*;
        Some(match v {
            0 => Undefined,
            1 => Output,
            2 => Error,
            3 => Size,
            4 => Parameter,
            5 => HandshakeRequest,
            6 => HandshakeResponse,
            7 => HandshakeComplete,
            8 => EncChallengeRequest,
            9 => EncChallengeResponse,
            10 => Flag,
            11 => StdErr,
            12 => ExitCode,
            _ => return None,
        })
    }
}

/// Values of a `Flag` payload (a big-endian u32), docs/protocol.md §7.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PayloadFlag {
    DisconnectToPort = 1,
    TerminateSession = 2,
    ConnectToPortError = 3,
}

impl PayloadFlag {
    pub fn encode(self) -> Vec<u8> {
        (self as u32).to_be_bytes().to_vec()
    }

    pub fn decode(payload: &[u8]) -> Option<PayloadFlag> {
        let v = u32::from_be_bytes(<[u8; 4]>::try_from(payload).ok()?);
        match v {
            1 => Some(PayloadFlag::DisconnectToPort),
            2 => Some(PayloadFlag::TerminateSession),
            3 => Some(PayloadFlag::ConnectToPortError),
            _ => None,
        }
    }
}

/// An acknowledge payload; senders match acks by sequence number only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Acknowledge {
    pub acknowledged_message_type: String,
    #[serde(with = "uuid_text")]
    pub acknowledged_message_id: Uuid,
    pub acknowledged_message_sequence_number: i64,
    #[serde(default)]
    pub is_sequential_message: bool,
}

/// `{"ActionType":…,"ActionParameters":…}` in a HandshakeRequest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestedClientAction {
    pub action_type: String,
    #[serde(default)]
    pub action_parameters: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeRequest {
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

/// ActionParameters of the `SessionType` action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionTypeRequest {
    pub session_type: String,
    #[serde(default)]
    pub properties: Value,
}

/// ActionParameters of the `KMSEncryption` action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KmsEncryptionRequest {
    #[serde(rename = "KMSKeyId")]
    pub kms_key_id: String,
    #[serde(rename = "Challenge", default)]
    pub challenge: String,
}

/// ActionResult of a successful `KMSEncryption` action: the data key as KMS encrypted it,
/// for the agent to decrypt. Go marshals `[]byte` as base64 and a nil slice as `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KmsEncryptionResult {
    #[serde(rename = "KMSCipherTextKey", with = "base64_bytes")]
    pub kms_cipher_text_key: Vec<u8>,
    #[serde(rename = "KMSCipherTextHash", default, with = "base64_opt")]
    pub kms_cipher_text_hash: Option<Vec<u8>>,
}

/// EncChallengeRequest and EncChallengeResponse: `{"Challenge":"<base64>"}`, the bytes
/// encrypted with the sender's session key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncChallenge {
    #[serde(rename = "Challenge", with = "base64_bytes")]
    pub challenge: Vec<u8>,
}

/// ActionStatus values.
pub mod action_status {
    pub const SUCCESS: i32 = 1;
    pub const FAILED: i32 = 2;
    pub const UNSUPPORTED: i32 = 3;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessedClientAction {
    pub action_type: String,
    pub action_status: i32,
    pub action_result: Value,
    pub error: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeResponse {
    pub client_version: String,
    pub processed_client_actions: Vec<ProcessedClientAction>,
    pub errors: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeComplete {
    /// Nanoseconds (Go `time.Duration`).
    #[serde(default)]
    pub handshake_time_to_complete: i64,
    #[serde(default)]
    pub customer_message: String,
}

/// What MGS sends when it ends a session (idle timeout, terminated, max duration).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChannelClosed {
    pub message_id: String,
    pub created_date: String,
    pub destination_id: String,
    pub session_id: String,
    pub message_type: String,
    pub schema_version: i64,
    pub output: String,
}

/// `{"SchemaVersion":1,"SessionState":"Connected","SessionId":"…"}`, agent -> MGS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentSessionState {
    pub schema_version: i64,
    pub session_state: String,
    pub session_id: String,
}

/// Terminal size, client -> agent (lower-case keys on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeData {
    pub cols: u32,
    pub rows: u32,
}

/// The opening TEXT frame a client sends on the data-channel websocket (§2.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDataChannelInput {
    pub message_schema_version: String,
    pub request_id: String,
    pub token_value: String,
    pub client_id: String,
    #[serde(default)]
    pub client_version: String,
}

/// `[]byte` as Go's `encoding/json` writes it: standard base64 with padding.
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // Go decodes `null` into a nil slice.
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// A nil-able `[]byte`: `null` when absent.
mod base64_opt {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => STANDARD
                .decode(text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// UUIDs in JSON are lower-case and hyphenated.
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.hyphenated().to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledge_json_is_byte_identical_to_the_plugin() {
        let ack = Acknowledge {
            acknowledged_message_type: "output_stream_data".into(),
            acknowledged_message_id: "5345de02-7c28-49c6-9432-033fd40df450".parse().unwrap(),
            acknowledged_message_sequence_number: 0,
            is_sequential_message: true,
        };
        let json = serde_json::to_string(&ack).unwrap();
        assert_eq!(
            json,
            r#"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"5345de02-7c28-49c6-9432-033fd40df450","AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}"#
        );
        assert_eq!(json.len(), 176);
        assert_eq!(serde_json::from_str::<Acknowledge>(&json).unwrap(), ack);
    }

    #[test]
    fn handshake_response_json_matches_the_captured_plugin() {
        let resp = HandshakeResponse {
            client_version: "1.2.0.0".into(),
            processed_client_actions: vec![ProcessedClientAction {
                action_type: "SessionType".into(),
                action_status: action_status::SUCCESS,
                action_result: Value::Null,
                error: String::new(),
            }],
            errors: None,
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
    }

    #[test]
    fn handshake_request_from_the_capture_parses() {
        let text = r#"{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"52983"}}}]}"#;
        let req: HandshakeRequest = serde_json::from_str(text).unwrap();
        assert_eq!(req.agent_version, "3.3.0.0");
        let st: SessionTypeRequest =
            serde_json::from_value(req.requested_client_actions[0].action_parameters.clone())
                .unwrap();
        assert_eq!(st.session_type, "Port");
        assert_eq!(st.properties["portNumber"], "52983");
        // Serialising it back gives the agent's bytes.
        assert_eq!(serde_json::to_string(&req).unwrap(), text);
    }

    #[test]
    fn kms_result_and_challenge_json_as_go_writes_them() {
        let r = KmsEncryptionResult {
            kms_cipher_text_key: b"blob".to_vec(),
            kms_cipher_text_hash: None,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"KMSCipherTextKey":"YmxvYg==","KMSCipherTextHash":null}"#
        );
        assert_eq!(
            serde_json::from_str::<KmsEncryptionResult>(&json).unwrap(),
            r
        );
        let c = EncChallenge {
            challenge: vec![0xff, 0, 1],
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"Challenge":"/wAB"}"#);
        assert_eq!(serde_json::from_str::<EncChallenge>(&json).unwrap(), c);
        assert!(serde_json::from_str::<EncChallenge>(r#"{"Challenge":"not base64!"}"#).is_err());
    }

    #[test]
    fn flags_round_trip_and_reject_garbage() {
        for f in [
            PayloadFlag::DisconnectToPort,
            PayloadFlag::TerminateSession,
            PayloadFlag::ConnectToPortError,
        ] {
            assert_eq!(PayloadFlag::decode(&f.encode()), Some(f));
        }
        assert_eq!(PayloadFlag::decode(&[0, 0, 0]), None);
        assert_eq!(PayloadFlag::decode(&[0, 0, 0, 9]), None);
    }

    #[test]
    fn channel_closed_tolerates_missing_fields() {
        let c: ChannelClosed = serde_json::from_str(
            r#"{"MessageType":"channel_closed","SchemaVersion":1,"Output":"Your session timed out due to inactivity and has been terminated."}"#,
        )
        .unwrap();
        assert!(c.output.contains("inactivity"));
    }
}
