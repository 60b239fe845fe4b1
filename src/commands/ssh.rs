//! `sallyport ssh`: a shell, or one command, over the embedded SSH client.

use super::CommandError;

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
pub async fn run(run: SshRun) -> Result<u8, CommandError> {
    let (conn, _) = connect(&run.login).await?;
    Ok(crate::ssh::remote::run(conn, run.command, run.stdin_null).await?)
}
