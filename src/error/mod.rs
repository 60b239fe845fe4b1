//! One clear sentence and a distinct exit code for every way a command can fail.
//!
//! | code | meaning |
//! |---:|---|
//! | 0 | success |
//! | 1 | unexpected internal error |
//! | 2 | bad command line (clap; also no target given and no terminal to pick one on) |
//! | 3 | no usable AWS credentials, or they were rejected / expired |
//! | 4 | access denied by IAM |
//! | 5 | target not connected, unknown, or not a valid target |
//! | 6 | AWS endpoint or data channel unreachable / refused, a proxy down or refusing, an unknown TLS issuer |
//! | 7 | the remote side broke the protocol or stopped answering; the server refused a command, a shell or the SFTP subsystem |
//! | 8 | the instance refused the connection to the destination port |
//! | 9 | other AWS error (throttling, service error) or missing region |
//! | 10 | local IO failed (stdin/stdout) |
//! | 11 | the data channel dropped and the service says the session has ended |
//! | 12 | the target matches several managed nodes and there is no terminal to pick on, or the picker was cancelled (pass an ID, or `--pick first`) |
//! | 13 | the config file cannot be read or is invalid; a plain `http://` endpoint beyond this machine; an unusable proxy URL or CA bundle |
//! | 14 | this computer's clock is more than 5 minutes off AWS's |
//! | 15 | the SSH host key is unknown under `--strict-host-key-checking=yes`, changed, or revoked |
//! | 16 | the instance refused SSH authentication (the pushed key, or the OS user) |
//! | 17 | `scp`/`sftp`: a file could not be copied or a command failed on the server (missing, permission denied, disk full) |
//! | 18 | `exec`: the command ran but its exit status is unknown (the session document runs it without separate output streams) |
//! | 130 | interrupted (SIGINT/SIGTERM); SIGHUP from ssh is a normal end (0) |

mod commands;
mod keys;
mod session;
mod ssh;
mod target;

pub use commands::doctor_exit_status;

use crate::aws::{AwsError, AwsErrorKind};
use crate::transport::{ConnectError, DataKeyError, DriveError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Internal = 1,
    Usage = 2,
    Credentials = 3,
    AccessDenied = 4,
    Target = 5,
    Unreachable = 6,
    Protocol = 7,
    PortRefused = 8,
    Aws = 9,
    LocalIo = 10,
    SessionEnded = 11,
    Ambiguous = 12,
    Config = 13,
    ClockSkew = 14,
    HostKey = 15,
    AuthRefused = 16,
    RemoteFile = 17,
    NoExitStatus = 18,
    Interrupted = 130,
}

/// A failure as the user will read it: what happened, then what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: ExitCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// This failure with `more` after its sentence, under the same exit code.
    pub fn and(self, more: &str) -> Failure {
        let what = self.message.trim_end().trim_end_matches('.');
        Failure::new(self.code, format!("{what}; and {more}"))
    }

    /// The process exit status this failure ends with.
    pub fn exit_status(&self) -> u8 {
        self.code as u8
    }

    pub fn aws(e: AwsError, target: &str) -> Failure {
        let (code, default_hint) = match e.kind {
            AwsErrorKind::NoRegion => (
                ExitCode::Aws,
                "pass --region, set AWS_REGION, or set `region` in your AWS profile or in sallyport's config file".to_owned(),
            ),
            AwsErrorKind::Credentials => (
                ExitCode::Credentials,
                "check your AWS credentials: `aws sso login` for SSO profiles, or set AWS_PROFILE / AWS_ACCESS_KEY_ID".to_owned(),
            ),
            AwsErrorKind::AccessDenied => (
                ExitCode::AccessDenied,
                format!("your IAM identity needs ssm:StartSession on {target} and on the session document"),
            ),
            AwsErrorKind::TargetNotConnected => (
                ExitCode::Target,
                format!("check that {target} exists in this account and region, is running, and that its SSM agent is online"),
            ),
            AwsErrorKind::InvalidTarget => (
                ExitCode::Target,
                "targets are instance IDs such as i-0123456789abcdef0 or managed-node IDs (mi-…)".to_owned(),
            ),
            AwsErrorKind::Throttled => (
                ExitCode::Aws,
                "AWS is throttling requests; try again in a few seconds".to_owned(),
            ),
            AwsErrorKind::Unreachable => (
                ExitCode::Unreachable,
                "check your network, proxy settings and any --endpoint-url / AWS_ENDPOINT_URL".to_owned(),
            ),
            AwsErrorKind::ClockSkew => (
                ExitCode::ClockSkew,
                "this computer's clock is more than 5 minutes off; AWS refuses such requests: sync the clock (e.g. `sudo timedatectl set-ntp true`) and try again".to_owned(),
            ),
            AwsErrorKind::Service => (ExitCode::Aws, String::new()),
            AwsErrorKind::Config => (ExitCode::Config, String::new()),
        };
        let hint = e.hint.as_deref().unwrap_or(&default_hint);
        Failure::new(code, with_hint(&e.message, hint))
    }

    pub fn connect(e: ConnectError) -> Failure {
        if let ConnectError::Credentials(_) = e {
            return Failure::new(
                ExitCode::Credentials,
                with_hint(
                    &e.to_string(),
                    "check your AWS credentials: `aws sso login` for SSO profiles, or set AWS_PROFILE / AWS_ACCESS_KEY_ID",
                ),
            );
        }
        if let ConnectError::Proxy(_) = e {
            return Failure::new(
                ExitCode::Unreachable,
                with_hint(&e.to_string(), crate::aws::PROXY_HINT),
            );
        }
        if let ConnectError::UnknownIssuer { .. } = e {
            return Failure::new(ExitCode::Unreachable, e.to_string());
        }
        let code = match e {
            ConnectError::Insecure(_) | ConnectError::BadUrl(_) => ExitCode::Protocol,
            _ => ExitCode::Unreachable,
        };
        Failure::new(
            code,
            with_hint(
                &e.to_string(),
                "the session was started but its data channel (ssmmessages) could not be opened; check that your network allows it",
            ),
        )
    }

    pub fn drive(e: DriveError, target: &str, port: u16) -> Failure {
        match e {
            DriveError::PortRefused => Failure::new(
                ExitCode::PortRefused,
                format!(
                    "{target} refused the connection to port {port}: is a server (sshd) listening there?"
                ),
            ),
            DriveError::Input(_) | DriveError::Output(_) => {
                Failure::new(ExitCode::LocalIo, e.to_string())
            }
            // The service broke the websocket protocol (an oversized message): its fault.
            DriveError::Link(crate::transport::LinkError::PeerViolation { .. }) => {
                Failure::new(ExitCode::Protocol, e.to_string())
            }
            DriveError::Link(crate::transport::LinkError::SessionGone { .. }) => {
                Failure::new(ExitCode::SessionEnded, e.to_string())
            }
            DriveError::Link(crate::transport::LinkError::ResumeFailed {
                credentials: true,
                ..
            }) => Failure::new(
                ExitCode::Credentials,
                with_hint(
                    &e.to_string(),
                    "your AWS credentials expired or were revoked during the session and could not be refreshed; use a refreshable source (an SSO profile, a role, credential_process) or log in again",
                ),
            ),
            DriveError::Link(_) => Failure::new(ExitCode::Unreachable, e.to_string()),
            // KMS refused or failed: the AWS error says which permission is missing.
            DriveError::DataKey(DataKeyError::Aws(aws)) => Failure::aws(aws, target),
            DriveError::DataKey(_) => Failure::new(ExitCode::Protocol, e.to_string()),
            DriveError::Protocol(_) | DriveError::HandshakeTimeout(_) => {
                Failure::new(ExitCode::Protocol, e.to_string())
            }
            // Our end could not send (a sealing failure, or a bug): not the peer's fault.
            DriveError::Send(_) => Failure::new(ExitCode::Internal, e.to_string()),
        }
    }
}

/// An engine failure with no target or port to name (session kinds other than port
/// streams).
impl From<DriveError> for Failure {
    fn from(e: DriveError) -> Failure {
        Failure::drive(e, "", 0)
    }
}

fn with_hint(what: &str, hint: &str) -> String {
    let what = what.trim_end().trim_end_matches('.');
    if hint.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {hint}")
    }
}

#[cfg(test)]
mod tests;

/// Whether the service refused the target itself (unknown, not connected, not a valid
/// target): what a cached lookup is forgotten on and what the EICE fallback answers.
/// Each says so for exactly the errors that map to [`ExitCode::Target`]
/// (`tests::target_refused_is_exactly_the_target_exit_code` keeps the two in step).
pub(crate) fn aws_refuses_target(e: &AwsError) -> bool {
    matches!(
        e.kind,
        AwsErrorKind::TargetNotConnected | AwsErrorKind::InvalidTarget
    )
}

impl crate::session::SessionError {
    /// See [`aws_refuses_target`].
    pub fn target_refused(&self) -> bool {
        use crate::session::SessionError as E;
        match self {
            E::Aws { source, .. } => aws_refuses_target(source),
            E::Drive {
                source: DriveError::DataKey(DataKeyError::Aws(aws)),
                ..
            } => aws_refuses_target(aws),
            E::Tunnel { source, .. } => session::tunnel_refuses_target(source),
            E::Labelled { source, .. } => source.target_refused(),
            _ => false,
        }
    }
}

impl crate::ssh::SshError {
    /// See [`aws_refuses_target`].
    pub fn target_refused(&self) -> bool {
        use crate::ssh::SshError as E;
        match self {
            E::Session(e) => e.target_refused(),
            E::Aws { source, .. } => aws_refuses_target(source),
            E::InCommand { source, .. } => source.target_refused(),
            E::NotCopied { first, .. } | E::Reported { first, .. } => first.target_refused(),
            _ => false,
        }
    }
}

impl crate::target::TargetError {
    /// See [`aws_refuses_target`].
    pub fn target_refused(&self) -> bool {
        use crate::target::TargetError as E;
        match self {
            E::Target(_) => true,
            E::Aws { source, .. } => aws_refuses_target(source),
            _ => false,
        }
    }
}

impl crate::commands::CommandError {
    /// See [`aws_refuses_target`].
    pub fn target_refused(&self) -> bool {
        use crate::commands::CommandError as E;
        match self {
            E::NotConnected(_) => true,
            E::Session(e) => e.target_refused(),
            E::Ssh(e) => e.target_refused(),
            E::Target(e) => e.target_refused(),
            E::Aws { source, .. } => aws_refuses_target(source),
            E::NoWay { failed, .. } => failed.target_refused(),
            _ => false,
        }
    }
}
