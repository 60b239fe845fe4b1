//! `sallyport proxy`: an ssh ProxyCommand over an `AWS-StartSSHSession` session.
//!
//! Stdout carries only bytes from the remote port: no banner, no log lines.

use crate::aws::{SessionDocument, Ssm};

use crate::transport::{self, DriveOptions, LinkOptions, Outcome};

use super::SessionError;
use super::lifecycle::{self, Opened, Signals, StopSignal};

pub struct ProxyRequest {
    pub target: String,
    pub port: u16,
    /// Retries (`--wait`, throttling) and error advice for StartSession.
    pub start: crate::aws::StartOptions,
    /// Keep-alive and resume settings for the data channel.
    pub link: LinkOptions,
    /// A key to push through EC2 Instance Connect while the session starts.
    pub push: Option<PushKey>,
}

/// `--push-key`: a public key line for an OS user, pushed with this client.
pub struct PushKey {
    pub eic: crate::aws::InstanceConnect,
    pub user: String,
    pub public_key: String,
    /// For advice on credential errors.
    pub profile: Option<String>,
}

/// The key `--push-key` pushes: `--ephemeral` makes one and adds it to the ssh-agent for
/// the key's 60 s validity; otherwise the public half of the key ssh will offer.
pub async fn key_to_push(
    ephemeral: bool,
    identity: Option<&std::path::Path>,
) -> Result<String, SessionError> {
    if ephemeral {
        let key = crate::keys::ephemeral()?;
        crate::keys::add_to_agent(&key, crate::aws::KEY_VALIDITY).await?;
        Ok(crate::keys::public_line(&key)?)
    } else {
        let (path, line) = crate::keys::default_public_key(identity, dirs::home_dir().as_deref())?;
        tracing::debug!(path = %path.display(), "pushing this public key");
        Ok(line)
    }
}

/// Runs the proxy until ssh closes stdin or the remote side ends.
///
/// Stop signals are listened for from the start: one that comes while the session is set
/// up drops the set-up, whose guards end a session StartSession started (in the
/// background: the caller awaits [`Ssm::await_background`] before exiting).
pub async fn run(ssm: &Ssm, req: &ProxyRequest) -> Result<(), SessionError> {
    let mut signals = Signals::new();
    let opened = tokio::select! {
        opened = open(ssm, req) => opened,
        sig = signals.recv() => return stopped(sig),
    };
    let opened = opened?;
    let session_id = opened.started.session_id.clone();
    let result = stream(opened, req, &mut signals).await;
    // Best effort: the plugin leaves SSH sessions to time out on the service side; ending
    // them keeps the console's session history honest.
    lifecycle::terminate(ssm, &session_id).await;
    result
}

/// StartSession and the key push side by side (both are needed only when ssh
/// authenticates), then the data channel.
async fn open(ssm: &Ssm, req: &ProxyRequest) -> Result<Opened, SessionError> {
    let document = SessionDocument::Ssh { port: req.port };
    let ahead = lifecycle::Ahead::start(ssm);
    let start = lifecycle::start(ssm, &req.target, &document, &req.start);
    let push = async {
        match &req.push {
            Some(p) => {
                p.eic
                    .send_ssh_public_key(&req.target, &p.user, &p.public_key, p.profile.as_deref())
                    .await
            }
            None => Ok(()),
        }
    };
    let (started, pushed) = tokio::join!(start, push);
    let started = started.map_err(|e| aws(e, &req.target))?;
    if let Err(e) = pushed {
        started.terminate().await;
        return Err(aws(e, &req.target));
    }
    lifecycle::attach_ahead(ssm, &req.target, started, &req.link, ahead).await
}

/// How a stop signal ends the proxy: ssh sends SIGHUP to its ProxyCommand when it is
/// done, a normal end; the others are interruptions.
fn stopped(sig: StopSignal) -> Result<(), SessionError> {
    match sig {
        StopSignal::Hangup => Ok(()),
        other => Err(other.failure()),
    }
}

/// [`run`] over an EC2 Instance Connect Endpoint tunnel: the key push and the tunnel side
/// by side, then stdin/stdout carried until either side ends.
pub async fn run_eice(
    tunnel: &crate::session::eice::EiceStream,
    req: &ProxyRequest,
) -> Result<(), SessionError> {
    if let Some(p) = &req.push {
        p.eic
            .send_ssh_public_key(&req.target, &p.user, &p.public_key, p.profile.as_deref())
            .await
            .map_err(|e| aws(e, &req.target))?;
    }
    crate::session::eice::proxy(tunnel).await
}

async fn stream(
    opened: Opened,
    req: &ProxyRequest,
    signals: &mut Signals,
) -> Result<(), SessionError> {
    let Opened {
        started,
        mut link,
        session,
        data_keys,
        timeline,
    } = opened;
    let mut session = session.with_input_gate(lifecycle::SSH_INPUT_GATE);
    // Port sessions are never encrypted by the agent (docs/protocol.md §5.1), but answer a KMS
    // request anyway should a document ever make one.
    let opts = DriveOptions {
        data_keys: Some(data_keys),
        timeline,
        ..DriveOptions::default()
    };
    let ended = {
        let drive = transport::drive_stream(
            &mut link,
            &mut session,
            tokio::io::stdin(),
            tokio::io::stdout(),
            &opts,
        );
        tokio::select! {
            r = drive => Ok(r),
            sig = signals.recv() => Err(sig),
        }
    };
    link.close().await;
    let outcome = match ended {
        Ok(outcome) => outcome,
        Err(sig) => return stopped(sig),
    };
    match outcome.map_err(|source| SessionError::Drive {
        source,
        target: req.target.clone(),
        port: req.port,
    })? {
        Outcome::InputClosed | Outcome::OutputClosed => Ok(()),
        Outcome::InputClosedUnacked { unacked } => {
            tracing::warn!(
                unacked,
                "input ended but the agent did not acknowledge the last messages"
            );
            Ok(())
        }
        Outcome::ClosedByService { output } => {
            if !output.is_empty() {
                let output = crate::text::shown(output.trim());
                eprintln!("sallyport: {}: {output}", started.session_id);
            }
            Ok(())
        }
    }
}

fn aws(source: crate::aws::AwsError, target: &str) -> SessionError {
    SessionError::Aws {
        source,
        target: target.to_owned(),
    }
}

/// Resolves with the name of the first SIGHUP, SIGINT or SIGTERM.
pub(crate) async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = hup.recv() => "SIGHUP",
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
