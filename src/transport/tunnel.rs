//! An HTTP `CONNECT` tunnel through a proxy (docs/protocol.md §2.7), for the websocket and
//! for diagnosing the SDK's failed proxied calls: TCP to the proxy (TLS to it first for an
//! `https://` proxy URL), `CONNECT host:port`, `Proxy-Authorization: Basic` from the
//! URL's userinfo, then the status line. The proxy's answer is read up to
//! [`MAX_RESPONSE`] bytes, one byte at a time so nothing past its end is consumed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::proxy::ProxyUrl;

/// A proxy's answer to CONNECT longer than this is refused (status line + headers).
pub const MAX_RESPONSE: usize = 64 * 1024;

/// A byte stream to the destination: plain TCP, or a tunnel inside TLS to an `https://`
/// proxy. (TLS to the destination itself is added on top by the websocket client.)
#[derive(Debug)]
pub enum NetStream {
    Tcp(TcpStream),
    ProxyTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::ProxyTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::ProxyTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            NetStream::ProxyTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            NetStream::ProxyTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a tunnel through a proxy could not be opened: one line naming the proxy (its
/// password hidden).
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProxyFailure {
    #[error("could not connect to the proxy {proxy}: {detail}")]
    Unreachable { proxy: String, detail: String },
    #[error(
        "the proxy {proxy} needs credentials (HTTP 407): put them in the proxy URL, as http://user:password@host:port"
    )]
    NeedsCredentials { proxy: String },
    #[error("the proxy {proxy} refused the credentials in its URL")]
    BadCredentials { proxy: String },
    #[error("the proxy {proxy} refused CONNECT to {dest} with HTTP {status}")]
    Refused {
        proxy: String,
        dest: String,
        /// `403 Forbidden`: code and reason phrase.
        status: String,
    },
    #[error("the proxy {proxy} answered CONNECT with something that is not HTTP ({detail})")]
    Malformed { proxy: String, detail: String },
}

/// Opens a tunnel to `host:port` through `proxy`. `tls` is used for TLS to an
/// `https://` proxy.
pub async fn open_tunnel(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<NetStream, ProxyFailure> {
    let name = proxy.to_string();
    let unreachable = |detail: String| ProxyFailure::Unreachable {
        proxy: name.clone(),
        detail,
    };
    let tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let mut stream = if proxy.tls {
        let server = rustls::pki_types::ServerName::try_from(proxy.host.clone())
            .map_err(|e| unreachable(format!("bad TLS server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(server, tcp)
            .await
            .map_err(|e| unreachable(format!("TLS to the proxy failed: {e}")))?;
        NetStream::ProxyTls(Box::new(tls))
    } else {
        NetStream::Tcp(tcp)
    };
    let dest = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n");
    if let Some(auth) = proxy.basic_auth() {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let head = read_head(&mut stream)
        .await
        .map_err(|detail| match detail {
            HeadError::Io(e) => unreachable(e),
            HeadError::Malformed(detail) => ProxyFailure::Malformed {
                proxy: name.clone(),
                detail,
            },
        })?;
    let (code, status) = parse_status(&head).ok_or_else(|| ProxyFailure::Malformed {
        proxy: name.clone(),
        detail: "no HTTP status line".into(),
    })?;
    match code {
        200..=299 => Ok(stream),
        // tinyproxy (1.11) refuses wrong credentials with 401 rather than 407; a CONNECT
        // is answered by the proxy alone, so either means the proxy refused them.
        401 | 407 if proxy.user.is_some() => Err(ProxyFailure::BadCredentials { proxy: name }),
        407 => Err(ProxyFailure::NeedsCredentials { proxy: name }),
        _ => Err(ProxyFailure::Refused {
            proxy: name,
            dest,
            status,
        }),
    }
}

pub(crate) enum HeadError {
    Io(String),
    Malformed(String),
}

/// Reads up to and including the blank line that ends the proxy's response head.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<String, HeadError> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_RESPONSE {
            return Err(HeadError::Malformed(format!(
                "a response head over {MAX_RESPONSE} bytes"
            )));
        }
        match stream.read_u8().await {
            Ok(b) => head.push(b),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(HeadError::Io(if head.is_empty() {
                    "the proxy closed the connection without answering CONNECT".into()
                } else {
                    "the proxy closed the connection in the middle of its answer".into()
                }));
            }
            Err(e) => return Err(HeadError::Io(e.to_string())),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// `HTTP/1.1 403 Forbidden` -> `(403, "403 Forbidden")`. The status goes into a message
/// for the user, so it is shown as text (a proxy's reason phrase is the peer's words).
pub(crate) fn parse_status(head: &str) -> Option<(u16, String)> {
    let line = head.lines().next()?;
    let rest = line.strip_prefix("HTTP/")?;
    let (_version, status) = rest.split_once(' ')?;
    let status = status.trim();
    let code = status.get(..3)?.parse().ok()?;
    Some((code, crate::text::shown(status).into_owned()))
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status("HTTP/1.1 200 Connection established\r\n\r\n"),
            Some((200, "200 Connection established".into()))
        );
        assert_eq!(
            parse_status("HTTP/1.0 403 Forbidden\r\nX: y\r\n\r\n"),
            Some((403, "403 Forbidden".into()))
        );
        assert_eq!(
            parse_status("HTTP/1.1 407\r\n\r\n"),
            Some((407, "407".into()))
        );
        assert_eq!(parse_status("SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse_status("HTTP/1.1 abc\r\n\r\n"), None);
    }

    fn tls() -> Arc<rustls::ClientConfig> {
        crate::transport::trust::client_config(&[])
    }

    /// A one-shot fake proxy that answers CONNECT with `answer` and reports the request.
    async fn fake_proxy(answer: &'static [u8]) -> (u16, tokio::sync::oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            while !req.ends_with(b"\r\n\r\n") {
                let Ok(b) = s.read_u8().await else { return };
                req.push(b);
            }
            let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
            let _ = s.write_all(answer).await;
            let _ = s.write_all(b"after").await;
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        (port, rx)
    }

    fn proxy(port: u16, userinfo: &str) -> ProxyUrl {
        ProxyUrl::parse(&format!("http://{userinfo}127.0.0.1:{port}"), "test").unwrap()
    }

    #[tokio::test]
    async fn connect_sends_host_and_basic_auth_and_leaves_the_stream_untouched() {
        let (port, req) = fake_proxy(b"HTTP/1.1 200 OK\r\nVia: test\r\n\r\n").await;
        let p = proxy(port, "al%40ice:pw@");
        let mut s = open_tunnel(&p, "ssmmessages.example.com", 443, &tls())
            .await
            .unwrap();
        let req = req.await.unwrap();
        assert!(
            req.starts_with("CONNECT ssmmessages.example.com:443 HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(
            req.contains("\r\nHost: ssmmessages.example.com:443\r\n"),
            "{req}"
        );
        // base64("al@ice:pw")
        assert!(
            req.contains("\r\nProxy-Authorization: Basic YWxAaWNlOnB3\r\n"),
            "{req}"
        );
        let mut after = [0u8; 5];
        s.read_exact(&mut after).await.unwrap();
        assert_eq!(&after, b"after");
    }

    #[tokio::test]
    async fn refusals_are_one_line_naming_the_proxy_without_its_password() {
        let (port, _) = fake_proxy(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let e = open_tunnel(&proxy(port, ""), "h", 443, &tls())
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ProxyFailure::NeedsCredentials { .. }), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");

        let (port, _) = fake_proxy(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let e = open_tunnel(&proxy(port, "u:secret@"), "h", 443, &tls())
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ProxyFailure::BadCredentials { .. }), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");

        let (port, _) = fake_proxy(b"HTTP/1.0 401 Unauthorized\r\n\r\n").await;
        let e = open_tunnel(&proxy(port, "u:secret@"), "h", 443, &tls())
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ProxyFailure::BadCredentials { .. }), "{e}");

        let (port, _) = fake_proxy(b"HTTP/1.0 403 Forbidden\r\n\r\n").await;
        let e = open_tunnel(&proxy(port, ""), "h", 8443, &tls())
            .await
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "the proxy http://127.0.0.1:{port} refused CONNECT to h:8443 with HTTP 403 Forbidden"
            )
        );

        let (port, _) = fake_proxy(b"SSH-2.0-x\r\n\r\n").await;
        let e = open_tunnel(&proxy(port, ""), "h", 1, &tls())
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ProxyFailure::Malformed { .. }), "{e}");
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_bound() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let junk = vec![b'x'; 4096];
            while s.write_all(&junk).await.is_ok() {}
        });
        let e = open_tunnel(&proxy(port, ""), "h", 1, &tls())
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ProxyFailure::Malformed { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_proxy_that_is_down_is_unreachable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = open_tunnel(&proxy(port, ""), "h", 1, &tls())
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ProxyFailure::Unreachable { .. }), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "could not connect to the proxy http://127.0.0.1:{port}"
            )),
            "{e}"
        );
    }
}
