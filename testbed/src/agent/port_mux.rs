//! The Port plugin's smux mode (docs/protocol.md §7.2): the agent is the smux server. Each
//! stream the client opens is one TCP connection to the destination; a failed dial sends
//! the ConnectToPortError flag and closes the stream; EOF or an error on either side
//! closes both the stream and the connection (the agent copies both ways and closes both
//! when the first copy ends).
//!
//! The smux protocol itself is not ours: it is the `async_smux` crate (xtaci/smux v1
//! framing, a separate implementation from the client's `sallyport::proto::smux`), run
//! over an in-memory pipe whose other end is the data channel. So a framing mistake the
//! client makes is not mirrored here. Keep-alive NOPs (every 10 s) are on only for agents up
//! to 3.1.1511.0 or clients up to 1.2.331.0, as on the agent. Unverified: `async_smux` has
//! no dead-peer timeout (xtaci's 30 s `KeepAliveTimeout`).
//!
//! The smux byte stream goes out in Output messages of at most `chunk_size` bytes cut
//! with no regard to frame boundaries, one per `pace`, as the agent's bridge reads its
//! smux socket.
//!
//! Back-pressure, as smux v1 gives it: stream data waits in the session's receive queue
//! until its destination takes it (at `--instance-write-rate` if set, one schedule for
//! the session, [`crate::agent::write_rate`]). The queue holds [`RECEIVE_FRAMES`] frames; when it
//! is full `async_smux` stops reading the pipe, the pipe fills, and the agent's handler
//! blocks writing into it: the agent takes no further client frame and holds back the
//! acknowledgement of the one it is writing, as the agent's handler blocks writing into
//! a smux session that stopped reading (docs/protocol.md §6.4, §6.6). Resends go on meanwhile.

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;

use crate::agent::payloads::{PayloadFlag, PayloadType};
use async_smux::{MuxBuilder, MuxStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::agent::channel::AgentEvent;
use crate::agent::link::ToClient;
use crate::agent::write_rate::{InstanceRate, write_rated};
use crate::agent::{
    AgentIo, AgentSettings, Replies, Shared, compare_versions, feed_held, finish, next_timer,
    on_timer, send_data_now, send_now, sleep_opt,
};
use crate::world::backlog::Backlog;
use crate::world::state::SessionRecord;

/// Bytes the pipe between the data channel and the smux session holds each way (the
/// agent's local socket pair to its smux bridge).
const PIPE_BYTES: usize = 64 * 1024;
/// Bytes read from a destination socket, or from a smux stream, at once (io.Copy's 32 KiB
/// buffer; also smux's default maximum frame size).
const READ_SIZE: usize = 32 * 1024;
/// Frames the smux session holds for streams whose destination has not taken them yet:
/// with full 32 KiB frames that is smux v1's 4 MiB MaxReceiveBuffer (docs/protocol.md §14).
/// Unverified: `async_smux` counts frames, smux v1 bytes; small frames fill it sooner.
pub const RECEIVE_FRAMES: usize = 128;
/// smux v1's keep-alive interval, for the agents and clients that still use it.
const KEEPALIVE_SECS: u64 = 10;

pub async fn run(
    ch: Shared,
    session: &SessionRecord,
    client_version: &str,
    target: String,
    settings: AgentSettings,
    mut io: AgentIo,
) -> anyhow::Result<()> {
    let keepalive = compare_versions(&session.instance.agent_version, "3.1.1511.0").is_le()
        || compare_versions(client_version, "1.2.331.0").is_le();
    let (agent_end, mux_end) = tokio::io::duplex(PIPE_BYTES);
    let (from_mux, to_mux) = tokio::io::split(agent_end);
    let mut builder = MuxBuilder::server();
    if let Some(n) = NonZeroUsize::new(RECEIVE_FRAMES) {
        builder.with_max_rx_queue(n);
    }
    if keepalive && let Some(secs) = NonZeroU64::new(KEEPALIVE_SECS) {
        builder.with_keep_alive_interval(secs);
    }
    let (_connector, mut acceptor, worker) = builder.with_connection(mux_end).build();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let (worker_done_tx, mut worker_done) = mpsc::channel::<String>(1);
    tasks.spawn(async move {
        let why = match worker.await {
            Ok(()) => "the smux session closed".to_owned(),
            Err(e) => format!("smux: {e}"),
        };
        let _ = worker_done_tx.send(why).await;
    });
    let sent = Arc::new(Notify::new());
    tasks.spawn(pace_out(
        from_mux,
        ch.clone(),
        io.to_client.clone(),
        settings.clone(),
        sent.clone(),
    ));
    let rate = InstanceRate::new(settings.instance_write_rate);
    let (ch2, out2) = (ch.clone(), io.to_client.clone());
    tasks.spawn(async move {
        let mut streams = JoinSet::new();
        while let Some(stream) = acceptor.accept().await {
            streams.spawn(serve_stream(
                stream,
                target.clone(),
                rate.clone(),
                ch2.clone(),
                out2.clone(),
            ));
            // Reap finished streams so the set does not grow with the session.
            while streams.try_join_next().is_some() {}
        }
    });
    // The handler: one client frame at a time is written into the smux session; its acks
    // go out when the write is done. `writing` counts frames handed to the writer.
    let writing = Backlog::new();
    let (write_tx, write_rx) =
        mpsc::unbounded_channel::<(Vec<u8>, Replies, crate::world::backlog::Token)>();
    tasks.spawn(write_to_mux(to_mux, write_rx, io.to_client.clone()));
    let end = 'session: loop {
        let idle = writing.held() == 0;
        tokio::select! {
            _ = writing.wait_below(1), if !idle => {}
            frame = io.from_client.recv(), if idle => {
                let Some(frame) = frame else { break 'session String::new() };
                let (events, replies) = feed_held(&ch, &frame);
                let mut bytes = Vec::new();
                for ev in events {
                    let AgentEvent::Message(m) = ev else { continue };
                    match PayloadType::from_u32(m.payload_type) {
                        Some(PayloadType::Output) => bytes.extend_from_slice(&m.payload),
                        Some(PayloadType::Flag)
                            if PayloadFlag::decode(&m.payload) == Some(PayloadFlag::TerminateSession) =>
                        {
                            replies.send(&io.to_client);
                            break 'session String::new();
                        }
                        _ => {}
                    }
                }
                if bytes.is_empty() {
                    replies.send(&io.to_client);
                } else if write_tx.send((bytes, replies, writing.hold(1))).is_err() {
                    break 'session "the smux pipe closed".to_owned();
                }
            }
            why = worker_done.recv() => break 'session why.unwrap_or_default(),
            _ = sleep_opt(next_timer(&ch)) => on_timer(&ch, &io.to_client),
            _ = sent.notified() => {}
        }
    };
    tasks.abort_all();
    if !end.is_empty() {
        tracing::debug!("agent: mux session ended: {end}");
    }
    finish(&ch, &mut io, String::new()).await;
    Ok(())
}

/// Writes client smux bytes into the session, then releases the frame's acks.
async fn write_to_mux(
    mut to_mux: WriteHalf<DuplexStream>,
    mut rx: mpsc::UnboundedReceiver<(Vec<u8>, Replies, crate::world::backlog::Token)>,
    out: ToClient,
) {
    while let Some((bytes, replies, _token)) = rx.recv().await {
        if to_mux.write_all(&bytes).await.is_err() {
            return;
        }
        replies.send(&out);
    }
}

/// One stream the client opened: dial the destination, then copy both ways until either
/// side ends, and close both.
async fn serve_stream(
    stream: MuxStream<DuplexStream>,
    target: String,
    rate: InstanceRate,
    ch: Shared,
    out: ToClient,
) {
    let tcp = match TcpStream::connect(&target).await {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::debug!("agent: dial {target} failed: {e}");
            send_now(
                &ch,
                &out,
                PayloadType::Flag,
                PayloadFlag::ConnectToPortError.encode(),
            );
            drop(stream); // sends FIN
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut tcp_r, mut tcp_w) = tcp.into_split();
    let (mut mux_r, mut mux_w) = tokio::io::split(stream);
    let up = async {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            match mux_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if write_rated(&mut tcp_w, &buf[..n], &rate).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            match tcp_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if mux_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
    let _ = tcp_w.shutdown().await;
    let _ = mux_w.shutdown().await;
}

/// Sends the smux byte stream: at most `chunk_size` bytes per message, one per `pace`.
async fn pace_out(
    mut from_mux: ReadHalf<DuplexStream>,
    ch: Shared,
    out: ToClient,
    settings: AgentSettings,
    sent: Arc<Notify>,
) {
    let mut buf = vec![0u8; settings.chunk_size.max(1)];
    let mut pacer = crate::agent::Pacer::new(settings.pace);
    loop {
        // A relay that does not take our output stops the reading (docs/protocol.md §6.4).
        out.ready().await;
        let n = match from_mux.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        send_data_now(&ch, &out, &buf[..n]);
        sent.notify_one();
        pacer.after_send().await;
    }
}
