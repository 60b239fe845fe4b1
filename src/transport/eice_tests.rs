//! The tunnel against a websocket server on 127.0.0.1 that plays the endpoint.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::*;

/// Appends a fake signature and counts its calls.
struct FakePresigner(AtomicU32);

impl TunnelPresigner for FakePresigner {
    fn presign<'a>(
        &'a self,
        url: &'a str,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, SignError>> + Send + 'a>> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(format!("{url}&X-Amz-Signature=sig{n}-{host}")) })
    }
}

/// What the fake endpoint does with one tunnel.
#[derive(Clone, Copy)]
enum Play {
    /// Echoes binary frames (checking each is at most [`MAX_FRAME`]) until the client closes.
    Echo,
    /// Sends a text frame.
    Text,
    /// Closes with this code and a reason holding a control character.
    Close(u16),
    /// Answers the upgrade with HTTP 403.
    Refuse,
    /// Closes with 1008 after this long.
    CloseAfter(Duration),
}

/// Serves `play` to every tunnel; returns the DnsName (`127.0.0.1:PORT`) and the request
/// URIs seen.
async fn endpoint(play: Play) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dns = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move { serve(tcp, play, tx).await });
        }
    });
    (dns, rx)
}

async fn serve(
    tcp: tokio::net::TcpStream,
    play: Play,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) {
    #[allow(clippy::result_large_err)]
    let cb = |req: &tungstenite::handshake::server::Request,
              resp: tungstenite::handshake::server::Response| {
        let _ = tx.send(req.uri().to_string());
        if matches!(play, Play::Refuse) {
            let mut r = tungstenite::handshake::server::ErrorResponse::new(Some("denied".into()));
            *r.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
            return Err(r);
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
        return;
    };
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }))
    };
    match play {
        Play::Echo => {
            while let Some(Ok(m)) = ws.next().await {
                match m {
                    Message::Binary(b) => {
                        assert!(b.len() <= MAX_FRAME, "frame of {} bytes", b.len());
                        if ws.send(Message::Binary(b)).await.is_err() {
                            return;
                        }
                    }
                    // tungstenite answers the close itself on the next read.
                    Message::Close(_) => {}
                    _ => {}
                }
            }
        }
        Play::Text => {
            let _ = ws.send(Message::text("InternalError\x1b[31m")).await;
        }
        Play::Close(code) => {
            let _ = ws.send(close(code, "Connection refused\nto port 22")).await;
        }
        Play::Refuse => {}
        Play::CloseAfter(d) => {
            tokio::time::sleep(d).await;
            let _ = ws.send(close(1008, "max tunnel duration")).await;
        }
    }
    while ws.next().await.is_some() {}
}

fn target(dns: &str, max: Duration) -> TunnelTarget {
    TunnelTarget {
        dns_name: dns.to_owned(),
        endpoint_id: "eice-0123".into(),
        address: "10.0.1.12".into(),
        port: 22,
        max_duration: max,
        plain: true,
    }
}

fn dialer() -> (Arc<FakePresigner>, EiceDialer) {
    let p = Arc::new(FakePresigner(AtomicU32::new(0)));
    let d = EiceDialer {
        presigner: p.clone(),
        network: Network::default(),
    };
    (p, d)
}

#[tokio::test]
async fn bytes_cross_intact_in_frames_of_at_most_64_kib_with_a_presign_per_tunnel() {
    let (dns, mut seen) = endpoint(Play::Echo).await;
    let (presigner, d) = dialer();
    for round in 0..2 {
        let (pipe, mut guard) = d.open(&target(&dns, MAX_TUNNEL_DURATION)).await.unwrap();
        let (mut rd, mut wr) = tokio::io::split(pipe);
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 + round) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            wr.write_all(&sent).await.unwrap();
            wr.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut back))
            .await
            .expect("echo in time")
            .unwrap();
        writer.await.unwrap();
        assert!(back == data, "{} bytes back of {}", back.len(), data.len());
        let f = guard.failure(Duration::from_secs(5)).await;
        assert!(f.is_none(), "{f:?}");
        let uri = seen.recv().await.unwrap();
        assert_eq!(
            uri,
            format!(
                "/openTunnel?instanceConnectEndpointId=eice-0123&remotePort=22&privateIpAddress=10.0.1.12&maxTunnelDuration=3600&X-Amz-Signature=sig{round}-{dns}"
            )
        );
    }
    assert_eq!(presigner.0.load(Ordering::SeqCst), 2);
}

async fn failure_of(play: Play, max: Duration) -> TunnelError {
    let (dns, _seen) = endpoint(play).await;
    let (_, d) = dialer();
    let (pipe, mut guard) = match d.open(&target(&dns, max)).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    let f = guard.failure(Duration::from_secs(20)).await;
    drop(pipe);
    f.expect("a failure")
}

#[tokio::test]
async fn a_text_frame_is_an_error_shown_as_text() {
    let e = failure_of(Play::Text, MAX_TUNNEL_DURATION).await;
    assert!(matches!(e, TunnelError::Text(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "the EC2 Instance Connect Endpoint sent a text frame, which is an error: InternalError\\x1b[31m"
    );
}

#[tokio::test]
async fn a_close_other_than_1000_carries_its_reason_on_one_line() {
    let e = failure_of(Play::Close(1011), MAX_TUNNEL_DURATION).await;
    assert_eq!(
        e.to_string(),
        "the EC2 Instance Connect Endpoint closed the tunnel (code 1011): Connection refused\\nto port 22"
    );
}

#[tokio::test]
async fn an_http_refusal_names_the_status_and_what_to_check() {
    let e = failure_of(Play::Refuse, MAX_TUNNEL_DURATION).await;
    assert!(matches!(e, TunnelError::Refused { status: 403, .. }), "{e}");
    assert!(
        e.to_string().contains("ec2-instance-connect:OpenTunnel"),
        "{e}"
    );
    assert!(
        !e.to_string().contains("sig0"),
        "the presigned query is never shown: {e}"
    );
}

#[tokio::test]
async fn the_end_at_the_maximum_duration_is_said_in_one_line() {
    let e = failure_of(
        Play::CloseAfter(Duration::from_millis(1200)),
        Duration::from_secs(1),
    )
    .await;
    assert!(matches!(e, TunnelError::MaxDuration(1)), "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[tokio::test]
async fn a_close_long_before_the_maximum_is_not_taken_for_it() {
    let e = failure_of(
        Play::CloseAfter(Duration::from_millis(10)),
        Duration::from_secs(60),
    )
    .await;
    assert!(matches!(e, TunnelError::Closed { code: 1008, .. }), "{e}");
}

#[test]
fn urls() {
    let mut t = target(
        "eice-1.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com",
        Duration::from_secs(90),
    );
    t.plain = false;
    t.address = "2001:db8::12".into();
    assert_eq!(
        t.url().unwrap(),
        "wss://eice-1.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com/openTunnel?instanceConnectEndpointId=eice-0123&remotePort=22&privateIpAddress=2001%3Adb8%3A%3A12&maxTunnelDuration=90"
    );
    t.plain = true;
    assert!(matches!(t.url(), Err(TunnelError::Insecure(_))));
    for loopback in ["127.0.0.1:4567", "localhost:80", "[::1]:9000", "127.0.0.1"] {
        let t = target(loopback, Duration::from_secs(3600));
        assert!(
            t.url()
                .unwrap()
                .starts_with(&format!("ws://{loopback}/openTunnel?")),
            "{loopback}"
        );
    }
    for bad in ["", "evil.com/x?", "a b", "h@st"] {
        assert!(
            matches!(
                target(bad, Duration::from_secs(1)).url(),
                Err(TunnelError::BadEndpoint(_))
            ),
            "{bad:?}"
        );
    }
}
