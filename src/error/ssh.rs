//! SSH client and copy failures as the user reads them.

use super::{ExitCode, Failure};
use crate::ssh::SshError;

impl From<SshError> for Failure {
    fn from(e: SshError) -> Failure {
        let message = e.to_string();
        let code = match e {
            SshError::Session(e) => return Failure::from(*e),
            SshError::Keys(e) => return Failure::from(*e),
            SshError::Aws { source, target } => return Failure::aws(*source, &target),
            // Each was reported already: the first one's kind decides the exit code.
            SshError::NotCopied { first, .. } | SshError::Reported { first, .. } => {
                Failure::from(*first).code
            }
            SshError::InCommand { cmd, source } => {
                let f = Failure::from(*source);
                return Failure::new(f.code, format!("{cmd}: {}", f.message));
            }
            SshError::Usage(_) => ExitCode::Usage,
            SshError::Connection(_) | SshError::Refused(_) => ExitCode::Protocol,
            SshError::HostKey(_) => ExitCode::HostKey,
            SshError::AuthRefused(_) => ExitCode::AuthRefused,
            SshError::RemoteFile(_) => ExitCode::RemoteFile,
            SshError::LocalIo(_) => ExitCode::LocalIo,
            SshError::Internal(_) => ExitCode::Internal,
        };
        Failure::new(code, message)
    }
}
