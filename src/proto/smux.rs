//! smux protocol version 1 (xtaci/smux, as vendored by the plugin and the agent), sans-IO:
//! the multiplexing that port-forwarding sessions run over the data channel
//! (docs/protocol.md §7.2).
//!
//! A frame is `ver(1)=1 | cmd(1) | length(2, LE) | stream id(4, LE) | data`, with
//! SYN=0 (open), FIN=1 (close), PSH=2 (data), NOP=3 (keep-alive). Version 1 has no
//! per-stream flow control. Client stream IDs are odd and start at 3, server ones even.
//! The byte stream is cut into data-channel messages with no regard to frame
//! boundaries, so input is buffered until a whole frame is there.
//!
//! Call order: feed peer bytes to [`Mux::handle_input`]; open, write and close streams;
//! at [`Mux::poll_timeout`] call [`Mux::handle_timeout`]; after each, drain
//! [`Mux::poll_transmit`] (bytes for the peer) and [`Mux::poll_event`].
//!
//! Peer input never panics: a wrong version or an unknown command is a [`MuxError`]
//! (xtaci ends the session on both); data for unknown streams is dropped as xtaci does.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8;
/// xtaci's `DefaultConfig().MaxFrameSize`.
pub const MAX_FRAME: usize = 32 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    Syn = 0,
    Fin = 1,
    Psh = 2,
    Nop = 3,
}

impl Cmd {
    fn from_u8(v: u8) -> Option<Cmd> {
        Some(match v {
            0 => Cmd::Syn,
            1 => Cmd::Fin,
            2 => Cmd::Psh,
            3 => Cmd::Nop,
            _ => return None,
        })
    }
}

/// One smux frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub cmd: Cmd,
    pub stream_id: u32,
    pub data: Vec<u8>,
}

impl Frame {
    /// Appends the frame's bytes to `out`. `data` longer than 65535 bytes is a caller bug
    /// and is cut (frames are built by [`Mux`], which never does that).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let len = self.data.len().min(u16::MAX as usize);
        out.push(VERSION);
        out.push(self.cmd as u8);
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&self.stream_id.to_le_bytes());
        out.extend_from_slice(&self.data[..len]);
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` if it is not all there yet,
    /// else the frame and how many bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, MuxError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let [ver, cmd, l0, l1, s0, s1, s2, s3] =
            <[u8; HEADER_LEN]>::try_from(header).map_err(|_| MuxError::Truncated)?;
        if ver != VERSION {
            return Err(MuxError::Version(ver));
        }
        let cmd = Cmd::from_u8(cmd).ok_or(MuxError::Command(cmd))?;
        let len = u16::from_le_bytes([l0, l1]) as usize;
        let stream_id = u32::from_le_bytes([s0, s1, s2, s3]);
        let Some(data) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        Ok(Some((
            Frame {
                cmd,
                stream_id,
                data: data.to_vec(),
            },
            HEADER_LEN + len,
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    #[error("smux frame with protocol version {0} (expected 1)")]
    Version(u8),
    #[error("smux frame with unknown command {0}")]
    Command(u8),
    #[error("smux frame header cut short")]
    Truncated,
    #[error("the smux peer sent nothing for {0:?} (keep-alive timeout)")]
    KeepAliveTimeout(Duration),
}

/// Writing to a stream that is closed (by us, or by the peer's FIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("smux stream {0} is closed")]
pub struct StreamClosed(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opens streams with odd IDs from 3 (the plugin's side).
    Client,
    /// Accepts streams; its own would be even (the agent's side).
    Server,
}

/// Keep-alive as xtaci does it: a NOP every `interval`, and the session is dead when
/// nothing at all arrived for `timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for KeepAlive {
    /// xtaci's `DefaultConfig()`: 10 s and 30 s.
    fn default() -> Self {
        KeepAlive {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MuxEvent {
    /// The peer opened a stream (SYN).
    Accepted(u32),
    /// Data for an open stream.
    Data(u32, Vec<u8>),
    /// The peer closed a stream (FIN): no more data will come, and none may be written.
    Finished(u32),
}

#[derive(Clone, Copy, Debug, Default)]
struct StreamState {
    local_fin: bool,
    remote_fin: bool,
}

pub struct Mux {
    role: Role,
    next_id: u32,
    max_frame: usize,
    streams: BTreeMap<u32, StreamState>,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<MuxEvent>,
    keepalive: Option<KeepAlive>,
    last_heard: Instant,
    next_nop: Option<Instant>,
}

impl Mux {
    /// A session with xtaci's defaults; `keepalive` as negotiated (docs/protocol.md §7.2).
    pub fn new(role: Role, keepalive: Option<KeepAlive>, now: Instant) -> Mux {
        Mux {
            role,
            next_id: match role {
                Role::Client => 1,
                Role::Server => 0,
            },
            max_frame: MAX_FRAME,
            streams: BTreeMap::new(),
            input: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            keepalive,
            last_heard: now,
            next_nop: keepalive.map(|k| now + k.interval),
        }
    }

    /// Opens a stream (queues its SYN) and returns its ID.
    pub fn open(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(2);
        let id = self.next_id;
        self.streams.insert(id, StreamState::default());
        self.push(Cmd::Syn, id, &[]);
        id
    }

    /// Queues `data` for stream `id` in frames of at most the maximum frame size.
    pub fn write(&mut self, id: u32, data: &[u8]) -> Result<(), StreamClosed> {
        match self.streams.get(&id) {
            Some(s) if !s.local_fin && !s.remote_fin => {}
            _ => return Err(StreamClosed(id)),
        }
        for chunk in data.chunks(self.max_frame) {
            self.push(Cmd::Psh, id, chunk);
        }
        Ok(())
    }

    /// Closes stream `id` from our side (FIN, once). Data the peer sends until its own
    /// FIN is still delivered.
    pub fn close(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.local_fin {
            return;
        }
        s.local_fin = true;
        let done = s.remote_fin;
        self.push(Cmd::Fin, id, &[]);
        if done {
            self.streams.remove(&id);
        }
    }

    /// Whether stream `id` is still known (not closed on both sides).
    pub fn is_open(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Feeds bytes from the peer.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), MuxError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.last_heard = now;
        self.input.extend_from_slice(bytes);
        let mut used = 0;
        let result = loop {
            let rest = self.input.get(used..).unwrap_or_default();
            match Frame::decode(rest) {
                Ok(Some((frame, n))) => {
                    used += n;
                    self.on_frame(frame);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.input.drain(..used.min(self.input.len()));
        result
    }

    fn on_frame(&mut self, frame: Frame) {
        let id = frame.stream_id;
        match frame.cmd {
            Cmd::Nop => {}
            Cmd::Syn => {
                if let std::collections::btree_map::Entry::Vacant(e) = self.streams.entry(id) {
                    e.insert(StreamState::default());
                    self.events.push_back(MuxEvent::Accepted(id));
                }
            }
            Cmd::Fin => {
                if let Some(s) = self.streams.get_mut(&id)
                    && !s.remote_fin
                {
                    s.remote_fin = true;
                    if s.local_fin {
                        self.streams.remove(&id);
                    }
                    self.events.push_back(MuxEvent::Finished(id));
                }
            }
            Cmd::Psh => {
                let open = self.streams.get(&id).is_some_and(|s| !s.remote_fin);
                if open && !frame.data.is_empty() {
                    self.events.push_back(MuxEvent::Data(id, frame.data));
                }
            }
        }
    }

    /// When [`Mux::handle_timeout`] wants to run next (keep-alive only).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let k = self.keepalive?;
        let dead = self.last_heard + k.timeout;
        Some(self.next_nop.map_or(dead, |n| n.min(dead)))
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), MuxError> {
        let Some(k) = self.keepalive else {
            return Ok(());
        };
        if now >= self.last_heard + k.timeout {
            return Err(MuxError::KeepAliveTimeout(k.timeout));
        }
        if self.next_nop.is_some_and(|n| now >= n) {
            self.push(Cmd::Nop, 0, &[]);
            self.next_nop = Some(now + k.interval);
        }
        Ok(())
    }

    /// Bytes for the peer, all that is queued, or `None`.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.output.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.output))
        }
    }

    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.events.pop_front()
    }

    /// Which side this is.
    pub fn role(&self) -> Role {
        self.role
    }

    fn push(&mut self, cmd: Cmd, id: u32, data: &[u8]) {
        Frame {
            cmd,
            stream_id: id,
            data: data.to_vec(),
        }
        .encode_into(&mut self.output);
    }
}

#[cfg(test)]
#[path = "smux_tests.rs"]
mod tests;
