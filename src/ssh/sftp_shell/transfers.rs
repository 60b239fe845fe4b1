//! `get` and `put`: one remote side of a copy, through [`transfer`] on the shell's own
//! SFTP session, or striped over several sessions ([`Striping`]).

use tokio::io::AsyncWrite;

use crate::ssh::client::Connector;
use crate::ssh::sftp_shell::{Shell, Word, escape_glob, local_fail, path_string, write};
use crate::ssh::transfer::parallel::{self, ParallelOptions, Resources};
use crate::ssh::transfer::{
    self, CopyOptions, CopyPlan, Direction, Problem, printable, remote_join,
};
use crate::ssh::{SshError, glob};

/// What `get`/`put` need to spread a copy over several sessions.
pub struct Striping<'a> {
    pub connector: &'a Connector,
    pub res: &'a Resources,
    /// Most sessions (lanes) per copy.
    pub lanes: usize,
}

impl Shell<'_> {
    fn copy_options(&self, flags: &str) -> CopyOptions {
        CopyOptions {
            recursive: flags.contains('r') || flags.contains('R'),
            preserve: flags.contains('p') || flags.contains('P'),
            progress: self.opts.progress,
        }
    }

    pub(super) async fn get<W, E>(
        &self,
        ops: &[Word],
        flags: &str,
        out: &mut W,
        err: &mut E,
    ) -> Result<(), Problem>
    where
        W: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let sources = self.remote_matches(&ops[0]).await?;
        let dest = match ops.get(1) {
            Some(w) => self.local(&w.text),
            None => self.lcwd.clone(),
        };
        let dest_is_dir = dest.is_dir();
        for src in &sources {
            let to = match (dest_is_dir, transfer::remote_basename(src)) {
                (true, Some(name)) => dest.join(name),
                _ => dest.clone(),
            };
            let line = format!(
                "Fetching {} to {}\n",
                printable(src),
                printable(&to.to_string_lossy())
            );
            write(out, line.as_bytes()).await.map_err(Problem::Fatal)?;
        }
        let plan = CopyPlan {
            direction: Direction::Download,
            sources: sources.iter().map(|s| escape_glob(s)).collect(),
            destination: path_string(&dest)?,
        };
        self.transfer(&plan, flags, err).await
    }

    pub(super) async fn put<W, E>(
        &self,
        ops: &[Word],
        flags: &str,
        out: &mut W,
        err: &mut E,
    ) -> Result<(), Problem>
    where
        W: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let pattern = if ops[0].text.starts_with('/') {
            ops[0].pattern.clone()
        } else if ops[0].text == "~" || ops[0].text.starts_with("~/") {
            escape_glob(&path_string(&self.local(&ops[0].text))?)
        } else {
            let base = escape_glob(&path_string(&self.lcwd)?);
            remote_join(&base, &ops[0].pattern)
        };
        let sources = glob::local_glob(&pattern).await.map_err(|_| {
            local_fail(format!(
                "{}: matches more than {} paths",
                printable(&ops[0].text),
                transfer::MAX_LISTING_ENTRIES
            ))
        })?;
        let dest = match ops.get(1) {
            Some(w) => self.remote(w).await?,
            None => self.cwd.clone(),
        };
        let dest_is_dir = self
            .sftp
            .metadata(dest.as_str())
            .await
            .is_ok_and(|a| a.is_dir());
        for src in &sources {
            let to = match (dest_is_dir, transfer::remote_basename(src)) {
                (true, Some(name)) => remote_join(&dest, name),
                _ => dest.clone(),
            };
            let line = format!("Uploading {} to {}\n", printable(src), printable(&to));
            write(out, line.as_bytes()).await.map_err(Problem::Fatal)?;
        }
        let plan = CopyPlan {
            direction: Direction::Upload,
            sources,
            destination: dest,
        };
        self.transfer(&plan, flags, err).await
    }

    async fn transfer<E: AsyncWrite + Unpin>(
        &self,
        plan: &CopyPlan,
        flags: &str,
        err: &mut E,
    ) -> Result<(), Problem> {
        let mut reports = Vec::new();
        let mut report = |e: &SshError| reports.push(e.to_string());
        let opts = self.copy_options(flags);
        let result = match self.striping {
            Some(st) if st.lanes > 1 => {
                let par = ParallelOptions {
                    lanes: st.lanes,
                    verify: false,
                };
                parallel::copy_with(
                    self.sftp,
                    st.connector,
                    st.res,
                    plan,
                    &opts,
                    &par,
                    &mut report,
                )
                .await
            }
            _ => transfer::copy_collect(self.sftp, plan, &opts, &mut report).await,
        };
        // The last problem is the command's failure; any before it go to `err` here.
        let last = reports.pop();
        for r in reports {
            write(err, format!("{r}\n").as_bytes())
                .await
                .map_err(Problem::Fatal)?;
        }
        match result {
            // A refused host key on another session ends the shell, even under `-`.
            Err(e) if e.is_link_problem() || e.is_host_key() => Err(Problem::Fatal(e)),
            Err(e) => Err(Problem::Item(e)),
            Ok(outcome) => match (outcome.first, last) {
                (Some(first), Some(last)) => Err(Problem::Item(SshError::Reported {
                    last,
                    first: Box::new(first),
                })),
                _ => Ok(()),
            },
        }
    }
}
