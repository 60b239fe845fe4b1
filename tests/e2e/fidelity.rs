//! The testbed's agent compared with the real one: the frames AWS's agent sent in
//! tests/data/captures, against what the testbed sends for the same session kind. Plain
//! `ws://`: the frames are the subject here, not the transport.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sallyport::proto::message::{Message, MessageType, flags};
use sallyport::proto::payload::PayloadType;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::harness::Fixture;

fn captured_agent_frames() -> Vec<Message> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/captures/official-ssh-echo.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.contains("agent->client"))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let hex = v["hex"].as_str().unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            Message::decode(&bytes).unwrap()
        })
        .collect()
}

/// JSON with every string value blanked: compares shape and key order, not content.
fn shape(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::String(String::new()),
        Value::Number(_) => Value::from(0),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        other => other.clone(),
    }
}

fn json(m: &Message) -> Value {
    serde_json::from_slice(&m.payload).unwrap()
}

#[test]
fn testbed_agent_handshake_matches_the_real_agent() {
    let f = Fixture::plain();
    let real = captured_agent_frames();
    let (real_req, real_done) = (&real[0], real.iter().find(|m| m.payload_type == 7).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let creds = aws_sdk_ssm::config::Credentials::new(
            &f.testbed.access_key_id,
            &f.testbed.secret_access_key,
            None,
            None,
            "test",
        );
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
            .region(aws_sdk_ssm::config::Region::new(f.testbed.region.clone()))
            .endpoint_url(&f.testbed.endpoint)
            .credentials_provider(creds.clone())
            .build();
        // Sign the upgrade as sallyport does (a testbed may refuse unsigned ones).
        let dialer = sallyport::transport::Dialer {
            signer: Some(std::sync::Arc::new(sallyport::aws::SdkUpgradeSigner::new(
                aws_sdk_ssm::config::SharedCredentialsProvider::new(creds),
                f.testbed.region.clone(),
            ))),
            ..Default::default()
        };
        let started = aws_sdk_ssm::Client::from_conf(config)
            .start_session()
            .target(&f.instance)
            .document_name("AWS-StartSSHSession")
            .parameters("portNumber", vec!["22".into()])
            .send()
            .await
            .unwrap();
        let mut ws = sallyport::transport::connect(
            started.stream_url().unwrap(),
            started.token_value().unwrap(),
            "fidelity-test",
            &dialer,
        )
        .await
        .unwrap();
        // Do not ack: the agent must resend the request, about once per 200 ms RTO.
        let t0 = Instant::now();
        let mut requests = Vec::new();
        while t0.elapsed() < Duration::from_millis(750) {
            let Ok(Some(Ok(WsMessage::Binary(b)))) =
                tokio::time::timeout(Duration::from_millis(800), ws.next()).await
            else {
                break;
            };
            requests.push((t0.elapsed(), Message::decode(&b).unwrap()));
        }
        assert!(
            requests.len() >= 2,
            "handshake request resent until acked: {}",
            requests.len()
        );
        let req = &requests[0].1;
        assert_eq!(req.message_type, MessageType::OutputStreamData);
        assert_eq!((req.sequence_number, req.flags), (0, flags::SYN));
        assert_eq!(req.payload_type, real_req.payload_type);
        assert_eq!(
            shape(&json(req)),
            shape(&json(real_req)),
            "same JSON shape and key order"
        );
        assert_eq!(
            json(req)["RequestedClientActions"][0]["ActionParameters"]["Properties"]["portNumber"],
            "22"
        );
        for pair in requests.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                gap >= Duration::from_millis(190),
                "resent no faster than the RTO: {gap:?}"
            );
            assert_eq!(
                pair[1].1.message_id, req.message_id,
                "the same message resent"
            );
        }
        // Answer as the plugin did in the capture: ack, then HandshakeResponse as seq 0.
        let mut client = sallyport::proto::client::ClientSession::with_defaults(
            Instant::now(),
            1_700_000_000_000,
            9,
        );
        client.handle_frame(Instant::now(), &req.encode()).unwrap();
        while let Some(out) = client.poll_transmit() {
            ws.send(WsMessage::binary(out)).await.unwrap();
        }
        let mut acks = Vec::new();
        let done = loop {
            let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
            let Ok(Some(Ok(WsMessage::Binary(b)))) = next else {
                panic!("no HandshakeComplete")
            };
            let m = Message::decode(&b).unwrap();
            if m.message_type == MessageType::Acknowledge {
                acks.push(m);
            } else if m.payload_type == PayloadType::HandshakeComplete as u32 {
                break m;
            }
        };
        assert_eq!((done.sequence_number, done.flags), (1, 0));
        assert_eq!(shape(&json(&done)), shape(&json(real_done)));
        // The agent acked our HandshakeResponse the way the real one acks (SYN|FIN).
        let ack = acks.first().expect("HandshakeResponse acknowledged");
        assert_eq!(ack.flags, flags::ACK);
        assert_eq!(json(ack)["AcknowledgedMessageType"], "input_stream_data");
        assert_eq!(json(ack)["AcknowledgedMessageSequenceNumber"], 0);
    });
}
