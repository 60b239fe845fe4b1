//! Striped copies (`scp -j N`, and `--verify`): the tree is walked on the first
//! connection as a plain copy would (same naming, mode and error rules) but files are only
//! collected; then [`stripe::run`] moves their pieces over up to N connections with
//! positioned SFTP reads and writes; then each file is finished (download: its temporary
//! file gets its mode and times and is renamed over the destination; upload: `-p`
//! attributes), then directories get their final modes, then `--verify` compares SHA-256.
//!
//! A download is written to `.NAME.sallyport-PID-I.part` in the destination's directory
//! and renamed when complete, so an interrupted copy never leaves a half-written file
//! under the destination's name. [`Resources`] holds what must be released however the
//! copy ends (temporary files, connections), so the caller can release them on Ctrl-C.
//!
//! Differences from `-j 1` that come with the rename: an existing destination keeps its
//! mode (copied onto the new file) but not its owner, hard links or ACLs, and a symlink at
//! the destination is replaced by the file instead of being written through; the
//! destination's directory must be writable.

use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use russh_sftp::client::RawSftpSession;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::stripe::{self, Lane, Opener, Piece, PieceError, RunOptions};
use super::*;
use crate::ssh::client::{Connection, Connector};

mod verify;
use verify::{test_pause_before_verify, verify};

/// Bytes per SFTP read or write request.
const CHUNK: u64 = 64 * 1024;
/// Requests in flight per lane (2 MiB: several times a session's paced bandwidth-delay
/// product even at 200 ms of round trip).
const IN_FLIGHT: usize = 32;
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
        Err(Problem::Fatal(Failure::new(
            ExitCode::Usage,
            format!(
                "more than {MAX_PLANNED_FILES} files in one striped copy; copy them with -j 1, \
                 or in parts"
            ),
        )))
    }
}

/// `-j N` and `--verify`.
#[derive(Debug, Clone, Copy)]
pub struct ParallelOptions {
    pub lanes: usize,
    pub verify: bool,
}

/// What a striped copy must release however it ends.
#[derive(Default)]
pub struct Resources {
    pool: tokio::sync::Mutex<Vec<Connection>>,
    temps: std::sync::Mutex<Vec<PathBuf>>,
    /// Open SFTP channels no copy is using (kept for the next `get`/`put` of `sftp`).
    idle: std::sync::Mutex<Vec<RawSftpSession>>,
}

impl Resources {
    /// Opens an SFTP channel on `conn` for copies to use.
    pub async fn add_lane_on(&self, conn: &Connection) -> Result<(), Failure> {
        let raw = open_raw(conn).await?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(raw);
        }
        Ok(())
    }

    fn take_idle(&self) -> Vec<RawSftpSession> {
        self.idle
            .lock()
            .map(|mut i| std::mem::take(&mut *i))
            .unwrap_or_default()
    }

    fn give_back(&self, lanes: Vec<RawSftpSession>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.extend(lanes);
        }
    }

    pub async fn add(&self, conn: Connection) {
        self.pool.lock().await.push(conn);
    }

    fn temp_added(&self, p: &Path) {
        if let Ok(mut t) = self.temps.lock() {
            t.push(p.to_owned());
        }
    }

    fn temp_gone(&self, p: &Path) {
        if let Ok(mut t) = self.temps.lock() {
            t.retain(|x| x != p);
        }
    }

    /// Removes the temporary files left and closes every connection (ending its
    /// session). Sessions whose connection was cancelled mid-setup are ended by the
    /// caller: `Connector::await_background`.
    pub async fn release(&self) {
        let temps = self.temps.lock().map(|mut t| std::mem::take(&mut *t));
        for t in temps.unwrap_or_default() {
            let _ = std::fs::remove_file(t);
        }
        drop(self.take_idle());
        let conns = std::mem::take(&mut *self.pool.lock().await);
        futures_util::future::join_all(conns.into_iter().map(Connection::close)).await;
    }

    /// How many connections were opened (and not yet released).
    pub async fn sessions(&self) -> usize {
        self.pool.lock().await.len()
    }
}

/// Opens an SFTP channel on `conn` for the planning walk.
pub async fn open_session(conn: &Connection) -> Result<SftpSession, Failure> {
    let stream = sftp_channel(conn).await?;
    SftpSession::new_with_config(stream, sftp_config())
        .await
        .map_err(|e| {
            Failure::new(
                ExitCode::Protocol,
                format!("SFTP did not start (is the server's sftp subsystem enabled?): {e}"),
            )
        })
}

async fn sftp_channel(
    conn: &Connection,
) -> Result<russh::ChannelStream<russh::client::Msg>, Failure> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Failure::new(ExitCode::Protocol, format!("{what}: {e}"))
    };
    let channel = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| failed("cannot open an SSH channel", &e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| failed("the server refused the sftp subsystem", &e))?;
    Ok(channel.into_stream())
}

async fn open_raw(conn: &Connection) -> Result<RawSftpSession, Failure> {
    let stream = sftp_channel(conn).await?;
    let raw = RawSftpSession::new_with_config(stream, sftp_config());
    raw.init().await.map_err(|e| session_failure(&e))?;
    Ok(raw)
}

/// The files and which way they go, shared by the lanes.
struct Jobs {
    files: Vec<FileJob>,
    /// Download: each file's temporary name.
    temps: Vec<Option<PathBuf>>,
    direction: Direction,
    /// The copy's one progress bar: each chunk moved counts at once.
    bar: Option<ProgressBar>,
}

struct SftpLane {
    raw: RawSftpSession,
    jobs: Arc<Jobs>,
}

struct LaneOpener<'a> {
    connector: &'a Connector,
    res: &'a Resources,
    jobs: Arc<Jobs>,
}

impl Opener for LaneOpener<'_> {
    type Lane = SftpLane;
    async fn open(&self) -> Result<SftpLane, Failure> {
        let conn = self.connector.connect().await?;
        let raw = open_raw(&conn).await;
        self.res.add(conn).await;
        Ok(SftpLane {
            raw: raw?,
            jobs: self.jobs.clone(),
        })
    }
}

/// A failed SFTP request in a piece: the server's refusal fails the file; anything else
/// means the connection is gone.
fn piece_sftp(path: &str, e: &SftpError) -> PieceError {
    match sftp_problem(path, e) {
        Problem::Item(f) => PieceError::File(f),
        Problem::Fatal(f) => PieceError::Lane(f),
    }
}

fn piece_local(path: &Path, e: &io::Error) -> PieceError {
    match local_problem(path, e) {
        Problem::Item(f) | Problem::Fatal(f) => PieceError::File(f),
    }
}

impl Lane for SftpLane {
    async fn run(&mut self, piece: Piece) -> Result<(), PieceError> {
        let job = &self.jobs.files[piece.file];
        let mut moved = 0;
        let result = match self.jobs.direction {
            Direction::Download => {
                let temp = self.jobs.temps[piece.file].as_deref().unwrap_or(&job.local);
                self.download(job, temp, piece, &mut moved).await
            }
            Direction::Upload => self.upload(job, piece, &mut moved).await,
        };
        // A piece that will be redone (or whose file failed) no longer counts.
        if let (Err(_), Some(bar)) = (&result, &self.jobs.bar) {
            bar.set_position(bar.position().saturating_sub(moved));
        }
        result
    }
}

impl SftpLane {
    fn count(&self, moved: &mut u64, n: u64) {
        *moved += n;
        if let Some(bar) = &self.jobs.bar {
            bar.inc(n);
        }
    }

    async fn download(
        &self,
        job: &FileJob,
        temp: &Path,
        p: Piece,
        moved: &mut u64,
    ) -> Result<(), PieceError> {
        let remote = job.remote.as_str();
        let handle = self
            .raw
            .open(remote, OpenFlags::READ, FileAttributes::default())
            .await
            .map_err(|e| piece_sftp(remote, &e))?
            .handle;
        let result = self.read_into(&handle, job, temp, p, moved).await;
        // Closing a file we only read cannot fail in a way that matters.
        let _ = self.raw.close(handle).await;
        result
    }

    async fn read_into(
        &self,
        handle: &str,
        job: &FileJob,
        temp: &Path,
        p: Piece,
        moved: &mut u64,
    ) -> Result<(), PieceError> {
        let mut sink = tokio::fs::OpenOptions::new()
            .write(true)
            .open(temp)
            .await
            .map_err(|e| piece_local(temp, &e))?;
        sink.seek(io::SeekFrom::Start(p.offset))
            .await
            .map_err(|e| piece_local(temp, &e))?;
        let end = p.offset + p.len;
        let mut reads = futures_util::stream::iter((p.offset..end).step_by(CHUNK as usize))
            .map(|off| self.read_exact(handle, &job.remote, off, CHUNK.min(end - off)))
            .buffered(IN_FLIGHT);
        while let Some(data) = reads.next().await {
            let data = data?;
            sink.write_all(&data)
                .await
                .map_err(|e| piece_local(temp, &e))?;
            self.count(moved, data.len() as u64);
        }
        sink.flush().await.map_err(|e| piece_local(temp, &e))
    }

    /// `len` bytes at `off`, asking again after a short read.
    async fn read_exact(
        &self,
        handle: &str,
        remote: &str,
        off: u64,
        len: u64,
    ) -> Result<Vec<u8>, PieceError> {
        let mut out = Vec::with_capacity(len as usize);
        while (out.len() as u64) < len {
            let at = off + out.len() as u64;
            let want = (len - out.len() as u64) as u32;
            let data = match self.raw.read(handle, at, want).await {
                Ok(d) => d.data,
                Err(SftpError::Status(s))
                    if s.status_code == russh_sftp::protocol::StatusCode::Eof =>
                {
                    Vec::new()
                }
                Err(e) => return Err(piece_sftp(remote, &e)),
            };
            if data.is_empty() {
                return Err(PieceError::File(Failure::new(
                    REMOTE_FILE_ERROR,
                    format!(
                        "{}: the file got shorter while it was copied",
                        printable(remote)
                    ),
                )));
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    async fn upload(&self, job: &FileJob, p: Piece, moved: &mut u64) -> Result<(), PieceError> {
        let remote = job.remote.as_str();
        // The only piece creates and truncates; the pieces of a larger file write into
        // the file the planner created.
        let flags = if p.whole {
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE
        } else {
            OpenFlags::WRITE
        };
        let attrs = FileAttributes {
            permissions: Some(job.mode),
            ..FileAttributes::default()
        };
        let handle = self
            .raw
            .open(remote, flags, attrs)
            .await
            .map_err(|e| piece_sftp(remote, &e))?
            .handle;
        let written = self.write_from(&handle, job, p, moved).await;
        let closed = self.raw.close(handle).await;
        written?;
        closed.map(|_| ()).map_err(|e| piece_sftp(remote, &e))
    }

    async fn write_from(
        &self,
        handle: &str,
        job: &FileJob,
        p: Piece,
        moved: &mut u64,
    ) -> Result<(), PieceError> {
        use tokio::io::AsyncReadExt as _;
        let local = job.local.as_path();
        let mut source = tokio::fs::File::open(local)
            .await
            .map_err(|e| piece_local(local, &e))?;
        source
            .seek(io::SeekFrom::Start(p.offset))
            .await
            .map_err(|e| piece_local(local, &e))?;
        let end = p.offset + p.len;
        let mut off = p.offset;
        let mut writes = FuturesUnordered::new();
        loop {
            while off < end && writes.len() < IN_FLIGHT {
                let n = CHUNK.min(end - off) as usize;
                let mut buf = vec![0; n];
                source
                    .read_exact(&mut buf)
                    .await
                    .map_err(|e| piece_local(local, &e))?;
                writes.push(async move { (n, self.raw.write(handle, off, buf).await) });
                off += n as u64;
            }
            match writes.next().await {
                Some((n, r)) => {
                    r.map_err(|e| piece_sftp(&job.remote, &e))?;
                    self.count(moved, n as u64);
                }
                None => return Ok(()),
            }
        }
    }
}

/// The temporary name a download of `local` is written under.
fn temp_name(local: &Path, i: usize) -> PathBuf {
    let name = local_basename(local).unwrap_or_else(|| "file".to_owned());
    let tmp = format!(".{name}.sallyport-{}-{i}.part", std::process::id());
    local.with_file_name(tmp)
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
    report: &mut (dyn FnMut(&Failure) + Send),
) -> Result<Outcome, Failure> {
    let walk = open_session(&first).await;
    let lane = match &walk {
        Ok(_) => res.add_lane_on(&first).await,
        Err(_) => Ok(()),
    };
    res.add(first).await;
    let sftp = walk?;
    lane?;
    let result = copy_with(&sftp, connector, res, plan, opts, par, report).await;
    let _ = sftp.close().await;
    result
}

/// [`copy`] with the walk on `sftp`, and the lanes in `res` (idle ones first, then new
/// connections from `connector`). The lanes still alive go back to `res`.
pub(crate) async fn copy_with(
    sftp: &SftpSession,
    connector: &Connector,
    res: &Resources,
    plan: &CopyPlan,
    opts: &CopyOptions,
    par: &ParallelOptions,
    report: &mut (dyn FnMut(&Failure) + Send),
) -> Result<Outcome, Failure> {
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
        first_code: copier.first_code,
    })
}

impl Copier<'_> {
    async fn stripe(
        &mut self,
        connector: &Connector,
        res: &Resources,
        plan: Plan,
        par: &ParallelOptions,
        direction: Direction,
    ) -> Result<(), Failure> {
        let Plan {
            files,
            local_dirs,
            remote_dirs,
        } = plan;
        let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
        let mut pieces = stripe::split(&sizes, par.lanes);
        // Prepare each file: download: its temporary file; upload of several pieces: the
        // remote file, created and truncated once.
        let mut temps = vec![None; files.len()];
        let mut skip = vec![false; files.len()];
        let piece_counts = pieces.iter().fold(vec![0usize; files.len()], |mut v, p| {
            v[p.file] += 1;
            v
        });
        for (i, job) in files.iter().enumerate() {
            let step = match direction {
                Direction::Download => {
                    let t = temp_name(&job.local, i);
                    let made = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(job.mode | 0o200)
                        .open(&t)
                        .and_then(|f| f.set_len(job.size));
                    match made {
                        Ok(()) => {
                            res.temp_added(&t);
                            temps[i] = Some(t);
                            Ok(())
                        }
                        Err(e) => Err(local_problem(&job.local, &e)),
                    }
                }
                Direction::Upload if piece_counts[i] > 1 => self
                    .sftp
                    .open_with_flags_and_attributes(
                        job.remote.as_str(),
                        OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                        FileAttributes {
                            permissions: Some(job.mode),
                            ..FileAttributes::default()
                        },
                    )
                    .await
                    .map(drop)
                    .map_err(|e| sftp_problem(&job.remote, &e)),
                Direction::Upload => Ok(()),
            };
            if self.absorb(step)?.is_none() {
                skip[i] = true;
            }
        }
        pieces.retain(|p| !skip[p.file]);
        let total: u64 = pieces.iter().map(|p| p.len).sum();
        let bar = self.total_bar(total);
        let jobs = Arc::new(Jobs {
            files,
            temps,
            direction,
            bar: bar.clone(),
        });
        let opener = LaneOpener {
            connector,
            res,
            jobs: jobs.clone(),
        };
        let first: Vec<SftpLane> = res
            .take_idle()
            .into_iter()
            .map(|raw| SftpLane {
                raw,
                jobs: jobs.clone(),
            })
            .collect();
        let mut notices = Vec::new();
        let run = stripe::run(
            &opener,
            first,
            pieces,
            RunOptions {
                max_lanes: par.lanes,
                reopen_budget: REOPEN_BUDGET,
                progress: &mut |_, busy| {
                    if let Some(b) = &bar {
                        b.set_message(sessions_text(busy));
                    }
                },
                notice: &mut |s| {
                    eprintln!("sallyport: {s}");
                    notices.push(s);
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
            "striped copy done"
        );
        if report.redone > 0 {
            eprintln!(
                "sallyport: {} piece(s) redone after a session failed; {} session(s) opened",
                report.redone, report.opened
            );
        }
        let lanes: Vec<RawSftpSession> = report.lanes.into_iter().map(|l| l.raw).collect();
        // Finish each file.
        let mut done = Vec::new();
        for (i, job) in jobs.files.iter().enumerate() {
            if skip[i] {
                continue;
            }
            let step = match report.failed.get(&i) {
                Some(f) => Err(Problem::Item(Failure::new(f.code, f.message.clone()))),
                None => {
                    self.finish_file(job, jobs.temps[i].as_deref(), direction, &lanes)
                        .await
                }
            };
            if let Some(t) = &jobs.temps[i] {
                if step.is_err() {
                    let _ = std::fs::remove_file(t);
                }
                res.temp_gone(t);
            }
            if self.absorb(step)?.is_some() {
                self.stats.files += 1;
                self.stats.bytes += job.size;
                done.push(i);
            }
        }
        res.give_back(lanes);
        for f in local_dirs {
            let step = Self::finish_local_dir(f).await;
            self.absorb(step)?;
        }
        for f in &remote_dirs {
            let step = self.finish_remote_dir(f).await;
            self.absorb(step)?;
        }
        if par.verify {
            test_pause_before_verify().await;
            for i in done {
                let step = verify(res, &jobs.files[i]).await;
                self.absorb(step)?;
            }
        }
        Ok(())
    }

    fn total_bar(&self, len: u64) -> Option<ProgressBar> {
        if !self.opts.progress {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{wide_msg} {percent:>3}% {bytes:>10} {binary_bytes_per_sec:>12} {eta:>4}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(sessions_text(1));
        Some(bar)
    }

    async fn finish_file(
        &self,
        job: &FileJob,
        temp: Option<&Path>,
        direction: Direction,
        lanes: &[RawSftpSession],
    ) -> Step<()> {
        match (direction, temp) {
            (Direction::Download, Some(temp)) => {
                let mode = if self.opts.preserve {
                    Some(job.mode)
                } else {
                    // An existing file keeps its mode, as when it is overwritten in place.
                    std::fs::metadata(&job.local)
                        .ok()
                        .filter(|m| m.is_file())
                        .map(|m| m.mode() & 0o7777)
                };
                let times = if self.opts.preserve { job.times } else { None };
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(temp)
                    .map_err(|e| local_problem(temp, &e))?;
                set_attributes(&file, mode, times).map_err(|e| local_problem(&job.local, &e))?;
                drop(file);
                std::fs::rename(temp, &job.local).map_err(|e| local_problem(&job.local, &e))
            }
            (Direction::Download, None) => Ok(()),
            (Direction::Upload, _) => {
                if !self.opts.preserve {
                    return Ok(());
                }
                let attrs = FileAttributes {
                    permissions: Some(job.mode),
                    atime: job.times.map(|t| t.0),
                    mtime: job.times.map(|t| t.1),
                    ..FileAttributes::default()
                };
                let remote = job.remote.as_str();
                match self.sftp.set_metadata(remote, attrs.clone()).await {
                    Ok(()) => Ok(()),
                    // The walk's connection died: any live lane can set them.
                    Err(e) => match sftp_problem(remote, &e) {
                        Problem::Fatal(f) => {
                            for raw in lanes {
                                match raw.setstat(remote, attrs.clone()).await {
                                    Ok(_) => return Ok(()),
                                    Err(e) => match sftp_problem(remote, &e) {
                                        Problem::Fatal(_) => continue,
                                        item => return Err(item),
                                    },
                                }
                            }
                            Err(Problem::Fatal(f))
                        }
                        item => Err(item),
                    },
                }
            }
        }
    }
}

fn sessions_text(n: usize) -> String {
    if n == 1 {
        "1 session".to_owned()
    } else {
        format!("{n} sessions")
    }
}
