//! `sallyport scp`: one remote side, copied through SFTP, striped over several sessions
//! unless `-j 1`.

use super::CommandError;
use crate::ssh::SshError;
use crate::ssh::client::with_sftp;
use crate::ssh::transfer::{self, CopyPlan};

use super::login::{Login, connector};
use super::{BACKGROUND_BUDGET, interrupted};

/// `sallyport scp`.
pub struct ScpRun {
    pub login: Login,
    pub plan: CopyPlan,
    pub recursive: bool,
    pub preserve: bool,
    /// No progress bars.
    pub quiet: bool,
    pub verify: bool,
    /// Sessions the copy may use.
    pub lanes: usize,
}

/// `sallyport scp`: one remote side, copied through SFTP.
pub async fn run(run: ScpRun) -> Result<u8, CommandError> {
    let (args, lanes) = (&run, run.lanes);
    // Listen before connecting: a Ctrl-C must release the sessions and temporary files.
    let mut signals = crate::session::lifecycle::Signals::new();
    let (connector, conn) = connector(&run.login, &mut signals, interrupted).await?;
    let opts = transfer::CopyOptions {
        recursive: args.recursive,
        preserve: args.preserve,
        progress: !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    if lanes > 1 || args.verify {
        let par = transfer::parallel::ParallelOptions {
            lanes,
            verify: args.verify,
        };
        let res = transfer::parallel::Resources::default();
        let mut report = |e: &SshError| eprintln!("sallyport: {e}");
        let work =
            transfer::parallel::copy(&connector, conn, &res, &run.plan, &opts, &par, &mut report);
        let result = tokio::select! {
            r = work => r.map_err(CommandError::from),
            sig = signals.recv() => Err(interrupted(sig)),
        };
        res.release().await;
        connector.await_background(BACKGROUND_BUDGET).await;
        let outcome = result?;
        return match (outcome.problems, outcome.first) {
            (0, _) | (_, None) => Ok(0),
            (count, Some(first)) => Err(SshError::NotCopied {
                count,
                first: Box::new(first),
            }
            .into()),
        };
    }
    // -j 1: one session, written in place, as before striping existed.
    let warm = transfer::Warm::for_copy(&run.plan);
    let work = with_sftp(
        conn,
        &warm,
        async |_| (),
        async |sftp, ()| transfer::copy(sftp, &run.plan, &opts).await.map(|_| 0),
    );
    tokio::select! {
        r = work => r.map_err(CommandError::from),
        sig = signals.recv() => Err(interrupted(sig)),
    }
}
