use super::*;
use crate::proto::test_captures::hex;

/// docs/protocol.md §3.9, produced by the plugin's own serializer.
const INPUT_LS: &str = "
00000074 696e7075 745f7374 7265616d 5f646174 61202020 20202020 20202020
20202020 00000001 0000015e 0baa7884 00000000 00000005 00000000 00000000
a508b5f0 73f31b16 dd01e56b ff48483e 1d887ce0 f8672e49 14d9000e 801cd74e
cd805dd9 366c0bc4 2dc16adc 0197dc2f 00000001 00000003 6c730d";

fn input_ls() -> Message {
    Message {
        message_type: MessageType::InputStreamData,
        schema_version: 1,
        created_date: 1503434274948,
        sequence_number: 5,
        flags: 0,
        message_id: "dd01e56b-ff48-483e-a508-b5f073f31b16".parse().unwrap(),
        payload_type: 1,
        payload: b"ls\r".to_vec(),
    }
}

#[test]
fn encodes_plugin_golden_vector() {
    let bytes = input_ls().encode();
    assert_eq!(bytes.len(), 123);
    assert_eq!(bytes, hex(INPUT_LS));
}

#[test]
fn decodes_plugin_golden_vector() {
    assert_eq!(Message::decode(&hex(INPUT_LS)).unwrap(), input_ls());
}

#[test]
fn acknowledge_header_matches_vector() {
    let payload = br#"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"5345de02-7c28-49c6-9432-033fd40df450","AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}"#;
    let msg = Message {
        message_type: MessageType::Acknowledge,
        schema_version: 1,
        created_date: 1700000000000,
        sequence_number: 0,
        flags: flags::ACK,
        message_id: "11111111-2222-3333-4444-555555555555".parse().unwrap(),
        payload_type: 0,
        payload: payload.to_vec(),
    };
    let bytes = msg.encode();
    assert_eq!(bytes.len(), 296);
    let head = hex("
        00000074 61636b6e 6f776c65 64676520 20202020 20202020 20202020 20202020
        20202020 00000001 0000018b cfe56800 00000000 00000000 00000000 00000003
        44445555 55555555 11111111 22223333");
    assert_eq!(&bytes[..80], &head[..]);
    assert_eq!(&bytes[112..122], &hex("00000000 000000b0 7b22")[..]);
    assert_eq!(Message::decode(&bytes).unwrap(), msg);
}

#[test]
fn terminate_flag_vector() {
    let msg = Message {
        payload_type: 10,
        payload: 2u32.to_be_bytes().to_vec(),
        ..input_ls()
    };
    let bytes = msg.encode();
    assert_eq!(bytes.len(), 124);
    assert_eq!(&bytes[112..], &hex("0000000a 00000004 00000002")[..]);
}

#[test]
fn empty_payload_round_trips_with_digest_of_nothing() {
    let msg = Message {
        payload: Vec::new(),
        ..input_ls()
    };
    let bytes = msg.encode();
    assert_eq!(bytes.len(), HEADER_SIZE);
    assert_eq!(
        &bytes[layout::PAYLOAD_DIGEST],
        &hex("e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae41e4 649b934c a495991b 7852b855")[..]
    );
    assert_eq!(Message::decode(&bytes).unwrap(), msg);
}

#[test]
fn nul_padded_type_is_accepted() {
    let mut bytes = input_ls().encode();
    for b in &mut bytes[4 + "input_stream_data".len()..36] {
        *b = 0;
    }
    assert_eq!(Message::decode(&bytes).unwrap(), input_ls());
}

#[test]
fn short_input_is_an_error_at_every_length() {
    let bytes = input_ls().encode();
    for n in 0..HEADER_SIZE {
        assert_eq!(Message::decode(&bytes[..n]), Err(DecodeError::Short(n)));
    }
    // Cut inside the payload: the length field no longer agrees.
    assert!(matches!(
        Message::decode(&bytes[..122]),
        Err(DecodeError::PayloadLength {
            claimed: 3,
            actual: 2
        })
    ));
}

#[test]
fn wrong_header_length_is_an_error() {
    let mut bytes = input_ls().encode();
    bytes[3] = 0x70;
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::HeaderLength(0x70))
    );
}

#[test]
fn bad_digest_is_an_error() {
    let mut bytes = input_ls().encode();
    bytes[120] ^= 1;
    assert_eq!(Message::decode(&bytes), Err(DecodeError::Digest));
}

#[test]
fn absurd_payload_length_is_an_error() {
    let mut bytes = input_ls().encode();
    bytes[layout::PAYLOAD_LENGTH].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        Message::decode(&bytes),
        Err(DecodeError::PayloadLength { .. })
    ));
}

#[test]
fn empty_type_zero_date_and_binary_type_are_errors() {
    let mut bytes = input_ls().encode();
    bytes[layout::MESSAGE_TYPE].fill(b' ');
    assert_eq!(Message::decode(&bytes), Err(DecodeError::EmptyType));
    let mut bytes = input_ls().encode();
    bytes[layout::CREATED_DATE].fill(0);
    assert_eq!(Message::decode(&bytes), Err(DecodeError::ZeroDate));
    let mut bytes = input_ls().encode();
    bytes[5] = 0xff;
    assert_eq!(Message::decode(&bytes), Err(DecodeError::TypeNotText));
}

#[test]
fn publication_messages_skip_validation() {
    let mut bytes = vec![0u8; HEADER_SIZE];
    bytes[4..4 + 17].copy_from_slice(b"pause_publication");
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.message_type, MessageType::PausePublication);
}

#[test]
fn unknown_types_decode_as_other() {
    let msg = Message {
        message_type: MessageType::Other("agent_job".into()),
        ..input_ls()
    };
    assert_eq!(Message::decode(&msg.encode()).unwrap(), msg);
}

/// Every frame AWS's own plugin and agent exchanged (tests/data/captures/) decodes, and encodes
/// back to the same bytes: our codec agrees with theirs bit for bit.
#[test]
fn real_captured_frames_round_trip() {
    for (name, frames) in crate::proto::test_captures::all() {
        assert!(frames.len() > 60, "{name}: too few frames");
        for f in &frames {
            let msg = Message::decode(&f.bytes)
                .unwrap_or_else(|e| panic!("{name}: frame at t={} failed: {e}", f.t));
            assert_eq!(msg.encode(), f.bytes, "{name}: re-encoding differs");
            match msg.message_type {
                MessageType::Acknowledge => assert_eq!(msg.flags, flags::ACK),
                MessageType::OutputStreamData if msg.sequence_number == 0 => {
                    assert_eq!(msg.flags, flags::SYN)
                }
                MessageType::OutputStreamData | MessageType::InputStreamData => {
                    assert_eq!(msg.flags, 0)
                }
                ref other => panic!("{name}: unexpected type {other:?}"),
            }
        }
    }
}

#[test]
fn recognises_channel_closed_frames_by_header() {
    let mut frame = vec![0u8; 120];
    frame[4..36].copy_from_slice(format!("{:<32}", "channel_closed").as_bytes());
    assert!(is_channel_closed(&frame));
    frame[4..36].copy_from_slice(format!("{:<32}", "output_stream_data").as_bytes());
    assert!(!is_channel_closed(&frame));
    assert!(!is_channel_closed(&[1, 2, 3]));
}

/// The peek reads the type field as the decoder does: NUL padding and surrounding spaces
/// are trimmed, a longer name is another type, and the rest of the header is not looked at.
#[test]
fn the_channel_closed_peek_agrees_with_the_decoder() {
    let closed = Message {
        message_type: MessageType::ChannelClosed,
        payload: br#"{"Output":"bye"}"#.to_vec(),
        ..input_ls()
    }
    .encode();
    assert_eq!(
        Message::decode(&closed).unwrap().message_type,
        MessageType::ChannelClosed
    );
    assert!(is_channel_closed(&closed));
    assert_eq!(peek_type(&closed), Some(MessageType::ChannelClosed));
    for (field, expected) in [
        (format!("{:\0<32}", "channel_closed"), true),
        (format!("{:^32}", "channel_closed"), true),
        (format!("{:<32}", "channel_closed_later"), false),
        (format!("{:<32}", "channel"), false),
        (" ".repeat(32), false),
    ] {
        let mut frame = closed.clone();
        frame[layout::MESSAGE_TYPE].copy_from_slice(field.as_bytes());
        let decoded = Message::decode(&frame).map(|m| m.message_type);
        assert_eq!(is_channel_closed(&frame), expected, "{field:?}");
        assert_eq!(
            decoded == Ok(MessageType::ChannelClosed),
            expected,
            "{field:?}: the decoder says {decoded:?}"
        );
    }
    // Only the type field counts: a header cut short after it is still recognised.
    assert!(is_channel_closed(&closed[..36]));
    assert!(!is_channel_closed(&closed[..35]));
}
