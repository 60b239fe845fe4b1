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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use sallyport::proto::channel::ChannelEvent;
use sallyport::proto::payload::{PayloadFlag, PayloadType};
use sallyport::session::smux::{KeepAlive, Mux, MuxEvent, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use crate::agent::{
    AgentIo, AgentSettings, Shared, compare_versions, feed, finish, next_timer, now, on_timer,
    send_data_now, send_now, sleep_opt,
};
use crate::state::SessionRecord;

/// Smux bytes queued for the pacer beyond which destination reads wait.
const OUTBOX_LIMIT: usize = 256 * 1024;
/// Bytes read from a destination socket at once (io.Copy's buffer).
const READ_SIZE: usize = 32 * 1024;

enum StreamConn {
    /// Dialing; client data waits here.
    Dialing(Vec<u8>),
    Connected {
        to_tcp: mpsc::UnboundedSender<Vec<u8>>,
        reader: tokio::task::JoinHandle<()>,
    },
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
    let mut streams: HashMap<u32, StreamConn> = HashMap::new();
    let end = 'session: loop {
        if let Some(bytes) = mux.poll_transmit() {
            outbox.push(bytes);
        }
        let mux_timer = mux.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            frame = io.from_client.recv() => {
                let Some(frame) = frame else { break 'session String::new() };
                for ev in feed(&ch, &io.to_client, &frame) {
                    let ChannelEvent::Message(m) = ev else { continue };
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
                    on_mux_event(ev, &mut mux, &mut streams, &target, &dial_tx);
                }
            }
            Some((id, result)) = dial_rx.recv() => {
                let Some(StreamConn::Dialing(pending)) = streams.remove(&id) else {
                    continue; // closed while dialing
                };
                match result {
                    Ok(tcp) => {
                        let conn = connected(id, tcp, pending, tcp_tx.clone());
                        streams.insert(id, conn);
                    }
                    Err(e) => {
                        tracing::debug!("agent: dial {target} failed: {e}");
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
                    if let Some(StreamConn::Connected { reader, .. }) = streams.remove(&id) {
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
    for (_, s) in streams.drain() {
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

fn on_mux_event(
    ev: MuxEvent,
    mux: &mut Mux,
    streams: &mut HashMap<u32, StreamConn>,
    target: &str,
    dial_tx: &mpsc::UnboundedSender<(u32, std::io::Result<TcpStream>)>,
) {
    match ev {
        MuxEvent::Accepted(id) => {
            streams.insert(id, StreamConn::Dialing(Vec::new()));
            let (target, tx) = (target.to_owned(), dial_tx.clone());
            tokio::spawn(async move {
                let r = TcpStream::connect(&target).await;
                let _ = tx.send((id, r));
            });
        }
        MuxEvent::Data(id, data) => match streams.get_mut(&id) {
            Some(StreamConn::Dialing(pending)) => pending.extend_from_slice(&data),
            Some(StreamConn::Connected { to_tcp, .. }) => {
                let _ = to_tcp.send(data);
            }
            None => {}
        },
        MuxEvent::Finished(id) => {
            // The client closed: close the destination connection and our side too.
            mux.close(id);
            if let Some(StreamConn::Connected { reader, .. }) = streams.remove(&id) {
                reader.abort();
            }
        }
    }
}

/// Starts the copy tasks for a dialed stream; `pending` is client data that came early.
fn connected(
    id: u32,
    tcp: TcpStream,
    pending: Vec<u8>,
    events: mpsc::Sender<TcpEvent>,
) -> StreamConn {
    let _ = tcp.set_nodelay(true);
    let (mut r, mut w) = tcp.into_split();
    let (to_tcp, mut from_client) = mpsc::unbounded_channel::<Vec<u8>>();
    if !pending.is_empty() {
        let _ = to_tcp.send(pending);
    }
    tokio::spawn(async move {
        while let Some(data) = from_client.recv().await {
            if w.write_all(&data).await.is_err() {
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

/// Sends the smux byte stream: at most `chunk_size` bytes per message, then `pace`.
async fn pace_out(
    outbox: Arc<Outbox>,
    ch: Shared,
    out: mpsc::UnboundedSender<crate::agent::AgentOut>,
    settings: AgentSettings,
    sent: Arc<Notify>,
) {
    let chunk = settings.chunk_size.max(1);
    loop {
        let data = outbox.take(chunk);
        if data.is_empty() {
            outbox.ready.notified().await;
            continue;
        }
        send_data_now(&ch, &out, &data);
        sent.notify_one();
        if !settings.pace.is_zero() {
            tokio::time::sleep(settings.pace).await;
        }
    }
}
