//! One local TCP connection of a forward: a reader task that turns its bytes into
//! [`ConnEvent`]s for the driver, and a writer task that writes what the remote side
//! sends. Dropping a [`LocalConn`] stops the reader at once; the writer still delivers
//! what was queued, then shuts the socket's write side and ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

/// Largest local read: one smux frame's worth is 32 KiB; half keeps turns short.
const READ_SIZE: usize = 16 * 1024;

/// What a local connection did.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Data(u32, Vec<u8>),
    /// The local side stopped sending (EOF or a read error).
    Eof(u32),
    /// Writing to the local side failed: it is gone.
    WriteFailed(u32),
}

/// Bytes received from the remote side and not yet written to local sockets, across
/// all connections of a forward: the driver stops taking frames above a limit, and
/// [`Backlog::below`] tells it when to start again. This is what bounds the (otherwise
/// unbounded) per-connection queues.
#[derive(Clone, Default, Debug)]
pub struct Backlog(Arc<BacklogInner>);

#[derive(Default, Debug)]
struct BacklogInner {
    bytes: AtomicUsize,
    drained: Notify,
}

impl Backlog {
    pub fn get(&self) -> usize {
        self.0.bytes.load(Ordering::Relaxed)
    }

    /// Resolves once fewer than `limit` bytes are waiting. Cancel-safe.
    pub async fn below(&self, limit: usize) {
        loop {
            // Registered before the check, so a drain in between is not missed.
            let drained = self.0.drained.notified();
            if self.get() < limit {
                return;
            }
            drained.await;
        }
    }

    fn add(&self, n: usize) {
        self.0.bytes.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        let _ = self
            .0
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        self.0.drained.notify_waiters();
    }
}

pub struct LocalConn {
    to_local: mpsc::UnboundedSender<Vec<u8>>,
    reader: tokio::task::JoinHandle<()>,
    backlog: Backlog,
}

impl LocalConn {
    /// Starts the tasks for `tcp`, reporting as connection `id` on `events`. `greeting`
    /// (a SOCKS reply, or nothing) is written before any remote bytes.
    pub fn spawn(
        id: u32,
        tcp: TcpStream,
        greeting: Vec<u8>,
        events: mpsc::Sender<ConnEvent>,
        backlog: Backlog,
    ) -> LocalConn {
        let _ = tcp.set_nodelay(true);
        let (mut r, mut w) = tcp.into_split();
        let (to_local, mut queued) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer_events = events.clone();
        let writer_backlog = backlog.clone();
        tokio::spawn(async move {
            let mut ok = w.write_all(&greeting).await.is_ok();
            while ok {
                let Some(data) = queued.recv().await else {
                    break;
                };
                ok = w.write_all(&data).await.is_ok();
                writer_backlog.sub(data.len());
            }
            if ok {
                let _ = w.shutdown().await;
                return;
            }
            let _ = writer_events.send(ConnEvent::WriteFailed(id)).await;
            queued.close();
            while let Some(rest) = queued.recv().await {
                writer_backlog.sub(rest.len());
            }
        });
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if events
                            .send(ConnEvent::Data(id, buf[..n].to_vec()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = events.send(ConnEvent::Eof(id)).await;
        });
        LocalConn {
            to_local,
            reader,
            backlog,
        }
    }

    /// Queues remote bytes for the local side.
    pub fn send(&self, data: Vec<u8>) {
        let n = data.len();
        self.backlog.add(n);
        if self.to_local.send(data).is_err() {
            self.backlog.sub(n);
        }
    }
}

impl Drop for LocalConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
