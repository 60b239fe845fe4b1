//! The Message Gateway Service end of the data-channel websocket: checks the client's
//! opening frame, carries frames between the client and the agent with the configured
//! network delay, and ends the session with `channel_closed` as the service does.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use sallyport::proto::message::{Message, MessageType};
use sallyport::proto::payload::{ChannelClosed, OpenDataChannelInput};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::agent::{self, AgentIo, AgentOut};
use crate::config::TestbedConfig;
use crate::state::{SessionRecord, Sessions};

/// How long a client may take to send its opening text frame.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted data-channel websocket for `session` until it closes.
pub async fn serve_data_channel<S>(
    mut ws: WebSocketStream<S>,
    session: Arc<SessionRecord>,
    config: Arc<TestbedConfig>,
    sessions: Arc<Sessions>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Err(why) = check_opening_frame(&mut ws, &session).await {
        let close = CloseFrame {
            code: CloseCode::Policy,
            reason: why.clone().into(),
        };
        let _ = ws.close(Some(close)).await;
        anyhow::bail!("refused data channel: {why}");
    }
    let one_way = config.rtt / 2;
    let (to_agent_tx, to_agent_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (from_agent_tx, from_agent_rx) = mpsc::unbounded_channel::<AgentOut>();
    let delayed_to_agent = delay_line(to_agent_rx, one_way);
    let mut delayed_to_client = delay_line(from_agent_rx, one_way);
    let agent_task = tokio::spawn(agent::run_port_session(
        session.clone(),
        config.agent.clone(),
        AgentIo {
            from_client: delayed_to_agent,
            to_client: from_agent_tx,
        },
    ));
    let (mut sink, mut stream) = ws.split();
    let mut terminated_check = tokio::time::interval(Duration::from_millis(200));
    let result = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Binary(b))) => { let _ = to_agent_tx.send(b.to_vec()); }
                Some(Ok(WsMessage::Text(t))) => { let _ = to_agent_tx.send(t.as_bytes().to_vec()); }
                Some(Ok(WsMessage::Close(_))) | None => break Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e.into()),
            },
            out = delayed_to_client.recv() => match out {
                Some(AgentOut::Frame(f)) => sink.send(WsMessage::binary(f)).await?,
                Some(AgentOut::Close { output }) => {
                    send_channel_closed(&mut sink, &session.session_id, &output).await?;
                    break Ok(());
                }
                // The agent is gone without a word: the service would close the channel.
                None => {
                    send_channel_closed(&mut sink, &session.session_id, "").await?;
                    break Ok(());
                }
            },
            _ = terminated_check.tick() => {
                if sessions.is_terminated(&session.session_id) {
                    send_channel_closed(&mut sink, &session.session_id, "").await?;
                    break Ok(());
                }
            }
        }
    };
    agent_task.abort();
    let _ = sink.close().await;
    result
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
    let open: OpenDataChannelInput =
        serde_json::from_str(&text).map_err(|e| format!("bad opening frame: {e}"))?;
    if open.token_value != session.token {
        return Err("invalid token".into());
    }
    tracing::debug!(client_version = open.client_version, "data channel opened");
    Ok(())
}

/// `channel_closed` as the service sends it when a session ends. The JSON fields are the
/// plugin's (PROTOCOL.md §4); header sequence number, flags and payload type are not
/// documented anywhere we could read, so they are a guess (0, 0, 0).
async fn send_channel_closed<S>(sink: &mut S, session_id: &str, output: &str) -> anyhow::Result<()>
where
    S: futures_util::Sink<WsMessage> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let id = uuid::Uuid::new_v4();
    let body = ChannelClosed {
        message_id: id.to_string(),
        created_date: now_ms.to_string(),
        destination_id: session_id.to_owned(),
        session_id: session_id.to_owned(),
        message_type: "channel_closed".to_owned(),
        schema_version: 1,
        output: output.to_owned(),
    };
    let msg = Message {
        message_type: MessageType::ChannelClosed,
        schema_version: 1,
        created_date: now_ms,
        sequence_number: 0,
        flags: 0,
        message_id: id,
        payload_type: 0,
        payload: serde_json::to_vec(&body)?,
    };
    sink.send(WsMessage::binary(msg.encode())).await?;
    Ok(())
}

/// Forwards items after `delay`, keeping their order (a fixed-latency link).
fn delay_line<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
    delay: Duration,
) -> mpsc::UnboundedReceiver<T> {
    if delay.is_zero() {
        return rx;
    }
    let (tx, out) = mpsc::unbounded_channel();
    let (stamp_tx, mut stamped) = mpsc::unbounded_channel::<(Instant, T)>();
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if stamp_tx.send((Instant::now() + delay, item)).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some((due, item)) = stamped.recv().await {
            tokio::time::sleep_until(due).await;
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    out
}
