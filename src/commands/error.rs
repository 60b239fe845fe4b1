//! What a command's own flow can get wrong (beyond what the layers below report),
//! grouped by whose fault it is. Only `crate::error` turns a [`CommandError`] into an
//! exit code.

use std::path::PathBuf;

use crate::aws::AwsError;
use crate::keys::KeyError;
use crate::session::SessionError;
use crate::ssh::SshError;
use crate::target::TargetError;

/// A command's own failure.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    // The user's input.
    /// `exec` or `shell` asked for an EC2 Instance Connect Endpoint, which carries only
    /// TCP ports.
    #[error(
        "`sallyport {0}` runs a Session Manager document on the agent, and an EC2 \
         Instance Connect Endpoint carries only TCP ports: use `sallyport ssh TARGET \
         COMMAND` over EICE, or `--via ssm` (or `--via auto`) for {0}"
    )]
    SessionManagerOnly(&'static str),
    /// The OS user to log in as is empty.
    #[error("the OS user name is empty")]
    EmptyUser,
    /// A copy was stopped by a signal (its name).
    #[error("interrupted by {0}; the copy is incomplete")]
    CopyInterrupted(&'static str),

    // The node.
    /// The node is not connected to Session Manager (the reason to try another way).
    #[error("{0} is not connected to Session Manager")]
    NotConnected(String),

    // This computer.
    /// Writing the command's output failed.
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    /// The `sftp -b` batch file cannot be read.
    #[error("cannot read the batch file {}: {source}", path.display())]
    BatchFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directory for ssh's control sockets cannot be made or used.
    #[error("cannot use the directory for ssh's control sockets: {0}")]
    ControlDir(String),
    /// No home directory to install the ssh configuration in.
    #[error("cannot find your home directory; set HOME")]
    NoHome,
    /// The ssh configuration could not be installed.
    #[error("cannot install the ssh configuration: {0}")]
    Install(#[source] super::ssh_config::InstallError),

    // A bug.
    /// The way chosen contradicts what was asked (`node: why`).
    #[error("{node}: Session Manager chosen where EICE was asked: {why}")]
    WrongWay { node: String, why: String },

    // What the layers below reported, whose fault they say.
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Keys(Box<KeyError>),
    /// AWS refused or failed a call about `what` (the target, or "the managed nodes").
    #[error("{source}")]
    Aws {
        #[source]
        source: AwsError,
        what: String,
    },
    /// Session Manager could not reach the node, and neither can an EC2 Instance Connect
    /// Endpoint: Session Manager's failure, and what keeps EICE from it.
    #[error("{failed}; and {missing}")]
    NoWay {
        failed: Box<CommandError>,
        missing: String,
    },
}

impl From<KeyError> for CommandError {
    fn from(e: KeyError) -> CommandError {
        CommandError::Keys(Box::new(e))
    }
}
