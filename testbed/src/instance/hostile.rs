//! A hostile instance: an SSH server (russh's server side) with an SFTP subsystem
//! (russh-sftp's server traits) that lies, to prove that a client treats every byte from
//! an instance as hostile. What it lies about is a list of
//! [`HostileSsh`](crate::world::hostile_ssh::HostileSsh) behaviours, chosen per instance
//! (`hostile = [...]` in an instances file) or for all (`serve --hostile-ssh`).
//!
//! It accepts any public key. Its file system is made up ([`names`]): `/f` an honest
//! 64 KiB file, `/big` an honest 16 MiB one, `/d` the directory whose listing carries the lies, `/up` a directory that
//! takes uploads (their bytes are counted, never kept). Every path a lie names can be
//! stat'ed and read, so a client that believes the lie acts on it.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections at once, each answer built for one
//! request (an endless listing is one batch per READDIR, never a buffer), a bounded table
//! of handles and created names per connection; a connection ends when its client
//! disconnects or after [`IDLE`] without traffic.

#[path = "hostile_names.rs"]
pub mod names;
#[path = "hostile_sftp.rs"]
pub mod sftp;
#[path = "hostile_ssh.rs"]
pub mod ssh;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::world::hostile_ssh::HostileSsh;

/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection without traffic for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(60);

/// A fresh Ed25519 host key.
fn host_key() -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>()))
}

fn config(key: PrivateKey) -> Arc<russh::server::Config> {
    Arc::new(russh::server::Config {
        keys: vec![key],
        inactivity_timeout: Some(IDLE),
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..Default::default()
    })
}

/// A loopback listener on a free port for [`serve`].
pub async fn bind() -> anyhow::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding the hostile instance's SSH port on 127.0.0.1")
}

/// Serves SSH on `listener` with the given lies until the future is dropped (which ends
/// every connection it serves).
pub async fn serve(listener: TcpListener, behaviours: Vec<HostileSsh>) {
    let lies = names::Lies::new(&behaviours);
    let fixed = config(host_key());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("hostile instance: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "hostile instance: {MAX_CONNECTIONS} connections open, closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let config = if lies.new_host_key {
            config(host_key())
        } else {
            fixed.clone()
        };
        connections.spawn(async move {
            let _slot = slot;
            let handler = ssh::Connection::new(lies);
            match russh::server::run_stream(config, stream, handler).await {
                Ok(session) => {
                    if let Err(e) = session.await {
                        tracing::debug!(%peer, "hostile instance: connection ended: {e:#}");
                    }
                }
                Err(e) => tracing::debug!(%peer, "hostile instance: handshake failed: {e:#}"),
            }
        });
    }
}

/// A hostile instance running on its own task; stopped on drop.
pub struct HostileServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HostileServer {
    /// Binds 127.0.0.1 on a free port and serves there (call inside a tokio runtime).
    pub async fn start(behaviours: Vec<HostileSsh>) -> anyhow::Result<HostileServer> {
        let listener = bind().await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, behaviours));
        Ok(HostileServer { addr, task })
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
