//! `--handshake-complete-lag`: an agent whose goroutine stalls between sending
//! HandshakeComplete and marking the handshake done (docs/protocol.md §5.2). Input that arrives
//! in that window is acknowledged and dropped, and the instance port is dialled only after
//! it, so the first output the client sees proves that input is safe again.

use std::collections::BTreeMap;
use std::time::Duration;

use sallyport::proto::message::MessageType;
use sallyport::proto::payload::PayloadType;
use sallyport_testbed::InstanceConfig;
use sallyport_testbed::world::config::AgentSettings;
use sallyport_testbed::world::state::SessionRecord;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};

mod common;
use common::{
    PATIENCE, ack_frame, client_frame, handshake_response, next_ack, next_of, spawn_agent,
};

const LAG: Duration = Duration::from_millis(400);

#[tokio::test]
async fn input_in_the_lag_is_acked_and_dropped_and_the_port_is_dialled_after_it() {
    let instance_side = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let record = SessionRecord {
        session_id: "s-lag".to_owned(),
        token: "token-s-lag".to_owned(),
        instance: InstanceConfig::ssh_shortcut(instance_side.local_addr().unwrap()),
        document: "AWS-StartSSHSession".to_owned(),
        parameters: BTreeMap::from([("portNumber".to_owned(), vec!["22".to_owned()])]),
    };
    let settings = AgentSettings {
        handshake_complete_lag: LAG,
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
    to_agent.send((ack_frame(&request), None)).unwrap();
    to_agent.send((handshake_response(), None)).unwrap();
    assert_eq!(timeout(PATIENCE, next_ack(&mut from_agent)).await, Ok(0));
    let complete = timeout(
        PATIENCE,
        next_of(&mut from_agent, MessageType::OutputStreamData),
    )
    .await
    .unwrap();
    assert_eq!(complete.payload_type, PayloadType::HandshakeComplete as u32);
    let completed_at = Instant::now();
    to_agent.send((ack_frame(&complete), None)).unwrap();

    // A client that sends at once: acknowledged...
    let early = client_frame(1, PayloadType::Output, b"SSH-2.0-early\r\n".to_vec());
    to_agent.send((early, None)).unwrap();
    assert_eq!(timeout(PATIENCE, next_ack(&mut from_agent)).await, Ok(1));
    // ... while the port is not dialled yet: the plugin starts after the lag.
    let (mut instance, _) = timeout(PATIENCE, instance_side.accept())
        .await
        .unwrap()
        .unwrap();
    let dialled_after = completed_at.elapsed();
    assert!(
        dialled_after >= LAG - Duration::from_millis(50),
        "the port was dialled {dialled_after:?} after HandshakeComplete"
    );
    // The instance speaks first; its banner is the agent's first output.
    instance.write_all(b"SSH-2.0-instance\r\n").await.unwrap();
    let banner = timeout(
        PATIENCE,
        next_of(&mut from_agent, MessageType::OutputStreamData),
    )
    .await
    .unwrap();
    assert_eq!(banner.payload_type, PayloadType::Output as u32);
    assert_eq!(banner.payload, b"SSH-2.0-instance\r\n");

    // Input after that output arrives; the early message never does.
    let late = client_frame(2, PayloadType::Output, b"SSH-2.0-late\r\n".to_vec());
    to_agent.send((late, None)).unwrap();
    assert_eq!(timeout(PATIENCE, next_ack(&mut from_agent)).await, Ok(2));
    let mut got = vec![0u8; b"SSH-2.0-late\r\n".len()];
    timeout(PATIENCE, instance.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got, b"SSH-2.0-late\r\n",
        "the acknowledged early input was dropped"
    );
    agent.abort();
}
