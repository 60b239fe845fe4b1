use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::StreamExt;
use tokio::net::TcpListener;

use super::*;

/// What a test data-channel server does with each websocket once the client's opening
/// frame arrived.
#[derive(Clone, Copy)]
enum Peer {
    /// Drop the connection at once.
    Kill,
    /// Send one binary message of this many bytes, then wait.
    Send(usize),
}

/// A websocket server on 127.0.0.1 that treats every connection as `peer` says; its URL.
async fn serve(peer: Peer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/data-channel/s", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                // The client's opening frame.
                let _ = ws.next().await;
                match peer {
                    Peer::Kill => drop(ws),
                    Peer::Send(n) => {
                        let _ = ws.send(WsMessage::binary(vec![0u8; n])).await;
                        while ws.next().await.is_some() {}
                    }
                }
            });
        }
    });
    url
}

/// A resumer that always succeeds with `url`, counting its calls.
struct Always {
    url: String,
    calls: AtomicU32,
}

impl Resume for Always {
    fn resume<'a>(
        &'a self,
        _session_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Resumed>, ResumeError>> + Send + 'a>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(Some(Resumed {
                token: "t".into(),
                stream_url: self.url.clone(),
            }))
        })
    }
}

async fn open(peer: Peer, budget: Duration) -> (Link, Arc<Always>) {
    let url = serve(peer).await;
    let resumer = Arc::new(Always {
        url: url.clone(),
        calls: AtomicU32::new(0),
    });
    let target = LinkTarget {
        session_id: "s".into(),
        client_id: "c".into(),
        resumer: Some(resumer.clone()),
        dialer: Dialer::default(),
    };
    let opts = LinkOptions {
        resume_budget: budget,
        ..LinkOptions::default()
    };
    let link = Link::open(&url, "t", target, opts).await.unwrap();
    (link, resumer)
}

/// The link's last event, skipping reconnects; within `limit`.
async fn failure(link: &mut Link, limit: Duration) -> LinkError {
    tokio::time::timeout(limit, async {
        loop {
            match link.recv().await {
                Some(LinkEvent::Failed(e)) => return e,
                Some(_) => {}
                None => panic!("the link ended without saying why"),
            }
        }
    })
    .await
    .expect("the link kept going")
}

/// A service that accepts every resume but kills each new websocket at once: the link
/// gives up when the resume budget is spent, instead of redialling forever (each
/// successful redial used to restart the budget).
#[tokio::test]
async fn websockets_that_die_at_once_spend_the_resume_budget() {
    let budget = Duration::from_secs(1);
    let (mut link, resumer) = open(Peer::Kill, budget).await;
    let started = Instant::now();
    let e = failure(&mut link, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(matches!(e, LinkError::ResumeFailed { .. }), "{e}");
    assert!(e.to_string().contains("failed at once"), "{e}");
    assert!(took < budget + Duration::from_millis(500), "took {took:?}");
    // 100 ms, then doubling (with jitter) inside one second: a handful, not a flood.
    let calls = resumer.calls.load(Ordering::SeqCst);
    assert!((2..=6).contains(&calls), "{calls} resume calls");
}

/// A message over the size limit is a protocol violation: the link ends at once and
/// does not resume.
#[tokio::test]
async fn an_oversized_message_ends_the_link_without_resuming() {
    let (mut link, resumer) = open(Peer::Send(2 << 20), Duration::from_secs(30)).await;
    let e = failure(&mut link, Duration::from_secs(5)).await;
    assert!(matches!(e, LinkError::PeerViolation { .. }), "{e}");
    assert!(e.to_string().contains("Message too long"), "{e}");
    assert_eq!(resumer.calls.load(Ordering::SeqCst), 0);
}
