//! The Message Gateway Service end of the data-channel websocket.
//!
//! One agent runs per session for as long as the session lives; client websockets come
//! and go (drops, the service's recycles, ResumeSession). Each websocket is checked
//! (opening text frame with the current token), then carries frames between the client
//! and the agent with the configured delay and faults. A newer websocket for the same
//! session replaces the older one. Agent messages produced while no client websocket is
//! attached are dropped: whether the real service buffers them is unverified (docs/protocol.md
//! §13), and dropping is the harsher case (the agent must retransmit).
//!
//! Queues. Each direction holds at most `--relay-queue` messages in flight inside the
//! relay (default [`DEFAULT_QUEUE`], the agent's own buffer size): client to agent, from
//! the websocket read through the delay line to the agent taking the frame from its inbox;
//! agent to client, from taking the agent's output through the delay line to the
//! websocket write. At the bound the relay stops reading from the sender, as a full TCP
//! path would; it never drops for lack of room (the one exception: an extra copy made by
//! `--duplicate`, or a frame `--reorder` held back, is dropped when there is no room for
//! it). How much the real service buffers, and whether it ever drops, is unknown
//! (docs/protocol.md §13.6): the bound is a guess at its shape, not its size. The two
//! directions run in separate tasks (reads in [`crate::mgs::relay_paths`], writes here), so a
//! client that does not read never stops the relay reading it, and the other way round.
//!
//! Counts of the stream data each way ([`crate::world::data_stats`]) are kept per session and
//! printed on stderr when the session ends.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::mgs::frames::{OpenDataChannel, channel_closed_frame, publication_frame};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use sallyport::proto::message::{Message, MessageType};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::agent::link::{self, InboxSender};
use crate::agent::{self, AgentIo, AgentOut, sleep_opt};
use crate::mgs::relay_paths::{LinkShape, ToAgent, ToAgentPlan, delay_line};
use crate::world::backlog::Token;
use crate::world::config::TestbedConfig;
use crate::world::data_stats::{DataStats, SessionEntry, SessionStats, StatsBook};
use crate::world::faults::{Hostile, Impairer, Window};
use crate::world::state::{SessionRecord, Sessions};

/// How long a client may take to send its opening text frame.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages the relay holds per direction without `--relay-queue`: the agent's own
/// outgoing and incoming buffer size (docs/protocol.md §6.4), so that the default is bounded
/// but never the limit that matters.
pub const DEFAULT_QUEUE: usize = 100_000;

/// The live agents, by session ID.
#[derive(Default)]
pub struct Hub {
    agents: Mutex<HashMap<String, Arc<AgentHandle>>>,
    /// The testbed's KMS, for agents of instances that demand encryption.
    kms: Option<Arc<crate::world::kms_keys::KmsState>>,
    /// Stream data counts of every session served.
    stats: Arc<StatsBook>,
}

/// Agent output on its way to the client, holding its place in the relay's count.
type Outbound = (AgentOut, Token);

pub(crate) struct AgentHandle {
    /// When the session's agent started; fault windows count from here.
    pub(crate) started: Instant,
    /// Last client stream input, for the idle timeout.
    pub(crate) last_input: Mutex<Instant>,
    agent_task: Mutex<Option<tokio::task::AbortHandle>>,
    pub(crate) to_agent: InboxSender,
    /// Where agent output goes: the attached websocket's queue, if any.
    attached: Mutex<Option<mpsc::UnboundedSender<Outbound>>>,
    /// Set once the agent has ended the session (its channel_closed text).
    ended: Mutex<Option<String>>,
    pub(crate) stats: Arc<SessionStats>,
    /// Messages the relay holds at most, per direction.
    pub(crate) queue: usize,
}

impl Hub {
    pub fn with_kms(kms: Arc<crate::world::kms_keys::KmsState>) -> Hub {
        Hub {
            kms: Some(kms),
            ..Hub::default()
        }
    }

    /// Every session's stream data counts so far, by session ID.
    pub fn data_stats(&self) -> Vec<SessionEntry> {
        self.stats.all()
    }

    /// One session's counts, live (with the relay's queue counts to wait on); made now
    /// if the session has not been served yet.
    pub fn session_stats(&self, session_id: &str) -> Arc<SessionStats> {
        self.stats.live(session_id)
    }

    fn attach(
        &self,
        session: &Arc<SessionRecord>,
        config: &Arc<TestbedConfig>,
    ) -> (Arc<AgentHandle>, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let handle = agents
            .entry(session.session_id.clone())
            .or_insert_with(|| {
                spawn_agent(
                    session.clone(),
                    config,
                    self.kms.clone(),
                    self.stats.clone(),
                )
            })
            .clone();
        // A newer websocket replaces the older one (whose queue then ends).
        *handle.attached.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        (handle, rx)
    }

    /// The session is over: stop its agent (closing its TCP connection) and forget it.
    /// Prints the session's counts on stderr, once.
    fn forget(&self, session_id: &str) {
        let handle = self
            .agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session_id);
        if let Some(task) = handle.and_then(|h| {
            h.agent_task
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
        }) {
            task.abort();
        }
        if let Some(stats) = self.stats.end(session_id) {
            print_ended(session_id, &stats);
        }
    }
}

/// The one line a benchmark reads when a session ends (stderr, whatever the log level).
fn print_ended(session_id: &str, stats: &DataStats) {
    eprintln!(
        "{}",
        crate::world::data_stats::ended_line(session_id, stats)
    );
}

fn spawn_agent(
    session: Arc<SessionRecord>,
    config: &TestbedConfig,
    kms: Option<Arc<crate::world::kms_keys::KmsState>>,
    book: Arc<StatsBook>,
) -> Arc<AgentHandle> {
    let session_id = session.session_id.clone();
    let stats = book.session(&session_id);
    let queue = config.faults.relay_queue.unwrap_or(DEFAULT_QUEUE).max(1);
    let (to_client, mut from_agent) = link::outbox(queue);
    let (to_agent, from_client) = link::inbox(&to_client);
    let handle = Arc::new(AgentHandle {
        started: Instant::now(),
        last_input: Mutex::new(Instant::now()),
        agent_task: Mutex::new(None),
        to_agent,
        attached: Mutex::new(None),
        ended: Mutex::new(None),
        stats,
        queue,
    });
    let task = tokio::spawn(agent::run(
        session,
        config.agent.clone(),
        AgentIo {
            from_client,
            to_client,
            kms,
        },
    ));
    *handle.agent_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
    // Forward agent output to whichever websocket is attached; drop it when none is.
    // Takes from the agent only while the relay holds fewer than `queue` messages for the
    // client: a client that does not read stops the agent's readers, not our memory.
    let h = handle.clone();
    tokio::spawn(async move {
        let held = h.stats.to_client_held.clone();
        loop {
            held.wait_below(h.queue).await;
            let Some(out) = from_agent.recv().await else {
                break;
            };
            match &out {
                AgentOut::Frame(f) => h.stats.agent_frame(f),
                AgentOut::Close { output } => {
                    *h.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(output.clone());
                    // The session is over whether or not a client is there to hear it.
                    if let Some(s) = book.end(&session_id) {
                        print_ended(&session_id, &s);
                    }
                }
            }
            let attached = h.attached.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(tx) = attached {
                let _ = tx.send((out, held.hold(1)));
            }
        }
        h.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(String::new);
        if let Some(s) = book.end(&session_id) {
            print_ended(&session_id, &s);
        }
    });
    handle
}

/// Serves one accepted data-channel websocket for `session` until it closes.
pub async fn serve_data_channel<S>(
    mut ws: WebSocketStream<S>,
    session: Arc<SessionRecord>,
    config: Arc<TestbedConfig>,
    sessions: Arc<Sessions>,
    hub: Arc<Hub>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The token may have been replaced by ResumeSession since the upgrade was accepted.
    let current = sessions.get(&session.session_id).unwrap_or(session);
    if let Err(why) = check_opening_frame(&mut ws, &current).await {
        let close = CloseFrame {
            code: CloseCode::Policy,
            reason: why.clone().into(),
        };
        let _ = ws.close(Some(close)).await;
        anyhow::bail!("refused data channel: {why}");
    }
    let session = current;
    let (handle, from_agent) = hub.attach(&session, &config);
    let already_ended = handle
        .ended
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (mut sink, stream) = ws.split();
    if let Some(output) = already_ended {
        send_channel_closed(&mut sink, &session.session_id, &output).await?;
        hub.forget(&session.session_id);
        let _ = sink.close().await;
        return Ok(());
    }
    let ends = Ends {
        session,
        sessions,
        hub,
        handle: handle.clone(),
        config,
    };
    let (mut to_client, plan) = ToClient::new(sink, from_agent, ends);
    // Client -> agent runs in tasks of its own; dropping `reader` stops them.
    let mut reader = crate::mgs::relay_paths::spawn_to_agent(stream, handle, plan);
    // A failed write ends at once; any other end closes the websocket first.
    let result = to_client.run(&mut reader).await?;
    drop(reader);
    let _ = to_client.sink.close().await;
    result
}

/// What one websocket serves: the session, where sessions end, and its agent.
struct Ends {
    session: Arc<SessionRecord>,
    sessions: Arc<Sessions>,
    hub: Arc<Hub>,
    handle: Arc<AgentHandle>,
    config: Arc<TestbedConfig>,
}

/// After one event: go on, or end the websocket with this result.
type Step = anyhow::Result<ControlFlow<anyhow::Result<()>>>;

/// The agent-to-client direction of one websocket, with the session's timed events
/// (pause, vanish, stall, idle and maximum duration, recycle, termination).
struct ToClient<S> {
    sink: SplitSink<WebSocketStream<S>, WsMessage>,
    ends: Ends,
    /// Agent output after the delay line.
    delayed: mpsc::UnboundedReceiver<Outbound>,
    imp: Impairer,
    hostile: Option<Hostile>,
    /// The fault windows as instants; each is taken once over.
    pause: Option<(Instant, Instant)>,
    pause_sent: bool,
    vanish: Option<(Instant, Instant)>,
    stall: Option<(Instant, Instant)>,
    /// Frames held while the agent is stalled, and their places in the queue count.
    held: Vec<Vec<u8>>,
    held_tokens: Vec<Token>,
    max_end: Option<Instant>,
    recycle_at: Option<Instant>,
    terminated_check: tokio::time::Interval,
}

impl<S> ToClient<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Sets up this direction and the fault windows; also returns the plan of the other
    /// direction, whose faults share the seed and windows.
    fn new(
        sink: SplitSink<WebSocketStream<S>, WsMessage>,
        from_agent: mpsc::UnboundedReceiver<Outbound>,
        ends: Ends,
    ) -> (ToClient<S>, ToAgentPlan) {
        let faults = &ends.config.faults;
        let seed = faults.seed ^ rand::random::<u64>();
        let imp = Impairer::new(faults.to_client, seed.rotate_left(17));
        let link = LinkShape {
            one_way: ends.config.rtt / 2,
            rate: faults.relay_rate,
            jitter: faults.jitter,
        };
        let delayed = delay_line(from_agent, link, |(out, _)| match out {
            AgentOut::Frame(f) => f.len(),
            AgentOut::Close { .. } => 0,
        });
        let recycle_at = faults.recycle_every.map(|d| Instant::now() + d);
        let hostile = faults.hostile;
        let terminated_check = tokio::time::interval(Duration::from_millis(200));
        let base = ends.handle.started;
        let at = |w: Option<Window>| w.map(|w| (base + w.after, base + w.after + w.lasts));
        let now = Instant::now();
        // Windows already over when this websocket opened do not happen again.
        let live = |w: Option<(Instant, Instant)>| w.filter(|(_, end)| *end > now);
        let pause = live(at(faults.pause));
        // A vanish swallows the websockets open when it begins, not the ones a resume opens.
        let vanish = at(faults.vanish).filter(|(start, _)| *start > now);
        let stall = live(at(faults.stall));
        let plan = ToAgentPlan {
            imp: Impairer::new(faults.to_agent, seed),
            link,
            vanish,
            stall,
        };
        let max_end = faults.max_duration.map(|d| base + d);
        let to_client = ToClient {
            sink,
            ends,
            delayed,
            imp,
            hostile,
            pause,
            pause_sent: false,
            vanish,
            stall,
            held: Vec::new(),
            held_tokens: Vec::new(),
            max_end,
            recycle_at,
            terminated_check,
        };
        (to_client, plan)
    }

    /// Handles events until the websocket ends: `Err` for a failed write, else how it
    /// ended (the client's side's end among them).
    async fn run(&mut self, reader: &mut ToAgent) -> anyhow::Result<anyhow::Result<()>> {
        loop {
            if let ControlFlow::Break(result) = self.step(reader).await? {
                return Ok(result);
            }
        }
    }

    /// Waits for the next event and handles it.
    async fn step(&mut self, reader: &mut ToAgent) -> Step {
        let idle_end = self.ends.config.faults.idle_timeout.map(|d| {
            *self
                .ends
                .handle
                .last_input
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                + d
        });
        let pause_next = self.pause.map(|(s, e)| if self.pause_sent { e } else { s });
        let stall_end = self
            .stall
            .map(|(_, e)| e)
            .filter(|e| *e > Instant::now() && !self.held.is_empty());
        tokio::select! {
            _ = sleep_opt(self.vanish.map(|(s, _)| s)) => self.vanish_now().await,
            _ = sleep_opt(pause_next) => self.pause_or_resume().await?,
            _ = sleep_opt(stall_end) => self.release_held().await?,
            _ = sleep_opt([idle_end, self.max_end].into_iter().flatten().min()) => {
                let text = self.end_text(Instant::now());
                return self.end_session(text).await;
            }
            // The client left (close frame, end of stream or error); the agent stays for a
            // resume.
            done = reader.done() => return Ok(ControlFlow::Break(done)),
            out = self.delayed.recv() => return self.forward(out).await,
            _ = sleep_opt(self.recycle_at) => {
                // The service's periodic recycle: a normal close; the client must resume.
                let close = CloseFrame { code: CloseCode::Normal, reason: "recycle".into() };
                let _ = self.sink.send(WsMessage::Close(Some(close))).await;
                return Ok(ControlFlow::Break(Ok(())));
            }
            _ = self.terminated_check.tick() => return self.check_terminated().await,
        }
        Ok(ControlFlow::Continue(()))
    }

    /// A black hole: no writes (the reader stops reading meanwhile), then carry on.
    async fn vanish_now(&mut self) {
        let base = self.ends.handle.started;
        let (_, end) = self.vanish.take().unwrap_or((base, base));
        tokio::time::sleep_until(end).await;
        while self.delayed.try_recv().is_ok() {}
    }

    /// The pause window begins (pause_publication) or ends (start_publication).
    async fn pause_or_resume(&mut self) -> anyhow::Result<()> {
        let kind = if self.pause_sent {
            self.pause = None;
            MessageType::StartPublication
        } else {
            self.pause_sent = true;
            MessageType::PausePublication
        };
        self.sink
            .send(WsMessage::binary(publication_frame(kind)))
            .await?;
        Ok(())
    }

    /// The stall is over: what the agent said meanwhile reaches the client.
    async fn release_held(&mut self) -> anyhow::Result<()> {
        for f in self.held.drain(..) {
            self.sink.send(WsMessage::binary(f)).await?;
        }
        self.held_tokens.clear();
        Ok(())
    }

    /// The service's text for a session it ends at `t`: maximum duration or idle.
    fn end_text(&self, t: Instant) -> &'static str {
        if self.max_end.is_some_and(|m| t >= m) {
            crate::world::faults::MAX_DURATION_TEXT
        } else {
            crate::world::faults::IDLE_TEXT
        }
    }

    /// Tells the client the session ended with `output` and forgets the session.
    async fn end_session(&mut self, output: &str) -> Step {
        let id = &self.ends.session.session_id;
        send_channel_closed(&mut self.sink, id, output).await?;
        self.ends.hub.forget(id);
        Ok(ControlFlow::Break(Ok(())))
    }

    /// Agent output after the delay line: frames pass the faults to the client; the
    /// agent's close ends the session; `None` means a newer websocket took over.
    async fn forward(&mut self, out: Option<Outbound>) -> Step {
        match out {
            Some((AgentOut::Frame(f), token)) => {
                self.send_frame(f, token).await?;
                Ok(ControlFlow::Continue(()))
            }
            Some((AgentOut::Close { output }, _)) => self.end_session(&output).await,
            None => Ok(ControlFlow::Break(Ok(()))),
        }
    }

    /// One agent frame to the client, through the impairments (and the hostile frame
    /// first, once); held while the agent is stalled.
    async fn send_frame(&mut self, f: Vec<u8>, token: Token) -> anyhow::Result<()> {
        if let Some(h) = self.hostile.filter(|_| is_after_handshake(&f)) {
            self.hostile = None;
            if let Ok(base) = Message::decode(&f) {
                self.sink.send(WsMessage::binary(h.frame(&base))).await?;
            }
        }
        for f in self.imp.apply(f) {
            let now = Instant::now();
            if self.stall.is_some_and(|(s, e)| now >= s && now < e) {
                self.held.push(f);
            } else {
                self.sink.send(WsMessage::binary(f)).await?;
            }
        }
        if !self.held.is_empty() {
            self.held_tokens.push(token);
        }
        Ok(())
    }

    /// Ends the session if it was terminated (or `--kill-session` picks it now).
    async fn check_terminated(&mut self) -> Step {
        let ends = &self.ends;
        let id = &ends.session.session_id;
        let killed = ends
            .config
            .faults
            .kill_session
            .as_ref()
            .is_some_and(|k| k.due(id, ends.handle.stats.snapshot().agent_bytes));
        if killed {
            ends.sessions.terminate(id);
        }
        if killed || ends.sessions.is_terminated(id) {
            return self.end_session("").await;
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// Output data (not the handshake): where a hostile frame does the most harm.
fn is_after_handshake(frame: &[u8]) -> bool {
    Message::decode(frame)
        .is_ok_and(|m| m.message_type == MessageType::OutputStreamData && m.payload_type == 1)
}

async fn check_opening_frame<S>(
    ws: &mut WebSocketStream<S>,
    session: &SessionRecord,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = tokio::time::timeout(OPEN_TIMEOUT, ws.next())
        .await
        .map_err(|_| "no opening frame".to_owned())?;
    let text = match first {
        Some(Ok(WsMessage::Text(t))) => t.to_string(),
        _ => return Err("the first frame must be the OpenDataChannel text frame".into()),
    };
    let open: OpenDataChannel =
        serde_json::from_str(&text).map_err(|e| format!("bad opening frame: {e}"))?;
    if open.token_value != session.token {
        return Err("invalid token".into());
    }
    tracing::debug!(client_version = open.client_version, "data channel opened");
    Ok(())
}

async fn send_channel_closed<S>(sink: &mut S, session_id: &str, output: &str) -> anyhow::Result<()>
where
    S: futures_util::Sink<WsMessage> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    sink.send(WsMessage::binary(channel_closed_frame(session_id, output)))
        .await?;
    Ok(())
}
