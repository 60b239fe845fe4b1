use super::*;

fn t0() -> Instant {
    Instant::now()
}

fn drain(m: &mut Mux) -> Vec<MuxEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// Bytes as xtaci/smux v1 writes them (`rawHeader`: ver, cmd, LE length, LE stream id).
#[test]
fn golden_frames_match_xtaci_v1() {
    let mut m = Mux::new(Role::Client, None, t0());
    let id = m.open();
    assert_eq!(id, 3, "client stream IDs are odd and start at 3");
    assert_eq!(m.poll_transmit().unwrap(), [1, 0, 0, 0, 3, 0, 0, 0]);
    m.write(id, b"hello").unwrap();
    assert_eq!(
        m.poll_transmit().unwrap(),
        [1, 2, 5, 0, 3, 0, 0, 0, b'h', b'e', b'l', b'l', b'o']
    );
    m.close(id);
    assert_eq!(m.poll_transmit().unwrap(), [1, 1, 0, 0, 3, 0, 0, 0]);
    assert_eq!(m.open(), 5);
    // A 300-byte frame: the length is little-endian (0x012c).
    let mut out = Vec::new();
    Frame {
        cmd: Cmd::Psh,
        stream_id: 0x0102_0304,
        data: vec![7; 300],
    }
    .encode_into(&mut out);
    assert_eq!(out[..8], [1, 2, 0x2c, 0x01, 4, 3, 2, 1]);
    assert_eq!(out.len(), 308);
}

#[test]
fn server_accepts_streams_and_gets_data_split_anywhere() {
    let mut client = Mux::new(Role::Client, None, t0());
    let mut server = Mux::new(Role::Server, None, t0());
    let a = client.open();
    let b = client.open();
    client.write(a, b"first stream").unwrap();
    client.write(b, &[9u8; 40_000]).unwrap();
    client.close(a);
    let wire = client.poll_transmit().unwrap();
    // Fed one byte at a time, as the data channel may cut it anywhere.
    for byte in &wire {
        server
            .handle_input(t0(), std::slice::from_ref(byte))
            .unwrap();
    }
    let evs = drain(&mut server);
    assert_eq!(evs[0], MuxEvent::Accepted(a));
    assert_eq!(evs[1], MuxEvent::Accepted(b));
    let data_a: Vec<u8> = evs
        .iter()
        .filter_map(|e| match e {
            MuxEvent::Data(id, d) if *id == a => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(data_a, b"first stream");
    let data_b: usize = evs
        .iter()
        .filter_map(|e| match e {
            MuxEvent::Data(id, d) if *id == b => Some(d.len()),
            _ => None,
        })
        .sum();
    assert_eq!(data_b, 40_000);
    assert_eq!(evs.last(), Some(&MuxEvent::Finished(a)));
}

#[test]
fn large_writes_are_cut_at_the_max_frame_size() {
    let mut m = Mux::new(Role::Client, None, t0());
    let id = m.open();
    m.poll_transmit();
    m.write(id, &vec![1u8; MAX_FRAME * 2 + 5]).unwrap();
    let wire = m.poll_transmit().unwrap();
    let mut rest = &wire[..];
    let mut sizes = Vec::new();
    while let Some((f, n)) = Frame::decode(rest).unwrap() {
        sizes.push(f.data.len());
        rest = &rest[n..];
    }
    assert_eq!(sizes, [MAX_FRAME, MAX_FRAME, 5]);
}

#[test]
fn bad_version_and_unknown_command_are_errors_not_panics() {
    let mut m = Mux::new(Role::Server, None, t0());
    assert_eq!(
        m.handle_input(t0(), &[2, 0, 0, 0, 3, 0, 0, 0]),
        Err(MuxError::Version(2))
    );
    let mut m = Mux::new(Role::Server, None, t0());
    // UPD (4) exists only in version 2.
    assert_eq!(
        m.handle_input(t0(), &[1, 4, 0, 0, 3, 0, 0, 0]),
        Err(MuxError::Command(4))
    );
}

#[test]
fn data_for_unknown_or_finished_streams_is_dropped() {
    let mut m = Mux::new(Role::Server, None, t0());
    m.handle_input(t0(), &[1, 2, 1, 0, 9, 0, 0, 0, b'x'])
        .unwrap();
    assert!(drain(&mut m).is_empty());
    m.handle_input(t0(), &[1, 0, 0, 0, 3, 0, 0, 0, 1, 1, 0, 0, 3, 0, 0, 0])
        .unwrap();
    m.handle_input(t0(), &[1, 2, 1, 0, 3, 0, 0, 0, b'x'])
        .unwrap();
    assert_eq!(
        drain(&mut m),
        [MuxEvent::Accepted(3), MuxEvent::Finished(3)]
    );
    assert_eq!(m.write(3, b"late"), Err(StreamClosed(3)));
}

#[test]
fn streams_are_forgotten_once_closed_both_ways() {
    let mut client = Mux::new(Role::Client, None, t0());
    let id = client.open();
    client.close(id);
    assert!(client.is_open(id), "the peer may still send until its FIN");
    client
        .handle_input(t0(), &[1, 2, 2, 0, 3, 0, 0, 0, b'o', b'k'])
        .unwrap();
    client
        .handle_input(t0(), &[1, 1, 0, 0, 3, 0, 0, 0])
        .unwrap();
    assert_eq!(
        drain(&mut client),
        [MuxEvent::Data(id, b"ok".to_vec()), MuxEvent::Finished(id)]
    );
    assert!(!client.is_open(id));
    assert_eq!(client.stream_count(), 0);
    // A second FIN, or a close after the peer's FIN, changes nothing.
    client
        .handle_input(t0(), &[1, 1, 0, 0, 3, 0, 0, 0])
        .unwrap();
    assert!(drain(&mut client).is_empty());
}

#[test]
fn keepalive_sends_nops_and_times_out_in_virtual_time() {
    let start = t0();
    let k = KeepAlive::default();
    let mut m = Mux::new(Role::Client, Some(k), start);
    assert_eq!(m.poll_timeout(), Some(start + k.interval));
    m.handle_timeout(start + k.interval).unwrap();
    assert_eq!(m.poll_transmit().unwrap(), [1, 3, 0, 0, 0, 0, 0, 0]);
    // Hearing from the peer pushes the deadline out.
    let heard = start + Duration::from_secs(25);
    m.handle_input(heard, &[1, 3, 0, 0, 0, 0, 0, 0]).unwrap();
    m.handle_timeout(start + Duration::from_secs(31)).unwrap();
    assert_eq!(
        m.handle_timeout(heard + k.timeout),
        Err(MuxError::KeepAliveTimeout(k.timeout))
    );
}

#[test]
fn without_keepalive_there_is_no_timer() {
    let mut m = Mux::new(Role::Client, None, t0());
    assert_eq!(m.poll_timeout(), None);
    m.handle_timeout(t0() + Duration::from_secs(3600)).unwrap();
    assert!(m.poll_transmit().is_none());
}

#[test]
fn decode_never_panics_on_arbitrary_bytes() {
    // A small deterministic fuzz: every prefix of mixed valid and invalid input.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..2000 {
        let mut bytes = Vec::new();
        for _ in 0..(round % 40) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push((x & 0xff) as u8);
        }
        if round % 3 == 0 && !bytes.is_empty() {
            bytes[0] = 1;
        }
        let mut m = Mux::new(Role::Server, None, t0());
        let _ = m.handle_input(t0(), &bytes);
        let _ = Frame::decode(&bytes);
    }
}
