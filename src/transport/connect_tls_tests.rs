//! `wss://` dials against a local TLS websocket server whose certificate comes from a
//! test CA (`testdata/`): trust through a CA bundle, the unknown-issuer error, and TLS
//! inside a CONNECT tunnel (SNI and verification for the destination, not the proxy).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::transport::ProxyRoutes;
use crate::transport::proxy::ProxyUrl;

const CA: &[u8] = include_bytes!("testdata/test-ca.pem");
const LEAF: &[u8] = include_bytes!("testdata/test-leaf.pem");
const KEY: &[u8] = include_bytes!("testdata/test-leaf.key");

fn ca() -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(CA)
        .collect::<Result<_, _>>()
        .unwrap()
}

/// TLS with the test leaf certificate (for 127.0.0.1 and localhost).
fn acceptor() -> tokio_rustls::TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(LEAF)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS websocket server on 127.0.0.1; its port.
async fn tls_server() -> u16 {
    let acceptor = acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await {
                    while ws.next().await.is_some() {}
                }
            });
        }
    });
    port
}

/// A CONNECT proxy on 127.0.0.1 that relays anything (over TLS when `tls`); counts its
/// tunnels.
async fn relay_proxy(tls: bool) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    let acceptor = acceptor();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (count, acceptor) = (count.clone(), acceptor.clone());
            tokio::spawn(async move {
                if tls {
                    if let Ok(client) = acceptor.accept(client).await {
                        relay(client, &count).await;
                    }
                } else {
                    relay(client, &count).await;
                }
            });
        }
    });
    (port, tunnels)
}

async fn relay<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut client: S,
    count: &AtomicUsize,
) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let Ok(b) = client.read_u8().await else {
            return;
        };
        head.push(b);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let Some(dest) = head
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split(' ').next())
    else {
        return;
    };
    let Ok(mut upstream) = tokio::net::TcpStream::connect(dest).await else {
        return;
    };
    count.fetch_add(1, Ordering::SeqCst);
    let _ = client.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

fn dialer(bundle: bool, proxy: Option<&str>) -> Dialer {
    let routes = ProxyRoutes {
        tls: proxy.map(|p| ProxyUrl::parse(p, "test").unwrap()),
        ..ProxyRoutes::default()
    };
    Dialer {
        signer: None,
        network: Network {
            routes: Arc::new(routes),
            tls: Some(client_config(&if bundle { ca() } else { Vec::new() })),
            ca_bundle: bundle.then(|| "testdata/test-ca.pem from AWS_CA_BUNDLE".to_owned()),
            timeline: Default::default(),
            dns: Default::default(),
        },
    }
}

#[tokio::test]
async fn wss_is_trusted_through_the_ca_bundle() {
    let port = tls_server().await;
    let url = format!("wss://127.0.0.1:{port}/v1/data-channel/s?role=publish_subscribe");
    connect(&url, "t", "c", &dialer(true, None)).await.unwrap();
}

#[tokio::test]
async fn an_unknown_issuer_is_refused_with_a_line_naming_aws_ca_bundle() {
    let port = tls_server().await;
    let url = format!("wss://127.0.0.1:{port}/v1/data-channel/s");
    let err = connect(&url, "t", "c", &dialer(false, None))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::UnknownIssuer { .. }), "{err}");
    assert!(err.to_string().contains("AWS_CA_BUNDLE"), "{err}");
}

#[tokio::test]
async fn wss_through_a_connect_proxy_verifies_the_destination() {
    let port = tls_server().await;
    let (proxy, tunnels) = relay_proxy(false).await;
    let proxy = format!("http://127.0.0.1:{proxy}");
    let url = format!("wss://127.0.0.1:{port}/v1/data-channel/s");
    connect(&url, "t", "c", &dialer(true, Some(&proxy)))
        .await
        .unwrap();
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);
    // The proxy carries bytes only: without the bundle the destination is still unknown.
    let err = connect(&url, "t", "c", &dialer(false, Some(&proxy)))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::UnknownIssuer { .. }), "{err}");
    assert_eq!(tunnels.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_https_proxy_gets_tls_first_and_connect_inside() {
    let port = tls_server().await;
    let (proxy, tunnels) = relay_proxy(true).await;
    let url = format!("wss://127.0.0.1:{port}/v1/data-channel/s");
    connect(
        &url,
        "t",
        "c",
        &dialer(true, Some(&format!("https://127.0.0.1:{proxy}"))),
    )
    .await
    .unwrap();
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);
    // Speaking plain HTTP to a TLS proxy fails at the proxy, named as such.
    let err = connect(
        &url,
        "t",
        "c",
        &dialer(true, Some(&format!("http://127.0.0.1:{proxy}"))),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ConnectError::Proxy(_)), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{proxy}")),
        "{err}"
    );
}
