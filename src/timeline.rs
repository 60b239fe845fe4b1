//! The set-up timeline `-v` prints: how long each step before the first remote byte took
//! (credentials, StartSession, the websocket's DNS, TCP, TLS and upgrade, the handshake,
//! the first byte), and when it ended, counted from [`start`] (the process's start).
//!
//! Each step is reported once, the first time it completes: a command that opens several
//! sessions (`scp -j N`) shows the first one's set-up, the one the user waits on.
//! Lines go to the log (target `sallyport::timeline`, INFO), never to stdout.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The steps, in the order they usually end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// StartSession's credentials (the SDK's identity resolution for the call).
    Credentials,
    /// The StartSession call, its connection included.
    StartSession,
    /// The data channel host's address lookup.
    Dns,
    /// The data channel's TCP connection (or the proxy's CONNECT tunnel).
    Tcp,
    /// The data channel's TLS handshake.
    Tls,
    /// The websocket upgrade (the HTTP round trip).
    Upgrade,
    /// The session handshake with the agent, from the websocket's opening.
    Handshake,
    /// The first remote byte written locally, from the websocket's opening.
    FirstByte,
}

impl Step {
    const ALL: [Step; 8] = [
        Step::Credentials,
        Step::StartSession,
        Step::Dns,
        Step::Tcp,
        Step::Tls,
        Step::Upgrade,
        Step::Handshake,
        Step::FirstByte,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Credentials => "credentials",
            Step::StartSession => "StartSession",
            Step::Dns => "websocket DNS",
            Step::Tcp => "websocket TCP",
            Step::Tls => "websocket TLS",
            Step::Upgrade => "websocket upgrade",
            Step::Handshake => "handshake",
            Step::FirstByte => "first byte",
        }
    }

    fn index(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

static ORIGIN: OnceLock<Instant> = OnceLock::new();
static SEEN: Mutex<[bool; 8]> = Mutex::new([false; 8]);
/// When the data channel's websocket opened, for the steps counted from it.
static OPENED: OnceLock<Instant> = OnceLock::new();

/// Marks the process's start (the first call wins).
pub fn start() {
    ORIGIN.get_or_init(Instant::now);
}

/// Reports `step`, begun at `began`, as done now: once per process.
pub fn done(step: Step, began: Instant) {
    let now = Instant::now();
    let first = SEEN
        .lock()
        .map(|mut seen| !std::mem::replace(&mut seen[step.index()], true))
        .unwrap_or(false);
    if !first {
        return;
    }
    let origin = *ORIGIN.get_or_init(|| began);
    tracing::info!(
        target: "sallyport::timeline",
        "set-up: {} {} ms (done at {} ms)",
        step.name(),
        ms(now.saturating_duration_since(began)),
        ms(now.saturating_duration_since(origin)),
    );
}

/// The websocket is open: [`Step::Handshake`] and [`Step::FirstByte`] count from here.
pub fn websocket_opened() {
    OPENED.get_or_init(Instant::now);
}

/// Reports a step counted from the websocket's opening (nothing before it opened).
pub fn since_open(step: Step) {
    if let Some(opened) = OPENED.get() {
        done(step, *opened);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
