//! Opening the data-channel websocket (docs/protocol.md §2.1): directly or through an HTTP
//! proxy's CONNECT tunnel (§2.7), TLS with the platform roots plus any CA bundle, and the
//! upgrade signed with SigV4 (§2.6).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::proxy::ProxyRoutes;
use super::trust::{client_config, is_unknown_issuer};
use super::tunnel::{NetStream, ProxyFailure, open_tunnel};
use super::upgrade_auth::{UpgradeSigner, is_presigned};
use crate::proto::handshake::CLIENT_VERSION;
use crate::proto::payload::OpenDataChannelInput;

pub type DataChannelSocket = WebSocketStream<MaybeTlsStream<NetStream>>;

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
    /// The upgrade could not be signed: no usable credentials.
    #[error("could not sign the data channel websocket: {0}")]
    Credentials(String),
    #[error("could not open the data channel through the proxy: {0}")]
    Proxy(ProxyFailure),
    #[error(
        "the data channel's TLS certificate (host {host}) is signed by an unknown authority: if a proxy inspects TLS, point AWS_CA_BUNDLE (or ca_bundle in your AWS profile) at its CA certificate (PEM){bundle}"
    )]
    UnknownIssuer { host: String, bundle: String },
}

/// How every websocket of a session is dialled: who signs the upgrade, which proxy it
/// goes through, which certificates are trusted.
#[derive(Clone, Default)]
pub struct Dialer {
    /// `None` sends unsigned upgrades (tests, and testbeds that accept them).
    pub signer: Option<Arc<dyn UpgradeSigner>>,
    pub network: Network,
}

/// Proxy routes and TLS trust, shared by every dial.
#[derive(Clone, Default)]
pub struct Network {
    pub routes: Arc<ProxyRoutes>,
    /// `None`: the platform's roots only, loaded at dial time.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The CA bundle in use, described for error messages ("/x.pem from AWS_CA_BUNDLE").
    pub ca_bundle: Option<String>,
    /// The command's set-up timeline (`-v`), shared by every dial.
    pub timeline: crate::timeline::Timeline,
    /// The command's address cache, shared by every dial and the SDK's HTTP client.
    pub dns: super::dns::Resolver,
}

/// A TCP (and TLS) connection to a data-channel host, opened while StartSession is in
/// flight; [`connect_reusing`] upgrades on it when the StreamUrl names the same scheme,
/// host and port.
pub struct Predialed {
    tls: bool,
    host: String,
    port: u16,
    stream: MaybeTlsStream<NetStream>,
}

impl Predialed {
    fn serves(&self, tls: bool, host: &str, port: u16) -> bool {
        self.tls == tls && self.port == port && self.host.eq_ignore_ascii_case(host)
    }
}

/// Opens DNS, TCP (or the proxy's tunnel) and TLS to `origin` (`wss://host[:port]`, or
/// `ws://` to a loopback host) ahead of the StreamUrl, on the same route and trust as
/// [`connect`]. Bounded by the websocket handshake timeout.
pub async fn predial(origin: &str, network: &Network) -> Result<Predialed, ConnectError> {
    let uri: Uri = origin
        .parse()
        .map_err(|_| ConnectError::BadUrl(redact(origin)))?;
    let host = uri.host().unwrap_or_default().to_owned();
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") if is_loopback(&host) => false,
        _ => return Err(ConnectError::BadUrl(redact(origin))),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let config = network.tls.clone().unwrap_or_else(|| client_config(&[]));
    let stream = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        open(tls, &host, port, network, &config, "data channel"),
    )
    .await
    .map_err(|_| ConnectError::Timeout(HANDSHAKE_TIMEOUT))??;
    Ok(Predialed {
        tls,
        host,
        port,
        stream,
    })
}

/// Dials `stream_url` as returned by StartSession and sends the opening text frame.
/// Signs the upgrade with `dialer`'s signer unless the URL is presigned (docs/protocol.md §2.6).
pub async fn connect(
    stream_url: &str,
    token: &str,
    client_id: &str,
    dialer: &Dialer,
) -> Result<DataChannelSocket, ConnectError> {
    connect_reusing(stream_url, token, client_id, dialer, None).await
}

/// [`connect`], upgrading on `predialed` when it leads to the StreamUrl's scheme, host and
/// port (else it is dropped and the StreamUrl's host dialled afresh).
pub async fn connect_reusing(
    stream_url: &str,
    token: &str,
    client_id: &str,
    dialer: &Dialer,
    predialed: Option<Predialed>,
) -> Result<DataChannelSocket, ConnectError> {
    let uri: Uri = stream_url
        .parse()
        .map_err(|_| ConnectError::BadUrl(redact(stream_url)))?;
    let host = uri.host().unwrap_or_default().to_owned();
    match uri.scheme_str() {
        Some("wss") => {}
        Some("ws") if is_loopback(&host) => {}
        Some("ws") => return Err(ConnectError::Insecure(redact(stream_url))),
        _ => return Err(ConnectError::BadUrl(redact(stream_url))),
    }
    let mut request = stream_url
        .into_client_request()
        .map_err(|_| ConnectError::BadUrl(redact(stream_url)))?;
    authenticate(&mut request, stream_url, dialer).await?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE));
    let mut ws = dial_on(
        request,
        &uri,
        &dialer.network,
        config,
        predialed,
        "data channel",
    )
    .await?;
    dialer.network.timeline.websocket_opened();
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

/// Opens a websocket for `request` (already authenticated) to `uri`, a `ws://` or `wss://`
/// URL checked by the caller: through the proxy [`ProxyRoutes::choose`] picks or direct,
/// TLS with `net`'s trust, within [`HANDSHAKE_TIMEOUT`]. Every websocket sallyport opens
/// goes this way (the data channel, EICE tunnels).
pub(crate) async fn dial(
    request: tungstenite::handshake::client::Request,
    uri: &Uri,
    net: &Network,
    config: WebSocketConfig,
    what: &'static str,
) -> Result<DataChannelSocket, ConnectError> {
    dial_on(request, uri, net, config, None, what).await
}

/// [`dial`], upgrading on `predialed` when it leads to `uri`'s scheme, host and port
/// (else it is dropped and the host dialled afresh).
async fn dial_on(
    request: tungstenite::handshake::client::Request,
    uri: &Uri,
    net: &Network,
    config: WebSocketConfig,
    predialed: Option<Predialed>,
    what: &'static str,
) -> Result<DataChannelSocket, ConnectError> {
    let host = uri.host().unwrap_or_default().to_owned();
    let tls_dest = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if tls_dest { 443 } else { 80 });
    let tls = net.tls.clone().unwrap_or_else(|| client_config(&[]));
    let dial = async {
        let stream = match predialed {
            Some(p) if p.serves(tls_dest, &host, port) => {
                tracing::debug!(
                    host,
                    port,
                    "upgrading on the connection opened during StartSession"
                );
                p.stream
            }
            other => {
                if let Some(p) = other {
                    tracing::debug!(
                        opened = p.host,
                        wanted = host,
                        "the StreamUrl names another host than the one dialled ahead: dialling it"
                    );
                }
                open(tls_dest, &host, port, net, &tls, what).await?
            }
        };
        let began = std::time::Instant::now();
        let upgraded = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|source| match source {
                tungstenite::Error::Http(resp) => ConnectError::Refused {
                    status: resp.status().as_u16(),
                },
                source => ConnectError::Unreachable {
                    host: host.clone(),
                    source,
                },
            })?;
        net.timeline.done(crate::timeline::Step::Upgrade, began);
        Ok::<_, ConnectError>(upgraded)
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, dial).await {
        Err(_) => Err(ConnectError::Timeout(HANDSHAKE_TIMEOUT)),
        Ok(r) => Ok(r?.0),
    }
}

/// DNS, TCP (or a proxy's CONNECT tunnel) and, for `tls`, TLS to `host:port`, each step
/// on the set-up timeline.
async fn open(
    tls: bool,
    host: &str,
    port: u16,
    net: &Network,
    config: &Arc<rustls::ClientConfig>,
    what: &'static str,
) -> Result<MaybeTlsStream<NetStream>, ConnectError> {
    use crate::timeline::Step;
    let done = |step, began| net.timeline.done(step, began);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let unreachable = |e: std::io::Error| ConnectError::Unreachable {
        host: host.to_owned(),
        source: tungstenite::Error::Io(e),
    };
    let stream = match net.routes.choose(tls, host, port) {
        Some(proxy) => {
            tracing::info!(%proxy, host, port, "{what} websocket via proxy");
            let began = std::time::Instant::now();
            let tunnel = open_tunnel(proxy, bare, port, config)
                .await
                .map_err(ConnectError::Proxy)?;
            done(Step::Tcp, began);
            tunnel
        }
        None => {
            tracing::info!(host, port, "{what} websocket direct (no proxy)");
            let began = std::time::Instant::now();
            let addrs: Vec<std::net::SocketAddr> = net
                .dns
                .lookup(bare)
                .await
                .map_err(unreachable)?
                .iter()
                .map(|ip| std::net::SocketAddr::new(*ip, port))
                .collect();
            done(Step::Dns, began);
            let began = std::time::Instant::now();
            let tcp = TcpStream::connect(&addrs[..]).await.map_err(unreachable)?;
            done(Step::Tcp, began);
            let _ = tcp.set_nodelay(true);
            NetStream::Tcp(tcp)
        }
    };
    if !tls {
        return Ok(MaybeTlsStream::Plain(stream));
    }
    let began = std::time::Instant::now();
    let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
        .map_err(|_| ConnectError::BadUrl(host.to_owned()))?;
    let secured = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| {
            if is_unknown_issuer(&e) {
                ConnectError::UnknownIssuer {
                    host: host.to_owned(),
                    bundle: net
                        .ca_bundle
                        .as_ref()
                        .map(|b| format!("; the CA bundle in use, {b}, does not sign it"))
                        .unwrap_or_default(),
                }
            } else {
                unreachable(e)
            }
        })?;
    done(Step::Tls, began);
    Ok(MaybeTlsStream::Rustls(secured))
}

/// Adds the SigV4 headers to the upgrade request, unless the URL is presigned or there is
/// no signer.
async fn authenticate(
    request: &mut tungstenite::handshake::client::Request,
    stream_url: &str,
    dialer: &Dialer,
) -> Result<(), ConnectError> {
    let url = redact(stream_url);
    if is_presigned(stream_url) {
        tracing::debug!(
            url,
            "data channel upgrade: presigned URL, no signing headers"
        );
        return Ok(());
    }
    let Some(signer) = &dialer.signer else {
        tracing::debug!(url, "data channel upgrade: unsigned (no signer)");
        return Ok(());
    };
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let auth = signer.sign(stream_url, &host).await.map_err(|e| {
        if e.credentials {
            ConnectError::Credentials(e.message)
        } else {
            // The signer could not make sense of the URL.
            tracing::debug!("signing failed: {}", e.message);
            ConnectError::BadUrl(url.clone())
        }
    })?;
    for (name, value) in auth.headers {
        let value = value
            .parse()
            .map_err(|_| ConnectError::Credentials(format!("the {name} header is not valid")))?;
        request.headers_mut().insert(name, value);
    }
    tracing::debug!(
        url,
        access_key_id = auth.access_key_id,
        "data channel upgrade: signed (SigV4, ssmmessages)"
    );
    Ok(())
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Stream URLs carry nothing secret today, but their query (or a fragment) may; keep
/// messages and logs to the path, whether or not the URL parses.
fn redact(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_owned()
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
            &Dialer::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ConnectError::Insecure(_)), "{err}");
        assert!(!err.to_string().contains("role="), "query is redacted");
    }

    #[tokio::test]
    async fn a_url_that_does_not_parse_keeps_its_query_out_of_the_error() {
        for url in [
            "wss://ssm messages.example.com/v1/data-channel/s?X-Amz-Signature=s3cret",
            "wss://ssmmessages.example.com/v1/data-channel/s\n?X-Amz-Signature=s3cret",
            "https://ssmmessages.example.com/v1/data-channel/s?X-Amz-Signature=s3cret",
        ] {
            let err = connect(url, "t", "c", &Dialer::default())
                .await
                .unwrap_err();
            assert!(matches!(err, ConnectError::BadUrl(_)), "{url}: {err}");
            assert!(!err.to_string().contains("s3cret"), "{url}: {err}");
        }
    }

    /// Signs with a fixed header and counts its calls; fails when `fail`.
    struct FakeSigner {
        calls: std::sync::atomic::AtomicU32,
        fail: bool,
    }

    impl UpgradeSigner for FakeSigner {
        fn sign<'a>(
            &'a self,
            _url: &'a str,
            host: &'a str,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<super::super::UpgradeAuth, super::super::SignError>,
                    > + Send
                    + 'a,
            >,
        > {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let fail = self.fail;
            Box::pin(async move {
                if fail {
                    return Err(super::super::SignError {
                        message: "no credentials".into(),
                        credentials: true,
                    });
                }
                Ok(super::super::UpgradeAuth {
                    headers: vec![
                        ("Authorization", format!("signed-for {host}")),
                        ("X-Amz-Date", "20261130T201530Z".into()),
                    ],
                    access_key_id: "AKIDTEST".into(),
                })
            })
        }
    }

    /// Accepts one websocket on 127.0.0.1 and reports its upgrade request's headers.
    async fn one_upgrade() -> (
        String,
        tokio::sync::oneshot::Receiver<tungstenite::http::HeaderMap>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tx = Some(tx);
            // tungstenite's callback type, not ours to shrink.
            #[allow(clippy::result_large_err)]
            let cb = |req: &tungstenite::handshake::server::Request,
                      resp: tungstenite::handshake::server::Response| {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(req.headers().clone());
                }
                Ok(resp)
            };
            if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await {
                use futures_util::StreamExt;
                while ws.next().await.is_some() {}
            }
        });
        (format!("ws://{addr}/v1/data-channel/s"), rx)
    }

    fn signer(fail: bool) -> (Arc<FakeSigner>, Dialer) {
        let s = Arc::new(FakeSigner {
            calls: Default::default(),
            fail,
        });
        let dialer = Dialer {
            signer: Some(s.clone()),
            ..Dialer::default()
        };
        (s, dialer)
    }

    #[tokio::test]
    async fn the_upgrade_carries_the_signers_headers_for_the_host_sent() {
        let (url, headers) = one_upgrade().await;
        let (s, dialer) = signer(false);
        let url = format!("{url}?role=publish_subscribe");
        let _ws = connect(&url, "t", "c", &dialer).await.unwrap();
        let headers = headers.await.unwrap();
        let host = headers["host"].to_str().unwrap().to_owned();
        assert_eq!(
            headers["authorization"],
            format!("signed-for {host}").as_str()
        );
        assert_eq!(headers["x-amz-date"], "20261130T201530Z");
        assert_eq!(s.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_presigned_url_is_dialled_without_signing_headers() {
        let (url, headers) = one_upgrade().await;
        let (s, dialer) = signer(false);
        let url = format!("{url}?role=publish_subscribe&X-Amz-Signature=abc");
        let _ws = connect(&url, "t", "c", &dialer).await.unwrap();
        let headers = headers.await.unwrap();
        assert!(headers.get("authorization").is_none());
        assert!(headers.get("x-amz-date").is_none());
        assert_eq!(s.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_signing_failure_is_a_credentials_error_before_dialing() {
        let (s, dialer) = signer(true);
        // Nothing listens on this URL: the error must come from signing, not the dial.
        let err = connect("ws://127.0.0.1:9/v1/data-channel/s", "t", "c", &dialer)
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Credentials(_)), "{err}");
        assert_eq!(s.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Serves websockets on 127.0.0.1 and counts the TCP connections accepted.
    async fn counting_server() -> (String, Arc<std::sync::atomic::AtomicU32>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("ws://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                        use futures_util::StreamExt;
                        while ws.next().await.is_some() {}
                    }
                });
            }
        });
        (origin, accepted)
    }

    fn count(n: &std::sync::atomic::AtomicU32) -> u32 {
        n.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn the_connection_opened_ahead_carries_the_upgrade() {
        let (origin, accepted) = counting_server().await;
        let ahead = predial(&origin, &Network::default()).await.unwrap();
        let url = format!("{origin}/v1/data-channel/s?role=publish_subscribe");
        let _ws = connect_reusing(&url, "t", "c", &Dialer::default(), Some(ahead))
            .await
            .unwrap();
        // A fresh dial's upgrade would finish only after both connections were accepted.
        assert_eq!(count(&accepted), 1, "no second connection");
    }

    #[tokio::test]
    async fn a_stream_url_on_another_host_is_dialled_afresh() {
        let (a, a_accepted) = counting_server().await;
        let (b, b_accepted) = counting_server().await;
        let ahead = predial(&a, &Network::default()).await.unwrap();
        let url = format!("{b}/v1/data-channel/s?role=publish_subscribe");
        let _ws = connect_reusing(&url, "t", "c", &Dialer::default(), Some(ahead))
            .await
            .unwrap();
        assert_eq!((count(&a_accepted), count(&b_accepted)), (1, 1));
        // Not a websocket origin, or plain ws:// to another machine: nothing is dialled.
        for bad in ["https://a.example", "ws://a.example:80"] {
            let e = predial(bad, &Network::default()).await.err().unwrap();
            assert!(matches!(e, ConnectError::BadUrl(_)), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn non_websocket_schemes_are_refused() {
        let err = connect("https://example.com/x", "t", "c", &Dialer::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::BadUrl(_)), "{err}");
    }
}

#[cfg(test)]
#[path = "connect_tls_tests.rs"]
mod tls_tests;
