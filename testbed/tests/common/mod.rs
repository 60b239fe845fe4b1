//! What the testbed's integration tests say as the client: raw frames built with the
//! golden-tested codec only (not the client's channel), and waits on the agent's output.

#![allow(dead_code)] // each test file uses its own subset

use std::time::Duration;

use sallyport::proto::message::{Message, MessageType};
use sallyport::proto::payload::{Acknowledge, PayloadType};
use std::sync::Arc;

use sallyport_testbed::agent::link::{self, FromAgent, InboxSender};
use sallyport_testbed::agent::{self, AgentIo, AgentOut};
use sallyport_testbed::world::config::AgentSettings;
use sallyport_testbed::world::state::SessionRecord;

/// Bound on every wait for something that must happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A client `input_stream_data` frame.
pub fn client_frame(seq: i64, payload_type: PayloadType, payload: Vec<u8>) -> Vec<u8> {
    Message {
        message_type: MessageType::InputStreamData,
        schema_version: 1,
        created_date: 1_700_000_000_000,
        sequence_number: seq,
        flags: 0,
        message_id: uuid::Uuid::new_v4(),
        payload_type: payload_type as u32,
        payload,
    }
    .encode()
}

/// The plugin's HandshakeResponse for a session-type-only request, as sequence 0.
pub fn handshake_response() -> Vec<u8> {
    let json = serde_json::json!({
        "ClientVersion": "1.2.707.0",
        "ProcessedClientActions": [
            {"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": null, "Error": ""}
        ],
        "Errors": null,
    });
    client_frame(
        0,
        PayloadType::HandshakeResponse,
        serde_json::to_vec(&json).unwrap(),
    )
}

/// The acknowledge frame a client sends for agent message `m`.
pub fn ack_frame(m: &Message) -> Vec<u8> {
    let ack = Acknowledge {
        acknowledged_message_type: "output_stream_data".to_owned(),
        acknowledged_message_id: m.message_id,
        acknowledged_message_sequence_number: m.sequence_number,
        is_sequential_message: true,
    };
    Message {
        message_type: MessageType::Acknowledge,
        schema_version: 1,
        created_date: 1_700_000_000_000,
        sequence_number: 0,
        flags: 3,
        message_id: uuid::Uuid::new_v4(),
        payload_type: 0,
        payload: serde_json::to_vec(&ack).unwrap(),
    }
    .encode()
}

/// The next agent message of `kind` (others, such as resends, are skipped).
pub async fn next_of(from_agent: &mut FromAgent, kind: MessageType) -> Message {
    loop {
        match from_agent.recv().await {
            Some(AgentOut::Frame(f)) => {
                let m = Message::decode(&f).expect("the agent's frames decode");
                if m.message_type == kind {
                    return m;
                }
            }
            Some(AgentOut::Close { output }) => panic!("agent ended the session: {output}"),
            None => panic!("agent went away"),
        }
    }
}

/// The sequence number the agent's next acknowledge is for.
pub async fn next_ack(from_agent: &mut FromAgent) -> i64 {
    let m = next_of(from_agent, MessageType::Acknowledge).await;
    let ack: Acknowledge = serde_json::from_slice(&m.payload).expect("ack JSON");
    ack.acknowledged_message_sequence_number
}

/// The agent end for `record`, run directly (no relay): what the client sends it, what
/// it sends the client, and its task.
pub fn spawn_agent(
    record: SessionRecord,
    settings: AgentSettings,
) -> (
    InboxSender,
    FromAgent,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (to_client, from_agent) = link::outbox(100_000);
    let (to_agent, from_client) = link::inbox(&to_client);
    let io = AgentIo {
        from_client,
        to_client,
        kms: None,
    };
    let task = tokio::spawn(agent::run(Arc::new(record), settings, io));
    (to_agent, from_agent, task)
}
