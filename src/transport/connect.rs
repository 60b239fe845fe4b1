//! Opening the data-channel websocket (PROTOCOL.md §2.1).

use std::net::IpAddr;
use std::time::Duration;

use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::proto::handshake::CLIENT_VERSION;
use crate::proto::payload::OpenDataChannelInput;

pub type DataChannelSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The real service's frames are ~1.2 KB; anything near this is a broken or hostile peer.
const MAX_MESSAGE_SIZE: usize = 1 << 20;
/// gorilla's handshake timeout, as the plugin uses it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the stream URL {0:?} is not a valid URL")]
    BadUrl(String),
    #[error(
        "refusing the unencrypted stream URL {0}: plain ws:// is only accepted for a loopback host (the local testbed)"
    )]
    Insecure(String),
    #[error("the data channel refused the websocket: HTTP {status}")]
    Refused { status: u16 },
    #[error("could not reach the data channel at {host}: {source}")]
    Unreachable {
        host: String,
        #[source]
        source: tungstenite::Error,
    },
    #[error("timed out opening the data channel websocket after {0:?}")]
    Timeout(Duration),
}

/// Dials `stream_url` as returned by StartSession and sends the opening text frame.
pub async fn connect(
    stream_url: &str,
    token: &str,
    client_id: &str,
) -> Result<DataChannelSocket, ConnectError> {
    let uri: Uri = stream_url
        .parse()
        .map_err(|_| ConnectError::BadUrl(stream_url.to_owned()))?;
    let host = uri.host().unwrap_or_default().to_owned();
    match uri.scheme_str() {
        Some("wss") => {}
        Some("ws") if is_loopback(&host) => {}
        Some("ws") => return Err(ConnectError::Insecure(redact(stream_url))),
        _ => return Err(ConnectError::BadUrl(redact(stream_url))),
    }
    let request = stream_url
        .into_client_request()
        .map_err(|_| ConnectError::BadUrl(redact(stream_url)))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE));
    let dial = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (mut ws, _response) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, dial).await {
        Err(_) => return Err(ConnectError::Timeout(HANDSHAKE_TIMEOUT)),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            return Err(ConnectError::Refused {
                status: resp.status().as_u16(),
            });
        }
        Ok(Err(source)) => return Err(ConnectError::Unreachable { host, source }),
        Ok(Ok(pair)) => pair,
    };
    let open = OpenDataChannelInput {
        message_schema_version: "1.0".to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
        token_value: token.to_owned(),
        client_id: client_id.to_owned(),
        client_version: CLIENT_VERSION.to_owned(),
    };
    let text = serde_json::to_string(&open).unwrap_or_default();
    ws.send(WsMessage::text(text))
        .await
        .map_err(|source| ConnectError::Unreachable { host, source })?;
    Ok(ws)
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Stream URLs carry nothing secret today, but their query may; keep logs to the path.
fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.3.4.5"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("ssmmessages.us-east-1.amazonaws.com"));
    }

    #[tokio::test]
    async fn plain_ws_to_a_remote_host_is_refused_before_dialing() {
        let err = connect(
            "ws://ssmmessages.example.com/v1/data-channel/s?role=x",
            "t",
            "c",
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ConnectError::Insecure(_)), "{err}");
        assert!(!err.to_string().contains("role="), "query is redacted");
    }

    #[tokio::test]
    async fn non_websocket_schemes_are_refused() {
        let err = connect("https://example.com/x", "t", "c")
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::BadUrl(_)), "{err}");
    }
}
