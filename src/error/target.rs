//! Target resolution failures as the user reads them.

use super::{ExitCode, Failure};
use crate::target::TargetError;

impl From<TargetError> for Failure {
    fn from(e: TargetError) -> Failure {
        let code = match e {
            TargetError::Aws { source, target } => return Failure::aws(*source, &target),
            TargetError::Usage(_) => ExitCode::Usage,
            TargetError::Target(_) => ExitCode::Target,
            TargetError::Ambiguous(_) => ExitCode::Ambiguous,
            TargetError::Interrupted(_) => ExitCode::Interrupted,
            TargetError::LocalIo(_) => ExitCode::LocalIo,
            TargetError::Internal(_) => ExitCode::Internal,
        };
        Failure::new(code, e.to_string())
    }
}
