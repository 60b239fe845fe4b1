//! What can go wrong in the embedded SSH client and its copies, grouped by whose fault
//! it is: the user's input, the peer (sshd, its SFTP server, the instance), this
//! computer, or a layer below (the session under SSH, AWS, key material). Only
//! `crate::error` turns an [`SshError`] into an exit code; code here decides by variant.

use crate::aws::AwsError;
use crate::keys::KeyError;
use crate::session::SessionError;

/// The SSH client or a copy over it failed. The `String` payloads are the whole
/// sentence the user reads (paths and server words already made printable).
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    // The user's input.
    /// A copy that cannot be done as asked (e.g. several sources to one file).
    #[error("{0}")]
    Usage(String),

    // The peer: sshd, its SFTP server, the instance.
    /// The SSH connection or the SFTP session on it broke, stalled or was refused (the
    /// data channel under it may explain better: [`SshError::is_link_problem`]).
    #[error("{0}")]
    Connection(String),
    /// The host key is unknown under strict checking, changed, revoked, or a
    /// certificate.
    #[error("{0}")]
    HostKey(String),
    /// The instance refused the pushed key (or the OS user).
    #[error("{0}")]
    AuthRefused(String),
    /// The server refused a request on a working connection: a command, a shell, the
    /// sftp subsystem (its configuration says no; the link under it is fine).
    #[error("{0}")]
    Refused(String),
    /// The SFTP server refused one file or directory (missing, permission denied, disk
    /// full).
    #[error("{0}")]
    RemoteFile(String),

    // This computer.
    /// A local file, directory, terminal or stream failed.
    #[error("{0}")]
    LocalIo(String),
    /// Something that cannot happen but for a bug.
    #[error("{0}")]
    Internal(String),

    // The layers below.
    /// The session (or tunnel) SSH runs over failed.
    #[error(transparent)]
    Session(Box<SessionError>),
    /// Pushing the key through EC2 Instance Connect failed.
    #[error("{source}")]
    Aws {
        #[source]
        source: Box<AwsError>,
        target: String,
    },
    /// No key to push.
    #[error(transparent)]
    Keys(Box<KeyError>),

    // Several.
    /// Some files or directories could not be copied (each was reported); `first` is the
    /// first of them.
    #[error("{}", not_copied(*count))]
    NotCopied { count: u64, first: Box<SshError> },
    /// Several problems were reported: the last one's words, the first one's kind.
    #[error("{last}")]
    Reported { last: String, first: Box<SshError> },
    /// An `sftp` command's problem, with the command's name first.
    #[error("{cmd}: {source}")]
    InCommand {
        cmd: String,
        #[source]
        source: Box<SshError>,
    },
}

fn not_copied(n: u64) -> String {
    if n == 1 {
        "1 file or directory could not be copied".to_owned()
    } else {
        format!("{n} files or directories could not be copied")
    }
}

impl SshError {
    /// The SSH connection or SFTP session broke: the data channel's own failure, when it
    /// had one, explains it better.
    pub fn is_link_problem(&self) -> bool {
        match self {
            SshError::Connection(_) => true,
            SshError::Session(e) => e.broke_protocol(),
            SshError::InCommand { source, .. } => source.is_link_problem(),
            SshError::NotCopied { first, .. } | SshError::Reported { first, .. } => {
                first.is_link_problem()
            }
            _ => false,
        }
    }

    /// A host key was refused: a security event that ends every session, never a lack
    /// of capacity to work around.
    pub fn is_host_key(&self) -> bool {
        match self {
            SshError::HostKey(_) => true,
            SshError::InCommand { source, .. } => source.is_host_key(),
            SshError::NotCopied { first, .. } | SshError::Reported { first, .. } => {
                first.is_host_key()
            }
            _ => false,
        }
    }
}

impl SshError {
    /// An AWS call about `target` failed.
    pub fn aws(source: AwsError, target: &str) -> SshError {
        SshError::Aws {
            source: Box::new(source),
            target: target.to_owned(),
        }
    }
}

impl From<SessionError> for SshError {
    fn from(e: SessionError) -> SshError {
        SshError::Session(Box::new(e))
    }
}

impl From<KeyError> for SshError {
    fn from(e: KeyError) -> SshError {
        SshError::Keys(Box::new(e))
    }
}
