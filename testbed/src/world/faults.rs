//! Fault injection for the relay: the ways the real service and networks misbehave
//! (docs/protocol.md §2.4, §6), one field each, all off by default. A slow instance
//! (`--instance-write-rate`) is the agent's: [`crate::agent::AgentSettings`].

use std::time::Duration;

use sallyport::proto::message::{Message, MessageType};

/// What the relay does to a session's traffic.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Close every client websocket this long after it opened, with close code 1000, as the
    /// service recycles data channels (about hourly in production).
    pub recycle_every: Option<Duration>,
    /// Per-direction impairments of stream messages.
    pub to_client: Impairment,
    pub to_agent: Impairment,
    /// Answer ResumeSession with 403 AccessDenied.
    pub refuse_resume: bool,
    /// Send `pause_publication` to the client, then `start_publication` when it ends.
    pub pause: Option<Window>,
    /// The relay goes silent: reads nothing (not even pings) and sends nothing, then
    /// carries on with whatever is left. The websocket stays open.
    pub vanish: Option<Window>,
    /// The agent freezes: nothing reaches it or leaves it (pings still answered); what
    /// queued up meanwhile is delivered when it ends.
    pub stall: Option<Window>,
    /// End the session after this long without client input, as the service does.
    pub idle_timeout: Option<Duration>,
    /// End the session this long after it started.
    pub max_duration: Option<Duration>,
    /// Send one malformed frame of this kind to the client after the handshake.
    pub hostile: Option<Hostile>,
    /// Seed for the impairment dice (runs are reproducible).
    pub seed: u64,
    /// `--relay-queue`: messages the relay holds in flight per direction before it stops
    /// reading from the sender; `None`: [`crate::mgs::relay::DEFAULT_QUEUE`]. See [`crate::mgs::relay`].
    pub relay_queue: Option<usize>,
    /// `--relay-rate`: bytes per second each relay direction carries (a bottleneck link
    /// of its own per direction); `None`: as fast as the machine goes.
    pub relay_rate: Option<u64>,
    /// `--jitter`: extra one-way delay per frame, uniform in 0..=jitter, order kept.
    pub jitter: Duration,
    /// `--kill-session N:BYTES`: end the Nth session started, as TerminateSession would.
    pub kill_session: Option<KillSession>,
}

/// Ends one session mid-stream: the Nth StartSession (1-based, counting every call on
/// the instance, throttled ones included), once its agent has sent the client more than
/// `after_bytes` of stream data. The service says the session ended and refuses to
/// resume it, as when someone calls TerminateSession; the other sessions carry on.
#[derive(Clone, Debug, Default)]
pub struct KillSession {
    pub nth: u32,
    pub after_bytes: u64,
    victim: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl KillSession {
    pub fn new(nth: u32, after_bytes: u64) -> KillSession {
        KillSession {
            nth,
            after_bytes,
            victim: Default::default(),
        }
    }

    /// Parses `N:BYTES`, e.g. `2:3000000`.
    pub fn parse(s: &str) -> Result<KillSession, String> {
        let bad = || format!("expected N:BYTES such as 2:3000000, got {s:?}");
        let (n, b) = s.split_once(':').ok_or_else(bad)?;
        let nth: u32 = n.trim().parse().map_err(|_| bad())?;
        let after_bytes = b.trim().parse().map_err(|_| bad())?;
        if nth == 0 {
            return Err("N counts from 1".to_owned());
        }
        Ok(KillSession::new(nth, after_bytes))
    }

    /// StartSession call number `ordinal` (0-based) made `session_id`.
    pub fn started(&self, ordinal: u32, session_id: &str) {
        if ordinal + 1 == self.nth {
            *self.victim.lock().unwrap_or_else(|e| e.into_inner()) = Some(session_id.to_owned());
        }
    }

    /// Whether `session_id`, having sent `agent_bytes`, is to be ended now.
    pub fn due(&self, session_id: &str, agent_bytes: u64) -> bool {
        agent_bytes > self.after_bytes
            && self
                .victim
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_deref()
                == Some(session_id)
    }
}

/// A stretch of time measured from the start of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub after: Duration,
    pub lasts: Duration,
}

impl Window {
    /// Parses `AFTER+LASTS`, e.g. `2s+3s`.
    pub fn parse(
        s: &str,
        parse_duration: impl Fn(&str) -> Result<Duration, String>,
    ) -> Result<Window, String> {
        let (a, b) = s
            .split_once('+')
            .ok_or_else(|| format!("expected AFTER+DURATION such as 2s+3s, got {s:?}"))?;
        Ok(Window {
            after: parse_duration(a)?,
            lasts: parse_duration(b)?,
        })
    }
}

/// The service's text when it ends an idle session (seen in aws/amazon-ssm-agent#261).
pub const IDLE_TEXT: &str = "Your session timed out due to inactivity and has been terminated.";
/// The text for the maximum session duration is not documented anywhere we could read:
/// this wording is a guess.
pub const MAX_DURATION_TEXT: &str =
    "Your session has been terminated because it reached the maximum session duration.";

/// Loss, duplication and reordering at given probabilities.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    pub drop: f64,
    pub duplicate: f64,
    /// Probability that a message is held back (delivered after the next few).
    pub reorder: f64,
}

impl Impairment {
    pub fn is_none(&self) -> bool {
        self.drop <= 0.0 && self.duplicate <= 0.0 && self.reorder <= 0.0
    }
}

impl FaultPlan {
    pub fn resume_refusal(&self, _session_id: &str) -> Option<String> {
        self.refuse_resume
            .then(|| "User is not authorized to perform: ssm:ResumeSession".to_owned())
    }
}

/// Malformed frames a hostile or broken relay could send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Fewer bytes than a header.
    Short,
    /// HeaderLength is not 116.
    WrongHeaderLength,
    /// Payload digest does not match.
    WrongDigest,
    /// PayloadLength claims far more than the frame holds.
    AbsurdLength,
    /// A message type nobody defined.
    UnknownType,
    /// A stream message with a negative sequence number.
    NegativeSequence,
    /// A stream message far beyond any window.
    FarSequence,
    /// An acknowledge whose JSON is half a megabyte of garbage.
    HugeJson,
    /// A websocket message of about 5 MB (a real message, then junk), over any websocket
    /// message size limit.
    Oversized,
}

impl Hostile {
    pub const ALL: [Hostile; 9] = [
        Hostile::Short,
        Hostile::WrongHeaderLength,
        Hostile::WrongDigest,
        Hostile::AbsurdLength,
        Hostile::UnknownType,
        Hostile::NegativeSequence,
        Hostile::FarSequence,
        Hostile::HugeJson,
        Hostile::Oversized,
    ];

    pub fn parse(s: &str) -> Option<Hostile> {
        Hostile::ALL.into_iter().find(|h| h.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Hostile::Short => "short",
            Hostile::WrongHeaderLength => "wrong-header-length",
            Hostile::WrongDigest => "wrong-digest",
            Hostile::AbsurdLength => "absurd-length",
            Hostile::UnknownType => "unknown-type",
            Hostile::NegativeSequence => "negative-sequence",
            Hostile::FarSequence => "far-sequence",
            Hostile::HugeJson => "huge-json",
            Hostile::Oversized => "oversized",
        }
    }

    /// The frame, modelled on a real agent message `base` (an output_stream_data).
    pub fn frame(self, base: &Message) -> Vec<u8> {
        let mut m = base.clone();
        match self {
            Hostile::Short => return base.encode()[..60].to_vec(),
            Hostile::WrongHeaderLength => {
                let mut b = base.encode();
                b[3] = 0x60;
                return b;
            }
            Hostile::WrongDigest => {
                let mut b = base.encode();
                b[80] ^= 0xff;
                return b;
            }
            Hostile::AbsurdLength => {
                let mut b = base.encode();
                b[116..120].copy_from_slice(&u32::MAX.to_be_bytes());
                return b;
            }
            Hostile::UnknownType => m.message_type = MessageType::Other("agent_teleport".into()),
            Hostile::NegativeSequence => m.sequence_number = -5,
            Hostile::FarSequence => m.sequence_number = i64::MAX - 1,
            Hostile::HugeJson => {
                m.message_type = MessageType::Acknowledge;
                m.payload = [
                    b"{\"AcknowledgedMessageType\":\"".as_slice(),
                    &vec![b'x'; 512 * 1024],
                ]
                .concat();
            }
            Hostile::Oversized => {
                // Junk after a real message rather than a 5 MB payload: hashing one takes
                // the debug-built testbed long enough to race the client's input linger.
                let mut b = base.encode();
                b.resize(b.len() + (5 << 20), b'x');
                return b;
            }
        }
        m.encode()
    }
}

/// Deterministic dice for the impairments (xorshift64*).
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(seed.max(1))
    }

    /// True with probability `p`.
    pub fn roll(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Applies an [`Impairment`] to a stream of frames. Control frames are impaired too: the
/// real path can lose acks as well as data.
pub struct Impairer {
    imp: Impairment,
    dice: Dice,
    held: Option<Vec<u8>>,
}

impl Impairer {
    pub fn new(imp: Impairment, seed: u64) -> Impairer {
        Impairer {
            imp,
            dice: Dice::new(seed),
            held: None,
        }
    }

    /// What to deliver now in place of `frame` (zero, one, two or three frames).
    pub fn apply(&mut self, frame: Vec<u8>) -> Vec<Vec<u8>> {
        if self.imp.is_none() {
            return vec![frame];
        }
        let mut out = Vec::new();
        if self.dice.roll(self.imp.drop) {
            // Lost; a held frame still goes out behind later traffic.
        } else if self.held.is_none() && self.dice.roll(self.imp.reorder) {
            self.held = Some(frame);
            return out;
        } else {
            if self.dice.roll(self.imp.duplicate) {
                out.push(frame.clone());
            }
            out.push(frame);
        }
        if let Some(h) = self.held.take() {
            out.push(h);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impairer_rates_are_roughly_right_and_nothing_is_invented() {
        let mut imp = Impairer::new(
            Impairment {
                drop: 0.1,
                duplicate: 0.1,
                reorder: 0.1,
            },
            42,
        );
        let mut delivered = Vec::new();
        for i in 0u32..10_000 {
            delivered.extend(imp.apply(i.to_be_bytes().to_vec()));
        }
        let n = delivered.len();
        assert!((9_000..11_500).contains(&n), "{n}");
        let mut seen: Vec<u32> = delivered
            .iter()
            .map(|f| u32::from_be_bytes(f[..4].try_into().unwrap()))
            .collect();
        let reordered = seen.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(reordered > 100, "{reordered}");
        seen.sort();
        seen.dedup();
        assert!(seen.len() < 10_000 && seen.len() > 8_500);
    }

    #[test]
    fn hostile_frames_are_what_they_say() {
        let base = Message {
            message_type: MessageType::OutputStreamData,
            schema_version: 1,
            created_date: 1,
            sequence_number: 3,
            flags: 0,
            message_id: uuid::Uuid::from_u128(1),
            payload_type: 1,
            payload: b"data".to_vec(),
        };
        for h in Hostile::ALL {
            assert_eq!(Hostile::parse(h.name()), Some(h));
            let f = h.frame(&base);
            let decoded = Message::decode(&f);
            match h {
                Hostile::Short
                | Hostile::WrongHeaderLength
                | Hostile::WrongDigest
                | Hostile::AbsurdLength
                | Hostile::Oversized => assert!(decoded.is_err(), "{h:?}"),
                _ => assert!(decoded.is_ok(), "{h:?}"),
            }
        }
    }
}
