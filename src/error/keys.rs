//! Key failures as the user reads them.

use super::{ExitCode, Failure};
use crate::keys::KeyError;

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Failure {
        let code = match e {
            // Making or encoding a key in memory cannot fail but for a bug.
            KeyError::Generate(_) | KeyError::Encode(_) => ExitCode::Internal,
            KeyError::NoAgent
            | KeyError::Agent { .. }
            | KeyError::NoHome
            | KeyError::NoPublicKey { .. }
            | KeyError::Read { .. }
            | KeyError::NotAPublicKey { .. }
            | KeyError::UnsupportedType { .. } => ExitCode::LocalIo,
        };
        Failure::new(code, e.to_string())
    }
}
