//! What a striped copy must release however it ends: temporary files (local, and on the
//! server), idle SFTP channels and the connections, so that Ctrl-C can release them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use russh_sftp::client::RawSftpSession;

use crate::ssh::SshError;
use crate::ssh::client::Connection;
use crate::ssh::transfer::parallel::{finish, sftp_channel};
use crate::ssh::transfer::{session_failure, sftp_config};

/// An SFTP channel no copy is using, with the file handle its last copy left open: the
/// next copy closes it before it opens another, and ending the connection closes it
/// anyway (so that a copy's end waits for no CLOSE).
pub(super) struct IdleLane {
    pub(super) raw: RawSftpSession,
    pub(super) open: Option<String>,
}

impl IdleLane {
    pub(super) fn new(raw: RawSftpSession) -> IdleLane {
        IdleLane { raw, open: None }
    }
}

/// What a striped copy must release however it ends.
#[derive(Default)]
pub struct Resources {
    pub(super) pool: tokio::sync::Mutex<Vec<Connection>>,
    pub(super) temps: std::sync::Mutex<Vec<PathBuf>>,
    /// Uploads' temporary files on the server.
    pub(super) remote_temps: std::sync::Mutex<Vec<String>>,
    /// Open SFTP channels no copy is using (kept for the next `get`/`put` of `sftp`).
    pub(super) idle: std::sync::Mutex<Vec<IdleLane>>,
    /// The server offers `posix-rename@openssh.com`.
    pub(super) posix_rename: std::sync::atomic::AtomicBool,
}

impl Resources {
    /// Opens an SFTP channel on `conn` for copies to use.
    pub async fn add_lane_on(&self, conn: &Connection) -> Result<(), SshError> {
        let raw = self.open_raw(conn).await?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(IdleLane::new(raw));
        }
        Ok(())
    }

    pub(super) fn take_idle(&self) -> Vec<IdleLane> {
        self.idle
            .lock()
            .map(|mut i| std::mem::take(&mut *i))
            .unwrap_or_default()
    }

    pub(super) fn give_back(&self, lanes: Vec<IdleLane>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.extend(lanes);
        }
    }

    pub async fn add(&self, conn: Connection) {
        self.pool.lock().await.push(conn);
    }

    pub(super) fn temp_added(&self, p: &Path) {
        if let Ok(mut t) = self.temps.lock() {
            t.push(p.to_owned());
        }
    }

    pub(super) fn temp_gone(&self, p: &Path) {
        if let Ok(mut t) = self.temps.lock() {
            t.retain(|x| x != p);
        }
    }

    /// Registers `p` (once) for removal should the copy stop.
    pub(super) fn remote_temp_added(&self, p: &str) {
        if let Ok(mut t) = self.remote_temps.lock()
            && !t.iter().any(|x| x == p)
        {
            t.push(p.to_owned());
        }
    }

    pub(super) fn remote_temp_gone(&self, p: &str) {
        if let Ok(mut t) = self.remote_temps.lock() {
            t.retain(|x| x != p);
        }
    }

    pub(super) fn has_remote_temp(&self, p: &str) -> bool {
        self.remote_temps
            .lock()
            .is_ok_and(|t| t.iter().any(|x| x == p))
    }

    pub(super) fn posix_rename(&self) -> bool {
        self.posix_rename.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Opens an SFTP channel on `conn`, noting whether the server offers posix-rename.
    pub(super) async fn open_raw(&self, conn: &Connection) -> Result<RawSftpSession, SshError> {
        let stream = sftp_channel(conn).await?;
        let raw = RawSftpSession::new_with_config(stream, sftp_config());
        let version = raw.init().await.map_err(|e| session_failure(&e))?;
        if version
            .extensions
            .get(finish::POSIX_RENAME)
            .is_some_and(|v| v == "1")
        {
            self.posix_rename
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(raw)
    }

    /// Removes the temporary files left and closes every connection (ending its
    /// session). Sessions whose connection was cancelled mid-setup are ended by the
    /// caller: `Connector::await_background`.
    pub async fn release(&self) {
        let temps = self.temps.lock().map(|mut t| std::mem::take(&mut *t));
        for t in temps.unwrap_or_default() {
            let _ = std::fs::remove_file(t);
        }
        self.remove_remote_temps().await;
        drop(self.take_idle());
        let conns = std::mem::take(&mut *self.pool.lock().await);
        // Every request that mattered was answered (or the copy failed anyway).
        futures_util::future::join_all(conns.into_iter().map(Connection::end_now)).await;
    }

    /// Removes the uploads' temporary files still on the server, over an idle lane or a
    /// new channel on any open connection; gives up after 10 s (they stay, hidden).
    pub(super) async fn remove_remote_temps(&self) {
        let temps = self
            .remote_temps
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        if temps.is_empty() {
            return;
        }
        let work = async {
            let idle = self.take_idle();
            if let Some(lane) = idle.first() {
                finish::remove_remote(&lane.raw, &temps).await;
                self.give_back(idle);
                return;
            }
            let pool = self.pool.lock().await;
            for conn in pool.iter() {
                if let Ok(raw) = self.open_raw(conn).await {
                    finish::remove_remote(&raw, &temps).await;
                    return;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), work)
            .await
            .is_err()
        {
            tracing::debug!(left = temps.len(), "temporary files not removed in time");
        }
    }

    /// How many connections were opened (and not yet released).
    pub async fn sessions(&self) -> usize {
        self.pool.lock().await.len()
    }
}
