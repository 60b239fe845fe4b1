//! `sallyport forward` over EC2 Instance Connect Endpoint tunnels: one tunnel per local
//! connection, to a port on the instance itself (an endpoint reaches addresses in its
//! VPC, not names the instance resolves, so `host:port` forwards and SOCKS stay on
//! Session Manager).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{ForwardRequest, Remote};
use crate::session::SessionError;
use crate::session::eice::EiceStream;

/// Local connections carried at once per listener; more wait in the accept queue (the
/// endpoint itself allows 20 tunnels at a time).
const MAX_CONNECTIONS: usize = 64;

/// Runs every forward until Ctrl-C; each accepted connection gets its own tunnel.
pub async fn run(stream: &EiceStream, req: &ForwardRequest) -> Result<u8, SessionError> {
    if req.socks.is_some() {
        return Err(unsupported("a SOCKS server (-D)"));
    }
    let mut listeners = Vec::new();
    for spec in &req.specs {
        let port = match &spec.remote {
            Remote::Port(p) => *p,
            Remote::Host { host, port } if is_local(host) => *port,
            Remote::Host { host, .. } => {
                return Err(unsupported(&format!("a forward to another host ({host})")));
            }
        };
        let addr = SocketAddr::new(spec.bind, spec.local_port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| SessionError::io(format!("cannot listen on {addr}"), e))?;
        let local = listener.local_addr().unwrap_or(addr);
        eprintln!(
            "forwarding {local} -> {} port {port} (EC2 Instance Connect Endpoint {})",
            stream.target, stream.tunnel.endpoint_id
        );
        listeners.push((listener, stream.with_port(port)));
    }
    let mut tasks = JoinSet::new();
    for (listener, tunnel) in listeners {
        tasks.spawn(serve(listener, tunnel));
    }
    let mut signals = crate::session::lifecycle::Signals::new();
    tokio::select! {
        sig = signals.recv() => {
            eprintln!("sallyport: {}: ending the tunnels", sig.name());
            tasks.abort_all();
            Ok(0)
        }
        done = tasks.join_next() => match done {
            Some(Ok(Err(f))) => Err(f),
            _ => Ok(0),
        },
    }
}

fn unsupported(what: &str) -> SessionError {
    SessionError::NotOverTunnel(what.to_owned())
}

fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

/// Accepts connections and carries each over its own tunnel.
async fn serve(listener: TcpListener, tunnel: EiceStream) -> Result<(), SessionError> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit =
            slots.clone().acquire_owned().await.map_err(|_| {
                SessionError::Internal("the connection limit was closed".to_owned())
            })?;
        let (conn, peer) = listener
            .accept()
            .await
            .map_err(|e| SessionError::io("accepting a connection failed", e))?;
        let tunnel = tunnel.clone();
        tokio::spawn(async move {
            if let Err(e) = carry(conn, &tunnel).await {
                let f = crate::error::Failure::from(e);
                eprintln!("sallyport: connection from {peer}: {}", f.message);
            }
            drop(permit);
        });
    }
}

async fn carry(mut conn: TcpStream, tunnel: &EiceStream) -> Result<(), SessionError> {
    let _ = conn.set_nodelay(true);
    let (mut pipe, mut guard) = tunnel.open().await?;
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut pipe).await;
    match guard.failure(std::time::Duration::from_secs(2)).await {
        Some(e) => Err(crate::session::eice::failure(
            e,
            &tunnel.target,
            tunnel.tunnel.port,
        )),
        None => Ok(()),
    }
}
