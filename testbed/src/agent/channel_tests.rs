//! The agent channel's rules, checked against the bytes docs/protocol.md §3.5/§3.8/§6 give.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn input(seq: i64, payload: &[u8]) -> (Vec<u8>, Uuid) {
    let id = Uuid::new_v4();
    let frame = Message {
        message_type: MessageType::InputStreamData,
        schema_version: 1,
        created_date: 1_700_000_000_000,
        sequence_number: seq,
        flags: 0,
        message_id: id,
        payload_type: 1,
        payload: payload.to_vec(),
    }
    .encode();
    (frame, id)
}

fn control(kind: MessageType, payload: Vec<u8>) -> Vec<u8> {
    Message {
        message_type: kind,
        schema_version: 1,
        created_date: 1_700_000_000_000,
        sequence_number: 0,
        flags: 3,
        message_id: Uuid::new_v4(),
        payload_type: 0,
        payload,
    }
    .encode()
}

fn ack_for(seq: i64) -> Vec<u8> {
    let json = format!(
        r#"{{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"{}","AcknowledgedMessageSequenceNumber":{seq},"IsSequentialMessage":true}}"#,
        Uuid::new_v4()
    );
    control(MessageType::Acknowledge, json.into_bytes())
}

fn drain(ch: &mut AgentDataChannel) -> Vec<Message> {
    std::iter::from_fn(|| ch.poll_transmit())
        .map(|f| Message::decode(&f).unwrap())
        .collect()
}

fn events(ch: &mut AgentDataChannel) -> Vec<AgentEvent> {
    std::iter::from_fn(|| ch.poll_event()).collect()
}

#[test]
fn output_is_numbered_from_zero_with_syn_on_the_first_only() {
    let t0 = Instant::now();
    let mut ch = AgentDataChannel::new(4, t0);
    ch.send_data(t0, b"0123456789");
    let sent = drain(&mut ch);
    let seqs: Vec<i64> = sent.iter().map(|m| m.sequence_number).collect();
    assert_eq!(seqs, [0, 1, 2]);
    let flags: Vec<u64> = sent.iter().map(|m| m.flags).collect();
    assert_eq!(flags, [1, 0, 0]);
    assert!(
        sent.iter()
            .all(|m| m.message_type == MessageType::OutputStreamData && m.payload_type == 1)
    );
    let payload: Vec<u8> = sent.iter().flat_map(|m| m.payload.clone()).collect();
    assert_eq!(payload, b"0123456789");
    assert_eq!(ch.unacked(), 3);
}

#[test]
fn acks_carry_the_agents_json_and_header_values() {
    let t0 = Instant::now();
    let mut ch = AgentDataChannel::new(1024, t0);
    let (frame, id) = input(0, b"hello");
    ch.handle_frame(t0, &frame).unwrap();
    let acks = drain(&mut ch);
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    assert_eq!(ack.message_type, MessageType::Acknowledge);
    assert_eq!(
        (ack.sequence_number, ack.flags, ack.payload_type),
        (0, 3, 0)
    );
    let expected = format!(
        r#"{{"AcknowledgedMessageType":"input_stream_data","AcknowledgedMessageId":"{}","AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}}"#,
        id.hyphenated()
    );
    assert_eq!(String::from_utf8(ack.payload.clone()).unwrap(), expected);
    assert_eq!(
        events(&mut ch),
        [AgentEvent::Message(Incoming {
            payload_type: 1,
            payload: b"hello".to_vec()
        })]
    );
}

#[test]
fn later_messages_are_acked_and_held_duplicates_acked_again() {
    let t0 = Instant::now();
    let mut ch = AgentDataChannel::new(1024, t0);
    ch.handle_frame(t0, &input(2, b"c").0).unwrap();
    ch.handle_frame(t0, &input(1, b"b").0).unwrap();
    assert!(events(&mut ch).is_empty(), "nothing before the gap closes");
    let acked: Vec<i64> = drain(&mut ch)
        .iter()
        .map(|m| {
            let a: AckPayload = serde_json::from_slice(&m.payload).unwrap();
            a.sequence_number
        })
        .collect();
    assert_eq!(acked, [2, 1]);
    ch.handle_frame(t0, &input(0, b"a").0).unwrap();
    let got: Vec<Vec<u8>> = events(&mut ch)
        .into_iter()
        .map(|e| match e {
            AgentEvent::Message(m) => m.payload,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(drain(&mut ch).len(), 1, "the ack for 0");
    // A duplicate of 1: acked again, not delivered again.
    ch.handle_frame(t0, &input(1, b"b").0).unwrap();
    assert_eq!(drain(&mut ch).len(), 1);
    assert!(events(&mut ch).is_empty());
}

#[test]
fn only_the_head_of_line_is_resent_once_per_rto_on_100ms_ticks() {
    let t0 = Instant::now();
    let mut ch = AgentDataChannel::new(1024, t0);
    for i in 0..3u8 {
        ch.send(t0, 1, vec![i]);
    }
    drain(&mut ch);
    // Initial RTO 200 ms: the first tick after t0+200 ms is t0+300 ms.
    assert_eq!(ch.poll_timeout(), Some(t0 + 300 * MS));
    ch.handle_timeout(t0 + 299 * MS);
    assert!(drain(&mut ch).is_empty());
    ch.handle_timeout(t0 + 1000 * MS);
    let resent = drain(&mut ch);
    // At 300, 600 and 900 ms: each time the head (seq 0) only.
    assert_eq!(resent.len(), 3, "{resent:?}");
    assert!(resent.iter().all(|m| m.sequence_number == 0));
    assert_eq!(ch.resent(), 3);
    // Acking 0 moves the head to 1 and feeds the estimator (no Karn rule): the sample is
    // measured from the last resend at 900 ms.
    ch.handle_frame(t0 + 950 * MS, &ack_for(0)).unwrap();
    assert_eq!(ch.unacked(), 2);
    // SRTT = 7/8·100 + 1/8·50 = 93.75 ms; RTTVAR = 1/4·50 = 12.5 ms; RTO = 143.75 ms.
    assert_eq!(ch.rto(), Duration::from_micros(143_750));
    ch.handle_timeout(t0 + 1100 * MS);
    let next = drain(&mut ch);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].sequence_number, 1);
}

#[test]
fn rto_is_capped_at_one_second() {
    let t0 = Instant::now();
    let mut ch = AgentDataChannel::new(1024, t0);
    for i in 0..4 {
        ch.send(t0 + i * 10_000 * MS, 1, vec![0]);
        ch.handle_frame(t0 + (i * 10_000 + 5_000) * MS, &ack_for(i as i64))
            .unwrap();
    }
    assert_eq!(ch.rto(), Duration::from_secs(1));
}

#[test]
fn beyond_the_buffer_a_message_is_sent_once_and_never_stored() {
    let t0 = Instant::now();
    let mut ch = AgentDataChannel::new(1024, t0);
    for _ in 0..OUTGOING_CAPACITY + 2 {
        ch.send(t0, 1, vec![7]);
    }
    assert_eq!(ch.unacked(), OUTGOING_CAPACITY);
    assert_eq!(drain(&mut ch).len(), OUTGOING_CAPACITY + 2);
    // Acks for the unstored ones change nothing.
    ch.handle_frame(t0, &ack_for(OUTGOING_CAPACITY as i64 + 1))
        .unwrap();
    assert_eq!(ch.unacked(), OUTGOING_CAPACITY);
}

#[test]
fn a_pause_holds_sends_and_resends_until_input_or_start_publication() {
    let t0 = Instant::now();
    let mut ch = AgentDataChannel::new(1024, t0);
    ch.send(t0, 1, b"before".to_vec());
    drain(&mut ch);
    ch.handle_frame(t0, &control(MessageType::PausePublication, vec![]))
        .unwrap();
    assert!(ch.is_paused());
    assert_eq!(events(&mut ch), [AgentEvent::Publication { paused: true }]);
    ch.send(t0 + 10 * MS, 1, b"during".to_vec());
    assert!(drain(&mut ch).is_empty(), "held while paused");
    assert_eq!(ch.poll_timeout(), None, "no resends while paused");
    ch.handle_timeout(t0 + 5000 * MS);
    assert!(drain(&mut ch).is_empty());
    ch.handle_frame(
        t0 + 6000 * MS,
        &control(MessageType::StartPublication, vec![]),
    )
    .unwrap();
    let sent = drain(&mut ch);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload, b"during");
    // Input also lifts a pause.
    ch.handle_frame(t0, &control(MessageType::PausePublication, vec![]))
        .unwrap();
    ch.handle_frame(t0, &input(0, b"x").0).unwrap();
    assert!(!ch.is_paused());
}

#[test]
fn invalid_frames_are_reported_and_change_nothing() {
    let t0 = Instant::now();
    let mut ch = AgentDataChannel::new(1024, t0);
    assert!(ch.handle_frame(t0, b"short").is_err());
    assert!(
        ch.handle_frame(t0, &control(MessageType::Acknowledge, b"{".to_vec()))
            .is_err()
    );
    let (mut frame, _) = input(0, b"data");
    let last = frame.len() - 1;
    frame[last] ^= 1; // digest mismatch
    assert!(ch.handle_frame(t0, &frame).is_err());
    assert!(drain(&mut ch).is_empty());
    assert!(events(&mut ch).is_empty());
}
