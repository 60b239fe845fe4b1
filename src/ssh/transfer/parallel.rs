//! Striped copies (`scp -j N`, and `--verify`): the tree is walked on the first
//! connection as a plain copy would (same naming, mode and error rules) but files are only
//! collected; then [`stripe::run`] moves their pieces over up to N connections with
//! positioned SFTP reads and writes; then each file is finished (its temporary file gets
//! its mode and times and is renamed over the destination), then directories get their
//! final modes, then `--verify` compares SHA-256.
//!
//! Both ways, a file is written to `.NAME.sallyport-PID-I.part` (0600) in the
//! destination's directory and renamed when complete (see [`finish`]), so an interrupted
//! copy (Ctrl-C, a killed process, a dead session) never leaves a half-written file under
//! the destination's name. [`Resources`] holds what must be released however the copy ends
//! (temporary files, connections), so the caller can release them on Ctrl-C.
//!
//! The sizes planned with are the server's claims on download: nothing allocated follows
//! them ([`stripe::split`] bounds the pieces; the temporary file is not preallocated), and
//! a file shorter than its claim fails ("got shorter") when its reads come back empty.
//!
//! Differences from `-j 1` (which writes in place, as OpenSSH does) that come with the
//! rename: an existing destination keeps its mode (copied onto the new file) but not its
//! owner, hard links or ACLs, and a symlink at the destination is replaced by the file
//! instead of being written through; the destination's directory must be writable.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use russh_sftp::client::RawSftpSession;

use super::stripe::{self, Piece, RunOptions};
use crate::ssh::SshError;
use crate::ssh::client::{Connection, Connector};
use crate::ssh::transfer::{
    Copier, CopyOptions, CopyPlan, DirFinish, Direction, Outcome, Problem, Sftp, Step, progress_bar,
};

mod finish;
mod lane;
mod resources;
mod verify;
use finish::{UploadFinish, local_umask};
use lane::{LaneOpener, SftpLane};
use resources::IdleLane;
pub use resources::Resources;
use verify::verify;

/// Bytes per SFTP read or write request.
const CHUNK: u64 = 64 * 1024;
/// Most requests in flight per lane (8 MiB); a lane keeps fewer, as its measured
/// bandwidth-delay product needs ([`Window`]): through Session Manager two or three, through
/// an EC2 Instance Connect Endpoint tunnel as many as its round trip needs at line rate.
const IN_FLIGHT: usize = 128;
/// Files finished at once per lane (an upload's finish is two or three requests in turn:
/// stat, setstat, rename): enough to keep each lane's server busy across a round trip.
const FINISHING_PER_LANE: usize = 16;
/// Lanes that may be opened to replace dead ones once every lane has died.
const REOPEN_BUDGET: u32 = 3;

/// One file to copy, as the walk found it.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub remote: String,
    pub local: PathBuf,
    pub size: u64,
    /// The source's permission bits.
    pub mode: u32,
    /// (atime, mtime) of the source, when known.
    pub times: Option<(u32, u32)>,
}

/// What the walk collected.
#[derive(Default)]
pub struct Plan {
    pub files: Vec<FileJob>,
    pub(super) local_dirs: Vec<DirFinish<PathBuf>>,
    pub(super) remote_dirs: Vec<DirFinish<String>>,
}

/// Most files one striped copy plans (the plan is held in memory: ~200 bytes a file).
const MAX_PLANNED_FILES: usize = 1_000_000;

impl Plan {
    /// `Err` when the plan is full: a tree this large is copied with `-j 1`, which holds
    /// nothing per file.
    pub(super) fn room(&self) -> Step<()> {
        if self.files.len() < MAX_PLANNED_FILES {
            return Ok(());
        }
        Err(Problem::Fatal(SshError::Usage(format!(
            "more than {MAX_PLANNED_FILES} files in one striped copy; copy them with -j 1, \
                 or in parts"
        ))))
    }
}

/// `-j N` and `--verify`.
#[derive(Debug, Clone, Copy)]
pub struct ParallelOptions {
    pub lanes: usize,
    pub verify: bool,
}

/// Opens a channel on `conn` and starts the SFTP subsystem on it (the server's answer
/// awaited: [`subsystem_started`]).
pub(crate) async fn sftp_channel(
    conn: &Connection,
) -> Result<russh::ChannelStream<russh::client::Msg>, SshError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| SshError::Connection(format!("{what}: {e}"));
    let mut channel = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| failed("cannot open an SSH channel", &e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| failed("cannot ask for the sftp subsystem", &e))?;
    subsystem_started(&mut channel).await?;
    Ok(channel.into_stream())
}

/// Longest wait for the server's answer to the subsystem request.
const SUBSYSTEM_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits for the server's answer to the sftp subsystem request. A refusal leaves the
/// channel open (OpenSSH's sshd does so, with a window of 0), so a session that started
/// at once would wait for its first reply until the request timeout. Waiting costs
/// nothing against OpenSSH: it lets no data through before the answer (the window comes
/// with it).
async fn subsystem_started(
    channel: &mut russh::Channel<russh::client::Msg>,
) -> Result<(), SshError> {
    let refused = |why: &str| {
        SshError::Refused(format!(
            "the server refused the sftp subsystem ({why}): its sshd_config has no \
             `Subsystem sftp` line. Ask for one, or copy with OpenSSH's legacy protocol: \
             `scp -O`, with sallyport as ssh's ProxyCommand (`sallyport config ssh`)"
        ))
    };
    let answer = async {
        // Bounded: each message is the server's, and a server that never answers is cut
        // off by the timeout below.
        loop {
            match channel.wait().await {
                Some(russh::ChannelMsg::Success) => return Ok(()),
                Some(russh::ChannelMsg::Failure) => return Err(refused("it said no")),
                Some(
                    russh::ChannelMsg::Eof
                    | russh::ChannelMsg::Close
                    | russh::ChannelMsg::ExitStatus { .. }
                    | russh::ChannelMsg::ExitSignal { .. },
                )
                | None => return Err(refused("it closed the channel")),
                // An SFTP server says nothing before the client's INIT: bytes now would be
                // lost to the session, so they end it.
                Some(russh::ChannelMsg::Data { .. } | russh::ChannelMsg::ExtendedData { .. }) => {
                    return Err(SshError::Connection(
                        "the server sent data before answering the sftp subsystem request".into(),
                    ));
                }
                // Window adjustments and the like: not the answer.
                Some(_) => continue,
            }
        }
    };
    match tokio::time::timeout(SUBSYSTEM_ANSWER_TIMEOUT, answer).await {
        Ok(r) => r,
        Err(_) => Err(SshError::Connection(format!(
            "the server did not answer the sftp subsystem request within {} s; the \
             connection to the instance is stalled (run with -v to see the data channel's \
             reconnects)",
            SUBSYSTEM_ANSWER_TIMEOUT.as_secs()
        ))),
    }
}

/// The files and which way they go, shared by the lanes.
struct Jobs {
    files: Vec<FileJob>,
    /// Download: each file's temporary name.
    temps: Vec<Option<PathBuf>>,
    /// Upload: each file's temporary name on the server.
    remote_temps: Vec<Option<String>>,
    direction: Direction,
    /// The copy's one progress bar: each chunk moved counts at once.
    bar: Option<ProgressBar>,
}

/// Copies `plan` over up to `par.lanes` connections from `connector`; `first` is already
/// open (it also serves the walk). Per-file problems go to `report`; `Err` when the copy
/// could not go on. Everything opened is registered in `res`, which the caller releases.
pub(crate) async fn copy(
    connector: &Connector,
    first: Connection,
    res: &Resources,
    plan: &CopyPlan,
    opts: &CopyOptions,
    par: &ParallelOptions,
    report: &mut (dyn FnMut(&SshError) + Send),
) -> Result<Outcome, SshError> {
    // The walk's channel and the first lane's, side by side (each costs round trips).
    let warm = super::Warm::for_copy(plan);
    let (walk, lane) = tokio::join!(Sftp::open(&first, &warm), res.add_lane_on(&first));
    res.add(first).await;
    let sftp = walk?;
    lane?;
    let result = copy_with(&sftp, connector, res, plan, opts, par, report).await;
    sftp.close().await;
    result
}

/// [`copy`] with the walk on `sftp`, and the lanes in `res` (idle ones first, then new
/// connections from `connector`). The lanes still alive go back to `res`.
pub(crate) async fn copy_with(
    sftp: &Sftp,
    connector: &Connector,
    res: &Resources,
    plan: &CopyPlan,
    opts: &CopyOptions,
    par: &ParallelOptions,
    report: &mut (dyn FnMut(&SshError) + Send),
) -> Result<Outcome, SshError> {
    let mut copier = Copier::new(sftp, opts, report, Some(Plan::default()));
    match plan.direction {
        Direction::Upload => copier.upload(&plan.sources, &plan.destination).await?,
        Direction::Download => copier.download(&plan.sources, &plan.destination).await?,
    }
    let walked = copier.plan.take().unwrap_or_default();
    copier
        .stripe(connector, res, walked, par, plan.direction)
        .await?;
    Ok(Outcome {
        stats: copier.stats,
        problems: copier.problems,
        first: copier.first,
    })
}

/// Runs the scheduler over the idle lanes in `res` and new ones from `connector`, up to
/// `lanes`, with the copy's progress bar; says on stderr when pieces were redone.
async fn move_pieces<'a>(
    connector: &'a Connector,
    res: &'a Resources,
    jobs: &Arc<Jobs>,
    pieces: Vec<Piece>,
    lanes: usize,
) -> Result<stripe::RunReport<SftpLane<'a>>, SshError> {
    let bar = jobs.bar.clone();
    let opener = LaneOpener {
        connector,
        res,
        jobs: jobs.clone(),
    };
    let first: Vec<SftpLane> = res
        .take_idle()
        .into_iter()
        .map(|idle| SftpLane::new(res, idle, jobs.clone()))
        .collect();
    let run = stripe::run(
        &opener,
        first,
        pieces,
        RunOptions {
            max_lanes: lanes,
            reopen_budget: REOPEN_BUDGET,
            progress: &mut |_, busy| {
                if let Some(b) = &bar {
                    b.set_message(sessions_text(busy));
                }
            },
            notice: &mut |s| eprintln!("sallyport: {s}"),
            // Until a lane's opening is timed: the first connection's (its SFTP start
            // aside).
            open_cost: connector.connect_cost(),
            // Downloads through the agent are paced: when even its ceiling leaves the
            // lanes busy for longer than an opening, they open without waiting to measure.
            ceiling: match jobs.direction {
                Direction::Download => connector.download_ceiling(),
                Direction::Upload => None,
            },
        },
    )
    .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = match run {
        Ok(r) => r,
        Err(f) => {
            if let Some(b) = bar {
                b.abandon();
            }
            return Err(f);
        }
    };
    tracing::debug!(
        opened = report.opened,
        peak = report.peak,
        redone = report.redone,
        stolen = report.stolen,
        "striped copy done"
    );
    if report.redone > 0 {
        eprintln!(
            "sallyport: {} piece(s) redone after a session failed; {} session(s) opened",
            report.redone, report.opened
        );
    }
    Ok(report)
}

impl Copier<'_> {
    /// Moves the walked files' pieces over the lanes, then puts files and directories in
    /// place, then verifies.
    async fn stripe(
        &mut self,
        connector: &Connector,
        res: &Resources,
        plan: Plan,
        par: &ParallelOptions,
        direction: Direction,
    ) -> Result<(), SshError> {
        let Plan {
            files,
            local_dirs,
            remote_dirs,
        } = plan;
        let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
        let mut pieces = stripe::split(&sizes, par.lanes);
        let (temps, remote_temps, skip) = self.prepare(&files, &pieces, direction, res).await?;
        pieces.retain(|p| !skip[p.file]);
        let total = pieces.iter().fold(0u64, |t, p| t.saturating_add(p.len));
        let jobs = Arc::new(Jobs {
            files,
            temps,
            remote_temps,
            direction,
            bar: self.total_bar(total),
        });
        let mut report = move_pieces(connector, res, &jobs, pieces, par.lanes).await?;
        // A download's files stay open on their lanes (closed with the connection, or by
        // the next copy on the lane): nothing waits for a CLOSE here.
        let (lanes, open): (Vec<RawSftpSession>, Vec<Option<String>>) = (report.lanes)
            .into_iter()
            .map(|l| {
                let idle = l.into_idle();
                (idle.raw, idle.open)
            })
            .unzip();
        let done = self
            .finish_files(
                &jobs,
                &skip,
                std::mem::take(&mut report.failed),
                res,
                &lanes,
            )
            .await;
        res.give_back(
            (lanes.into_iter().zip(open))
                .map(|(raw, open)| IdleLane { raw, open })
                .collect(),
        );
        let done = done?;
        for f in local_dirs {
            let step = Self::finish_local_dir(f).await;
            self.absorb(step)?;
        }
        for f in &remote_dirs {
            let step = self.finish_remote_dir(f).await;
            self.absorb(step)?;
        }
        if par.verify {
            for i in done {
                let step = verify(res, &jobs.files[i]).await;
                self.absorb(step)?;
            }
        }
        Ok(())
    }

    /// Each file's temporary file (see [`finish`]); a file whose cannot be made is
    /// reported and skipped (`true` in the third list).
    async fn prepare(
        &mut self,
        files: &[FileJob],
        pieces: &[Piece],
        direction: Direction,
        res: &Resources,
    ) -> Result<(Vec<Option<PathBuf>>, Vec<Option<String>>, Vec<bool>), SshError> {
        let (temps, remote_temps) = match direction {
            Direction::Download => (self.prepare_downloads(files, res)?, Vec::new()),
            Direction::Upload => {
                let whole =
                    pieces
                        .iter()
                        .filter(|p| p.whole)
                        .fold(vec![false; files.len()], |mut v, p| {
                            v[p.file] = true;
                            v
                        });
                (Vec::new(), self.prepare_uploads(files, &whole, res).await?)
            }
        };
        let skip = (0..files.len())
            .map(|i| match direction {
                Direction::Download => temps[i].is_none(),
                Direction::Upload => remote_temps[i].is_none(),
            })
            .collect();
        Ok((temps, remote_temps, skip))
    }

    /// Renames each copied file into place; a failed one's temporary file is removed.
    /// Returns the indexes of the files now in place.
    async fn finish_files(
        &mut self,
        jobs: &Jobs,
        skip: &[bool],
        mut failed: std::collections::BTreeMap<usize, SshError>,
        res: &Resources,
        lanes: &[RawSftpSession],
    ) -> Result<Vec<usize>, SshError> {
        let umask = local_umask();
        let uploads = UploadFinish {
            lanes,
            res,
            preserve: self.opts.preserve,
            umask: tokio::sync::OnceCell::new(),
        };
        let this = &*self;
        // Each file with the failure its pieces had, if any.
        let files: Vec<(usize, Option<SshError>)> = (0..jobs.files.len())
            .filter(|&i| !skip[i])
            .map(|i| (i, failed.remove(&i)))
            .collect();
        let steps: Vec<(usize, Step<()>)> = futures_util::stream::iter(files)
            .map(|(i, failed)| {
                let uploads = &uploads;
                async move {
                    let job = &jobs.files[i];
                    let step = match (failed, jobs.direction) {
                        (Some(e), _) => Err(Problem::Item(e)),
                        (None, Direction::Download) => match &jobs.temps[i] {
                            Some(t) => this.finish_download(job, t, umask),
                            None => Ok(()),
                        },
                        (None, Direction::Upload) => match &jobs.remote_temps[i] {
                            Some(t) => uploads.finish(i, job, t).await,
                            None => Ok(()),
                        },
                    };
                    (i, step)
                }
            })
            .buffered(FINISHING_PER_LANE * lanes.len().max(1))
            .collect()
            .await;
        // The files that failed: their temporary files go (a cut file is worth nothing).
        let mut gone = Vec::new();
        for (i, step) in &steps {
            if let Some(Some(t)) = jobs.temps.get(*i) {
                if step.is_err() {
                    let _ = std::fs::remove_file(t);
                }
                res.temp_gone(t);
            }
            if let (Err(_), Some(Some(t))) = (step, jobs.remote_temps.get(*i))
                && res.remote_temps.lock().is_ok_and(|l| l.contains(t))
            {
                gone.push(t.clone());
            }
        }
        if let (false, Some(raw)) = (gone.is_empty(), lanes.first()) {
            finish::remove_remote(raw, &gone).await;
            gone.iter().for_each(|t| res.remote_temp_gone(t));
        }
        let mut done = Vec::new();
        for (i, step) in steps {
            if self.absorb(step)?.is_some() {
                self.stats.files += 1;
                self.stats.bytes = self.stats.bytes.saturating_add(jobs.files[i].size);
                done.push(i);
            }
        }
        Ok(done)
    }

    fn total_bar(&self, len: u64) -> Option<ProgressBar> {
        (self.opts.progress).then(|| progress_bar(len, sessions_text(1)))
    }
}

fn sessions_text(n: usize) -> String {
    if n == 1 {
        "1 session".to_owned()
    } else {
        format!("{n} sessions")
    }
}
