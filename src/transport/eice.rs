//! The EC2 Instance Connect Endpoint tunnel (docs/protocol.md §10.3): one websocket to
//! `wss://{DnsName}/openTunnel?…`, presigned for every connection, carrying one TCP
//! connection's raw bytes in BINARY frames. Offered as an in-memory byte stream (the near
//! end of a bounded pipe), the same shape a Session Manager port session has, so the SSH
//! client, `proxy` and `forward` run over either unchanged.
//!
//! The websocket is opened like the data channel's ([`super::connect::dial`]): the same
//! proxy decision, CA bundle and TLS settings, plain `ws://` only to a loopback host.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::connect::{ConnectError, DataChannelSocket, Network, dial, is_loopback};
use super::upgrade_auth::SignError;

/// The largest frame sent: the AWS CLI's 65 000 bytes, under 64 KiB.
pub const MAX_FRAME: usize = 65_000;
/// The largest message accepted from the endpoint.
const MAX_INCOMING: usize = 1 << 20;
/// Bytes buffered in each direction of the local pipe.
const PIPE_BUFFER: usize = 256 * 1024;
/// The service's longest tunnel, and the default (docs/protocol.md §10.3).
pub const MAX_TUNNEL_DURATION: Duration = Duration::from_secs(3600);
/// How long after its maximum duration the tunnel is closed here if the endpoint has not.
const DURATION_GRACE: Duration = Duration::from_secs(5);
/// An end this close to the maximum duration is taken as the duration's end.
const DURATION_SLACK: Duration = Duration::from_secs(2);
/// Longest close reason or text frame shown.
const MAX_SHOWN_REASON: usize = 200;
/// After the local side ends, the endpoint's bytes are still delivered until it closes,
/// until nothing has come for this long, or for [`DRAIN_BOUND`] at most: a websocket has
/// no half-close, so our close would cut off what the instance is still sending (a
/// banner, a reply to the last request). Our choice; the AWS CLI's behaviour is not
/// copied.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// The longest the endpoint's bytes are awaited after the local side ended.
const DRAIN_BOUND: Duration = Duration::from_secs(10);
/// How long our close waits for the endpoint's.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Where one tunnel leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelTarget {
    /// The endpoint's `DnsName` (or `FipsDnsName`); `HOST:PORT` is accepted.
    pub dns_name: String,
    pub endpoint_id: String,
    /// The instance's private IPv4 or IPv6 address.
    pub address: String,
    pub port: u16,
    /// `maxTunnelDuration`, 1-3600 s.
    pub max_duration: Duration,
    /// `ws://` instead of `wss://`: only to a loopback DnsName (the local testbed).
    pub plain: bool,
}

impl TunnelTarget {
    /// The unsigned `/openTunnel` URL.
    pub fn url(&self) -> Result<String, TunnelError> {
        let host_ok = !self.dns_name.is_empty()
            && self
                .dns_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        if !host_ok {
            return Err(TunnelError::BadEndpoint(
                crate::text::shown(&self.dns_name).into(),
            ));
        }
        let host = self
            .dns_name
            .rsplit_once(':')
            .filter(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok())
            .map_or(self.dns_name.as_str(), |(h, _)| h);
        let scheme = if self.plain && is_loopback(host) {
            "ws"
        } else if self.plain {
            return Err(TunnelError::Insecure(self.dns_name.clone()));
        } else {
            "wss"
        };
        let secs = self
            .max_duration
            .as_secs()
            .clamp(1, MAX_TUNNEL_DURATION.as_secs());
        Ok(format!(
            "{scheme}://{}/openTunnel?instanceConnectEndpointId={}&remotePort={}&privateIpAddress={}&maxTunnelDuration={secs}",
            self.dns_name,
            encode(&self.endpoint_id),
            self.port,
            encode(&self.address),
        ))
    }
}

/// Percent-encodes a query value (unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Presigns an `/openTunnel` URL (SigV4 in the query) for the `Host` header `host`.
pub trait TunnelPresigner: Send + Sync + 'static {
    fn presign<'a>(
        &'a self,
        url: &'a str,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, SignError>> + Send + 'a>>;
}

/// Why a tunnel could not be opened or ended badly.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("the EC2 Instance Connect Endpoint's DNS name {0:?} is not a host name")]
    BadEndpoint(String),
    #[error(
        "refusing an unencrypted EC2 Instance Connect Endpoint tunnel to {0}: plain ws:// is only accepted for a loopback host (the local testbed)"
    )]
    Insecure(String),
    #[error("could not sign the EC2 Instance Connect Endpoint tunnel: {0}")]
    Credentials(String),
    #[error(
        "the EC2 Instance Connect Endpoint {endpoint} refused the tunnel: HTTP {status}{advice}"
    )]
    Refused {
        endpoint: String,
        status: u16,
        advice: &'static str,
    },
    #[error("could not open the EC2 Instance Connect Endpoint tunnel: {0}")]
    Connect(String),
    #[error("the EC2 Instance Connect Endpoint closed the tunnel (code {code}){reason}")]
    Closed { code: u16, reason: String },
    #[error("the EC2 Instance Connect Endpoint sent a text frame, which is an error: {0}")]
    Text(String),
    #[error("the EC2 Instance Connect Endpoint tunnel failed: {0}")]
    Broken(String),
    #[error(
        "the EC2 Instance Connect Endpoint tunnel reached its maximum duration of {0} s and was closed (--max-tunnel-duration, at most 3600)"
    )]
    MaxDuration(u64),
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Close code 1000, or the local side finished.
    Normal,
    Failed(TunnelError),
}

/// Opens tunnels: a fresh presign and websocket per call.
#[derive(Clone)]
pub struct EiceDialer {
    pub presigner: Arc<dyn TunnelPresigner>,
    pub network: Network,
}

impl EiceDialer {
    /// Opens one tunnel to `target` and a task pumping it. Returns the pipe's near end
    /// and the guard that reports how the tunnel ended.
    pub async fn open(
        &self,
        target: &TunnelTarget,
    ) -> Result<(DuplexStream, TunnelGuard), TunnelError> {
        let ws = self.connect(target).await?;
        let (local, remote) = tokio::io::duplex(PIPE_BUFFER);
        let max = target.max_duration.min(MAX_TUNNEL_DURATION);
        let pump = tokio::spawn(pump(ws, remote, max));
        Ok((local, TunnelGuard { pump: Some(pump) }))
    }

    async fn connect(&self, target: &TunnelTarget) -> Result<DataChannelSocket, TunnelError> {
        let url = target.url()?;
        let uri: Uri = url
            .parse()
            .map_err(|_| TunnelError::BadEndpoint(target.dns_name.clone()))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let signed = self
            .presigner
            .presign(&url, &host)
            .await
            .map_err(|e| TunnelError::Credentials(e.message))?;
        let request = signed
            .as_str()
            .into_client_request()
            .map_err(|_| TunnelError::BadEndpoint(target.dns_name.clone()))?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_INCOMING))
            .max_frame_size(Some(MAX_INCOMING));
        tracing::debug!(
            endpoint = target.endpoint_id,
            dns_name = target.dns_name,
            port = target.port,
            "opening an EC2 Instance Connect Endpoint tunnel"
        );
        dial(request, &uri, &self.network, config, "EICE tunnel")
            .await
            .map_err(|e| explain_connect(e, &target.endpoint_id))
    }
}

/// A refused or failed dial, in the tunnel's words.
fn explain_connect(e: ConnectError, endpoint: &str) -> TunnelError {
    match e {
        ConnectError::Refused { status } => TunnelError::Refused {
            endpoint: endpoint.to_owned(),
            status,
            advice: match status {
                401 | 403 => {
                    ": your IAM identity needs ec2-instance-connect:OpenTunnel on the endpoint, \
                     and the instance's address and port must be ones it serves"
                }
                404 => ": the endpoint does not exist (any more)",
                429 => ": too many tunnels or requests (at most 20 at once per endpoint)",
                _ => "",
            },
        },
        ConnectError::Credentials(m) => TunnelError::Credentials(m),
        other => TunnelError::Connect(
            other
                .to_string()
                .replace("the data channel", "the endpoint")
                .replace("data channel", "tunnel"),
        ),
    }
}

/// The task behind a tunnel's pipe.
pub struct TunnelGuard {
    pump: Option<JoinHandle<TunnelEnd>>,
}

impl TunnelGuard {
    /// How the tunnel ended, if it ended within `grace`; `None` for a normal end or
    /// one still running.
    pub async fn failure(&mut self, grace: Duration) -> Option<TunnelError> {
        let pump = self.pump.as_mut()?;
        let end = tokio::time::timeout(grace, pump).await.ok()?;
        self.pump = None;
        match end {
            Ok(TunnelEnd::Normal) => None,
            Ok(TunnelEnd::Failed(e)) => Some(e),
            Err(join) => Some(TunnelError::Broken(join.to_string())),
        }
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        if let Some(p) = self.pump.take() {
            p.abort();
        }
    }
}

/// Carries bytes between the pipe and the websocket until either side ends. The two
/// directions run apart, so a full pipe one way never stops the other.
async fn pump(ws: DataChannelSocket, pipe: DuplexStream, max: Duration) -> TunnelEnd {
    let started = Instant::now();
    let (mut sink, stream) = ws.split();
    let (mut rd, wr) = tokio::io::split(pipe);
    let local_done = Arc::new(AtomicBool::new(false));
    let last_rx = Arc::new(AtomicU64::new(0));
    let mut down = tokio::spawn(receive(
        stream,
        wr,
        (started, max),
        local_done.clone(),
        last_rx.clone(),
    ));
    let deadline = tokio::time::sleep(max + DURATION_GRACE);
    tokio::pin!(deadline);
    let drain = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(drain);
    let mut local_ended = started;
    let mut buf = vec![0u8; MAX_FRAME];
    let mut local_open = true;
    let end = loop {
        tokio::select! {
            n = rd.read(&mut buf), if local_open => match n {
                Ok(0) | Err(_) => {
                    // The local side is done: keep delivering what the endpoint sends
                    // until it closes or goes quiet (DRAIN_QUIET), then close.
                    local_open = false;
                    local_done.store(true, Ordering::SeqCst);
                    local_ended = Instant::now();
                    drain.as_mut().reset((local_ended + DRAIN_QUIET).into());
                }
                Ok(n) => {
                    if let Err(e) = sink.send(Message::binary(buf[..n].to_vec())).await {
                        break ended(e, at_max(started, max), max);
                    }
                }
            },
            end = &mut down => {
                let end = end.unwrap_or_else(|j| TunnelEnd::Failed(TunnelError::Broken(j.to_string())));
                if matches!(end, TunnelEnd::Normal) || local_open {
                    let _ = sink.send(Message::Close(None)).await;
                }
                return end;
            }
            () = &mut drain, if !local_open => {
                let heard = started + Duration::from_millis(last_rx.load(Ordering::SeqCst));
                let quiet_until = heard.max(local_ended) + DRAIN_QUIET;
                let now = Instant::now();
                if quiet_until > now && now < local_ended + DRAIN_BOUND {
                    drain.as_mut().reset(quiet_until.min(local_ended + DRAIN_BOUND).into());
                    continue;
                }
                let _ = sink.send(Message::Close(None)).await;
                return match tokio::time::timeout(CLOSE_WAIT, &mut down).await {
                    Ok(end) => end.unwrap_or(TunnelEnd::Normal),
                    Err(_) => {
                        down.abort();
                        TunnelEnd::Normal
                    }
                };
            }
            () = &mut deadline => {
                let _ = sink.send(Message::Close(None)).await;
                down.abort();
                return TunnelEnd::Failed(TunnelError::MaxDuration(max.as_secs()));
            }
        }
    };
    down.abort();
    end
}

fn at_max(started: Instant, max: Duration) -> bool {
    started.elapsed() + DURATION_SLACK >= max
}

/// The endpoint's frames into the pipe, until its close.
async fn receive(
    mut stream: futures_util::stream::SplitStream<DataChannelSocket>,
    mut wr: tokio::io::WriteHalf<DuplexStream>,
    (started, max): (Instant, Duration),
    local_done: Arc<AtomicBool>,
    last_rx: Arc<AtomicU64>,
) -> TunnelEnd {
    loop {
        match stream.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                let at = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                last_rx.store(at, Ordering::SeqCst);
                if wr.write_all(&bytes).await.is_err() {
                    // The local reader is gone: nothing more to deliver.
                    return TunnelEnd::Normal;
                }
            }
            Some(Ok(Message::Text(t))) => {
                return TunnelEnd::Failed(TunnelError::Text(
                    crate::text::shown_max(t.as_str(), MAX_SHOWN_REASON).into_owned(),
                ));
            }
            Some(Ok(Message::Close(frame))) => {
                let _ = wr.shutdown().await;
                return closed(frame, at_max(started, max), max);
            }
            Some(Ok(_)) => {}
            // After our close, an endpoint that just hangs up loses nothing.
            Some(Err(_)) | None if local_done.load(Ordering::SeqCst) => {
                let _ = wr.shutdown().await;
                return TunnelEnd::Normal;
            }
            Some(Err(e)) => return ended(e, at_max(started, max), max),
            None => {
                let _ = wr.shutdown().await;
                return if at_max(started, max) {
                    TunnelEnd::Failed(TunnelError::MaxDuration(max.as_secs()))
                } else {
                    TunnelEnd::Failed(TunnelError::Broken(
                        "the connection ended without a close frame".into(),
                    ))
                };
            }
        }
    }
}

fn closed(
    frame: Option<tungstenite::protocol::CloseFrame>,
    at_max: bool,
    max: Duration,
) -> TunnelEnd {
    let Some(frame) = frame else {
        return TunnelEnd::Normal;
    };
    if frame.code == CloseCode::Normal {
        return TunnelEnd::Normal;
    }
    if at_max {
        return TunnelEnd::Failed(TunnelError::MaxDuration(max.as_secs()));
    }
    let reason = frame.reason.as_str().trim();
    TunnelEnd::Failed(TunnelError::Closed {
        code: frame.code.into(),
        reason: if reason.is_empty() {
            String::new()
        } else {
            format!(": {}", crate::text::shown_max(reason, MAX_SHOWN_REASON))
        },
    })
}

fn ended(e: tungstenite::Error, at_max: bool, max: Duration) -> TunnelEnd {
    match e {
        tungstenite::Error::ConnectionClosed => TunnelEnd::Normal,
        _ if at_max => TunnelEnd::Failed(TunnelError::MaxDuration(max.as_secs())),
        e => TunnelEnd::Failed(TunnelError::Broken(e.to_string())),
    }
}

#[cfg(test)]
#[path = "eice_tests.rs"]
mod tests;
