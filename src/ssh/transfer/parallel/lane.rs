//! A lane of a striped copy: one SFTP channel on its own connection, moving the byte
//! ranges the scheduler hands it with positioned reads (download) or writes (upload), as
//! many requests in flight as its [`Window`] allows.

use std::io::{self};
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::ssh::SshError;
use crate::ssh::client::Connector;
use crate::ssh::transfer::parallel::resources::IdleLane;
use crate::ssh::transfer::parallel::{CHUNK, FileJob, IN_FLIGHT, Jobs, Resources};
use crate::ssh::transfer::stripe::{Lane, Opener, Piece, PieceError, Span, Window};
use crate::ssh::transfer::{Direction, Problem, local_problem, printable, sftp_problem};

pub(super) struct SftpLane<'a> {
    pub(super) res: &'a Resources,
    pub(super) raw: RawSftpSession,
    pub(super) jobs: Arc<Jobs>,
    /// Requests in flight, as measured on this lane.
    pub(super) window: Window,
    /// Download: the remote file this lane read last, still open (its index in `jobs`,
    /// `None` for a file of an earlier copy; the handle), so that its next piece of the
    /// same file skips an open and a close (two round trips with the lane's reads
    /// stopped). Closed before another file is opened; handed back open
    /// ([`IdleLane`]).
    pub(super) reading: Option<(Option<usize>, String)>,
}

impl SftpLane<'_> {
    /// A lane over an idle channel, with nothing measured yet.
    pub(super) fn new(res: &Resources, idle: IdleLane, jobs: Arc<Jobs>) -> SftpLane<'_> {
        SftpLane {
            res,
            raw: idle.raw,
            jobs,
            window: Window::new(CHUNK, IN_FLIGHT),
            reading: idle.open.map(|h| (None, h)),
        }
    }

    /// The lane's channel, with the file it kept open still open.
    pub(super) fn into_idle(self) -> IdleLane {
        IdleLane {
            raw: self.raw,
            open: self.reading.map(|(_, h)| h),
        }
    }
}

pub(super) struct LaneOpener<'a> {
    pub(super) connector: &'a Connector,
    pub(super) res: &'a Resources,
    pub(super) jobs: Arc<Jobs>,
}

impl<'a> Opener for LaneOpener<'a> {
    type Lane = SftpLane<'a>;
    async fn open(&self) -> Result<SftpLane<'a>, SshError> {
        let conn = self.connector.connect().await?;
        let raw = self.res.open_raw(&conn).await;
        self.res.add(conn).await;
        Ok(SftpLane::new(
            self.res,
            IdleLane::new(raw?),
            self.jobs.clone(),
        ))
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

impl Lane for SftpLane<'_> {
    async fn run(&mut self, piece: Piece) -> Result<(), PieceError> {
        self.run_span(piece, &Span::new(&piece)).await
    }

    async fn run_span(&mut self, piece: Piece, span: &Span) -> Result<(), PieceError> {
        let jobs = self.jobs.clone();
        let job = &jobs.files[piece.file];
        let mut moved = 0;
        let mut window = std::mem::replace(&mut self.window, Window::new(CHUNK, IN_FLIGHT));
        window.restart();
        let mut work = Work {
            job,
            p: piece,
            span,
            window: &mut window,
            moved: &mut moved,
        };
        let result = match jobs.direction {
            Direction::Download => {
                let temp = jobs.temps[piece.file].as_deref().unwrap_or(&job.local);
                self.download(temp, &mut work).await
            }
            Direction::Upload => {
                let temp = jobs.remote_temps[piece.file].as_deref();
                let temp = temp.unwrap_or(&job.remote);
                self.upload(temp, &mut work).await
            }
        };
        self.window = window;
        // A piece that will be redone (or whose file failed) no longer counts.
        if let (Err(_), Some(bar)) = (&result, &self.jobs.bar) {
            bar.set_position(bar.position().saturating_sub(moved));
        }
        result
    }
}

/// One piece being moved: its file, the span it claims requests from, the lane's
/// in-flight budget and the bytes counted so far.
struct Work<'w> {
    job: &'w FileJob,
    p: Piece,
    span: &'w Span,
    window: &'w mut Window,
    moved: &'w mut u64,
}

impl SftpLane<'_> {
    fn count(&self, w: &mut Work<'_>, sent: tokio::time::Instant, n: u64) {
        *w.moved += n;
        w.window.answered(sent, n);
        w.span.moved(n);
        if let Some(bar) = &self.jobs.bar {
            bar.inc(n);
        }
    }

    /// Reads a piece into `temp` through the handle kept from this file's last piece,
    /// or a new one. The handle stays open for the next piece unless this one failed.
    async fn download(&mut self, temp: &Path, w: &mut Work<'_>) -> Result<(), PieceError> {
        let remote = w.job.remote.as_str();
        let handle = match self.reading.take() {
            Some((Some(file), handle)) if file == w.p.file => handle,
            other => {
                // The last file's close goes out with this open, one round trip for both:
                // closing a file we only read cannot fail in a way that matters.
                let close = async {
                    if let Some((_, handle)) = other {
                        let _ = self.raw.close(handle).await;
                    }
                };
                let open = self
                    .raw
                    .open(remote, OpenFlags::READ, FileAttributes::default());
                let ((), opened) = tokio::join!(close, open);
                opened.map_err(|e| piece_sftp(remote, &e))?.handle
            }
        };
        let result = self.read_into(&handle, temp, w).await;
        if result.is_ok() {
            self.reading = Some((Some(w.p.file), handle));
        } else {
            let _ = self.raw.close(handle).await;
        }
        result
    }

    /// Reads what the span hands out, a request at a time and as many in flight as the
    /// window allows, writing each answer at its offset in `temp`.
    async fn read_into(
        &self,
        handle: &str,
        temp: &Path,
        w: &mut Work<'_>,
    ) -> Result<(), PieceError> {
        let mut sink = open_part(temp).await.map_err(|e| piece_local(temp, &e))?;
        let remote = w.job.remote.as_str();
        let mut at = None;
        let mut reads = futures_util::stream::FuturesOrdered::new();
        loop {
            while reads.len() < w.window.requests() {
                let Some((off, len)) = w.span.claim(CHUNK) else {
                    break;
                };
                let sent = tokio::time::Instant::now();
                reads.push_back(async move {
                    (off, sent, self.read_exact(handle, remote, off, len).await)
                });
            }
            let Some((off, sent, data)) = reads.next().await else {
                break;
            };
            let data = data?;
            if at != Some(off) {
                sink.seek(io::SeekFrom::Start(off))
                    .await
                    .map_err(|e| piece_local(temp, &e))?;
            }
            sink.write_all(&data)
                .await
                .map_err(|e| piece_local(temp, &e))?;
            at = Some(off + data.len() as u64);
            self.count(w, sent, data.len() as u64);
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
                return Err(PieceError::File(SshError::RemoteFile(format!(
                    "{}: the file got shorter while it was copied",
                    printable(remote)
                ))));
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    /// Writes a piece into `temp`: the temporary file the planner created, or for a
    /// file of one piece, made here (exclusively and 0600, or truncated when a piece
    /// redone finds it made), so that only files being copied have one.
    async fn upload(&self, temp: &str, w: &mut Work<'_>) -> Result<(), PieceError> {
        let remote = w.job.remote.as_str();
        let (flags, attrs) = match (w.p.whole, self.res.has_remote_temp(temp)) {
            (true, false) => (
                OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
                FileAttributes {
                    permissions: Some(0o600),
                    ..FileAttributes::default()
                },
            ),
            (true, true) => (
                OpenFlags::TRUNCATE | OpenFlags::WRITE,
                FileAttributes::default(),
            ),
            (false, _) => (OpenFlags::WRITE, FileAttributes::default()),
        };
        let handle = self
            .raw
            .open(temp, flags, attrs)
            .await
            .map_err(|e| piece_sftp(remote, &e))?
            .handle;
        if w.p.whole {
            self.res.remote_temp_added(temp);
        }
        let written = self.write_from(&handle, w).await;
        let closed = self.raw.close(handle).await;
        written?;
        closed.map(|_| ()).map_err(|e| piece_sftp(remote, &e))
    }

    /// Sends what the span hands out, a request at a time and as many in flight as the
    /// window allows, read from the local file at each claimed offset.
    async fn write_from(&self, handle: &str, w: &mut Work<'_>) -> Result<(), PieceError> {
        use tokio::io::AsyncReadExt as _;
        let local = w.job.local.as_path();
        let mut source = tokio::fs::File::open(local)
            .await
            .map_err(|e| piece_local(local, &e))?;
        let mut at = None;
        let mut writes = FuturesUnordered::new();
        loop {
            while writes.len() < w.window.requests() {
                let Some((off, n)) = w.span.claim(CHUNK) else {
                    break;
                };
                if at != Some(off) {
                    source
                        .seek(io::SeekFrom::Start(off))
                        .await
                        .map_err(|e| piece_local(local, &e))?;
                }
                let mut buf = vec![0; n as usize];
                source
                    .read_exact(&mut buf)
                    .await
                    .map_err(|e| piece_local(local, &e))?;
                at = Some(off + n);
                let sent = tokio::time::Instant::now();
                writes.push(async move { (n, sent, self.raw.write(handle, off, buf).await) });
            }
            match writes.next().await {
                Some((n, sent, r)) => {
                    r.map_err(|e| piece_sftp(&w.job.remote, &e))?;
                    self.count(w, sent, n);
                }
                None => return Ok(()),
            }
        }
    }
}

/// Opens for writing the `.part` file `finish` made (0600, `create_new`), without
/// following a symlink that someone with write access to the destination directory may
/// have put in its place since: that would write the download wherever it points.
async fn open_part(temp: &Path) -> io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(temp)
        .await
}

#[cfg(test)]
mod open_part_tests {
    use super::open_part;

    #[tokio::test]
    async fn a_part_file_swapped_for_a_symlink_is_not_written_through() {
        let dir = std::env::temp_dir().join(format!("sallyport-part-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let part = dir.join(".x.part");
        std::os::unix::fs::symlink(&victim, &part).unwrap();
        let opened = open_part(&part).await;
        assert!(opened.is_err(), "opened through the symlink");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // The file `finish` made is opened as before.
        std::fs::remove_file(&part).unwrap();
        std::fs::write(&part, b"").unwrap();
        assert!(open_part(&part).await.is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
#[path = "lane_tests.rs"]
mod lane_tests;
