//! A TCP relay that adds latency without limiting throughput: every chunk read is held for
//! `rtt / 2` before it is written on, in each direction. Used to give a benchmark or test a
//! realistic round-trip time to a loopback server (e.g. between sallyport and the testbed).
//!
//! Each direction is a reader task stamping chunks with a deadline and a writer that sleeps
//! until it. At most [`MAX_IN_FLIGHT`] bytes wait per direction; beyond that the reader stops
//! reading and TCP back-pressure reaches the sender. EOF is passed on as a write shutdown
//! (half-close), and the connection ends when both directions have.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Bytes that may be held back per direction (bandwidth x delay: 8 MiB at 20 ms one-way
/// allows 400 MiB/s, far above what a Session Manager channel carries).
pub const MAX_IN_FLIGHT: usize = 8 << 20;
const READ_SIZE: usize = 64 << 10;
/// Also bound the number of queued chunks, so many tiny reads cannot pile up.
const MAX_CHUNKS: usize = 4096;

/// Binds `listen` (loopback only) and relays every connection to `to` until an error.
pub async fn run(listen: SocketAddr, to: String, rtt: Duration) -> anyhow::Result<()> {
    serve(bind(listen).await?, to, rtt).await
}

/// Binds a loopback address for [`serve`].
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    crate::server::ensure_loopback(listen)?;
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

/// Accepts on `listener` forever; connections live as long as this future.
pub async fn serve(listener: TcpListener, to: String, rtt: Duration) -> anyhow::Result<()> {
    serve_with(listener, to, rtt, false).await
}

/// [`serve`]; with `handshake`, each connection also waits one `rtt` before anything
/// passes, as TCP's SYN / SYN-ACK costs a client on a real link before it can send (bytes
/// the client sends at once arrive 1.5 round trips after its connect, as they would).
pub async fn serve_with(
    listener: TcpListener,
    to: String,
    rtt: Duration,
    handshake: bool,
) -> anyhow::Result<()> {
    let to: Arc<str> = to.into();
    let hold = if handshake { rtt } else { Duration::ZERO };
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (inbound, peer) = accepted.context("delay proxy: accept failed")?;
                let to = to.clone();
                conns.spawn(async move {
                    tokio::time::sleep(hold).await;
                    if let Err(e) = relay(inbound, &to, rtt / 2).await {
                        tracing::debug!(%peer, "delay proxy connection ended: {e}");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// A delay proxy running in the background; dropping it closes the listener and connections.
pub struct DelayProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DelayProxy {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a delay proxy on `listen` (use port 0) and returns once it is bound.
pub async fn spawn(listen: SocketAddr, to: String, rtt: Duration) -> anyhow::Result<DelayProxy> {
    let listener = bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = serve(listener, to, rtt).await {
            tracing::warn!("delay proxy stopped: {e:#}");
        }
    });
    Ok(DelayProxy { addr, task })
}

async fn relay(inbound: TcpStream, to: &str, delay: Duration) -> std::io::Result<()> {
    let outbound = TcpStream::connect(to).await?;
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    tokio::try_join!(pipe(ri, wo, delay), pipe(ro, wi, delay))?;
    Ok(())
}

/// One direction: read, stamp, queue; the writer waits for each stamp.
async fn pipe<R, W>(mut r: R, mut w: W, delay: Duration) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let (tx, mut rx) = mpsc::channel(MAX_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let deadline = Instant::now() + delay;
            // n <= READ_SIZE, far below u32::MAX; the semaphore is never closed.
            let permit = budget
                .clone()
                .acquire_many_owned(n as u32)
                .await
                .map_err(std::io::Error::other)?;
            if tx
                .send((deadline, buf[..n].to_vec(), permit))
                .await
                .is_err()
            {
                // The writer failed; it reports the error.
                return Ok(());
            }
        }
    };
    let writer = async move {
        while let Some((deadline, bytes, permit)) = rx.recv().await {
            tokio::time::sleep_until(deadline).await;
            w.write_all(&bytes).await?;
            drop(permit);
        }
        w.shutdown().await
    };
    tokio::try_join!(reader, writer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        addr
    }

    fn loopback0() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn round_trip_takes_at_least_rtt() {
        let rtt = Duration::from_millis(60);
        let proxy = spawn(loopback0(), echo_server().await.to_string(), rtt)
            .await
            .unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.set_nodelay(true).unwrap();
        for _ in 0..3 {
            let start = std::time::Instant::now();
            s.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            let took = start.elapsed();
            assert!(took >= rtt, "round trip took {took:?} < {rtt:?}");
            assert!(took < rtt * 10, "round trip took {took:?}");
        }
    }

    /// With the TCP handshake modelled, the first exchange on a new connection costs two
    /// round trips (SYN/SYN-ACK, then the data); later ones one.
    #[tokio::test]
    async fn the_tcp_handshake_costs_one_more_round_trip_on_the_first_exchange() {
        let rtt = Duration::from_millis(60);
        let listener = bind(loopback0()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let to = echo_server().await.to_string();
        tokio::spawn(async move { serve_with(listener, to, rtt, true).await });
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut took = Vec::new();
        for _ in 0..2 {
            let start = std::time::Instant::now();
            s.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            took.push(start.elapsed());
        }
        assert!(took[0] >= rtt * 2, "first exchange {took:?}");
        assert!(
            took[1] >= rtt && took[1] < took[0],
            "second exchange {took:?}"
        );
    }

    #[tokio::test]
    async fn ten_megabytes_pass_intact_and_half_close_propagates() {
        let proxy = spawn(
            loopback0(),
            echo_server().await.to_string(),
            Duration::from_millis(20),
        )
        .await
        .unwrap();
        let data: Vec<u8> = (0..10_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let want = Sha256::digest(&data);
        let s = TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            w.write_all(&data).await.unwrap();
            // Our EOF must reach the echo server, whose EOF must come back.
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), 10_000_000);
        assert_eq!(Sha256::digest(&got), want);
    }

    #[tokio::test]
    async fn refuses_non_loopback() {
        let err = spawn(
            "0.0.0.0:0".parse().unwrap(),
            "127.0.0.1:1".into(),
            Duration::ZERO,
        )
        .await
        .err()
        .unwrap();
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
