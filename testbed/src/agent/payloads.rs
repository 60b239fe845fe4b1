//! The payloads the agent and the Message Gateway write and read, from their Go structs as
//! docs/protocol.md §2.1, §3.4, §4, §5.3 and §7.4 give them, written apart from the client's
//! `sallyport::proto::payload`: a wrong field name or payload number in the client is then
//! a failed session in the testbed, not a mirrored mistake.
//!
//! Go's `encoding/json` matches keys case-insensitively when it decodes; these structs
//! match them exactly (stricter than the agent: a client that changed the case of a key
//! fails here first). Go writes `[]byte` as standard base64 with padding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The PayloadType numbers of the agent's `contracts` package (docs/protocol.md §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadType {
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
    pub fn from_u32(n: u32) -> Option<PayloadType> {
        const ALL: [PayloadType; 12] = [
            PayloadType::Output,
            PayloadType::Error,
            PayloadType::Size,
            PayloadType::Parameter,
            PayloadType::HandshakeRequest,
            PayloadType::HandshakeResponse,
            PayloadType::HandshakeComplete,
            PayloadType::EncChallengeRequest,
            PayloadType::EncChallengeResponse,
            PayloadType::Flag,
            PayloadType::StdErr,
            PayloadType::ExitCode,
        ];
        ALL.into_iter().find(|t| *t as u32 == n)
    }
}

/// The Flag payload's values (docs/protocol.md §7.4): a 4-byte big-endian number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFlag {
    DisconnectToPort = 1,
    TerminateSession = 2,
    ConnectToPortError = 3,
}

impl PayloadFlag {
    pub fn encode(self) -> Vec<u8> {
        (self as u32).to_be_bytes().to_vec()
    }

    /// `None` for anything but a known 4-byte flag.
    pub fn decode(payload: &[u8]) -> Option<PayloadFlag> {
        let n = u32::from_be_bytes(payload.try_into().ok()?);
        [
            PayloadFlag::DisconnectToPort,
            PayloadFlag::TerminateSession,
            PayloadFlag::ConnectToPortError,
        ]
        .into_iter()
        .find(|f| *f as u32 == n)
    }
}

/// `ActionStatus` values of a processed client action.
pub const ACTION_SUCCESS: i32 = 1;

#[derive(Debug, Serialize)]
pub struct HandshakeRequest {
    #[serde(rename = "AgentVersion")]
    pub agent_version: String,
    #[serde(rename = "RequestedClientActions")]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

#[derive(Debug, Serialize)]
pub struct RequestedClientAction {
    #[serde(rename = "ActionType")]
    pub action_type: String,
    #[serde(rename = "ActionParameters")]
    pub action_parameters: Value,
}

/// The `SessionType` action's parameters; `properties` is null for the shell family.
#[derive(Debug, Serialize)]
pub struct SessionTypeRequest {
    #[serde(rename = "SessionType")]
    pub session_type: String,
    #[serde(rename = "Properties")]
    pub properties: Value,
}

/// The `KMSEncryption` action's parameters.
#[derive(Debug, Serialize)]
pub struct KmsEncryptionRequest {
    #[serde(rename = "KMSKeyId")]
    pub kms_key_id: String,
    /// Base64 of 16 random bytes (agents since Dec 2022).
    #[serde(rename = "Challenge")]
    pub challenge: String,
}

#[derive(Debug, Deserialize)]
pub struct HandshakeResponse {
    #[serde(rename = "ClientVersion", default)]
    pub client_version: String,
    #[serde(rename = "ProcessedClientActions", default)]
    pub processed_client_actions: Vec<ProcessedClientAction>,
    #[serde(rename = "Errors", default)]
    pub errors: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct ProcessedClientAction {
    #[serde(rename = "ActionType")]
    pub action_type: String,
    #[serde(rename = "ActionStatus", default)]
    pub action_status: i32,
    #[serde(rename = "ActionResult", default)]
    pub action_result: Value,
    #[serde(rename = "Error", default)]
    pub error: String,
}

/// What the client answers to `KMSEncryption`.
#[derive(Debug, Deserialize)]
pub struct KmsEncryptionResult {
    #[serde(rename = "KMSCipherTextKey", deserialize_with = "from_base64")]
    pub kms_cipher_text_key: Vec<u8>,
}

#[derive(Debug, Serialize)]
pub struct HandshakeComplete {
    /// Nanoseconds (Go's time.Duration).
    #[serde(rename = "HandshakeTimeToComplete")]
    pub handshake_time_to_complete: i64,
    #[serde(rename = "CustomerMessage")]
    pub customer_message: String,
}

/// EncChallengeRequest and EncChallengeResponse.
#[derive(Debug, Serialize, Deserialize)]
pub struct EncChallenge {
    #[serde(
        rename = "Challenge",
        serialize_with = "to_base64",
        deserialize_with = "from_base64"
    )]
    pub challenge: Vec<u8>,
}

/// A Size payload (terminal size).
#[derive(Debug, Deserialize)]
pub struct SizeData {
    pub cols: u32,
    pub rows: u32,
}

fn to_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&B64.encode(bytes))
}

fn from_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    B64.decode(text.as_bytes())
        .map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes docs/protocol.md §5.3 shows for each payload.
    #[test]
    fn json_as_the_agent_writes_it() {
        let request = HandshakeRequest {
            agent_version: "3.3.987.0".into(),
            requested_client_actions: vec![RequestedClientAction {
                action_type: "SessionType".into(),
                action_parameters: serde_json::to_value(SessionTypeRequest {
                    session_type: "Port".into(),
                    properties: serde_json::json!({"portNumber": "22"}),
                })
                .unwrap(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22"}}}]}"#
        );
        let done = HandshakeComplete {
            handshake_time_to_complete: 1500,
            customer_message: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"HandshakeTimeToComplete":1500,"CustomerMessage":""}"#
        );
        let kms = KmsEncryptionRequest {
            kms_key_id: "alias/k".into(),
            challenge: "AAE=".into(),
        };
        assert_eq!(
            serde_json::to_string(&kms).unwrap(),
            r#"{"KMSKeyId":"alias/k","Challenge":"AAE="}"#
        );
        let challenge = EncChallenge {
            challenge: vec![0, 1, 2],
        };
        assert_eq!(
            serde_json::to_string(&challenge).unwrap(),
            r#"{"Challenge":"AAEC"}"#
        );
    }

    #[test]
    fn json_as_the_plugin_writes_it() {
        let text = r#"{"ClientVersion":"1.2.707.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"AAEC","KMSCipherTextHash":null},"Error":""}],"Errors":null}"#;
        let resp: HandshakeResponse = serde_json::from_str(text).unwrap();
        assert_eq!(resp.client_version, "1.2.707.0");
        assert_eq!(resp.processed_client_actions.len(), 2);
        assert!(
            resp.processed_client_actions
                .iter()
                .all(|a| a.action_status == ACTION_SUCCESS)
        );
        let kms: KmsEncryptionResult =
            serde_json::from_value(resp.processed_client_actions[1].action_result.clone()).unwrap();
        assert_eq!(kms.kms_cipher_text_key, [0, 1, 2]);
        let size: SizeData = serde_json::from_str(r#"{"cols":120,"rows":40}"#).unwrap();
        assert_eq!((size.cols, size.rows), (120, 40));
    }

    #[test]
    fn numbers_and_flags() {
        assert_eq!(PayloadType::from_u32(10), Some(PayloadType::Flag));
        assert_eq!(PayloadType::from_u32(12), Some(PayloadType::ExitCode));
        assert_eq!(PayloadType::from_u32(0), None);
        assert_eq!(PayloadType::from_u32(13), None);
        assert_eq!(PayloadFlag::TerminateSession.encode(), [0, 0, 0, 2]);
        assert_eq!(
            PayloadFlag::decode(&[0, 0, 0, 3]),
            Some(PayloadFlag::ConnectToPortError)
        );
        assert_eq!(PayloadFlag::decode(&[0, 0, 3]), None);
        assert_eq!(PayloadFlag::decode(&[0, 0, 0, 9]), None);
    }
}
