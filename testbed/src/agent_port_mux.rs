//! The Port plugin's smux mode (PROTOCOL.md §7.2): the agent is the smux server. Each
//! stream the client opens is one TCP connection to the destination; a failed dial sends
//! the ConnectToPortError flag and closes the stream; EOF or an error on either side
//! closes both the stream and the connection (the agent copies both ways and closes both
//! when the first copy ends).
//!
//! The smux byte stream goes out in Output messages of at most `chunk_size` bytes cut
//! with no regard to frame boundaries, one every `pace`, as the agent's bridge reads its
//! smux socket. Keep-alive NOPs (and the 30 s dead-peer rule) are on only for agents up to
//! 3.1.1511.0 or clients up to 1.2.331.0, as on the agent.
//!
//! Back-pressure, as smux v1 gives it: stream data waits in the session's receive buffer
//! until its destination takes it (at `--instance-write-rate` if set, one schedule for
//! the session, [`crate::write_rate`]). The buffer holds [`RECEIVE_BUFFER`] bytes (smux's
//! MaxReceiveBuffer); when it is full the agent stops reading client frames and holds
//! back the acknowledgement of the last one until there is room again, as the agent's
//! handler blocks writing into a smux session that stopped reading (PROTOCOL.md §6.4, §6.6).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::agent_channel::AgentEvent;
use sallyport::proto::payload::{PayloadFlag, PayloadType};
use sallyport::session::smux::{KeepAlive, Mux, MuxEvent, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use crate::agent::{
    AgentIo, AgentSettings, Replies, Shared, compare_versions, feed_held, finish, next_timer, now,
    on_timer, send_data_now, send_now, sleep_opt,
};
use crate::backlog::{Backlog, Token};
use crate::state::SessionRecord;
use crate::write_rate::{InstanceRate, write_rated};

/// Smux bytes queued for the pacer beyond which destination reads wait.
const OUTBOX_LIMIT: usize = 256 * 1024;
/// Bytes read from a destination socket at once (io.Copy's buffer).
const READ_SIZE: usize = 32 * 1024;
/// Client stream data not yet written to its destination beyond which the agent stops
/// reading client frames (smux v1 MaxReceiveBuffer, PROTOCOL.md §14).
pub const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// Client stream data on its way to a destination, holding its bytes in the receive buffer.
type Pending = (Vec<u8>, Token);

enum StreamConn {
    /// Dialing; client data waits here.
    Dialing(Vec<Pending>),
    Connected {
        to_tcp: mpsc::UnboundedSender<Pending>,
        reader: tokio::task::JoinHandle<()>,
    },
}

/// What the mux needs to hand client data to destinations.
struct Destinations {
    streams: HashMap<u32, StreamConn>,
    target: String,
    dial_tx: mpsc::UnboundedSender<(u32, std::io::Result<TcpStream>)>,
    /// The receive buffer: bytes accepted from the client and not yet written.
    received: Arc<Backlog>,
    rate: InstanceRate,
}

enum TcpEvent {
    Data(u32, Vec<u8>),
    Eof(u32),
}

/// Smux bytes waiting for the pacer.
#[derive(Default)]
struct Outbox {
    bytes: Mutex<VecDeque<u8>>,
    ready: Notify,
}

impl Outbox {
    fn push(&self, data: Vec<u8>) {
        self.bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(data);
        self.ready.notify_one();
    }
    fn len(&self) -> usize {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    fn take(&self, max: usize) -> Vec<u8> {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let n = b.len().min(max);
        b.drain(..n).collect()
    }
}

pub async fn run(
    ch: Shared,
    session: &SessionRecord,
    client_version: &str,
    target: String,
    settings: AgentSettings,
    mut io: AgentIo,
) -> anyhow::Result<()> {
    let keepalive = (compare_versions(&session.instance.agent_version, "3.1.1511.0").is_le()
        || compare_versions(client_version, "1.2.331.0").is_le())
    .then(KeepAlive::default);
    let mut mux = Mux::new(Role::Server, keepalive, now());
    let outbox = Arc::new(Outbox::default());
    let sent = Arc::new(Notify::new());
    let pacer = tokio::spawn(pace_out(
        outbox.clone(),
        ch.clone(),
        io.to_client.clone(),
        settings.clone(),
        sent.clone(),
    ));
    let (dial_tx, mut dial_rx) = mpsc::unbounded_channel::<(u32, std::io::Result<TcpStream>)>();
    let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpEvent>(16);
    let mut dest = Destinations {
        streams: HashMap::new(),
        target,
        dial_tx,
        received: Backlog::new(),
        rate: InstanceRate::new(settings.instance_write_rate),
    };
    let received = dest.received.clone();
    // The acks of the frame that filled the receive buffer, sent when there is room.
    let mut held: Option<Replies> = None;
    let end = 'session: loop {
        if let Some(bytes) = mux.poll_transmit() {
            outbox.push(bytes);
        }
        let room = received.held() < RECEIVE_BUFFER;
        if room && let Some(r) = held.take() {
            r.send(&io.to_client);
        }
        let mux_timer = mux.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = received.wait_below(RECEIVE_BUFFER), if !room => {}
            frame = io.from_client.recv(), if room => {
                let Some(frame) = frame else { break 'session String::new() };
                let (events, replies) = feed_held(&ch, &frame);
                held = Some(replies);
                for ev in events {
                    let AgentEvent::Message(m) = ev else { continue };
                    match PayloadType::from_u32(m.payload_type) {
                        Some(PayloadType::Output) => {
                            if let Err(e) = mux.handle_input(now(), &m.payload) {
                                break 'session format!("smux: {e}");
                            }
                        }
                        Some(PayloadType::Flag)
                            if PayloadFlag::decode(&m.payload) == Some(PayloadFlag::TerminateSession) =>
                        {
                            break 'session String::new();
                        }
                        _ => {}
                    }
                }
                while let Some(ev) = mux.poll_event() {
                    dest.on_mux_event(ev, &mut mux);
                }
            }
            Some((id, result)) = dial_rx.recv() => {
                let Some(StreamConn::Dialing(pending)) = dest.streams.remove(&id) else {
                    continue; // closed while dialing
                };
                match result {
                    Ok(tcp) => {
                        let conn = connected(id, tcp, pending, tcp_tx.clone(), dest.rate.clone());
                        dest.streams.insert(id, conn);
                    }
                    Err(e) => {
                        tracing::debug!("agent: dial {} failed: {e}", dest.target);
                        send_now(&ch, &io.to_client, PayloadType::Flag,
                            PayloadFlag::ConnectToPortError.encode());
                        mux.close(id);
                    }
                }
            }
            Some(ev) = tcp_rx.recv(), if outbox.len() < OUTBOX_LIMIT => match ev {
                TcpEvent::Data(id, data) => {
                    let _ = mux.write(id, &data);
                }
                TcpEvent::Eof(id) => {
                    mux.close(id);
                    if let Some(StreamConn::Connected { reader, .. }) = dest.streams.remove(&id) {
                        reader.abort();
                    }
                }
            },
            _ = sleep_opt(next_timer(&ch)) => on_timer(&ch, &io.to_client),
            _ = sleep_opt(mux_timer) => {
                if let Err(e) = mux.handle_timeout(now()) {
                    break 'session format!("smux: {e}");
                }
            }
            _ = sent.notified() => {}
        }
    };
    if let Some(r) = held.take() {
        r.send(&io.to_client);
    }
    for (_, s) in dest.streams.drain() {
        if let StreamConn::Connected { reader, .. } = s {
            reader.abort();
        }
    }
    pacer.abort();
    if !end.is_empty() {
        tracing::debug!("agent: mux session ended: {end}");
    }
    finish(&ch, &mut io, String::new()).await;
    Ok(())
}

impl Destinations {
    fn on_mux_event(&mut self, ev: MuxEvent, mux: &mut Mux) {
        match ev {
            MuxEvent::Accepted(id) => {
                self.streams.insert(id, StreamConn::Dialing(Vec::new()));
                let (target, tx) = (self.target.clone(), self.dial_tx.clone());
                tokio::spawn(async move {
                    let r = TcpStream::connect(&target).await;
                    let _ = tx.send((id, r));
                });
            }
            MuxEvent::Data(id, data) => {
                let token = self.received.hold(data.len());
                match self.streams.get_mut(&id) {
                    Some(StreamConn::Dialing(pending)) => pending.push((data, token)),
                    Some(StreamConn::Connected { to_tcp, .. }) => {
                        let _ = to_tcp.send((data, token));
                    }
                    None => {}
                }
            }
            MuxEvent::Finished(id) => {
                // The client closed: close the destination connection and our side too.
                mux.close(id);
                if let Some(StreamConn::Connected { reader, .. }) = self.streams.remove(&id) {
                    reader.abort();
                }
            }
        }
    }
}

/// Starts the copy tasks for a dialed stream; `pending` is client data that came early.
fn connected(
    id: u32,
    tcp: TcpStream,
    pending: Vec<Pending>,
    events: mpsc::Sender<TcpEvent>,
    rate: InstanceRate,
) -> StreamConn {
    let _ = tcp.set_nodelay(true);
    let (mut r, mut w) = tcp.into_split();
    let (to_tcp, mut from_client) = mpsc::unbounded_channel::<Pending>();
    for p in pending {
        let _ = to_tcp.send(p);
    }
    tokio::spawn(async move {
        // Each piece leaves the receive buffer (its token dropped) once written.
        while let Some((data, _token)) = from_client.recv().await {
            if write_rated(&mut w, &data, &rate).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if events
                        .send(TcpEvent::Data(id, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = events.send(TcpEvent::Eof(id)).await;
    });
    StreamConn::Connected { to_tcp, reader }
}

/// Sends the smux byte stream: at most `chunk_size` bytes per message, one per `pace`.
async fn pace_out(
    outbox: Arc<Outbox>,
    ch: Shared,
    out: crate::agent_link::ToClient,
    settings: AgentSettings,
    sent: Arc<Notify>,
) {
    let chunk = settings.chunk_size.max(1);
    let mut pacer = crate::agent::Pacer::new(settings.pace);
    loop {
        out.ready().await;
        let data = outbox.take(chunk);
        if data.is_empty() {
            outbox.ready.notified().await;
            continue;
        }
        send_data_now(&ch, &out, &data);
        sent.notify_one();
        pacer.after_send().await;
    }
}
