//! Commands' own failures, and `doctor`'s findings, as exit codes.

use super::{ExitCode, Failure};
use crate::commands::CommandError;
use crate::commands::doctor::Blame;

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Failure {
        let code = match e {
            CommandError::SessionManagerOnly(_) => ExitCode::Usage,
            CommandError::EmptyUser => ExitCode::Config,
            CommandError::CopyInterrupted(_) => ExitCode::Interrupted,
            CommandError::NotConnected(_) => ExitCode::Target,
            CommandError::Stdout(_)
            | CommandError::BatchFile { .. }
            | CommandError::ControlDir(_)
            | CommandError::NoHome
            | CommandError::Install(_) => ExitCode::LocalIo,
            CommandError::WrongWay { .. } => ExitCode::Internal,
            CommandError::Session(e) => return Failure::from(e),
            CommandError::Ssh(e) => return Failure::from(e),
            CommandError::Target(e) => return Failure::from(e),
            CommandError::Keys(e) => return Failure::from(*e),
            CommandError::Aws { source, what } => return Failure::aws(source, &what),
            CommandError::NoWay { failed, missing } => {
                return Failure::from(*failed).and(&missing);
            }
        };
        Failure::new(code, e.to_string())
    }
}

/// What `doctor` exits with when its first failed check is `blame`'s.
pub fn doctor_exit_status(blame: Blame) -> u8 {
    (match blame {
        Blame::Region | Blame::Other => ExitCode::Aws,
        Blame::Credentials => ExitCode::Credentials,
        Blame::AccessDenied => ExitCode::AccessDenied,
        Blame::Clock => ExitCode::ClockSkew,
        Blame::Unreachable => ExitCode::Unreachable,
        Blame::Target => ExitCode::Target,
    }) as u8
}
