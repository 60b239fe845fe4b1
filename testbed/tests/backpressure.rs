//! The faults that prove a client's congestion control: a slow instance
//! (`--instance-write-rate`) that stops the agent reading and acknowledging, a relay with
//! a small queue (`--relay-queue`) that stops reading the client, and the counters of
//! stream data and retransmissions that benchmarks read.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use sallyport::proto::message::{Message, MessageType};
use sallyport::proto::payload::{OpenDataChannelInput, PayloadType};
use sallyport_testbed::world::backlog::Backlog;
use sallyport_testbed::world::config::{AgentSettings, UnsignedPolicy};
use sallyport_testbed::world::faults::{FaultPlan, Window};
use sallyport_testbed::world::state::SessionRecord;
use sallyport_testbed::{InstanceConfig, Testbed, TestbedConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;

mod common;
use common::{
    PATIENCE, ack_frame, client_frame, handshake_response, next_ack, next_of, spawn_agent,
};

/// An ssh session (AWS-StartSSHSession) to `instance:22`.
fn ssh_session(id: &str, instance: InstanceConfig) -> SessionRecord {
    SessionRecord {
        session_id: id.to_owned(),
        token: format!("token-{id}"),
        instance,
        document: "AWS-StartSSHSession".to_owned(),
        parameters: BTreeMap::from([("portNumber".to_owned(), vec!["22".to_owned()])]),
    }
}

#[tokio::test]
async fn a_slow_instance_write_holds_back_the_agents_reading_and_acks() {
    let instance_side = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let record = ssh_session(
        "s-rate",
        InstanceConfig::ssh_shortcut(instance_side.local_addr().unwrap()),
    );
    let settings = AgentSettings {
        // 16 KiB at once, then one 1 KiB message per second.
        instance_write_rate: Some(1024),
        ..AgentSettings::default()
    };
    let (to_agent, mut from_agent, agent) = spawn_agent(record, settings);

    let request = timeout(
        PATIENCE,
        next_of(&mut from_agent, MessageType::OutputStreamData),
    )
    .await
    .unwrap();
    assert_eq!(request.payload_type, PayloadType::HandshakeRequest as u32);
    to_agent.send((handshake_response(), None)).unwrap();
    assert_eq!(timeout(PATIENCE, next_ack(&mut from_agent)).await, Ok(0));
    let (mut instance, _) = timeout(PATIENCE, instance_side.accept())
        .await
        .unwrap()
        .unwrap();

    // From here on nothing waits for the network: let virtual time run.
    tokio::time::pause();
    let waiting = Backlog::new();
    let payload = |seq: i64| vec![seq as u8; 1024];
    for seq in 1..=20 {
        let frame = client_frame(seq, PayloadType::Output, payload(seq));
        to_agent.send((frame, Some(waiting.hold(1)))).unwrap();
    }
    let t0 = Instant::now();
    // The burst: written and acknowledged at once, in order.
    for seq in 1..=16 {
        assert_eq!(next_ack(&mut from_agent).await, seq);
    }
    assert!(
        Instant::now() - t0 < Duration::from_millis(10),
        "{:?}",
        Instant::now() - t0
    );
    // Message 17 waits for the instance: no ack for it or anything after it, and the
    // agent has not even taken 18..20 from its inbox.
    let quiet = timeout(Duration::from_millis(900), next_ack(&mut from_agent)).await;
    assert!(
        quiet.is_err(),
        "acked {quiet:?} while the write was blocked"
    );
    assert_eq!(waiting.held(), 3);
    // Then one message a second, each acked once written.
    for seq in 17..=20 {
        assert_eq!(next_ack(&mut from_agent).await, seq);
        let at = Instant::now() - t0;
        let want = Duration::from_secs((seq - 16) as u64);
        assert!(
            at >= want && at < want + Duration::from_millis(20),
            "ack {seq} at {at:?}"
        );
    }
    assert_eq!(waiting.held(), 0);

    let mut got = vec![0u8; 20 * 1024];
    instance.read_exact(&mut got).await.unwrap();
    let want: Vec<u8> = (1..=20).flat_map(payload).collect();
    assert!(
        got == want,
        "the instance got the client's bytes out of order"
    );
    agent.abort();
}

/// A testbed whose agent is stalled for the whole test, with `queue` messages of room in
/// the relay, and one started ssh session; its websocket URL and token.
async fn stalled_testbed(queue: usize) -> (Testbed, String, String) {
    let instance = InstanceConfig::ssh_shortcut("127.0.0.1:9".parse().unwrap());
    let mut config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![instance.clone()]);
    // The raw websocket client here does not sign; the signature check has its own tests.
    config.unsigned_data_channel = UnsignedPolicy::Accept;
    config.faults = FaultPlan {
        stall: Some(Window {
            after: Duration::ZERO,
            lasts: Duration::from_secs(3600),
        }),
        relay_queue: Some(queue),
        ..FaultPlan::default()
    };
    // The stalled agent never gets a handshake response: let it wait.
    config.agent.handshake_timeout = Duration::from_secs(3600);
    let tb = Testbed::start(config).await.unwrap();
    let record = tb.sessions().insert(ssh_session("s-relay", instance));
    let url = format!(
        "ws://{}/v1/data-channel/{}?role=publish_subscribe",
        tb.addr, record.session_id
    );
    (tb, url, record.token.clone())
}

fn opening_frame(token: &str) -> WsMessage {
    let open = OpenDataChannelInput {
        message_schema_version: "1.0".to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
        token_value: token.to_owned(),
        client_id: uuid::Uuid::new_v4().to_string(),
        client_version: "1.2.707.0".to_owned(),
    };
    WsMessage::text(serde_json::to_string(&open).unwrap())
}

#[tokio::test]
async fn a_full_relay_queue_stops_reading_the_client() {
    const QUEUE: usize = 16;
    let (tb, url, token) = stalled_testbed(QUEUE).await;
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut sink, _stream) = ws.split();
    sink.send(opening_frame(&token)).await.unwrap();
    // Far more than the relay may hold: the sender blocks once TCP's buffers are full too.
    let flood = tokio::spawn(async move {
        for seq in 0..20_000 {
            let frame = client_frame(seq, PayloadType::Output, vec![0; 1024]);
            if sink.send(WsMessage::binary(frame)).await.is_err() {
                return;
            }
        }
    });
    let live = tb.session_stats("s-relay");
    timeout(PATIENCE, live.to_agent_held.wait_for(QUEUE))
        .await
        .expect("the relay fills its queue");
    let stats = tb.data_stats();
    let (id, s) = &stats[0];
    assert_eq!(id, "s-relay");
    // The relay read exactly what it may hold, and held no more at any time.
    assert_eq!(s.client_messages, QUEUE as u64);
    assert_eq!(s.relay_peak_to_agent, QUEUE as u64);
    assert_eq!(s.relay_held_to_agent, QUEUE as u64);
    flood.abort();
}

#[tokio::test]
async fn retransmissions_are_counted_once_as_duplicates_and_served_as_json() {
    let (tb, url, token) = stalled_testbed(100).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(opening_frame(&token)).await.unwrap();
    let first = client_frame(0, PayloadType::HandshakeResponse, b"{}".to_vec());
    let second = client_frame(1, PayloadType::Output, vec![1; 500]);
    for f in [&first, &second, &second, &first] {
        ws.send(WsMessage::binary(f.clone())).await.unwrap();
    }
    // An acknowledge is not stream data.
    let ack = Message {
        message_type: MessageType::Acknowledge,
        ..Message::decode(&first).unwrap()
    };
    ws.send(WsMessage::binary(ack.encode())).await.unwrap();
    let live = tb.session_stats("s-relay");
    // The agent is stalled: everything the relay read is still held for it.
    timeout(PATIENCE, live.to_agent_held.wait_for(5))
        .await
        .unwrap();
    let s = live.snapshot();
    assert_eq!(
        (s.client_messages, s.client_distinct, s.client_dup_messages),
        (4, 2, 2)
    );
    assert_eq!(s.client_bytes, 2 * 2 + 2 * 500);
    assert_eq!(s.client_dup_bytes, 2 + 500);

    let body = http_get(&tb, "/testbed/stats").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    let session = &json["sessions"][0];
    assert_eq!(session["session_id"], "s-relay");
    assert_eq!(session["ended"], false);
    assert_eq!(session["client_messages"], 4);
    assert_eq!(session["client_dup_messages"], 2);
    assert_eq!(session["client_dup_bytes"], 502);

    // TerminateSession ends it: the relay says channel_closed and marks the counts final.
    assert!(tb.sessions().terminate("s-relay"));
    let closed = timeout(PATIENCE, async {
        while let Some(Ok(m)) = ws.next().await {
            if let WsMessage::Binary(b) = m
                && Message::decode(&b).is_ok_and(|m| m.message_type == MessageType::ChannelClosed)
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(closed, Ok(true));
    let body = http_get(&tb, "/testbed/stats").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["sessions"][0]["ended"], true);
}

/// The body of an unsigned GET to the testbed.
async fn http_get(tb: &Testbed, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(tb.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
        tb.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    timeout(PATIENCE, s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    assert!(resp.contains("content-type: application/json"), "{resp}");
    resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_client_that_does_not_read_fills_the_relay_to_its_bound_only() {
    const QUEUE: usize = 16;
    // The instance talks without end.
    let instance_side = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let instance = InstanceConfig::ssh_shortcut(instance_side.local_addr().unwrap());
    let talker = tokio::spawn(async move {
        let (mut s, _) = instance_side.accept().await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        while s.write_all(&chunk).await.is_ok() {}
    });
    let mut config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![instance.clone()]);
    // The raw websocket client here does not sign; the signature check has its own tests.
    config.unsigned_data_channel = UnsignedPolicy::Accept;
    config.faults.relay_queue = Some(QUEUE);
    config.agent.pace = Duration::ZERO;
    let tb = Testbed::start(config).await.unwrap();
    let record = tb.sessions().insert(ssh_session("s-deaf", instance));
    let url = format!(
        "ws://{}/v1/data-channel/{}?role=publish_subscribe",
        tb.addr, record.session_id
    );
    // A small receive buffer, so that the relay's writes stop soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(tb.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    ws.send(opening_frame(&record.token)).await.unwrap();
    let handshake = timeout(PATIENCE, async {
        while let Some(Ok(m)) = ws.next().await {
            if let WsMessage::Binary(b) = m
                && Message::decode(&b)
                    .is_ok_and(|m| m.payload_type == PayloadType::HandshakeRequest as u32)
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(handshake, Ok(true));
    ws.send(WsMessage::binary(handshake_response()))
        .await
        .unwrap();
    // From here on the client reads nothing.
    let live = tb.session_stats("s-deaf");
    timeout(PATIENCE, live.to_client_held.wait_for(QUEUE))
        .await
        .expect("the relay fills its queue for the client");
    let s = live.snapshot();
    assert_eq!(s.relay_peak_to_client, QUEUE as u64);
    // What the agent sent is what the relay took: its queue, the relay's, and the
    // websocket's buffers; the instance's endless output is not all read.
    assert!(
        s.agent_messages > 0 && s.agent_bytes < 64 * 1024 * 1024,
        "{s:?}"
    );
    talker.abort();
    drop(ws);
}

/// The acknowledge a client sends for agent message `m`.
fn ack_for(m: &Message) -> WsMessage {
    WsMessage::binary(ack_frame(m))
}

#[tokio::test]
async fn a_session_that_ends_with_no_client_attached_has_final_counts() {
    let instance_side = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let instance = InstanceConfig::ssh_shortcut(instance_side.local_addr().unwrap());
    let mut config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![instance.clone()]);
    config.unsigned_data_channel = UnsignedPolicy::Accept;
    let tb = Testbed::start(config).await.unwrap();
    let record = tb.sessions().insert(ssh_session("s-gone", instance));
    let url = format!(
        "ws://{}/v1/data-channel/{}?role=publish_subscribe",
        tb.addr, record.session_id
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(opening_frame(&record.token)).await.unwrap();
    // The handshake, acknowledging the agent's messages so that it has nothing to drain.
    let mut acked = 0;
    while acked < 2 {
        let Some(Ok(WsMessage::Binary(b))) = timeout(PATIENCE, ws.next()).await.unwrap() else {
            continue;
        };
        let m = Message::decode(&b).unwrap();
        if m.message_type != MessageType::OutputStreamData {
            continue;
        }
        ws.send(ack_for(&m)).await.unwrap();
        if m.payload_type == PayloadType::HandshakeRequest as u32 {
            ws.send(WsMessage::binary(handshake_response()))
                .await
                .unwrap();
        }
        acked += 1;
    }
    let data = client_frame(1, PayloadType::Output, b"hello".to_vec());
    ws.send(WsMessage::binary(data)).await.unwrap();
    let (mut conn, _) = timeout(PATIENCE, instance_side.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = [0u8; 5];
    timeout(PATIENCE, conn.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"hello");
    // The client leaves; then the instance closes the connection, which ends the session.
    ws.close(None).await.unwrap();
    drop(ws);
    let live = tb.session_stats("s-gone");
    assert!(!live.is_ended());
    drop(conn);
    timeout(PATIENCE, live.wait_ended())
        .await
        .expect("the session ends without a client");
    let stats = tb.data_stats();
    assert_eq!(stats.len(), 1);
    let s = stats[0].1;
    assert_eq!((s.client_messages, s.client_distinct), (2, 2));
    let response_payload = handshake_response().len() - 120;
    assert_eq!(s.client_bytes, (response_payload + 5) as u64);
    assert_eq!(s.agent_messages, 2);
}
