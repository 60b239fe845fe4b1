//! The Message Gateway's own frames and payloads, apart from the agent's: the client's
//! opening text frame, `channel_closed`, and `pause_publication` / `start_publication`
//! (docs/protocol.md §2.1, §4). The relay sends and reads them; the agent end may build a
//! `channel_closed` too (a failed KMS handshake, [`crate::agent::kms`]). Imports nothing
//! else of the testbed.

use std::time::{SystemTime, UNIX_EPOCH};

use sallyport::proto::message::{Message, MessageType};
use serde::{Deserialize, Serialize};

/// The client's opening text frame on the data channel (docs/protocol.md §2.1).
#[derive(Debug, Deserialize)]
pub struct OpenDataChannel {
    #[serde(rename = "MessageSchemaVersion")]
    pub message_schema_version: String,
    #[serde(rename = "RequestId")]
    pub request_id: String,
    #[serde(rename = "TokenValue")]
    pub token_value: String,
    #[serde(rename = "ClientId", default)]
    pub client_id: String,
    #[serde(rename = "ClientVersion", default)]
    pub client_version: String,
}

/// MGS's `channel_closed` payload (docs/protocol.md §4).
#[derive(Debug, Serialize)]
pub struct ChannelClosed {
    #[serde(rename = "MessageId")]
    pub message_id: String,
    #[serde(rename = "CreatedDate")]
    pub created_date: String,
    #[serde(rename = "DestinationId")]
    pub destination_id: String,
    #[serde(rename = "SessionId")]
    pub session_id: String,
    #[serde(rename = "MessageType")]
    pub message_type: String,
    #[serde(rename = "SchemaVersion")]
    pub schema_version: i64,
    #[serde(rename = "Output")]
    pub output: String,
}

/// `channel_closed` as the service sends it when a session ends. The JSON fields are the
/// plugin's (docs/protocol.md §4); header sequence number, flags and payload type are not
/// documented anywhere we could read, so they are a guess (0, 0, 0).
pub fn channel_closed_frame(session_id: &str, output: &str) -> Vec<u8> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let id = uuid::Uuid::new_v4();
    let body = ChannelClosed {
        message_id: id.to_string(),
        created_date: now_ms.to_string(),
        destination_id: session_id.to_owned(),
        session_id: session_id.to_owned(),
        message_type: "channel_closed".to_owned(),
        schema_version: 1,
        output: output.to_owned(),
    };
    Message {
        message_type: MessageType::ChannelClosed,
        schema_version: 1,
        created_date: now_ms,
        sequence_number: 0,
        flags: 0,
        message_id: id,
        payload_type: 0,
        payload: serde_json::to_vec(&body).unwrap_or_default(),
    }
    .encode()
}

/// `pause_publication` / `start_publication`. What the service puts in these headers is
/// unverified (docs/protocol.md §4; the plugin skips validating them): we send a well-formed
/// header with an empty payload.
pub fn publication_frame(kind: MessageType) -> Vec<u8> {
    Message {
        message_type: kind,
        schema_version: 1,
        created_date: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1),
        sequence_number: 0,
        flags: 0,
        message_id: uuid::Uuid::new_v4(),
        payload_type: 0,
        payload: Vec::new(),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_frame_as_the_plugin_writes_it() {
        let open: OpenDataChannel = serde_json::from_str(
            r#"{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t","ClientId":"c","ClientVersion":"1.2.707.0"}"#,
        )
        .unwrap();
        assert_eq!(open.token_value, "t");
    }

    #[test]
    fn channel_closed_carries_the_session_and_output() {
        let m = Message::decode(&channel_closed_frame("s-1", "bye")).unwrap();
        assert_eq!(m.message_type, MessageType::ChannelClosed);
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            (v["SessionId"].as_str(), v["Output"].as_str()),
            (Some("s-1"), Some("bye"))
        );
    }
}
