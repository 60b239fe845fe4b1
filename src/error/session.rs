//! Session failures as the user reads them.

use super::{ExitCode, Failure};
use crate::session::SessionError;
use crate::transport::TunnelError;

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Failure {
        let code = match e {
            SessionError::Aws { source, target } => return Failure::aws(source, &target),
            SessionError::Connect(e) => return Failure::connect(e),
            SessionError::Drive {
                source,
                target,
                port,
            } => return Failure::drive(source, &target, port),
            SessionError::Keys(e) => return Failure::from(*e),
            SessionError::Labelled { label, source } => {
                let f = Failure::from(*source);
                return Failure::new(f.code, format!("{label}: {}", f.message));
            }
            SessionError::Interrupted(_) => ExitCode::Interrupted,
            SessionError::NotOverTunnel(_) | SessionError::RemoteSocks(_) => ExitCode::Usage,
            SessionError::NoTunnelSigner => ExitCode::Credentials,
            SessionError::Tunnel { ref source, .. } => tunnel_code(source),
            SessionError::ClosedByService { .. } | SessionError::Ended(_) => ExitCode::SessionEnded,
            SessionError::Multiplexer { .. } => ExitCode::Protocol,
            SessionError::NoExitStatus(_) => ExitCode::NoExitStatus,
            SessionError::LocalIo { .. } | SessionError::BrokenPipe => ExitCode::LocalIo,
            SessionError::Internal(_) => ExitCode::Internal,
        };
        Failure::new(code, e.to_string())
    }
}

/// Whether a tunnel's failure is the endpoint refusing the target (404).
pub(super) fn tunnel_refuses_target(e: &TunnelError) -> bool {
    tunnel_code(e) == ExitCode::Target
}

/// An EC2 Instance Connect Endpoint tunnel's failure: the endpoint's HTTP status says
/// whose fault a refusal is.
fn tunnel_code(e: &TunnelError) -> ExitCode {
    match e {
        TunnelError::Refused { status, .. } => match status {
            401 | 403 => ExitCode::AccessDenied,
            404 => ExitCode::Target,
            429 => ExitCode::Aws,
            _ => ExitCode::Unreachable,
        },
        TunnelError::Credentials(_) => ExitCode::Credentials,
        TunnelError::Insecure(_) => ExitCode::Config,
        TunnelError::BadEndpoint(_) => ExitCode::Aws,
        TunnelError::Connect(_) | TunnelError::Broken(_) => ExitCode::Unreachable,
        TunnelError::Text(_) => ExitCode::Protocol,
        TunnelError::Closed { .. } | TunnelError::MaxDuration(_) => ExitCode::SessionEnded,
    }
}
