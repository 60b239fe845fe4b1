//! The steps every session kind shares: StartSession, opening the data channel, the
//! client end of the protocol, stop signals, and TerminateSession at the end.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::SessionError;
use crate::aws::{SessionDocument, Ssm, StartOptions, StartedSession};
use crate::proto::client::{ClientSession, InputGate};
use crate::transport::{DataKeyProvider, EngineOptions, Link, LinkOptions, LinkTarget, Predialed};

/// How long to give TerminateSession when we leave.
pub const TERMINATE_BUDGET: Duration = Duration::from_secs(3);

/// How long the agent may take to complete the handshake (it gives up after 15 s per
/// step itself, docs/protocol.md §5.2).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A started session with its data channel open and a fresh client end.
pub struct Opened {
    pub started: StartedSession,
    pub link: Link,
    pub session: ClientSession,
    /// KMS data keys, should the agent ask for an encrypted session.
    pub data_keys: Arc<dyn DataKeyProvider>,
    /// The command's set-up timeline (`-v`).
    pub timeline: crate::timeline::Timeline,
}

/// StartSession (with the retries and advice of `start`), then the data channel.
/// On a failure after StartSession the session is terminated before returning.
pub async fn open(
    ssm: &Ssm,
    target: &str,
    document: &SessionDocument,
    start_options: &StartOptions,
    link_options: &LinkOptions,
) -> Result<Opened, SessionError> {
    let ahead = Ahead::start(ssm);
    let started = start(ssm, target, document, start_options)
        .await
        .map_err(|source| SessionError::Aws {
            source,
            target: target.to_owned(),
        })?;
    attach_ahead(ssm, target, started, link_options, ahead).await
}

/// StartSession (with the retries and advice of `options`), in a task of its own: a
/// session started while this is cancelled (a Ctrl-C while a striped copy opens one
/// more lane, or while `exec` or `proxy` sets up) is still ended, see `Starting`. The
/// session comes held by a [`Started`] guard.
pub async fn start<'a>(
    ssm: &'a Ssm,
    target: &str,
    document: &SessionDocument,
    options: &StartOptions,
) -> Result<Started<'a>, crate::aws::AwsError> {
    let abandon = crate::aws::Abandon::default();
    let call = tokio::spawn({
        let (ssm, target) = (ssm.clone(), target.to_owned());
        let (document, options) = (document.clone(), options.clone());
        let abandon = abandon.clone();
        async move { crate::aws::start_session(&ssm, &target, &document, &options, &abandon).await }
    });
    let mut starting = Starting {
        ssm,
        call: Some(call),
        abandon,
    };
    let session = starting.finish().await?;
    tracing::debug!(
        session_id = session.session_id,
        document = document.name().unwrap_or("(default)"),
        "session started"
    );
    let guard = Unended {
        ssm,
        session_id: Some(session.session_id.clone()),
    };
    Ok(Started { session, guard })
}

/// A session StartSession started that nothing else ends yet: terminated in the
/// background (awaited by [`Ssm::await_background`]) when dropped, so a command stopped
/// before its data channel is up leaves no session running. [`attach_ahead`] takes it
/// over, or [`Started::terminate`] ends it at once.
pub struct Started<'a> {
    pub session: StartedSession,
    guard: Unended<'a>,
}

impl Started<'_> {
    /// TerminateSession now (best effort, bounded by [`TERMINATE_BUDGET`]).
    pub async fn terminate(self) {
        terminate(self.guard.ssm, &self.session.session_id).await;
        self.guard.disarm();
    }
}

/// The data channel's DNS, TCP and TLS, opened while StartSession is in flight on the host
/// the StreamUrl will most likely name ([`Ssm::stream_origin_guess`]). Dropped unused
/// (its task ended) when StartSession fails or the StreamUrl names another host.
pub struct Ahead {
    origin: String,
    task: tokio::task::JoinHandle<Option<Predialed>>,
}

impl Ahead {
    /// Starts dialling, when there is a guess.
    pub fn start(ssm: &Ssm) -> Option<Ahead> {
        let origin = ssm.stream_origin_guess()?.to_owned();
        let network = ssm.dialer().network;
        let to = origin.clone();
        let task = tokio::spawn(async move {
            match crate::transport::predial(&to, &network).await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::debug!("the data channel's connection opened ahead failed: {e}");
                    None
                }
            }
        });
        Some(Ahead { origin, task })
    }

    /// The connection, when it leads where `stream_url` does (waiting for it to finish
    /// opening: it started first); else `None`, and it is dropped.
    pub async fn take(mut self, stream_url: &str) -> Option<Predialed> {
        if !crate::aws::same_origin(&self.origin, stream_url) {
            tracing::debug!("the StreamUrl names another host than the one dialled ahead");
            return None;
        }
        (&mut self.task).await.ok().flatten()
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens the data channel of a session [`start`] started, upgrading on the connection
/// `ahead` opened when it leads to the StreamUrl. On a failure the session is terminated
/// before returning; when this is cancelled, in the background (by `started`'s guard).
pub async fn attach_ahead(
    ssm: &Ssm,
    target: &str,
    started: Started<'_>,
    link_options: &LinkOptions,
    ahead: Option<Ahead>,
) -> Result<Opened, SessionError> {
    let predialed = match ahead {
        Some(a) => a.take(&started.session.stream_url).await,
        None => None,
    };
    let link_target = LinkTarget {
        session_id: started.session.session_id.clone(),
        client_id: uuid::Uuid::new_v4().to_string(),
        resumer: Some(Arc::new(ssm.clone())),
        dialer: ssm.dialer(),
    };
    let link_target_timeline = link_target.dialer.network.timeline.clone();
    let ws = crate::transport::connect_reusing(
        &started.session.stream_url,
        &started.session.token,
        &link_target.client_id,
        &link_target.dialer,
        predialed,
    )
    .await;
    let link = match ws {
        Ok(ws) => Link::start(ws, link_target, link_options.clone()),
        Err(e) => {
            started.terminate().await;
            return Err(SessionError::Connect(e));
        }
    };
    // The caller ends the session from here on.
    let Started { session, guard } = started;
    guard.disarm();
    Ok(Opened {
        data_keys: ssm.data_keys(&session.session_id, target),
        timeline: link_target_timeline,
        started: session,
        link,
        session: new_client_session(),
    })
}

/// A StartSession call in flight: when dropped before it answered, it makes no new attempt
/// (`--wait` and throttling retries stop), and the session the attempt in flight may still
/// start is terminated in the background (awaited by [`Ssm::await_background`]).
struct Starting<'a> {
    ssm: &'a Ssm,
    call: Option<tokio::task::JoinHandle<Result<StartedSession, crate::aws::AwsError>>>,
    abandon: crate::aws::Abandon,
}

impl Starting<'_> {
    async fn finish(&mut self) -> Result<StartedSession, crate::aws::AwsError> {
        let Some(call) = self.call.as_mut() else {
            return Err(crate::aws::AwsError::new(
                crate::aws::AwsErrorKind::Service,
                "StartSession was already awaited",
            ));
        };
        let joined = call.await;
        self.call = None;
        joined.unwrap_or_else(|e| {
            Err(crate::aws::AwsError::new(
                crate::aws::AwsErrorKind::Service,
                format!("StartSession stopped: {e}"),
            ))
        })
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        let (Some(call), Ok(rt)) = (self.call.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        self.abandon.set();
        let ssm = self.ssm.clone();
        let task = rt.spawn(async move {
            if let Ok(Ok(started)) = call.await {
                terminate(&ssm, &started.session_id).await;
            }
        });
        self.ssm.keep_background(task);
    }
}

/// A started session nothing else will end yet: terminated in the background (awaited by
/// [`Ssm::await_background`]) when dropped armed, as [`SessionGuard`](super::stream)
/// does once it holds the session. What [`Started`] holds.
struct Unended<'a> {
    ssm: &'a Ssm,
    session_id: Option<String>,
}

impl Unended<'_> {
    fn disarm(mut self) {
        self.session_id = None;
    }
}

impl Drop for Unended<'_> {
    fn drop(&mut self) {
        let (Some(id), Ok(rt)) = (
            self.session_id.take(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let ssm = self.ssm.clone();
        let task = rt.spawn(async move { terminate(&ssm, &id).await });
        self.ssm.keep_background(task);
    }
}

/// Input to an SSH session waits for the agent's first output after the handshake
/// (see [`InputGate`]): sshd sends its banner at once, so the wait costs only the time the
/// agent takes to dial the port and read it, and closes the window in which the agent
/// acknowledges and drops input (a lost client banner makes sshd fail with "Invalid SSH
/// identification string"). The fallback bounds the wait for a server that does not
/// speak first.
pub const SSH_INPUT_GATE: InputGate = InputGate::AfterFirstOutput {
    fallback: Duration::from_secs(2),
};

/// A client end with our defaults, seeded from fresh randomness.
pub fn new_client_session() -> ClientSession {
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    ClientSession::with_defaults(now(), wall_ms, uuid::Uuid::new_v4().as_u128())
}

/// Best-effort TerminateSession, bounded by [`TERMINATE_BUDGET`].
pub async fn terminate(ssm: &Ssm, session_id: &str) {
    match tokio::time::timeout(TERMINATE_BUDGET, ssm.terminate_session(session_id)).await {
        Ok(Ok(())) => tracing::debug!(session_id, "session terminated"),
        Ok(Err(e)) => tracing::debug!(session_id, "TerminateSession failed: {e}"),
        Err(_) => tracing::debug!(session_id, "TerminateSession timed out"),
    }
}

/// The monotonic clock as the sans-IO core wants it (tokio's, so paused time works).
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// A stop request from the user or the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Hangup,
    Interrupt,
    Quit,
    Terminate,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Hangup => "SIGHUP",
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Quit => "SIGQUIT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// What ending on this signal exits with.
    pub fn failure(self) -> SessionError {
        SessionError::Interrupted(self.name())
    }
}

/// Listens for SIGHUP, SIGINT, SIGQUIT and SIGTERM for as long as it lives.
pub struct Signals {
    hup: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    quit: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            hup: signal(SignalKind::hangup()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            quit: signal(SignalKind::quit()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next signal. Cancel-safe.
    pub async fn recv(&mut self) -> StopSignal {
        let one = recv_signal;
        tokio::select! {
            _ = one(&mut self.hup) => StopSignal::Hangup,
            _ = one(&mut self.int) => StopSignal::Interrupt,
            _ = one(&mut self.quit) => StopSignal::Quit,
            _ = one(&mut self.term) => StopSignal::Terminate,
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

/// The next delivery of `s`; never, when there is no such listener (it could not be
/// installed) or it has closed. Cancel-safe.
pub async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Engine settings for a session opened with [`open`]: our handshake timeout, and KMS
/// data keys should the agent ask for an encrypted session.
pub fn engine_options(opened: &Opened) -> EngineOptions {
    EngineOptions {
        handshake_timeout: HANDSHAKE_TIMEOUT,
        data_keys: Some(opened.data_keys.clone()),
        timeline: opened.timeline.clone(),
        ..EngineOptions::default()
    }
}

/// Resolves once `stop` is true (or its sender is gone: nothing will stop us then).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
