//! What can go wrong running a session, grouped by whose fault it is: the user's input,
//! AWS, the peer (the service, the agent, the instance's port), or this computer. Only
//! `crate::error` turns a [`SessionError`] into an exit code and advice; code here and
//! above decides by variant, never by exit code.

use crate::aws::AwsError;
use crate::transport::{ConnectError, DriveError, TunnelError};

/// A session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    // The user's input.
    /// The user stopped the command (the signal's name).
    #[error("interrupted ({0})")]
    Interrupted(&'static str),
    /// Something the way chosen (an EC2 Instance Connect Endpoint tunnel) cannot carry.
    #[error(
        "{0} is not possible over an EC2 Instance Connect Endpoint tunnel: forward ports on the instance itself, or use --via ssm"
    )]
    NotOverTunnel(String),
    /// `-D` beyond loopback without `--allow-remote-socks`.
    #[error(
        "-D {0} would let anyone who can reach this machine into the target's network \
         (SOCKS has no authentication); bind 127.0.0.1, or pass --allow-remote-socks if \
         that is what you want"
    )]
    RemoteSocks(std::net::SocketAddr),

    // AWS.
    /// An AWS call (StartSession, SendSSHPublicKey, …) failed; `target` is what it was
    /// asked about, for the advice.
    #[error("{source}")]
    Aws {
        #[source]
        source: AwsError,
        target: String,
    },
    /// No credentials or region to presign an EC2 Instance Connect Endpoint tunnel with.
    #[error("no AWS credentials or region to sign the EC2 Instance Connect Endpoint tunnel with")]
    NoTunnelSigner,
    /// The data channel could not be opened (network, proxy, TLS, the service's answer).
    #[error(transparent)]
    Connect(#[from] ConnectError),

    // The peer: the service, the agent, the remote port.
    /// The session's engine failed: the link, the agent's protocol, KMS, or local IO;
    /// `crate::error` sorts the cause. `target` and `port` name the far end (empty and 0
    /// for session kinds other than port streams).
    #[error("{source}")]
    Drive {
        #[source]
        source: DriveError,
        target: String,
        port: u16,
    },
    /// An EC2 Instance Connect Endpoint tunnel failed or was refused.
    #[error("{target} port {port}: {source}")]
    Tunnel {
        #[source]
        source: TunnelError,
        target: String,
        port: u16,
    },
    /// The service closed a port session that the protocol on top still needed.
    #[error("the service closed the session to {target} port {port}{}", colon(output.as_deref()))]
    ClosedByService {
        target: String,
        port: u16,
        /// The service's closing text, shown safely, when it gave one.
        output: Option<String>,
    },
    /// The service ended the session (`what`: the session ID or forward label, then why).
    #[error("{0}")]
    Ended(String),
    /// The agent's multiplexed stream broke its protocol (`label: error`).
    #[error("{label}: {detail}")]
    Multiplexer { label: String, detail: String },
    /// The command ran but the document gave no separate streams, so no exit status.
    #[error(
        "the session ended without an exit code: {0} ran the command without \
         separate output streams (stdout and stderr came combined), so the remote exit \
         status is unknown"
    )]
    NoExitStatus(String),

    // This computer.
    /// Local IO failed (`what` says which: a listener, the terminal, stdout).
    #[error("{what}: {source}")]
    LocalIo {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Our reader went away (like a shell command's SIGPIPE).
    #[error("output closed (broken pipe)")]
    BrokenPipe,
    /// A task of ours ended unexpectedly (a bug).
    #[error("{0}")]
    Internal(String),
    /// Key material for `--push-key` could not be had.
    #[error(transparent)]
    Keys(Box<crate::keys::KeyError>),

    /// `label: ` before another failure (a forward's remote end).
    #[error("{label}: {source}")]
    Labelled {
        label: String,
        #[source]
        source: Box<SessionError>,
    },
}

fn colon(output: Option<&str>) -> String {
    output.map(|o| format!(": {o}")).unwrap_or_default()
}

impl SessionError {
    /// A failure of a session kind other than a port stream.
    pub fn drive(source: DriveError) -> SessionError {
        SessionError::Drive {
            source,
            target: String::new(),
            port: 0,
        }
    }

    /// Local IO failed doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> SessionError {
        SessionError::LocalIo {
            what: what.into(),
            source,
        }
    }

    /// The service (or the tunnel) ended the session: saying goodbye on it is pointless.
    pub fn session_ended(&self) -> bool {
        match self {
            SessionError::Ended(_) | SessionError::ClosedByService { .. } => true,
            SessionError::Drive {
                source: DriveError::Link(crate::transport::LinkError::SessionGone { .. }),
                ..
            } => true,
            SessionError::Tunnel { source, .. } => matches!(
                source,
                TunnelError::Closed { .. } | TunnelError::MaxDuration(_)
            ),
            SessionError::Labelled { source, .. } => source.session_ended(),
            _ => false,
        }
    }
}

impl SessionError {
    /// The peer (the service, the agent, the endpoint) broke the protocol or stopped
    /// answering mid-handshake, or the data channel's URL cannot be used.
    pub fn broke_protocol(&self) -> bool {
        use crate::transport::{DataKeyError, LinkError};
        match self {
            SessionError::Connect(e) => {
                matches!(e, ConnectError::Insecure(_) | ConnectError::BadUrl(_))
            }
            SessionError::Drive { source, .. } => matches!(
                source,
                DriveError::Protocol(_)
                    | DriveError::HandshakeTimeout(_)
                    | DriveError::Link(LinkError::PeerViolation { .. })
                    | DriveError::DataKey(
                        DataKeyError::Timeout(_)
                            | DataKeyError::Unsupported
                            | DataKeyError::NotAwaiting(_)
                    )
            ),
            SessionError::Tunnel { source, .. } => matches!(source, TunnelError::Text(_)),
            SessionError::Multiplexer { .. } => true,
            SessionError::Labelled { source, .. } => source.broke_protocol(),
            _ => false,
        }
    }
}

impl From<crate::keys::KeyError> for SessionError {
    fn from(e: crate::keys::KeyError) -> SessionError {
        SessionError::Keys(Box::new(e))
    }
}

impl From<DriveError> for SessionError {
    fn from(e: DriveError) -> SessionError {
        SessionError::drive(e)
    }
}
