//! The hostile instance's SSH end (russh's server side): it lets any public key in, runs
//! the SFTP subsystem of [`super::sftp`] on a session channel, and refuses everything else
//! (shell, exec, forwarding) with a plain failure.

use std::collections::HashMap;

use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId};

use super::names::Lies;
use super::sftp::Sftp;

/// Session channels a connection may hold open before asking for a subsystem.
const MAX_PENDING_CHANNELS: usize = 16;

/// One connection's handler.
pub struct Connection {
    lies: Lies,
    /// Session channels opened but not yet given to a subsystem.
    pending: HashMap<ChannelId, Channel<Msg>>,
}

impl Connection {
    pub fn new(lies: Lies) -> Connection {
        Connection {
            lies,
            pending: HashMap::new(),
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = anyhow::Error;

    // Any key: the client's in-memory key pushed through Instance Connect, or any other.
    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.pending.len() >= MAX_PENDING_CHANNELS {
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        }
        self.pending.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.pending.remove(&channel);
        session.close(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.pending.remove(&channel_id)) {
            ("sftp", Some(channel)) => {
                session.channel_success(channel_id)?;
                // Ends when the client closes the channel or the connection drops.
                russh_sftp::server::run(channel.into_stream(), Sftp::new(self.lies)).await;
            }
            _ => session.channel_failure(channel_id)?,
        }
        Ok(())
    }

    // No commands or shells here: refused (as sshd refuses what it cannot start), or
    // with `mute` never answered, the channel left open.
    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.lies.mute {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.lies.mute {
            session.channel_failure(channel)?;
        }
        Ok(())
    }
}
