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

const PORT_REQ: &[u8] = br#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22"}}}]}"#;
const COMPLETE: &[u8] = br#"{"HandshakeTimeToComplete":1,"CustomerMessage":""}"#;

/// A port session through HandshakeComplete with `gate`.
fn completed(now: Instant, gate: InputGate) -> ClientSession {
    let mut c = ClientSession::with_defaults(now, 1, 1).with_input_gate(gate);
    c.handle_frame(
        now,
        &agent_frame(0, PayloadType::HandshakeRequest, PORT_REQ),
    )
    .unwrap();
    assert!(!c.accepts_input());
    c.handle_frame(
        now,
        &agent_frame(1, PayloadType::HandshakeComplete, COMPLETE),
    )
    .unwrap();
    assert!(c.is_established());
    c
}

#[test]
fn input_goes_at_handshake_complete_by_default() {
    let now = Instant::now();
    let c = completed(now, InputGate::AtHandshake);
    assert!(c.accepts_input());
}

#[test]
fn gated_input_waits_for_the_agents_first_output() {
    let now = Instant::now();
    let fallback = Duration::from_secs(2);
    let mut c = completed(now, InputGate::AfterFirstOutput { fallback });
    assert!(!c.accepts_input(), "held until the agent's plugin speaks");
    // The engine must wake for the fallback even with nothing else to do.
    let wake = c.poll_timeout().unwrap();
    assert!(wake <= now + fallback, "{wake:?}");
    c.handle_timeout(now + Duration::from_millis(5)).unwrap();
    assert!(!c.accepts_input(), "an early timer does not release it");
    c.handle_frame(
        now + Duration::from_millis(6),
        &agent_frame(2, PayloadType::Output, b"SSH-2.0-OpenSSH_9.2\r\n"),
    )
    .unwrap();
    assert!(c.accepts_input());
    let ev = events(&mut c);
    assert_eq!(
        ev.last(),
        Some(&ClientEvent::Data(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()))
    );
}

#[test]
fn gated_input_goes_after_the_fallback_when_the_agent_stays_quiet() {
    let now = Instant::now();
    let fallback = Duration::from_millis(300);
    let mut c = completed(now, InputGate::AfterFirstOutput { fallback });
    c.handle_timeout(now + fallback - Duration::from_millis(1))
        .unwrap();
    assert!(!c.accepts_input());
    c.handle_timeout(now + fallback).unwrap();
    assert!(c.accepts_input());
    // No timer of the gate's is left behind.
    if let Some(t) = c.poll_timeout() {
        assert!(t > now + fallback, "{t:?}");
    }
}

#[test]
fn a_connect_error_flag_also_releases_gated_input() {
    let now = Instant::now();
    let mut c = completed(
        now,
        InputGate::AfterFirstOutput {
            fallback: Duration::from_secs(2),
        },
    );
    c.handle_frame(now, &agent_frame(2, PayloadType::Flag, &[0, 0, 0, 3]))
        .unwrap();
    assert!(c.accepts_input());
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

mod kms {
    use super::*;
    use crate::proto::channel::Role;
    use crate::proto::crypto::{OVERHEAD, SessionCipher};
    use crate::proto::payload::{EncChallenge, HandshakeResponse, KmsEncryptionResult};

    const KMS_REQ: &[u8] = br#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"alias/ssm","Challenge":"c2l4dGVlbiBieXRlcyEhIQ=="}}]}"#;

    fn data_key() -> Vec<u8> {
        (0u8..64).map(|b| b.wrapping_mul(37)).collect()
    }

    /// Non-ack frames the client sent, decoded.
    fn sent(c: &mut ClientSession) -> Vec<Message> {
        std::iter::from_fn(|| c.poll_transmit())
            .map(|f| Message::decode(&f).unwrap())
            .filter(|m| m.message_type != MessageType::Acknowledge)
            .collect()
    }

    /// Runs the handshake as a scripted agent; returns the client and the agent's cipher.
    fn encrypted_session(now: Instant) -> (ClientSession, SessionCipher) {
        let mut c = ClientSession::with_defaults(now, 1, 3);
        c.handle_frame(now, &agent_frame(0, PayloadType::HandshakeRequest, KMS_REQ))
            .unwrap();
        assert!(
            sent(&mut c).is_empty(),
            "nothing but the ack before the key"
        );
        assert_eq!(
            c.poll_data_key_request(),
            Some(DataKeyRequest {
                key_id: "alias/ssm".into()
            })
        );
        assert_eq!(c.poll_data_key_request(), None, "asked once");
        assert!(c.is_waiting_for_data_key());
        assert!(matches!(c.send_data(now, b"x"), Err(NotEstablished)));
        c.provide_data_key(now, b"the-blob", &data_key()).unwrap();
        let out = sent(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload_type, PayloadType::HandshakeResponse as u32);
        let resp: HandshakeResponse = serde_json::from_slice(&out[0].payload).unwrap();
        let kms = &resp.processed_client_actions[1];
        assert_eq!(
            (kms.action_type.as_str(), kms.action_status),
            ("KMSEncryption", 1)
        );
        let result: KmsEncryptionResult =
            serde_json::from_value(kms.action_result.clone()).unwrap();
        assert_eq!(result.kms_cipher_text_key, b"the-blob");

        let mut agent = SessionCipher::new(Role::Agent, &data_key(), 77).unwrap();
        let secret: Vec<u8> = (0..64).map(|i| i * 3).collect();
        let challenge = serde_json::to_vec(&EncChallenge {
            challenge: agent.seal(&secret).unwrap(),
        })
        .unwrap();
        c.handle_frame(
            now,
            &agent_frame(1, PayloadType::EncChallengeRequest, &challenge),
        )
        .unwrap();
        let out = sent(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].payload_type,
            PayloadType::EncChallengeResponse as u32
        );
        let answer: EncChallenge = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(agent.open(&answer.challenge).unwrap(), secret);
        assert!(!c.is_established());
        c.handle_frame(
            now,
            &agent_frame(
                2,
                PayloadType::HandshakeComplete,
                br#"{"HandshakeTimeToComplete":5,"CustomerMessage":"This session is encrypted using AWS KMS."}"#,
            ),
        )
        .unwrap();
        assert!(c.is_established() && c.is_encrypted());
        assert!(matches!(
            events(&mut c).as_slice(),
            [ClientEvent::Established { customer_message, .. }] if customer_message.contains("KMS")
        ));
        (c, agent)
    }

    #[test]
    fn encrypted_session_round_trips_and_hides_the_bytes() {
        let now = Instant::now();
        let (mut c, mut agent) = encrypted_session(now);
        // Agent -> client, out of order: opened after reordering.
        let f3 = agent.seal(b"hello ").unwrap();
        let f4 = agent.seal(b"oops").unwrap();
        let f5 = agent.seal(b"EXIT_CODE: 4").unwrap();
        let f6 = agent.seal(b"world").unwrap();
        c.handle_frame(now, &agent_frame(4, PayloadType::StdErr, &f4))
            .unwrap();
        c.handle_frame(now, &agent_frame(6, PayloadType::Output, &f6))
            .unwrap();
        assert!(events(&mut c).is_empty());
        c.handle_frame(now, &agent_frame(3, PayloadType::Output, &f3))
            .unwrap();
        c.handle_frame(now, &agent_frame(5, PayloadType::ExitCode, &f5))
            .unwrap();
        assert_eq!(
            events(&mut c),
            [
                ClientEvent::Data(b"hello ".to_vec()),
                ClientEvent::StdErr(b"oops".to_vec()),
                ClientEvent::ExitCode(4),
                ClientEvent::Data(b"world".to_vec()),
            ]
        );
        // Flags are plaintext both ways.
        c.handle_frame(now, &agent_frame(7, PayloadType::Flag, &[0, 0, 0, 3]))
            .unwrap();
        assert_eq!(events(&mut c), [ClientEvent::PortConnectError]);

        // Client -> agent: every Output chunk sealed, Size and Flag left alone.
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        c.send_data(now, &data).unwrap();
        c.send_size(now, SizeData { cols: 80, rows: 24 }).unwrap();
        let out = sent(&mut c);
        assert_eq!(out.len(), 4);
        let mut got = Vec::new();
        for m in &out[..3] {
            assert_eq!(m.payload_type, PayloadType::Output as u32);
            assert!(m.payload.len() <= 1024 + OVERHEAD);
            assert!(
                !m.payload
                    .windows(16)
                    .any(|w| data.windows(16).any(|d| d == w))
            );
            got.extend(agent.open(&m.payload).unwrap());
        }
        assert_eq!(got, data);
        assert_eq!(out[3].payload, br#"{"cols":80,"rows":24}"#);

        // A retransmission resends the very same sealed bytes (a resume resends all).
        let later = now + Duration::from_secs(1);
        c.on_reconnect(later);
        let resent = sent(&mut c);
        let mut matched = 0;
        for r in &resent {
            if let Some(orig) = out.iter().find(|m| m.sequence_number == r.sequence_number) {
                assert_eq!(r.payload, orig.payload);
                matched += 1;
            }
        }
        assert_eq!(
            matched,
            out.len(),
            "every unacknowledged message resent unchanged"
        );
    }

    #[test]
    fn tampered_or_plaintext_output_fails_the_session() {
        let now = Instant::now();
        let (mut c, mut agent) = encrypted_session(now);
        let mut sealed = agent.seal(b"data").unwrap();
        sealed[14] ^= 1;
        let err = c
            .handle_frame(now, &agent_frame(3, PayloadType::Output, &sealed))
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Decrypt {
                    kind: PayloadType::Output,
                    ..
                }
            ),
            "{err}"
        );
        let (mut c, _) = encrypted_session(now);
        let err = c
            .handle_frame(now, &agent_frame(3, PayloadType::Output, b"plain"))
            .unwrap_err();
        assert!(err.to_string().contains("could not be decrypted"), "{err}");
    }

    #[test]
    fn kms_failure_tells_the_agent_and_ends_the_handshake() {
        let now = Instant::now();
        let mut c = ClientSession::with_defaults(now, 1, 3);
        assert!(matches!(
            c.provide_data_key(now, b"b", &data_key()),
            Err(ProvideKeyError::NotAwaiting(_))
        ));
        c.handle_frame(now, &agent_frame(0, PayloadType::HandshakeRequest, KMS_REQ))
            .unwrap();
        let err = c.kms_failed(now, "GenerateDataKey failed: AccessDeniedException");
        assert!(err.to_string().contains("requires KMS encryption"), "{err}");
        let out = sent(&mut c);
        let resp: HandshakeResponse = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(resp.processed_client_actions[1].action_status, 2);
        assert!(!c.is_waiting_for_data_key());

        // An unusable key: the agent is told too.
        let mut c = ClientSession::with_defaults(now, 1, 3);
        c.handle_frame(now, &agent_frame(0, PayloadType::HandshakeRequest, KMS_REQ))
            .unwrap();
        let err = c.provide_data_key(now, b"b", &[1; 16]).unwrap_err();
        assert!(err.to_string().contains("16 bytes"), "{err}");
        let resp: HandshakeResponse = serde_json::from_slice(&sent(&mut c)[0].payload).unwrap();
        assert_eq!(resp.processed_client_actions[1].action_status, 2);
    }

    #[test]
    fn a_challenge_before_the_key_is_a_protocol_error() {
        let now = Instant::now();
        let mut c = ClientSession::with_defaults(now, 1, 3);
        c.handle_frame(now, &agent_frame(0, PayloadType::HandshakeRequest, KMS_REQ))
            .unwrap();
        let err = c
            .handle_frame(
                now,
                &agent_frame(1, PayloadType::EncChallengeRequest, b"{}"),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("waiting for a KMS data key"),
            "{err}"
        );
    }
}
