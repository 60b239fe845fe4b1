//! The data channel's binary message: a 120-byte header and a payload (docs/protocol.md §3).
//!
//! One offset table ([`layout`]) drives both encoding and decoding. Decoding never panics:
//! every read goes through bounds-checked helpers and returns a [`DecodeError`].

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Value of the HeaderLength field: the offset of PayloadLength.
pub const HEADER_LENGTH: u32 = 116;
/// Bytes before the payload.
pub const HEADER_SIZE: usize = 120;

/// Field offsets and widths of the header (all integers big-endian).
pub mod layout {
    use std::ops::Range;
    pub const HEADER_LENGTH: Range<usize> = 0..4;
    pub const MESSAGE_TYPE: Range<usize> = 4..36;
    pub const SCHEMA_VERSION: Range<usize> = 36..40;
    pub const CREATED_DATE: Range<usize> = 40..48;
    pub const SEQUENCE_NUMBER: Range<usize> = 48..56;
    pub const FLAGS: Range<usize> = 56..64;
    pub const MESSAGE_ID: Range<usize> = 64..80;
    pub const PAYLOAD_DIGEST: Range<usize> = 80..112;
    pub const PAYLOAD_TYPE: Range<usize> = 112..116;
    pub const PAYLOAD_LENGTH: Range<usize> = 116..120;
}

/// Header flag bits.
pub mod flags {
    pub const SYN: u64 = 1;
    pub const FIN: u64 = 2;
    /// What acknowledges carry (SYN|FIN), docs/protocol.md §3.5.
    pub const ACK: u64 = SYN | FIN;
}

/// The header's MessageType string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    InputStreamData,
    OutputStreamData,
    Acknowledge,
    ChannelClosed,
    StartPublication,
    PausePublication,
    AgentSessionState,
    /// Any other (non-empty) type, kept so a receiver can log and ignore it.
    Other(String),
}

impl MessageType {
    pub fn as_str(&self) -> &str {
        match self {
            MessageType::InputStreamData => "input_stream_data",
            MessageType::OutputStreamData => "output_stream_data",
            MessageType::Acknowledge => "acknowledge",
            MessageType::ChannelClosed => "channel_closed",
            MessageType::StartPublication => "start_publication",
            MessageType::PausePublication => "pause_publication",
            MessageType::AgentSessionState => "agent_session_state",
            MessageType::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> MessageType {
        match s {
            "input_stream_data" => MessageType::InputStreamData,
            "output_stream_data" => MessageType::OutputStreamData,
            "acknowledge" => MessageType::Acknowledge,
            "channel_closed" => MessageType::ChannelClosed,
            "start_publication" => MessageType::StartPublication,
            "pause_publication" => MessageType::PausePublication,
            "agent_session_state" => MessageType::AgentSessionState,
            other => MessageType::Other(other.to_owned()),
        }
    }
}

/// One decoded (or to-be-encoded) message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub message_type: MessageType,
    pub schema_version: u32,
    /// Milliseconds since the Unix epoch.
    pub created_date: u64,
    pub sequence_number: i64,
    pub flags: u64,
    pub message_id: Uuid,
    pub payload_type: u32,
    pub payload: Vec<u8>,
}

/// Why bytes from the peer are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {0} bytes, shorter than the 120-byte header")]
    Short(usize),
    #[error("header length is {0}, expected 116")]
    HeaderLength(u32),
    #[error("message type is empty")]
    EmptyType,
    #[error("message type is not ASCII text")]
    TypeNotText,
    #[error("created date is zero")]
    ZeroDate,
    #[error("payload length field says {claimed} bytes but {actual} follow the header")]
    PayloadLength { claimed: u32, actual: usize },
    #[error("payload digest does not match its SHA-256")]
    Digest,
}

impl Message {
    /// The wire form: header then payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_SIZE];
        out[layout::HEADER_LENGTH].copy_from_slice(&HEADER_LENGTH.to_be_bytes());
        let ty = self.message_type.as_str().as_bytes();
        let field = &mut out[layout::MESSAGE_TYPE];
        field.fill(b' ');
        let n = ty.len().min(field.len());
        field[..n].copy_from_slice(&ty[..n]);
        out[layout::SCHEMA_VERSION].copy_from_slice(&self.schema_version.to_be_bytes());
        out[layout::CREATED_DATE].copy_from_slice(&self.created_date.to_be_bytes());
        out[layout::SEQUENCE_NUMBER].copy_from_slice(&self.sequence_number.to_be_bytes());
        out[layout::FLAGS].copy_from_slice(&self.flags.to_be_bytes());
        out[layout::MESSAGE_ID].copy_from_slice(&swap_uuid_halves(self.message_id.as_bytes()));
        out[layout::PAYLOAD_DIGEST].copy_from_slice(&Sha256::digest(&self.payload));
        out[layout::PAYLOAD_TYPE].copy_from_slice(&self.payload_type.to_be_bytes());
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        out[layout::PAYLOAD_LENGTH].copy_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses one websocket frame. Stricter than the plugin where the plugin would misread
    /// (wrong header length, length field disagreeing with the frame), equal elsewhere:
    /// `start_publication`/`pause_publication` skip validation (their header content is
    /// unverified, docs/protocol.md §4).
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        if buf.len() < HEADER_SIZE {
            return Err(DecodeError::Short(buf.len()));
        }
        let header_length = be_u32(buf, layout::HEADER_LENGTH);
        let message_type = parse_type(buf.get(layout::MESSAGE_TYPE).unwrap_or_default())?;
        let payload = buf.get(HEADER_SIZE..).unwrap_or_default();
        let msg = Message {
            schema_version: be_u32(buf, layout::SCHEMA_VERSION),
            created_date: be_u64(buf, layout::CREATED_DATE),
            sequence_number: be_u64(buf, layout::SEQUENCE_NUMBER) as i64,
            flags: be_u64(buf, layout::FLAGS),
            message_id: Uuid::from_bytes(swap_uuid_halves(
                buf.get(layout::MESSAGE_ID)
                    .and_then(|s| <[u8; 16]>::try_from(s).ok())
                    .unwrap_or_default()
                    .as_slice(),
            )),
            payload_type: be_u32(buf, layout::PAYLOAD_TYPE),
            payload: payload.to_vec(),
            message_type,
        };
        if matches!(
            msg.message_type,
            MessageType::StartPublication | MessageType::PausePublication
        ) {
            return Ok(msg);
        }
        if header_length != HEADER_LENGTH {
            return Err(DecodeError::HeaderLength(header_length));
        }
        if msg.created_date == 0 {
            return Err(DecodeError::ZeroDate);
        }
        let claimed = be_u32(buf, layout::PAYLOAD_LENGTH);
        if claimed as usize != payload.len() {
            return Err(DecodeError::PayloadLength {
                claimed,
                actual: payload.len(),
            });
        }
        if !payload.is_empty()
            && Sha256::digest(payload).as_slice()
                != buf.get(layout::PAYLOAD_DIGEST).unwrap_or_default()
        {
            return Err(DecodeError::Digest);
        }
        Ok(msg)
    }
}

/// The MessageType a frame's header names, read without decoding or validating the rest
/// (the field is parsed as [`Message::decode`] parses it, docs/protocol.md §3.1, §3.6);
/// `None` when the frame ends before the field or the field is empty or not text.
pub fn peek_type(frame: &[u8]) -> Option<MessageType> {
    parse_type(frame.get(layout::MESSAGE_TYPE)?).ok()
}

/// True when the frame is a `channel_closed` message, recognised by its MessageType
/// alone (docs/protocol.md §4): the service has ended the session, so a websocket that
/// drops after it is not worth resuming.
pub fn is_channel_closed(frame: &[u8]) -> bool {
    peek_type(frame) == Some(MessageType::ChannelClosed)
}

fn parse_type(field: &[u8]) -> Result<MessageType, DecodeError> {
    let text = std::str::from_utf8(field).map_err(|_| DecodeError::TypeNotText)?;
    let trimmed = text.trim_matches('\0').trim();
    if trimmed.is_empty() {
        return Err(DecodeError::EmptyType);
    }
    Ok(MessageType::parse(trimmed))
}

fn be_u32(buf: &[u8], range: std::ops::Range<usize>) -> u32 {
    buf.get(range)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_be_bytes)
}

fn be_u64(buf: &[u8], range: std::ops::Range<usize>) -> u64 {
    buf.get(range)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_be_bytes)
}

/// The wire puts the UUID's last 8 bytes first (docs/protocol.md §3.2); the swap is its own inverse.
fn swap_uuid_halves(b: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    if let (Some(lo), Some(hi)) = (b.get(8..16), b.get(0..8)) {
        out[..8].copy_from_slice(lo);
        out[8..].copy_from_slice(hi);
    }
    out
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
