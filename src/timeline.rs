//! The set-up timeline `-v` prints: how long each step before the first remote byte took
//! (credentials, StartSession, the websocket's DNS, TCP, TLS and upgrade, the handshake,
//! the first byte), and when it ended, counted from the [`Timeline`]'s creation (when
//! the command built its network settings, just after the process started).
//!
//! Each step is reported once per [`Timeline`], the first time it completes: a command
//! that opens several sessions (`scp -j N`) shares one and shows the first one's set-up,
//! the one the user waits on. The timeline is owned by the command's network settings
//! ([`crate::transport::Network`]) and passed down, not kept in a process-wide static.
//! Lines go to the log (target `sallyport::timeline`, INFO), never to stdout.

use std::sync::{Arc, Mutex, OnceLock};
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

/// One command's set-up timeline; clones share it.
#[derive(Clone, Debug)]
pub struct Timeline(Arc<State>);

#[derive(Debug)]
struct State {
    origin: Instant,
    seen: Mutex<[bool; 8]>,
    /// When the data channel's websocket opened, for the steps counted from it.
    opened: OnceLock<Instant>,
}

impl Default for Timeline {
    /// A timeline starting now.
    fn default() -> Self {
        Timeline(Arc::new(State {
            origin: Instant::now(),
            seen: Mutex::new([false; 8]),
            opened: OnceLock::new(),
        }))
    }
}

impl Timeline {
    /// Reports `step`, begun at `began`, as done now: once per timeline.
    pub fn done(&self, step: Step, began: Instant) {
        let now = Instant::now();
        let first = self
            .0
            .seen
            .lock()
            .map(|mut seen| !std::mem::replace(&mut seen[step.index()], true))
            .unwrap_or(false);
        if !first {
            return;
        }
        tracing::info!(
            target: "sallyport::timeline",
            "set-up: {} {} ms (done at {} ms)",
            step.name(),
            ms(now.saturating_duration_since(began)),
            ms(now.saturating_duration_since(self.0.origin.min(began))),
        );
    }

    /// The websocket is open: [`Step::Handshake`] and [`Step::FirstByte`] count from here.
    pub fn websocket_opened(&self) {
        self.0.opened.get_or_init(Instant::now);
    }

    /// Reports a step counted from the websocket's opening (nothing before it opened).
    pub fn since_open(&self, step: Step) {
        if let Some(opened) = self.0.opened.get() {
            self.done(step, *opened);
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
