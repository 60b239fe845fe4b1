//! `sallyport forward -D [bind:]port`: a local SOCKS5 server (RFC 1928, CONNECT only, no
//! authentication) whose connections go out through the target. Each destination
//! `host:port` gets its own `AWS-StartPortForwardingSessionToRemoteHost` session, opened
//! on first use and reused by later connections to it while it lives. Domain names are
//! resolved by the target (curl's `--socks5-hostname`).
//!
//! Bounds: at most [`MAX_NEGOTIATING`] clients in the SOCKS handshake at once (more are
//! closed at once), each for at most 10 s; at most [`MAX_SESSIONS`] destination sessions
//! per process (a connection to a new destination beyond it gets "general failure");
//! [`QUEUE`] connections waiting per destination.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::session::SessionError;

use super::driver::Incoming;
use super::{Remote, Shared, describe_remote, one_session};

/// How long a client may take to say where it wants to go.
const NEGOTIATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections waiting for one destination's session.
const QUEUE: usize = 256;
/// SOCKS clients negotiating at once.
const MAX_NEGOTIATING: usize = 256;
/// Destinations (each its own Session Manager session) open at once per process.
const MAX_SESSIONS: usize = 64;

/// Reply codes (RFC 1928 §6).
mod reply {
    pub const SUCCEEDED: u8 = 0;
    pub const GENERAL_FAILURE: u8 = 1;
    pub const COMMAND_NOT_SUPPORTED: u8 = 7;
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SocksError {
    #[error("not a SOCKS5 client (version byte {0})")]
    Version(u8),
    #[error("the client offers no method without authentication")]
    NoAcceptableMethod,
    #[error("only CONNECT is supported (command {0})")]
    Command(u8),
    #[error("unknown address type {0}")]
    AddressType(u8),
    #[error("bad destination name")]
    BadName,
    #[error("reading the SOCKS request failed: {0}")]
    Io(String),
}

impl From<std::io::Error> for SocksError {
    fn from(e: std::io::Error) -> Self {
        SocksError::Io(e.to_string())
    }
}

/// A reply with the given code and an unspecified bound address.
pub fn reply_bytes(code: u8) -> Vec<u8> {
    vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// Reads the greeting and a CONNECT request from `s`, answering the greeting (and, on
/// errors, the request); returns the destination. The success reply is left to the
/// caller, who sends it once the destination's session is up.
pub async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Result<Remote, SocksError> {
    let [ver, n] = read_array(s).await?;
    if ver != 5 {
        return Err(SocksError::Version(ver));
    }
    let mut methods = vec![0u8; n as usize];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        s.write_all(&[5, 0xff]).await?;
        return Err(SocksError::NoAcceptableMethod);
    }
    s.write_all(&[5, 0]).await?;
    let [ver, cmd, _rsv, atyp] = read_array(s).await?;
    if ver != 5 {
        return Err(SocksError::Version(ver));
    }
    let host = match atyp {
        1 => Ipv4Addr::from(read_array::<_, 4>(s).await?).to_string(),
        4 => Ipv6Addr::from(read_array::<_, 16>(s).await?).to_string(),
        3 => {
            let [len] = read_array(s).await?;
            let mut name = vec![0u8; len as usize];
            s.read_exact(&mut name).await?;
            match String::from_utf8(name) {
                // A host name never holds a control character or a bidi override; such a
                // name would only reach a terminal (in messages) and a log.
                Ok(n)
                    if !n.is_empty()
                        && !n.contains(['/', ' '])
                        && !n.chars().any(crate::text::needs_escape) =>
                {
                    n
                }
                _ => {
                    s.write_all(&reply_bytes(reply::GENERAL_FAILURE)).await?;
                    return Err(SocksError::BadName);
                }
            }
        }
        other => {
            s.write_all(&reply_bytes(reply::ADDRESS_TYPE_NOT_SUPPORTED))
                .await?;
            return Err(SocksError::AddressType(other));
        }
    };
    let port = u16::from_be_bytes(read_array(s).await?);
    if cmd != 1 {
        s.write_all(&reply_bytes(reply::COMMAND_NOT_SUPPORTED))
            .await?;
        return Err(SocksError::Command(cmd));
    }
    Ok(Remote::Host { host, port })
}

async fn read_array<S: AsyncRead + Unpin, const N: usize>(
    s: &mut S,
) -> Result<[u8; N], SocksError> {
    let mut b = [0u8; N];
    s.read_exact(&mut b).await?;
    Ok(b)
}

/// Serves SOCKS5 on `listener` until stopped; then waits for its sessions to end.
pub async fn serve(shared: Shared, listener: TcpListener) -> Result<(), SessionError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    if let Ok(addr) = listener.local_addr() {
        eprintln!("socks5 proxy on {addr} -> {}", shared.target);
    }
    let mut stop = shared.stop.clone();
    let (req_tx, mut requests) = mpsc::channel::<(Remote, TcpStream)>(64);
    let mut routes: HashMap<Remote, mpsc::Sender<(TcpStream, Vec<u8>)>> = HashMap::new();
    let mut sessions = JoinSet::new();
    let negotiating = Arc::new(Semaphore::new(MAX_NEGOTIATING));
    loop {
        tokio::select! {
            _ = crate::session::lifecycle::stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let Ok(permit) = negotiating.clone().try_acquire_owned() else {
                        tracing::warn!("{MAX_NEGOTIATING} SOCKS clients already negotiating; closing a new one");
                        continue;
                    };
                    let tx = req_tx.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        let mut tcp = tcp;
                        match tokio::time::timeout(NEGOTIATE_TIMEOUT, negotiate(&mut tcp)).await {
                            Ok(Ok(remote)) => { let _ = tx.send((remote, tcp)).await; }
                            Ok(Err(e)) => tracing::debug!("SOCKS client refused: {e}"),
                            Err(_) => tracing::debug!("SOCKS client too slow"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accepting a SOCKS connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some((remote, tcp)) = requests.recv() => {
                let live = routes.get(&remote).filter(|tx| !tx.is_closed());
                let tx = match live {
                    Some(tx) => tx.clone(),
                    None if sessions.len() >= MAX_SESSIONS => {
                        tracing::warn!(
                            "{MAX_SESSIONS} SOCKS destinations already have sessions; refusing {}",
                            describe_remote(&shared.target, &remote)
                        );
                        let mut tcp = tcp;
                        let _ = tcp.write_all(&reply_bytes(reply::GENERAL_FAILURE)).await;
                        continue;
                    }
                    None => {
                        let (tx, rx) = mpsc::channel(QUEUE);
                        routes.insert(remote.clone(), tx.clone());
                        sessions.spawn(destination(shared.clone(), remote, port, rx));
                        tx
                    }
                };
                if let Err(e) = tx.try_send((tcp, reply_bytes(reply::SUCCEEDED))) {
                    let (mut tcp, _) = e.into_inner();
                    let _ = tcp.write_all(&reply_bytes(reply::GENERAL_FAILURE)).await;
                }
            }
            Some(_) = sessions.join_next() => routes.retain(|_, tx| !tx.is_closed()),
        }
    }
    drop(routes);
    while sessions.join_next().await.is_some() {}
    Ok(())
}

/// One destination's session, for as long as it lives.
async fn destination(
    shared: Shared,
    remote: Remote,
    socks_port: u16,
    rx: mpsc::Receiver<(TcpStream, Vec<u8>)>,
) {
    let Remote::Host { host, port } = &remote else {
        return;
    };
    let document = crate::aws::SessionDocument::PortForwardToHost {
        host: host.clone(),
        port: *port,
        local_port: socks_port,
    };
    let label = describe_remote(&shared.target, &remote);
    let announce = |_: &super::driver::Mode| {
        tracing::info!(destination = label, "SOCKS destination session up");
    };
    if let Err(e) = one_session(
        &shared,
        &document,
        label.clone(),
        Incoming::Handed(rx),
        announce,
    )
    .await
    {
        eprintln!("sallyport: {}", crate::error::Failure::from(e).message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn talk(client_bytes: &[u8]) -> (Result<Remote, SocksError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(client_bytes).await.unwrap();
        // The client says nothing more: a request cut short must end in an error, not a wait.
        client.shutdown().await.unwrap();
        let result = negotiate(&mut server).await;
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        (result, answer)
    }

    #[tokio::test]
    async fn connect_by_domain_name() {
        let mut req = vec![5, 1, 0, 5, 1, 0, 3, 9];
        req.extend_from_slice(b"localhost");
        req.extend_from_slice(&8080u16.to_be_bytes());
        let (r, answer) = talk(&req).await;
        assert_eq!(
            r.unwrap(),
            Remote::Host {
                host: "localhost".into(),
                port: 8080
            }
        );
        assert_eq!(answer, [5, 0]);
    }

    #[tokio::test]
    async fn connect_by_ipv4_and_ipv6() {
        let (r, _) = talk(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80]).await;
        assert_eq!(
            r.unwrap(),
            Remote::Host {
                host: "127.0.0.1".into(),
                port: 80
            }
        );
        let mut req = vec![5, 2, 2, 0, 5, 1, 0, 4];
        req.extend_from_slice(&"::1".parse::<Ipv6Addr>().unwrap().octets());
        req.extend_from_slice(&[0x1f, 0x90]);
        let (r, _) = talk(&req).await;
        assert_eq!(
            r.unwrap(),
            Remote::Host {
                host: "::1".into(),
                port: 8080
            }
        );
    }

    #[tokio::test]
    async fn names_with_terminal_controls_are_refused() {
        for name in [
            &b"a\x1b]0;x\x07"[..],
            b"evil\xc2\x9b2J",
            "x\u{202e}y".as_bytes(),
            b"a\0b",
        ] {
            let mut req = vec![5, 1, 0, 5, 1, 0, 3, name.len() as u8];
            req.extend_from_slice(name);
            req.extend_from_slice(&80u16.to_be_bytes());
            let (r, answer) = talk(&req).await;
            assert_eq!(r.unwrap_err(), SocksError::BadName, "{name:?}");
            assert_eq!(answer[2..], reply_bytes(reply::GENERAL_FAILURE));
        }
    }

    #[tokio::test]
    async fn refusals_are_answered() {
        let (r, answer) = talk(&[5, 1, 2]).await;
        assert_eq!(r.unwrap_err(), SocksError::NoAcceptableMethod);
        assert_eq!(answer, [5, 0xff]);
        // BIND (2) is not supported.
        let (r, answer) = talk(&[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80]).await;
        assert_eq!(r.unwrap_err(), SocksError::Command(2));
        assert_eq!(answer[2..], reply_bytes(reply::COMMAND_NOT_SUPPORTED));
        let (r, _) = talk(&[4, 1, 0, 80]).await;
        assert_eq!(r.unwrap_err(), SocksError::Version(4));
        let (r, answer) = talk(&[5, 1, 0, 5, 1, 0, 9]).await;
        assert_eq!(r.unwrap_err(), SocksError::AddressType(9));
        assert_eq!(answer[2..], reply_bytes(reply::ADDRESS_TYPE_NOT_SUPPORTED));
        // Cut short: an error, not a hang or a panic.
        let (r, _) = talk(&[5, 1, 0, 5, 1]).await;
        assert!(matches!(r, Err(SocksError::Io(_))));
    }
}
