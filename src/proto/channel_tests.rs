use std::time::{Duration, Instant};

use super::*;
use crate::proto::message::{Message, flags};
use crate::proto::sim::{Link, Rng};
use crate::proto::test_agent::{AgentChannel, Peer};

const WALL: u64 = 1_700_000_000_000;

fn client(now: Instant) -> Channel {
    Channel::new(ChannelConfig::client(), now, WALL, 1)
}

fn agent(now: Instant) -> AgentChannel {
    AgentChannel::new(now, WALL, 2)
}

fn drain(ch: &mut impl Peer) -> Vec<Message> {
    std::iter::from_fn(|| ch.poll_transmit())
        .map(|f| Message::decode(&f).unwrap())
        .collect()
}

fn data_events(ch: &mut impl Peer) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| ch.poll_event())
        .filter_map(|e| match e {
            ChannelEvent::Message(m) => Some(m.payload),
            _ => None,
        })
        .collect()
}

#[test]
fn agent_marks_seq_zero_syn_and_client_sends_plain() {
    let t0 = Instant::now();
    let mut a = agent(t0);
    a.send_data(t0, b"hello");
    a.send_data(t0, b"again");
    let sent = drain(&mut a);
    assert_eq!(sent[0].flags, flags::SYN);
    assert_eq!(sent[1].flags, 0);
    assert_eq!(sent[0].message_type, MessageType::OutputStreamData);
    let mut c = client(t0);
    c.send_data(t0, b"x");
    let sent = drain(&mut c);
    assert_eq!(sent[0].flags, 0);
    assert_eq!(sent[0].message_type, MessageType::InputStreamData);
    assert_eq!(sent[0].created_date, WALL);
}

#[test]
fn delivers_in_order_and_acks_each_message() {
    let t0 = Instant::now();
    let (mut a, mut c) = (agent(t0), client(t0));
    a.send_data(t0, &[7u8; 2500]);
    let frames: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(frames.len(), 3, "2500 bytes are three 1 KiB messages");
    for f in frames.iter().rev() {
        c.handle_frame(t0, f).unwrap();
    }
    let acks = drain(&mut c);
    assert_eq!(acks.len(), 3);
    assert!(
        acks.iter()
            .all(|m| m.message_type == MessageType::Acknowledge && m.flags == flags::ACK)
    );
    let got = data_events(&mut c);
    assert_eq!(
        got.iter().map(Vec::len).collect::<Vec<_>>(),
        [1024, 1024, 452]
    );
    for ack in acks {
        a.handle_frame(t0 + Duration::from_millis(30), &ack.encode())
            .unwrap();
    }
    assert_eq!(a.unacked(), 0);
}

#[test]
fn duplicates_are_reacked_but_delivered_once() {
    let t0 = Instant::now();
    let (mut a, mut c) = (agent(t0), client(t0));
    a.send_data(t0, b"once");
    let f = a.poll_transmit().unwrap();
    c.handle_frame(t0, &f).unwrap();
    c.handle_frame(t0, &f).unwrap();
    c.handle_frame(t0, &f).unwrap();
    assert_eq!(drain(&mut c).len(), 3, "every copy is acknowledged");
    assert_eq!(data_events(&mut c), vec![b"once".to_vec()]);
    assert_eq!(c.stats().duplicates, 2);
}

#[test]
fn karn_rule_ignores_samples_from_retransmissions() {
    let t0 = Instant::now();
    let (mut a, mut c) = (agent(t0), client(t0));
    c.send_data(t0, b"a");
    let f = c.poll_transmit().unwrap();
    // No ack: after the initial 200 ms RTO it is resent.
    c.handle_timeout(t0 + Duration::from_millis(200)).unwrap();
    assert!(c.poll_transmit().is_some());
    a.handle_frame(t0, &f).unwrap();
    let ack = a.poll_transmit().unwrap();
    c.handle_frame(t0 + Duration::from_millis(900), &ack)
        .unwrap();
    assert_eq!(c.rtt().srtt(), crate::proto::rtt::INITIAL_SRTT);
    // A clean sample does move it.
    c.send_data(t0 + Duration::from_secs(1), b"b");
    let f = c.poll_transmit().unwrap();
    a.handle_frame(t0, &f).unwrap();
    let ack = a.poll_transmit().unwrap();
    c.handle_frame(t0 + Duration::from_millis(1040), &ack)
        .unwrap();
    assert!(c.rtt().srtt() < crate::proto::rtt::INITIAL_SRTT);
}

#[test]
fn client_resends_only_what_later_acks_prove_lost() {
    let t0 = Instant::now();
    let (mut c, mut a) = (client(t0), agent(t0));
    for i in 0..6u8 {
        c.send_data(t0, &[i]);
    }
    let frames: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
    assert_eq!(frames.len(), 6);
    // Seq 2 is lost on the way; the others arrive and are acked.
    let t1 = t0 + Duration::from_millis(40);
    for (i, f) in frames.iter().enumerate() {
        if i != 2 {
            a.handle_frame(t1, f).unwrap();
        }
    }
    let acks: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    for (n, ack) in acks.iter().enumerate() {
        c.handle_frame(t1, ack).unwrap();
        let resent: Vec<_> = drain(&mut c).iter().map(|m| m.sequence_number).collect();
        // Acks of 0, 1 prove nothing; 3 and 4 are not yet three transmissions later;
        // the ack of 5 is.
        if n < 4 {
            assert!(resent.is_empty(), "after ack {n}: {resent:?}");
        } else {
            assert_eq!(resent, [2], "only the lost message");
        }
    }
    assert_eq!(c.stats().lost, 1);
    assert_eq!(c.stats().resent, 1);
    assert_eq!(c.stats().probes, 0);
}

#[test]
fn a_silent_peer_gets_a_trickle_of_probes_then_a_stall() {
    let t0 = Instant::now();
    let mut c = client(t0);
    let mut now = t0;
    while c.window_available() > 0 {
        c.send_data(now, &[0u8; 1024]);
    }
    let in_air = c.unacked();
    assert_eq!(in_air, crate::proto::congestion::INITIAL_WINDOW);
    drain(&mut c);
    // Probes back off (doubling from 200 ms up to the cap), one message each.
    let mut probes = Vec::new();
    let mut timeouts = 0;
    while let Some(t) = c.poll_timeout() {
        now = t;
        timeouts += 1;
        match c.handle_timeout(now) {
            Ok(()) => {
                let sent = drain(&mut c);
                assert!(sent.len() <= 1, "one probe at a time, not the window");
                probes.extend(sent.iter().map(|m| (now - t0, m.sequence_number)));
            }
            Err(ChannelError::Stalled(_)) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(timeouts < 1000, "timer loop did not end");
    }
    let elapsed = now - t0;
    assert!(elapsed >= Duration::from_secs(300) && elapsed < Duration::from_secs(302));
    assert!(
        probes.iter().all(|(_, seq)| *seq == 0),
        "the head is probed"
    );
    let in_first_10s = probes
        .iter()
        .filter(|(t, _)| *t <= Duration::from_secs(10))
        .count();
    assert!((4..=8).contains(&in_first_10s), "{probes:?}");
    assert!(probes.len() <= 30, "{} probes in 300 s", probes.len());
    assert_eq!(c.unacked(), in_air, "nothing evicted");
}

#[test]
fn after_a_silence_the_first_ack_brings_the_rest_back() {
    let t0 = Instant::now();
    let (mut c, mut a) = (client(t0), agent(t0));
    for i in 0..20u8 {
        c.send_data(t0, &[i]);
    }
    drain(&mut c);
    // Silent for 3 s: only the head is probed.
    let mut now = t0;
    let mut probe = None;
    while now < t0 + Duration::from_secs(3) {
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now).unwrap();
        for m in drain(&mut c) {
            assert_eq!(m.sequence_number, 0);
            probe = Some(m);
        }
    }
    // The peer comes back and acks the probe: everything sent before it is now known
    // lost, and goes out as fast as the (collapsed, then slow-starting) window allows.
    a.handle_frame(now, &probe.unwrap().encode()).unwrap();
    c.handle_frame(now, &a.poll_transmit().unwrap()).unwrap();
    let mut out = drain(&mut c);
    let first: Vec<_> = out.iter().map(|m| m.sequence_number).collect();
    // The minimum window, plus one for the acked probe (slow start).
    assert_eq!(first, [1, 2, 3, 4, 5], "a minimum window at once");
    assert_eq!(c.stats().lost, 19);
    // Then slow start: each round trip doubles what goes out.
    let mut rounds = 0;
    while c.unacked() > 0 {
        rounds += 1;
        assert!(
            rounds <= 4,
            "still {} unacked after {rounds} rounds",
            c.unacked()
        );
        now += Duration::from_millis(20);
        for m in out.drain(..) {
            a.handle_frame(now, &m.encode()).unwrap();
        }
        now += Duration::from_millis(20);
        for ack in std::iter::from_fn(|| a.poll_transmit()) {
            c.handle_frame(now, &ack).unwrap();
        }
        out = drain(&mut c);
    }
    let got: Vec<_> = data_events(&mut a).concat();
    assert_eq!(got, (0..20u8).collect::<Vec<_>>());
}

#[test]
fn negative_sequence_is_a_protocol_error() {
    let t0 = Instant::now();
    let mut a = agent(t0);
    a.send_data(t0, b"x");
    let mut m = Message::decode(&a.poll_transmit().unwrap()).unwrap();
    m.sequence_number = -1;
    let mut c = client(t0);
    assert!(matches!(
        c.handle_frame(t0, &m.encode()),
        Err(ChannelError::NegativeSequence(-1))
    ));
}

#[test]
fn beyond_the_reorder_buffer_is_dropped_unacked() {
    let t0 = Instant::now();
    let mut a = agent(t0);
    a.send_data(t0, b"x");
    let mut m = Message::decode(&a.poll_transmit().unwrap()).unwrap();
    m.sequence_number = 50_000;
    let mut c = client(t0);
    c.handle_frame(t0, &m.encode()).unwrap();
    assert!(c.poll_transmit().is_none());
    assert_eq!(c.stats().dropped_out_of_window, 1);
}

#[test]
fn impossibly_far_sequence_is_a_protocol_error() {
    let t0 = Instant::now();
    let mut a = agent(t0);
    a.send_data(t0, b"x");
    let mut m = Message::decode(&a.poll_transmit().unwrap()).unwrap();
    m.sequence_number = i64::MAX;
    let mut c = client(t0);
    assert!(matches!(
        c.handle_frame(t0, &m.encode()),
        Err(ChannelError::FarSequence { .. })
    ));
}

/// Moves `size` bytes each way between a client and an agent-rules peer over links with
/// the given impairments, in virtual time; returns the virtual time it took.
fn transfer(size: usize, loss: f64, dup: f64, reorder: f64, seed: u64) -> Duration {
    let t0 = Instant::now();
    let mut rng = Rng::new(seed);
    let up = rng.bytes(size);
    let down = rng.bytes(size);
    let (mut c, mut a) = (client(t0), agent(t0));
    let delay = Duration::from_millis(20);
    let mut c2a = Link::impaired(seed ^ 1, delay, loss, dup, reorder);
    let mut a2c = Link::impaired(seed ^ 2, delay, loss, dup, reorder);
    let (mut up_sent, mut down_sent) = (0, 0);
    let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
    let mut now = t0;
    for step in 0.. {
        assert!(step < 2_000_000, "simulation did not converge");
        // Application writes, respecting the client's window; the agent writes freely.
        while up_sent < up.len() && c.window_available() > 0 {
            let end = (up_sent + 1024).min(up.len());
            c.send_data(now, &up[up_sent..end]);
            up_sent = end;
        }
        if down_sent < down.len() {
            let end = (down_sent + 64 * 1024).min(down.len());
            a.send_data(now, &down[down_sent..end]);
            down_sent = end;
        }
        while let Some(f) = c.poll_transmit() {
            c2a.send(now, f);
        }
        while let Some(f) = a.poll_transmit() {
            a2c.send(now, f);
        }
        for f in a2c.take_due(now) {
            c.handle_frame(now, &f).unwrap();
        }
        for f in c2a.take_due(now) {
            a.handle_frame(now, &f).unwrap();
        }
        got_down.extend(data_events(&mut c).concat());
        got_up.extend(data_events(&mut a).concat());
        c.handle_timeout(now).unwrap();
        a.handle_timeout(now).unwrap();
        let done =
            got_up.len() == size && got_down.len() == size && c.unacked() == 0 && a.unacked() == 0;
        if done {
            break;
        }
        let next = [
            c.poll_timeout(),
            a.poll_timeout(),
            c2a.next_arrival(),
            a2c.next_arrival(),
        ]
        .into_iter()
        .flatten()
        .min();
        let pending_writes = up_sent < up.len() && c.window_available() > 0;
        now = match next {
            Some(t) if !pending_writes => t.max(now),
            _ => now + Duration::from_micros(100),
        };
    }
    assert!(got_up == up, "client->agent bytes differ");
    assert!(got_down == down, "agent->client bytes differ");
    now - t0
}

#[test]
fn one_megabyte_each_way_over_a_clean_link() {
    let took = transfer(1 << 20, 0.0, 0.0, 0.0, 7);
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn one_megabyte_each_way_with_loss_duplication_and_reordering() {
    for seed in [11, 12, 13] {
        transfer(1 << 20, 0.05, 0.05, 0.05, seed);
    }
}

#[test]
fn heavy_loss_still_completes() {
    transfer(128 * 1024, 0.3, 0.1, 0.2, 99);
}

#[test]
fn reconnect_resends_everything_in_flight_and_nothing_twice_to_the_app() {
    let t0 = Instant::now();
    let (mut c, mut a) = (client(t0), agent(t0));
    for i in 0..4u8 {
        c.send_data(t0, &[i]);
    }
    // The first two reach the agent; the connection dies with the other two in flight.
    let frames: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
    for f in &frames[..2] {
        a.handle_frame(t0, f).unwrap();
    }
    let acks: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    drop(acks); // lost with the old websocket too
    let t1 = t0 + Duration::from_millis(50);
    c.on_reconnect(t1);
    let resent = drain(&mut c);
    assert_eq!(
        resent.iter().map(|m| m.sequence_number).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    for m in &resent {
        a.handle_frame(t1, &m.encode()).unwrap();
    }
    assert_eq!(
        data_events(&mut a),
        vec![vec![0], vec![1], vec![2], vec![3]]
    );
    for ack in std::iter::from_fn(|| a.poll_transmit()) {
        c.handle_frame(t1, &ack).unwrap();
    }
    assert_eq!(c.unacked(), 0);
}

fn publication(kind: MessageType) -> Vec<u8> {
    Message {
        message_type: kind,
        schema_version: 1,
        created_date: 1,
        sequence_number: 0,
        flags: 0,
        message_id: uuid::Uuid::from_u128(9),
        payload_type: 0,
        payload: Vec::new(),
    }
    .encode()
}

#[test]
fn pause_publication_stops_new_data_and_resends_until_lifted() {
    let t0 = Instant::now();
    let mut c = client(t0);
    c.send_data(t0, b"in flight");
    drain(&mut c);
    c.handle_frame(t0, &publication(MessageType::PausePublication))
        .unwrap();
    assert!(c.is_paused());
    assert_eq!(c.window_available(), 0);
    c.handle_timeout(t0 + Duration::from_secs(1)).unwrap();
    assert!(drain(&mut c).is_empty(), "no resends while paused");
    c.handle_frame(t0, &publication(MessageType::StartPublication))
        .unwrap();
    assert!(!c.is_paused());
    c.handle_timeout(t0 + Duration::from_secs(1)).unwrap();
    assert_eq!(drain(&mut c).len(), 1, "the overdue message goes out again");
}

#[test]
fn any_stream_data_or_ack_also_lifts_a_pause() {
    let t0 = Instant::now();
    let (mut c, mut a) = (client(t0), agent(t0));
    c.handle_frame(t0, &publication(MessageType::PausePublication))
        .unwrap();
    a.send_data(t0, b"x");
    c.handle_frame(t0, &a.poll_transmit().unwrap()).unwrap();
    assert!(!c.is_paused());
}

#[test]
fn a_pause_longer_than_the_stall_timeout_is_not_a_stall() {
    let t0 = Instant::now();
    let mut c = client(t0);
    c.send_data(t0, b"in flight");
    drain(&mut c);
    c.handle_frame(t0, &publication(MessageType::PausePublication))
        .unwrap();
    assert_eq!(c.poll_timeout(), None, "no timer runs while paused");
    let later = t0 + Duration::from_secs(400);
    c.handle_timeout(later).unwrap();
    c.handle_frame(later, &publication(MessageType::StartPublication))
        .unwrap();
    // The stall clock restarted when the pause was lifted: a probe, not an error.
    c.handle_timeout(later + Duration::from_secs(1)).unwrap();
    assert_eq!(drain(&mut c).len(), 1);
}
