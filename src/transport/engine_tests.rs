use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::*;
use crate::proto::test_agent::AgentChannel;

/// A kind that writes remote bytes to its one output and has nothing else to do.
struct Sink(OutputId);

impl Kind for Sink {
    type Done = ();
    type Error = DriveError;
    type Local = ();

    fn on_event(
        &mut self,
        event: ClientEvent,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<()>, DriveError> {
        if let ClientEvent::Data(bytes) = event {
            cx.write(self.0, &bytes);
        }
        Ok(None)
    }

    fn local(&mut self, _ready: Ready) -> impl Future<Output = ()> {
        std::future::pending()
    }

    fn on_local(&mut self, (): (), _cx: &mut Cx<'_, '_>) -> Result<Option<()>, DriveError> {
        Ok(None)
    }
}

const MESSAGES: usize = 100;
const BOUND: usize = 8 * 1024;
const HOLD: usize = 4 * 1024;
const PIPE: usize = 4 * 1024;

/// Frames an agent sends: `MESSAGES` Output messages of 1 KiB (a shell session needs no
/// handshake, so the first one establishes it).
fn agent_frames(payload: &[u8]) -> Vec<bytes::Bytes> {
    let mut agent = AgentChannel::new(now(), 1, 2);
    agent.send_data(now(), payload);
    std::iter::from_fn(|| agent.poll_transmit()).collect()
}

/// Waits (in paused time: until every task is idle) for the engine to do what it can.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// With its output unread, the engine takes frames only until its buffer (and the
/// pipe's) is full, leaving the rest with the link; once the reader reads, everything
/// arrives in order.
#[tokio::test(start_paused = true)]
async fn a_full_output_stops_taking_frames_and_room_resumes_them() {
    let (mut link, to_engine, mut from_engine) = Link::detached();
    let mut session = ClientSession::with_defaults(now(), 1, 1);
    let (mut reader, writer) = tokio::io::duplex(PIPE);
    let engine = tokio::spawn(async move {
        let opts = EngineOptions {
            output_bound: BOUND,
            hold_bound: HOLD,
            ..EngineOptions::default()
        };
        let mut engine = Engine::new(&mut link, &mut session, opts);
        let out = engine.output(writer);
        engine.run(&mut Sink(out)).await
    });
    let payload: Vec<u8> = (0..MESSAGES * 1024).map(|i| (i % 251) as u8).collect();
    let frames = agent_frames(&payload);
    assert_eq!(frames.len(), MESSAGES);
    for f in frames {
        to_engine.send(LinkEvent::Frame(f)).await.unwrap();
    }
    settle().await;
    let waiting = super::super::link::INBOUND_EVENTS - to_engine.capacity();
    let taken = MESSAGES - waiting;
    // The bound, what the pipe holds, what the core may hold on top, and one message
    // of overshoot.
    assert!(
        taken <= (BOUND + PIPE + HOLD) / 1024 + 1,
        "took {taken} frames with nobody reading"
    );
    assert!(taken >= (BOUND + HOLD) / 1024, "took only {taken} frames");
    // What it took, it acknowledged: acks are not held up by the output.
    let mut acks = 0;
    while from_engine.try_recv().is_ok() {
        acks += 1;
    }
    assert_eq!(acks, taken);

    let mut got = vec![0u8; payload.len()];
    reader.read_exact(&mut got).await.unwrap();
    assert!(got == payload, "bytes differ");
    settle().await;
    assert_eq!(to_engine.capacity(), super::super::link::INBOUND_EVENTS);
    drop(to_engine);
    let ended = engine.await.unwrap();
    assert!(matches!(ended, Err(DriveError::Link(_))), "{ended:?}");
}

/// A link whose queue is full keeps frames in the core: nothing is lost, and they go
/// out in order once there is room.
#[tokio::test(start_paused = true)]
async fn a_full_link_queue_holds_frames_back_in_order() {
    let (mut link, to_engine, mut from_engine) = Link::detached();
    let mut session = ClientSession::with_defaults(now(), 1, 1);
    let out_cap = super::super::link::OUTBOUND_FRAMES;
    let engine = tokio::spawn(async move {
        let mut engine = Engine::new(&mut link, &mut session, EngineOptions::default());
        let out = engine.output(tokio::io::sink());
        engine.run(&mut Sink(out)).await
    });
    // Each Output message is acknowledged: twice as many acks as the queue holds.
    let frames = agent_frames(&vec![7u8; out_cap * 2 * 1024]);
    for f in frames {
        to_engine.send(LinkEvent::Frame(f)).await.unwrap();
        settle_briefly().await;
    }
    settle().await;
    let mut seen = Vec::new();
    while seen.len() < out_cap * 2 {
        let frame = from_engine.recv().await.unwrap();
        let msg = crate::proto::message::Message::decode(&frame).unwrap();
        let ack: crate::proto::payload::Acknowledge = serde_json::from_slice(&msg.payload).unwrap();
        seen.push(ack.acknowledged_message_sequence_number);
        settle_briefly().await;
    }
    let expected: Vec<i64> = (0..(out_cap * 2) as i64).collect();
    assert_eq!(seen, expected);
    drop(to_engine);
    let _ = engine.await.unwrap();
}

async fn settle_briefly() {
    tokio::task::yield_now().await;
}

/// Input held back because the link's queue was nearly full is read again as soon as
/// the queue has room, not at the next unrelated event (a timer, a frame): a slow
/// websocket taking 8 frames a millisecond carries 1 MiB in about 130 ms.
#[tokio::test(start_paused = true)]
async fn input_resumes_as_soon_as_the_link_has_room() {
    use crate::proto::message::{Message, MessageType};
    use tokio::io::AsyncWriteExt;

    let (mut link, to_engine, mut from_engine) = Link::detached();
    let mut session = ClientSession::with_defaults(now(), 1, 1);
    // One Output message establishes the (shell-like) session.
    for f in agent_frames(b"x") {
        to_engine.send(LinkEvent::Frame(f)).await.unwrap();
    }
    let (mut feed, input) = tokio::io::duplex(64 * 1024);
    let engine = tokio::spawn(async move {
        let opts = crate::transport::DriveOptions::default();
        crate::transport::drive_stream(&mut link, &mut session, input, tokio::io::sink(), &opts)
            .await
    });
    const SENT: usize = 1024;
    let writer = tokio::spawn(async move {
        feed.write_all(&vec![5u8; SENT * 1024]).await.unwrap();
        feed
    });
    let started = tokio::time::Instant::now();
    let mut seqs = std::collections::BTreeSet::new();
    // The agent acknowledges what arrives, so the congestion window keeps opening.
    let mut agent = AgentChannel::new(now(), 1, 3);
    while seqs.len() < SENT {
        for _ in 0..8 {
            let Ok(frame) = from_engine.try_recv() else {
                break;
            };
            let m = Message::decode(&frame).unwrap();
            if m.message_type == MessageType::InputStreamData {
                seqs.insert(m.sequence_number);
                agent.handle_frame(now(), &frame).unwrap();
            }
        }
        while let Some(ack) = agent.poll_transmit() {
            to_engine.send(LinkEvent::Frame(ack)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stuck after {} messages",
            seqs.len()
        );
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(200), "took {took:?}");
    drop(writer.await.unwrap());
    drop(to_engine);
    let _ = engine.await.unwrap();
}
