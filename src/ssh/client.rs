//! One SSH connection over a Session Manager port session: an Ed25519 key made in memory
//! is pushed through Instance Connect while the session starts (concurrently, so the push
//! adds no round trip), the host key is checked against known_hosts, and the key
//! authenticates once and is dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use crate::aws::{InstanceConnect, Ssm, StartOptions};
use crate::session::SessionError;
use crate::session::eice::EiceStream;
use crate::session::stream::{PortStream, StreamGuard};
use crate::ssh::SshError;
use crate::transport::LinkOptions;
use tokio::io::DuplexStream;

use super::known_hosts::{HostKey, HostKeyPolicy};
use crate::keys;

/// How long the SSH handshake (version exchange, key exchange) may take once the
/// session is open.
const SSH_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to let the SSH session wind down (disconnect, last bytes) at the end.
const CLOSE_BUDGET: Duration = Duration::from_secs(5);

/// Who to log in as, and how the connection is made and checked.
#[derive(Clone, Debug)]
pub struct SshOptions {
    pub user: String,
    /// The user was guessed from the platform: say so if authentication fails.
    pub user_guessed: bool,
    /// The port sshd listens on, on the instance.
    pub port: u16,
    pub host_keys: HostKeyPolicy,
    pub start: StartOptions,
    pub link: LinkOptions,
}

/// An authenticated SSH connection and the session it runs over.
pub struct Connection {
    pub handle: Handle<Verifier>,
    guard: StreamGuard,
}

/// The russh handler: checks the host key, remembers why it refused one.
pub struct Verifier {
    policy: HostKeyPolicy,
    refusal: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                HostKey::from_public(key).and_then(|k| self.policy.check(&k))
            }
            PublicKeyOrCertificate::Certificate(_) => Err(SshError::HostKey(
                "the server presented a host certificate; sallyport checks plain host keys only"
                    .to_owned(),
            )),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(f) => {
                if let Ok(mut slot) = self.refusal.lock() {
                    *slot = Some(f);
                }
                Ok(false)
            }
        }
    }
}

/// Starts the session and pushes a fresh key at the same time, then runs SSH over the
/// session and authenticates as `opts.user`.
pub async fn connect(
    ssm: &Ssm,
    eic: &InstanceConnect,
    target: &str,
    profile: Option<&str>,
    opts: &SshOptions,
) -> Result<Connection, SshError> {
    Connector::new(ssm, eic, target, profile, opts)?
        .connect()
        .await
}

/// Opens SSH connections to one instance, each over its own session, all authenticated
/// with one in-memory key: pushed with the first connection, and again by a connection
/// opened when the push is older than the key's validity (less a margin).
pub struct Connector {
    ssm: Ssm,
    eic: InstanceConnect,
    target: String,
    profile: Option<String>,
    opts: SshOptions,
    key: Arc<russh::keys::PrivateKey>,
    line: String,
    /// When the key was last pushed; held across a push so that concurrent connections
    /// wait for it instead of pushing again.
    pushed: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Offer `zlib@openssh.com` (and `zlib`) before no compression.
    pub compression: bool,
    /// The connections carry file copies (`scp`, `sftp`): each channel gets
    /// [`COPY_WINDOW`] rather than [`TERMINAL_WINDOW`].
    pub copies: bool,
    /// Each connection over its own EC2 Instance Connect Endpoint tunnel instead of a
    /// Session Manager session.
    pub eice: Option<EiceStream>,
    /// How long the last connection took to open (session, handshake, authentication).
    took: std::sync::Mutex<Option<Duration>>,
}

/// A push this old is redone before the next connection (the key is valid 60 s, and the
/// handshake after the push takes some of that).
const PUSH_MARGIN: Duration = Duration::from_secs(15);

impl Connector {
    pub fn new(
        ssm: &Ssm,
        eic: &InstanceConnect,
        target: &str,
        profile: Option<&str>,
        opts: &SshOptions,
    ) -> Result<Connector, SshError> {
        let key = keys::ephemeral()?;
        let line = keys::public_line(&key)?;
        Ok(Connector {
            ssm: ssm.clone(),
            eic: eic.clone(),
            target: target.to_owned(),
            profile: profile.map(str::to_owned),
            opts: opts.clone(),
            key: Arc::new(key),
            line,
            pushed: tokio::sync::Mutex::new(None),
            compression: false,
            copies: false,
            eice: None,
            took: std::sync::Mutex::new(None),
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Pushes the key unless a push recent enough was made.
    async fn ensure_pushed(&self) -> Result<(), SshError> {
        let mut pushed = self.pushed.lock().await;
        let fresh = crate::aws::KEY_VALIDITY.saturating_sub(PUSH_MARGIN);
        if pushed.is_some_and(|at| at.elapsed() < fresh) {
            return Ok(());
        }
        let at = std::time::Instant::now();
        self.eic
            .send_ssh_public_key(
                &self.target,
                &self.opts.user,
                &self.line,
                self.profile.as_deref(),
            )
            .await
            .map_err(|e| SshError::aws(e, &self.target))?;
        *pushed = Some(at);
        Ok(())
    }

    /// Waits, at most `budget`, for the sessions of connections cancelled while they were
    /// being set up (e.g. by Ctrl-C) to be ended on the service.
    pub async fn await_background(&self, budget: Duration) {
        self.ssm.await_background(budget).await;
    }

    /// How long the last connection took to open, from [`connect`](Self::connect)'s call
    /// to an authenticated connection (`None` before one opened).
    pub fn connect_cost(&self) -> Option<Duration> {
        *self.took.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most one connection can bring down a second, known before measuring: over
    /// Session Manager, the agent's pace ([`AGENT_OUTPUT_CEILING`]); an EC2 Instance
    /// Connect Endpoint tunnel has none.
    ///
    /// [`AGENT_OUTPUT_CEILING`]: crate::session::AGENT_OUTPUT_CEILING
    pub fn download_ceiling(&self) -> Option<f64> {
        match self.eice {
            Some(_) => None,
            None => Some(crate::session::AGENT_OUTPUT_CEILING),
        }
    }

    /// The byte stream SSH runs over: an EICE tunnel or a Session Manager port session.
    async fn open_stream(&self) -> Result<(DuplexStream, StreamGuard), SessionError> {
        let (target, port) = (self.target.as_str(), self.opts.port);
        match &self.eice {
            Some(e) => {
                let (io, guard) = e.with_port(port).open().await?;
                let guard = StreamGuard::Eice {
                    guard,
                    target: target.to_owned(),
                    port,
                };
                Ok((io, guard))
            }
            None => {
                let (start, link) = (&self.opts.start, &self.opts.link);
                let (io, g) = PortStream::open(&self.ssm, target, port, start, link).await?;
                Ok((io, StreamGuard::Ssm(Box::new(g))))
            }
        }
    }

    /// One more authenticated connection, over a new session.
    pub async fn connect(&self) -> Result<Connection, SshError> {
        let began = std::time::Instant::now();
        let (target, opts) = (self.target.as_str(), &self.opts);
        let push = self.ensure_pushed();
        let open = self.open_stream();
        let (pushed, stream) = tokio::join!(push, open);
        let (io, mut guard) = stream?;
        if let Err(f) = pushed {
            drop(io);
            guard.finish().await;
            return Err(f);
        }
        let key = self.key.clone();
        let refusal = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            policy: opts.host_keys.clone(),
            refusal: refusal.clone(),
        };
        let config = Arc::new(ssh_config(self.compression, self.copies));
        let connected = tokio::time::timeout(
            SSH_HANDSHAKE_TIMEOUT,
            client::connect_stream(config, io, verifier),
        )
        .await;
        let mut handle = match connected {
            Ok(Ok(h)) => h,
            failed => {
                let refused = refusal.lock().ok().and_then(|mut r| r.take());
                let f = match refused {
                    Some(f) => f,
                    None => match stream_failure(&mut guard, Duration::from_secs(2)).await {
                        Some(f) => f,
                        None => match failed {
                            Ok(Err(e)) => {
                                SshError::Connection(format!("SSH with {target} failed: {e}"))
                            }
                            _ => SshError::Connection(format!(
                                "{target} did not complete the SSH handshake within {} s",
                                SSH_HANDSHAKE_TIMEOUT.as_secs()
                            )),
                        },
                    },
                };
                guard.finish().await;
                return Err(f);
            }
        };
        let auth = handle
            .authenticate_publickey(&opts.user, PrivateKeyWithHashAlg::new(key, None))
            .await;
        let refused = match auth {
            Ok(r) if r.success() => None,
            Ok(_) => Some(auth_refused(target, opts)),
            Err(e) => Some(
                match stream_failure(&mut guard, Duration::from_secs(2)).await {
                    Some(f) => f,
                    None => SshError::Connection(format!(
                        "SSH authentication with {target} failed: {e}"
                    )),
                },
            ),
        };
        let connection = Connection { handle, guard };
        if let Some(f) = refused {
            connection.close().await;
            return Err(f);
        }
        let took = began.elapsed();
        *self.took.lock().unwrap_or_else(|e| e.into_inner()) = Some(took);
        tracing::debug!(user = opts.user, ?took, "SSH authenticated");
        Ok(connection)
    }
}

/// How the stream under SSH failed, if it did within `grace`.
async fn stream_failure(guard: &mut StreamGuard, grace: Duration) -> Option<SshError> {
    guard.failure(grace).await.map(SshError::from)
}

/// The SSH channel window of a connection that carries copies: how many bytes the server
/// may send on a channel before we say it may send more. A copy's reads in flight are
/// bounded on their own (at most 8 MiB per channel: `transfer::download`, and the lanes'
/// `Window`), so this bounds no memory that they do not; it must only stay out of their
/// way. With 2 MiB, through an EC2 Instance Connect Endpoint tunnel at a 40 ms round trip,
/// the window, not the link, set the pace: 50 MB took 2.5 s at `-j 1` against 0.8 s with
/// this (benches/README.md, "the SSH window").
pub const COPY_WINDOW: u32 = 16 << 20;

/// The SSH channel window of a connection for a shell or a command: OpenSSH's 2 MiB.
/// Kept small on purpose: what the server may send ahead is what still pours out after
/// Ctrl-C, and through Session Manager (~0.6 MB/s) 2 MiB already take ~3 s to drain.
pub const TERMINAL_WINDOW: u32 = 2 << 20;

/// russh's settings for one connection.
pub(crate) fn ssh_config(compression: bool, copies: bool) -> client::Config {
    client::Config {
        // The data channel has its own keep-alive and resume; SSH-level timeouts would
        // only cut sessions that the channel is busy bringing back.
        inactivity_timeout: None,
        // russh's session loop stops reading the connection (and so stops taking our
        // session's bytes, which stalls the data channel's driver) while a channel's
        // message queue is full. A copy keeps up to 8 MiB of read answers in flight on a
        // channel (transfer::download) and sshd sends them in packets of 16-32 KiB when
        // they come fast: 1024 slots hold all of them, where russh's default 100 do not.
        // The memory is bounded by the bytes in flight, not by the slot count.
        channel_buffer_size: 1024,
        window_size: if copies { COPY_WINDOW } else { TERMINAL_WINDOW },
        preferred: preferred(compression),
        ..client::Config::default()
    }
}

/// russh's algorithm preferences, with compression first when asked for. Without it,
/// "none" only: compression costs CPU on both sides and helps only on compressible data.
fn preferred(compression: bool) -> russh::Preferred {
    use russh::compression::{NONE, ZLIB, ZLIB_LEGACY};
    let list: &'static [russh::compression::Name] = if compression {
        &[ZLIB_LEGACY, ZLIB, NONE]
    } else {
        &[NONE]
    };
    russh::Preferred {
        compression: std::borrow::Cow::Borrowed(list),
        ..russh::Preferred::default()
    }
}

fn auth_refused(target: &str, opts: &SshOptions) -> SshError {
    let user = &opts.user;
    let guessed = if opts.user_guessed {
        format!(
            " ({user:?} was guessed from the platform: pass user@{target} or --user if the \
             instance uses another)"
        )
    } else {
        String::new()
    };
    SshError::AuthRefused(format!(
        "{target} refused the key pushed through EC2 Instance Connect for user \
             {user:?}{guessed}; check that the user exists on the instance and that the \
             instance runs the EC2 Instance Connect package (sshd's AuthorizedKeysCommand; \
             Amazon Linux 2023 and Ubuntu 20.04+ AMIs have it)"
    ))
}

impl Connection {
    /// Says goodbye, lets SSH and the data channel deliver what is left, and ends the
    /// session.
    pub async fn close(self) {
        let Connection { handle, guard } = self;
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        if tokio::time::timeout(CLOSE_BUDGET, handle).await.is_err() {
            tracing::debug!("SSH session did not wind down in time");
        }
        guard.finish().await;
    }

    /// Ends a Session Manager session at once, without SSH's goodbye: for SFTP, once
    /// every request that mattered was answered (a round trip sooner than
    /// [`Connection::close`]; sshd sees its connection close, as when a network drops).
    /// A tunnel is closed as [`Connection::close`] does.
    pub async fn end_now(self) {
        let Connection { handle, guard } = self;
        match guard.ssm() {
            Ok(session) => {
                session.end_now().await;
                drop(handle);
            }
            Err(guard) => Connection { handle, guard }.close().await,
        }
    }

    /// The data channel's own failure, if it had one (a better message than SSH's
    /// "disconnected").
    pub async fn link_failure(&mut self) -> Option<SshError> {
        stream_failure(&mut self.guard, Duration::from_millis(500)).await
    }
}

/// Opens the SFTP subsystem on `conn` (asking `warm` ahead) with `beside` running on the
/// connection at the same time, runs `work` with both, and closes everything. A failure
/// the data channel explains better replaces SFTP's own.
pub async fn with_sftp<B>(
    mut conn: Connection,
    warm: &super::transfer::Warm,
    beside: impl AsyncFnOnce(&Connection) -> B,
    work: impl AsyncFnOnce(&super::transfer::Sftp, B) -> Result<u8, SshError>,
) -> Result<u8, SshError> {
    // Two channels: the session, and one for bounded directory listings.
    let (opened, b) = tokio::join!(super::transfer::Sftp::open(&conn, warm), beside(&conn));
    let result = match opened {
        Ok(sftp) => {
            let r = work(&sftp, b).await;
            sftp.close().await;
            r
        }
        Err(f) => Err(f),
    };
    let result = match result {
        Err(e) if e.is_link_problem() => Err(conn.link_failure().await.unwrap_or(e)),
        other => other,
    };
    // Every request that mattered was answered (or the copy failed anyway).
    conn.end_now().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_get_a_wide_channel_window_and_terminals_openssh_s() {
        assert_eq!(ssh_config(false, true).window_size, 16 << 20);
        assert_eq!(ssh_config(true, true).window_size, 16 << 20);
        assert_eq!(ssh_config(false, false).window_size, 2 << 20);
        // Whatever the window, the settings that keep sessions alive stay.
        for (compression, copies) in [(false, false), (true, true)] {
            let c = ssh_config(compression, copies);
            assert_eq!(c.inactivity_timeout, None);
            assert_eq!(c.channel_buffer_size, 1024);
            assert_eq!(
                c.preferred.compression.len(),
                if compression { 3 } else { 1 }
            );
        }
    }
}
