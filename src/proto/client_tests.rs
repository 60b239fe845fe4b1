use std::time::{Duration, Instant};

use super::*;
use crate::proto::message::{Message, MessageType};
use crate::proto::test_captures;

fn events(c: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Replays the agent's side of a real session (AWS's agent talking to AWS's plugin) into
/// our client, and checks that we answer as the plugin did: same acks, same handshake
/// response, same SSH bytes delivered in order.
#[test]
fn replays_the_official_agent_frames() {
    for name in test_captures::FILES {
        let frames = test_captures::load(name);
        let t0 = Instant::now();
        let mut c = ClientSession::with_defaults(t0, 1_700_000_000_000, 5);
        let mut expected_data: Vec<u8> = Vec::new();
        let mut got_data = Vec::new();
        let mut established = false;
        let mut acked = std::collections::BTreeSet::new();
        let mut agent_seqs = std::collections::BTreeSet::new();
        for f in frames.iter().filter(|f| f.from_agent) {
            let msg = Message::decode(&f.bytes).unwrap();
            if msg.message_type == MessageType::OutputStreamData {
                agent_seqs.insert(msg.sequence_number);
            }
            c.handle_frame(t0, &f.bytes).unwrap();
            while let Some(out) = c.poll_transmit() {
                let m = Message::decode(&out).unwrap();
                if m.message_type == MessageType::Acknowledge {
                    let ack: crate::proto::payload::Acknowledge =
                        serde_json::from_slice(&m.payload).unwrap();
                    acked.insert(ack.acknowledged_message_sequence_number);
                } else {
                    assert_eq!(m.payload_type, PayloadType::HandshakeResponse as u32);
                    assert_eq!(m.sequence_number, 0);
                }
            }
            for ev in events(&mut c) {
                match ev {
                    ClientEvent::Established { params, .. } => {
                        assert_eq!(params.session_type, "Port");
                        established = true;
                    }
                    ClientEvent::Data(d) => got_data.extend(d),
                    other => panic!("{name}: unexpected {other:?}"),
                }
            }
        }
        // What the agent sent as Output, each sequence number once, in order.
        let mut by_seq = std::collections::BTreeMap::new();
        for f in frames.iter().filter(|f| f.from_agent) {
            let m = Message::decode(&f.bytes).unwrap();
            if m.message_type == MessageType::OutputStreamData && m.payload_type == 1 {
                by_seq.insert(m.sequence_number, m.payload);
            }
        }
        for p in by_seq.values() {
            expected_data.extend(p);
        }
        assert!(established, "{name}: no handshake");
        assert_eq!(
            acked, agent_seqs,
            "{name}: every agent message acknowledged"
        );
        assert_eq!(got_data, expected_data, "{name}: stream bytes");
        assert!(got_data.starts_with(b"SSH-2.0-"), "{name}");
    }
}

#[test]
fn data_before_the_handshake_is_refused_locally() {
    let mut c = ClientSession::with_defaults(Instant::now(), 1, 1);
    assert_eq!(c.send_data(Instant::now(), b"x"), Err(NotEstablished));
    assert!(c.poll_transmit().is_none());
}

fn agent_frame(seq: i64, payload_type: PayloadType, payload: &[u8]) -> Vec<u8> {
    Message {
        message_type: MessageType::OutputStreamData,
        schema_version: 1,
        created_date: 1,
        sequence_number: seq,
        flags: 0,
        message_id: uuid::Uuid::from_u128(seq as u128 + 1),
        payload_type: payload_type as u32,
        payload: payload.to_vec(),
    }
    .encode()
}

#[test]
fn shell_output_without_handshake_establishes_standard_stream() {
    let now = Instant::now();
    let mut c = ClientSession::with_defaults(now, 1, 1);
    c.handle_frame(now, &agent_frame(0, PayloadType::Output, b"$ "))
        .unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(&ev[0], ClientEvent::Established { params, .. } if params.session_type == "Standard_Stream")
    );
    assert_eq!(ev[1], ClientEvent::Data(b"$ ".to_vec()));
}

#[test]
fn stderr_exit_code_and_port_error_become_events() {
    let now = Instant::now();
    let mut c = ClientSession::with_defaults(now, 1, 1);
    let req = br#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"NonInteractiveCommands","Properties":null}}]}"#;
    c.handle_frame(now, &agent_frame(0, PayloadType::HandshakeRequest, req))
        .unwrap();
    c.handle_frame(
        now,
        &agent_frame(
            1,
            PayloadType::HandshakeComplete,
            br#"{"HandshakeTimeToComplete":1,"CustomerMessage":"hi"}"#,
        ),
    )
    .unwrap();
    c.handle_frame(now, &agent_frame(2, PayloadType::StdErr, b"oops"))
        .unwrap();
    c.handle_frame(now, &agent_frame(3, PayloadType::ExitCode, b"EXIT_CODE: 3"))
        .unwrap();
    c.handle_frame(now, &agent_frame(4, PayloadType::Flag, &[0, 0, 0, 3]))
        .unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(&ev[0], ClientEvent::Established { customer_message, .. } if customer_message == "hi")
    );
    assert_eq!(
        ev[1..],
        [
            ClientEvent::StdErr(b"oops".to_vec()),
            ClientEvent::ExitCode(3),
            ClientEvent::PortConnectError
        ]
    );
    assert!(c.send_data(now + Duration::from_millis(1), b"ok").is_ok());
}

#[test]
fn out_of_place_handshake_messages_are_protocol_errors() {
    let now = Instant::now();
    let mut c = ClientSession::with_defaults(now, 1, 1);
    let err = c
        .handle_frame(now, &agent_frame(0, PayloadType::HandshakeComplete, b"{}"))
        .unwrap_err();
    assert!(
        err.to_string().contains("waiting for a handshake request"),
        "{err}"
    );
}
