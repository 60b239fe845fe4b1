//! `sallyport ssh`: a shell, or one command, over the embedded SSH client.

use super::CommandError;
use crate::session::lifecycle::{Signals, StopSignal};

use super::login::{Login, connect};

/// `sallyport ssh`.
pub struct SshRun {
    pub login: Login,
    /// One command instead of a shell.
    pub command: Option<String>,
    /// Read nothing from stdin (ssh -n).
    pub stdin_null: bool,
}

/// `sallyport ssh`: a shell, or one command.
///
/// Stop signals are listened for from the start (one listener for the set-up and the
/// run): one during set-up ends the session being set up before the command exits.
pub async fn run(run: SshRun) -> Result<u8, CommandError> {
    let mut signals = Signals::new();
    let stopped = |sig: StopSignal| CommandError::from(sig.failure());
    let (conn, _) = connect(&run.login, &mut signals, stopped).await?;
    Ok(crate::ssh::remote::run(conn, run.command, run.stdin_null, signals).await?)
}
