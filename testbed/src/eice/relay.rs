//! One tunnel's bytes: BINARY frames from the client are written to the instance's TCP
//! connection and what the instance sends goes back in BINARY frames of at most
//! [`MAX_FRAME`] bytes, each direction through a [`LinkShape`] (`--rtt`, `--relay-rate`,
//! `--jitter`, and `--eice-rate` as a bottleneck). Bytes in flight per direction are
//! bounded by [`MAX_IN_FLIGHT`]: the reader waits for room, so a slow side holds the
//! other back instead of filling memory.
//!
//! Endings: the instance closes -> close code 1000 once its bytes are delivered; the
//! client closes -> its bytes are delivered, the instance connection is shut; a TEXT
//! frame from the client -> close 1002; `maxTunnelDuration` passes -> close
//! [`CLOSE_MAX_DURATION`] with a reason. Unverified: the code and reason AWS sends at the
//! maximum duration, and what it does with a TEXT frame from the client.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::world::link_shape::{LinkShape, delay_line};
use crate::world::tunnel_stats::TunnelStats;

/// The largest frame the tunnel sends (and the instance read size).
pub const MAX_FRAME: usize = 64 * 1024;
/// Bytes held per direction at most (delay line and write queue together).
pub const MAX_IN_FLIGHT: usize = 4 * 1024 * 1024;
/// The largest message accepted from the client (the AWS CLI sends at most 65 000 bytes).
pub const MAX_CLIENT_MESSAGE: usize = 1024 * 1024;
/// The close code at the maximum tunnel duration (policy violation).
pub const CLOSE_MAX_DURATION: u16 = 1008;

/// Bytes and the share of the direction's budget they hold.
type Chunk = (Vec<u8>, OwnedSemaphorePermit);

/// How the client's side ended.
enum ClientEnd {
    /// A close frame or the end of the stream.
    Closed,
    /// A TEXT frame: a protocol error.
    Text,
}

/// Carries bytes between `ws` and `tcp` until one side ends or `max_duration` passes.
pub async fn run<S>(
    ws: WebSocketStream<S>,
    tcp: TcpStream,
    shape: LinkShape,
    max_duration: Duration,
    stats: Arc<TunnelStats>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + max_duration;
    let (mut sink, stream) = ws.split();
    let (tcp_rd, tcp_wr) = tcp.into_split();
    let (to_instance_tx, to_instance_rx) = mpsc::unbounded_channel::<Chunk>();
    let to_instance = delay_line(to_instance_rx, shape, |(b, _)| b.len());
    let writer = tokio::spawn(write_instance(tcp_wr, to_instance, stats.clone()));
    let mut reader = tokio::spawn(read_client(stream, to_instance_tx));
    let (to_client_tx, to_client_rx) = mpsc::unbounded_channel::<Chunk>();
    let mut to_client = delay_line(to_client_rx, shape, |(b, _)| b.len());
    let pump = tokio::spawn(read_instance(tcp_rd, to_client_tx));
    let result = loop {
        tokio::select! {
            chunk = to_client.recv() => match chunk {
                Some((bytes, _permit)) => {
                    let n = bytes.len();
                    sink.send(Message::binary(bytes)).await?;
                    stats.add_to_client(n);
                }
                None => break close(&mut sink, CloseCode::Normal, "").await,
            },
            end = &mut reader => match end {
                Ok(ClientEnd::Text) => {
                    let why = "TEXT frames are not allowed on a tunnel";
                    break close(&mut sink, CloseCode::Protocol, why).await;
                }
                Ok(ClientEnd::Closed) | Err(_) => {
                    // What the client sent before it closed still reaches the instance.
                    let _ = tokio::time::timeout_at(deadline, writer).await;
                    let _ = sink.close().await;
                    pump.abort();
                    return Ok(());
                }
            },
            () = tokio::time::sleep_until(deadline) => {
                let why = format!(
                    "Tunnel reached its maximum duration of {} seconds",
                    max_duration.as_secs()
                );
                break close(&mut sink, CloseCode::from(CLOSE_MAX_DURATION), &why).await;
            }
        }
    };
    reader.abort();
    pump.abort();
    writer.abort();
    result
}

async fn close<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    code: CloseCode,
    reason: &str,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    sink.send(Message::Close(Some(frame))).await?;
    let _ = sink.flush().await;
    Ok(())
}

/// Takes room in the direction's budget for `n` bytes.
async fn room(budget: &Arc<Semaphore>, n: usize) -> Option<OwnedSemaphorePermit> {
    let n = u32::try_from(n.clamp(1, MAX_IN_FLIGHT)).unwrap_or(u32::MAX);
    budget.clone().acquire_many_owned(n).await.ok()
}

async fn read_client<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    tx: mpsc::UnboundedSender<Chunk>,
) -> ClientEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Binary(bytes)) => {
                let Some(permit) = room(&budget, bytes.len()).await else {
                    break;
                };
                if tx.send((bytes.to_vec(), permit)).is_err() {
                    break;
                }
            }
            Ok(Message::Text(_)) => return ClientEnd::Text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    ClientEnd::Closed
}

async fn write_instance(
    mut tcp: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    stats: Arc<TunnelStats>,
) {
    while let Some((bytes, _permit)) = rx.recv().await {
        if tcp.write_all(&bytes).await.is_err() {
            return;
        }
        stats.add_to_instance(bytes.len());
    }
    let _ = tcp.shutdown().await;
}

async fn read_instance(mut tcp: tokio::net::tcp::OwnedReadHalf, tx: mpsc::UnboundedSender<Chunk>) {
    let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let n = match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(permit) = room(&budget, n).await else {
            return;
        };
        if tx.send((buf[..n].to_vec(), permit)).is_err() {
            return;
        }
    }
}
