//! `sallyport sftp`: a prompt on a terminal, or a batch file (`-b`), with get and put
//! striped over several sessions.

use std::path::PathBuf;

use super::CommandError;
use crate::ssh::client::with_sftp;
use crate::ssh::sftp_shell;
use crate::ssh::transfer;

use super::login::{Login, connector};
use super::{BACKGROUND_BUDGET, interrupted};

/// `sallyport sftp`.
pub struct SftpRun {
    pub login: Login,
    /// Commands from this file (`-` for stdin) instead of a prompt.
    pub batch: Option<PathBuf>,
    /// Sessions a get or put may use.
    pub lanes: usize,
}

/// `sallyport sftp`: a prompt on a terminal, or a batch file (`-b`).
pub async fn run(run: SftpRun) -> Result<u8, CommandError> {
    let args = &run;
    use std::io::IsTerminal as _;
    // Open the batch file before connecting: a typo should not cost a session.
    let batch: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>> = match &args.batch {
        Some(p) if p.as_os_str() == "-" => Some(Box::new(tokio::io::stdin())),
        Some(p) => Some(Box::new(tokio::fs::File::open(p).await.map_err(
            |source| super::CommandError::BatchFile {
                path: p.clone(),
                source,
            },
        )?)),
        None => None,
    };
    let lanes = run.lanes;
    // Listen before connecting: a stop signal must end the session being set up, and the
    // extra sessions and temporary files of a striped `get` later.
    let mut signals = crate::session::lifecycle::Signals::new();
    let (connector, conn) = connector(&run.login, &mut signals, interrupted).await?;
    let res = transfer::parallel::Resources::default();
    let striping = sftp_shell::Striping {
        connector: &connector,
        res: &res,
        lanes,
    };
    let opts = sftp_shell::ShellOptions {
        batch: batch.is_some(),
        interactive: batch.is_none() && std::io::stdin().is_terminal(),
        progress: std::io::stdout().is_terminal(),
    };
    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match batch {
        Some(b) => b,
        None => Box::new(tokio::io::stdin()),
    };
    // A channel on this connection for striped get/put, opened beside the session's own;
    // without one they run unstriped.
    let lane = async |conn: &_| lanes > 1 && res.add_lane_on(conn).await.is_ok();
    let warm = transfer::Warm::start_dir();
    let work = with_sftp(conn, &warm, lane, async |sftp, striped| {
        let mut out = tokio::io::stdout();
        let mut err = tokio::io::stderr();
        let input = tokio::io::BufReader::new(input);
        let code = sftp_shell::run_striped(
            sftp,
            striped.then_some(&striping),
            input,
            &opts,
            &mut out,
            &mut err,
        )
        .await?;
        Ok(code)
    });
    // The listener installed, a signal no longer ends the process by itself: it ends the
    // work, whose sessions are then ended (and a striped `get`'s temporary files removed).
    let result = tokio::select! {
        r = work => r.map_err(CommandError::from),
        sig = signals.recv() => Err(interrupted(sig)),
    };
    res.release().await;
    connector.await_background(BACKGROUND_BUDGET).await;
    result
}
