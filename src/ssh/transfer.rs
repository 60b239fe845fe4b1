//! File copies over SFTP with OpenSSH `scp` semantics (`sallyport scp`, and `get`/`put` in
//! `sallyport sftp`).
//!
//! * Copying into an existing directory puts the source inside it; several sources need a
//!   directory destination. A directory source without `-r` is reported ("is a directory
//!   (use -r)") while the other sources still copy; the copy then ends with an error.
//! * Remote paths are '/'-separated strings. An empty remote path, `~` and `~/…` are the
//!   SFTP server's start directory (its `realpath .`), as OpenSSH's scp assumes; `~user/…`
//!   needs the server's `expand-path@openssh.com` extension. Download sources are glob
//!   patterns (`*`, `?`, `[…]`, a backslash quotes the next character), as in OpenSSH scp's
//!   SFTP mode; a pattern that matches nothing is used as a plain name.
//! * Modes: a new file gets the source's permission bits (`& 0777`) minus the receiving
//!   side's umask (the local umask on download; sftp-server's on upload), like OpenSSH. An
//!   existing file keeps its mode. With `preserve` (`-p`), modes are set exactly and
//!   atime/mtime are copied. New directories get the source's bits minus the umask; they
//!   stay owner-writable while being filled and get their final mode afterwards.
//! * Symlinks are followed both ways (a link to a file is copied as a file, a link to a
//!   directory as a directory); a directory that is its own ancestor (a symlink loop) is
//!   reported and skipped. Sockets, FIFOs and devices are reported and skipped.
//! * Names the server lists that are not plain names (empty, `.`, `..`, containing '/')
//!   are refused, so a hostile server cannot write outside the destination.
//! * Speed: russh-sftp's [`File`] keeps several reads and writes in flight; the session
//!   should be built with [`sftp_config`], which sets how many (see there).

use std::borrow::Cow;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::fs::File;
use russh_sftp::protocol::{FileAttributes, FileType, OpenFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ExitCode, Failure};

/// Exit code for a file the SFTP server refused (missing, permission denied, disk full).
pub const REMOTE_FILE_ERROR: ExitCode = ExitCode::RemoteFile;

/// Bytes moved between the local file and the SFTP file per call; russh-sftp splits writes
/// into packets of [`WRITE_PACKET_LEN`] and reads in the server's maximum read size.
const BUFFER_LEN: usize = 256 * 1024;

/// Largest SFTP write packet we send (OpenSSH's sftp-server accepts up to 256 KiB).
pub const WRITE_PACKET_LEN: u32 = 64 * 1024;

/// The russh-sftp settings the session should be built with (`SftpSession::new_with_config`).
///
/// Up to 64 writes of 64 KiB (4 MiB) and 16 reads of the server's read size (sftp-server:
/// 255 KiB, so about 4 MiB) in flight: a link with tens of ms of round trip and a
/// bandwidth-delay product of a few MB stays busy. The per-request timeout counts from
/// when a request is queued, so it must cover draining the whole window on a slow link:
/// 120 s (4 MiB at 35 kB/s); a dead connection is the SSH layer's to notice.
pub fn sftp_config() -> russh_sftp::client::Config {
    russh_sftp::client::Config {
        max_packet_len: 256 * 1024,
        max_concurrent_reads: 16,
        max_concurrent_writes: 64,
        max_write_packet_len: WRITE_PACKET_LEN,
        request_timeout_secs: 120,
    }
}

/// Which way the files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local sources to a remote destination.
    Upload,
    /// Remote sources (glob patterns) to a local destination.
    Download,
}

/// What to copy: sources and destination as written (remote ones without `target:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    pub direction: Direction,
    pub sources: Vec<String>,
    pub destination: String,
}

/// `scp` switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `-r`: copy directories and their contents.
    pub recursive: bool,
    /// `-p`: set modes exactly and copy atime/mtime.
    pub preserve: bool,
    /// One progress bar per file on stderr (the caller checks that stderr is a terminal).
    pub progress: bool,
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files copied.
    pub files: u64,
    /// Directories created or entered (with `-r`).
    pub dirs: u64,
    /// File bytes copied.
    pub bytes: u64,
}

/// Copies as `scp` would. Each file that cannot be copied is reported on stderr
/// (`sallyport: …`) and the others still copy; then the result is an error that counts
/// them. A lost or broken SFTP session ends the copy at once.
pub async fn copy(
    sftp: &SftpSession,
    plan: &CopyPlan,
    opts: &CopyOptions,
) -> Result<CopyStats, Failure> {
    let mut report = |f: &Failure| eprintln!("sallyport: {}", f.message);
    copy_reporting(sftp, plan, opts, &mut report).await
}

/// [`copy`], with each per-file problem handed to `report` instead of printed.
pub async fn copy_reporting(
    sftp: &SftpSession,
    plan: &CopyPlan,
    opts: &CopyOptions,
    report: &mut (dyn FnMut(&Failure) + Send),
) -> Result<CopyStats, Failure> {
    let outcome = copy_collect(sftp, plan, opts, report).await?;
    match (outcome.problems, outcome.first_code) {
        (0, _) | (_, None) => Ok(outcome.stats),
        (n, Some(code)) => Err(Failure::new(
            code,
            if n == 1 {
                "1 file or directory could not be copied".to_owned()
            } else {
                format!("{n} files or directories could not be copied")
            },
        )),
    }
}

/// What a copy did, problems included.
pub(crate) struct Outcome {
    pub stats: CopyStats,
    /// How many problems were reported.
    pub problems: u64,
    /// The exit code of the first one.
    pub first_code: Option<ExitCode>,
}

/// The copy; `Err` when it could not go on: the session failed (code
/// [`ExitCode::Protocol`]) or the destination cannot take several sources.
pub(crate) async fn copy_collect(
    sftp: &SftpSession,
    plan: &CopyPlan,
    opts: &CopyOptions,
    report: &mut (dyn FnMut(&Failure) + Send),
) -> Result<Outcome, Failure> {
    let mut copier = Copier {
        sftp,
        opts: *opts,
        stats: CopyStats::default(),
        report,
        problems: 0,
        first_code: None,
        start_dir: None,
        buf: vec![0; BUFFER_LEN],
    };
    match plan.direction {
        Direction::Upload => copier.upload(&plan.sources, &plan.destination).await?,
        Direction::Download => copier.download(&plan.sources, &plan.destination).await?,
    }
    Ok(Outcome {
        stats: copier.stats,
        problems: copier.problems,
        first_code: copier.first_code,
    })
}

/// Why a step stopped: this item only (reported; the copy goes on) or the whole copy.
pub(crate) enum Problem {
    Item(Failure),
    Fatal(Failure),
}

pub(crate) type Step<T> = Result<T, Problem>;

fn item(code: ExitCode, message: String) -> Problem {
    Problem::Item(Failure::new(code, message))
}

fn local_problem(path: &Path, e: &io::Error) -> Problem {
    item(
        ExitCode::LocalIo,
        format!("{}: {}", printable(&path.to_string_lossy()), io_text(e)),
    )
}

/// `e`'s text without Rust's " (os error N)" suffix.
fn io_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// A failed SFTP request: the server's refusal concerns `path`; anything else means the
/// session itself is gone.
pub(crate) fn sftp_problem(path: &str, e: &SftpError) -> Problem {
    match e {
        SftpError::Status(s) => {
            let text = if s.error_message.is_empty() {
                s.status_code.to_string()
            } else {
                s.error_message.clone()
            };
            item(REMOTE_FILE_ERROR, format!("{}: {text}", printable(path)))
        }
        SftpError::Limited(m) => item(REMOTE_FILE_ERROR, format!("{}: {m}", printable(path))),
        other => Problem::Fatal(session_failure(other)),
    }
}

/// The failure for a lost or broken SFTP session.
pub(crate) fn session_failure(e: &SftpError) -> Failure {
    let message = match e {
        SftpError::Timeout => format!(
            "the SFTP server did not answer a request within {} s; the connection to the \
             instance is stalled (run with -v to see the data channel's reconnects)",
            sftp_config().request_timeout_secs
        ),
        other => format!("the SFTP session failed: {other}"),
    };
    Failure::new(ExitCode::Protocol, message)
}

/// A failed read or write on a remote [`File`]: russh-sftp wraps its own errors in the
/// `io::Error` and turns a server status into a plain message.
fn remote_io_problem(path: &str, e: &io::Error) -> Problem {
    if let Some(inner) = e.get_ref().and_then(|r| r.downcast_ref::<SftpError>()) {
        return sftp_problem(path, inner);
    }
    if e.kind() == io::ErrorKind::TimedOut {
        return Problem::Fatal(session_failure(&SftpError::Timeout));
    }
    item(REMOTE_FILE_ERROR, format!("{}: {e}", printable(path)))
}

/// Shows control characters (a newline in a file name) as escapes.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().flat_map(char::escape_default).collect())
}

/// Joins a remote directory and a relative path with exactly one '/'.
pub fn remote_join(dir: &str, rel: &str) -> String {
    if rel.starts_with('/') || dir.is_empty() {
        rel.to_owned()
    } else if rel.is_empty() {
        dir.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{rel}")
    } else {
        format!("{dir}/{rel}")
    }
}

/// The last component of a '/'-separated path, or `None` for `/`, `.`, `..` and empty.
pub fn remote_basename(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    match name {
        "" | "." | ".." => None,
        name => Some(name),
    }
}

/// Whether a name from the server's directory listing is a plain entry name.
fn is_plain_name(name: &str) -> bool {
    !(name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']))
}

fn local_basename(path: &Path) -> Option<String> {
    match path.components().next_back() {
        Some(std::path::Component::Normal(n)) => Some(n.to_string_lossy().into_owned()),
        _ => None,
    }
}

fn unix_time(t: io::Result<SystemTime>) -> Option<u32> {
    t.ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn system_time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(secs))
}

/// Sets the permission bits and the access and modification times (seconds) of an open
/// local file or directory, each only when given.
fn set_attributes(
    file: &std::fs::File,
    mode: Option<u32>,
    times: Option<(u32, u32)>,
) -> io::Result<()> {
    if let Some(mode) = mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    if let Some((atime, mtime)) = times {
        file.set_times(
            std::fs::FileTimes::new()
                .set_accessed(system_time(atime))
                .set_modified(system_time(mtime)),
        )?;
    }
    Ok(())
}

/// What a finished directory still needs: its final mode and, with `-p`, its times.
struct DirFinish<P> {
    path: P,
    mode: Option<u32>,
    times: Option<(u32, u32)>,
}

enum UpWork {
    Dir {
        local: PathBuf,
        remote: String,
        meta: std::fs::Metadata,
        ancestors: Vec<(u64, u64)>,
    },
    Entry {
        local: PathBuf,
        remote: String,
        ancestors: Vec<(u64, u64)>,
    },
    Finish(DirFinish<String>),
}

enum DownWork {
    Dir {
        remote: String,
        canonical: String,
        local: PathBuf,
        attrs: FileAttributes,
        ancestors: Vec<String>,
    },
    File {
        remote: String,
        local: PathBuf,
        attrs: FileAttributes,
    },
    Finish(DirFinish<PathBuf>),
}

struct Copier<'a> {
    sftp: &'a SftpSession,
    opts: CopyOptions,
    stats: CopyStats,
    report: &'a mut (dyn FnMut(&Failure) + Send),
    problems: u64,
    first_code: Option<ExitCode>,
    start_dir: Option<String>,
    buf: Vec<u8>,
}

impl Copier<'_> {
    /// Reports an item problem and goes on; passes a fatal one up.
    fn absorb<T>(&mut self, step: Step<T>) -> Result<Option<T>, Failure> {
        match step {
            Ok(v) => Ok(Some(v)),
            Err(Problem::Item(f)) => {
                self.note(&f);
                Ok(None)
            }
            Err(Problem::Fatal(f)) => Err(f),
        }
    }

    fn note(&mut self, f: &Failure) {
        self.problems += 1;
        self.first_code.get_or_insert(f.code);
        (self.report)(f);
    }

    fn bar(&self, len: u64, name: &str) -> Option<ProgressBar> {
        if !self.opts.progress {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{wide_msg} {percent:>3}% {bytes:>10} {binary_bytes_per_sec:>12} {eta:>4}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(printable(name).into_owned());
        Some(bar)
    }

    /// The server's start directory (`realpath .`), asked once.
    async fn start_dir(&mut self) -> Step<String> {
        if let Some(s) = &self.start_dir {
            return Ok(s.clone());
        }
        let s = self
            .sftp
            .canonicalize(".")
            .await
            .map_err(|e| sftp_problem(".", &e))?;
        self.start_dir = Some(s.clone());
        Ok(s)
    }

    /// An absolute remote path: empty, `~` and relative paths start at the server's start
    /// directory. With `pattern`, that prefix is quoted for [`remote_glob`].
    async fn remote_path(&mut self, path: &str, pattern: bool) -> Step<String> {
        if path.starts_with('/') {
            return Ok(path.to_owned());
        }
        let rel = if path == "~" {
            ""
        } else if let Some(rest) = path.strip_prefix("~/") {
            rest
        } else if path.starts_with('~') {
            return resolve_remote(self.sftp, "/", path, pattern).await;
        } else {
            path
        };
        let start = self.start_dir().await?;
        resolve_remote(self.sftp, &start, rel, pattern).await
    }

    // ---- upload ----

    async fn upload(&mut self, sources: &[String], destination: &str) -> Result<(), Failure> {
        let step = self.remote_path(destination, false).await;
        let Some(dest) = self.absorb(step)? else {
            return Ok(());
        };
        let dest_is_dir = match self.sftp.metadata(dest.as_str()).await {
            Ok(a) => a.is_dir(),
            Err(SftpError::Status(_)) => false,
            Err(e) => return Err(session_failure(&e)),
        };
        if sources.len() > 1 && !dest_is_dir {
            return Err(Failure::new(
                REMOTE_FILE_ERROR,
                format!(
                    "{}: not a directory (several sources need a directory destination)",
                    printable(destination)
                ),
            ));
        }
        for src in sources {
            let local = PathBuf::from(src);
            let meta = match tokio::fs::metadata(&local).await {
                Ok(m) => m,
                Err(e) => {
                    self.absorb::<()>(Err(local_problem(&local, &e)))?;
                    continue;
                }
            };
            let target = match (dest_is_dir, local_basename(&local)) {
                (true, Some(name)) => remote_join(&dest, &name),
                _ => dest.clone(),
            };
            if meta.is_dir() {
                if !self.opts.recursive {
                    self.note(&Failure::new(
                        ExitCode::LocalIo,
                        format!("{}: is a directory (use -r)", printable(src)),
                    ));
                    continue;
                }
                self.upload_tree(local, target, meta).await?;
            } else if meta.is_file() {
                let step = self.upload_file(&local, &meta, &target).await;
                self.absorb(step)?;
            } else {
                self.note(&Failure::new(
                    ExitCode::LocalIo,
                    format!("{}: not a regular file", printable(src)),
                ));
            }
        }
        Ok(())
    }

    async fn upload_file(
        &mut self,
        local: &Path,
        meta: &std::fs::Metadata,
        remote: &str,
    ) -> Step<()> {
        let mode = meta.mode() & 0o777;
        let mut source = tokio::fs::File::open(local)
            .await
            .map_err(|e| local_problem(local, &e))?;
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::default()
        };
        let mut sink = self
            .sftp
            .open_with_flags_and_attributes(
                remote,
                OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                attrs,
            )
            .await
            .map_err(|e| sftp_problem(remote, &e))?;
        let name = local_basename(local).unwrap_or_else(|| remote.to_owned());
        let bar = self.bar(meta.len(), &name);
        let result = self
            .pump_up(&mut source, &mut sink, local, remote, bar.as_ref())
            .await;
        let result = match result {
            // Waits for every write's status, then the close's.
            Ok(n) => sink
                .shutdown()
                .await
                .map(|()| n)
                .map_err(|e| remote_io_problem(remote, &e)),
            Err(p) => Err(p),
        };
        drop(sink);
        let n = match result {
            Ok(n) => n,
            Err(p) => {
                if let Some(bar) = bar {
                    bar.abandon();
                }
                return Err(p);
            }
        };
        if self.opts.preserve {
            let attrs = FileAttributes {
                permissions: Some(mode),
                atime: unix_time(meta.accessed()),
                mtime: unix_time(meta.modified()),
                ..FileAttributes::default()
            };
            self.sftp
                .set_metadata(remote, attrs)
                .await
                .map_err(|e| sftp_problem(remote, &e))?;
        }
        if let Some(bar) = bar {
            bar.finish();
        }
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }

    async fn pump_up(
        &mut self,
        source: &mut tokio::fs::File,
        sink: &mut File,
        local: &Path,
        remote: &str,
        bar: Option<&ProgressBar>,
    ) -> Step<u64> {
        let mut total = 0u64;
        loop {
            let n = source
                .read(&mut self.buf)
                .await
                .map_err(|e| local_problem(local, &e))?;
            if n == 0 {
                return Ok(total);
            }
            sink.write_all(&self.buf[..n])
                .await
                .map_err(|e| remote_io_problem(remote, &e))?;
            total += n as u64;
            if let Some(bar) = bar {
                bar.inc(n as u64);
            }
        }
    }

    /// Creates (or reuses) a remote directory; returns what it needs once filled.
    async fn make_remote_dir(
        &mut self,
        remote: &str,
        mode: u32,
        meta: &std::fs::Metadata,
    ) -> Step<DirFinish<String>> {
        let times = self.opts.preserve.then(|| {
            (
                unix_time(meta.accessed()).unwrap_or(0),
                unix_time(meta.modified()).unwrap_or(0),
            )
        });
        match self.sftp.create_dir(remote).await {
            Ok(()) => {
                // sftp-server created it 0777 minus its umask: keep those of the source's
                // bits the umask allows, and stay writable until the contents are in.
                let created = self
                    .sftp
                    .metadata(remote)
                    .await
                    .map_err(|e| sftp_problem(remote, &e))?
                    .permissions
                    .unwrap_or(0o755)
                    & 0o777;
                let wanted = if self.opts.preserve {
                    mode
                } else {
                    mode & created
                };
                let interim = wanted | 0o700;
                if interim != created {
                    self.set_remote_mode(remote, interim).await?;
                }
                Ok(DirFinish {
                    path: remote.to_owned(),
                    mode: (wanted != interim || self.opts.preserve).then_some(wanted),
                    times,
                })
            }
            Err(e @ SftpError::Status(_)) => match self.sftp.metadata(remote).await {
                Ok(a) if a.is_dir() => Ok(DirFinish {
                    path: remote.to_owned(),
                    mode: self.opts.preserve.then_some(mode),
                    times,
                }),
                Ok(_) => Err(item(
                    REMOTE_FILE_ERROR,
                    format!("{}: exists and is not a directory", printable(remote)),
                )),
                Err(SftpError::Status(_)) => Err(sftp_problem(remote, &e)),
                Err(other) => Err(sftp_problem(remote, &other)),
            },
            Err(e) => Err(sftp_problem(remote, &e)),
        }
    }

    async fn set_remote_mode(&self, remote: &str, mode: u32) -> Step<()> {
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::default()
        };
        self.sftp
            .set_metadata(remote, attrs)
            .await
            .map_err(|e| sftp_problem(remote, &e))
    }

    async fn finish_remote_dir(&self, f: &DirFinish<String>) -> Step<()> {
        if f.mode.is_none() && f.times.is_none() {
            return Ok(());
        }
        let (atime, mtime) = match f.times {
            Some((a, m)) => (Some(a), Some(m)),
            None => (None, None),
        };
        let attrs = FileAttributes {
            permissions: f.mode,
            atime,
            mtime,
            ..FileAttributes::default()
        };
        self.sftp
            .set_metadata(f.path.as_str(), attrs)
            .await
            .map_err(|e| sftp_problem(&f.path, &e))
    }

    async fn upload_tree(
        &mut self,
        local: PathBuf,
        remote: String,
        meta: std::fs::Metadata,
    ) -> Result<(), Failure> {
        let mut stack = vec![UpWork::Dir {
            local,
            remote,
            meta,
            ancestors: Vec::new(),
        }];
        while let Some(work) = stack.pop() {
            match work {
                UpWork::Finish(f) => {
                    let step = self.finish_remote_dir(&f).await;
                    self.absorb(step)?;
                }
                UpWork::Entry {
                    local,
                    remote,
                    ancestors,
                } => {
                    // Follows symlinks, as scp does on upload.
                    let meta = match tokio::fs::metadata(&local).await {
                        Ok(m) => m,
                        Err(e) => {
                            self.absorb::<()>(Err(local_problem(&local, &e)))?;
                            continue;
                        }
                    };
                    if meta.is_dir() {
                        stack.push(UpWork::Dir {
                            local,
                            remote,
                            meta,
                            ancestors,
                        });
                    } else if meta.is_file() {
                        let step = self.upload_file(&local, &meta, &remote).await;
                        self.absorb(step)?;
                    } else {
                        self.note(&Failure::new(
                            ExitCode::LocalIo,
                            format!(
                                "{}: not a regular file",
                                printable(&local.to_string_lossy())
                            ),
                        ));
                    }
                }
                UpWork::Dir {
                    local,
                    remote,
                    meta,
                    mut ancestors,
                } => {
                    let id = (meta.dev(), meta.ino());
                    if ancestors.contains(&id) {
                        self.note(&Failure::new(
                            ExitCode::LocalIo,
                            format!(
                                "{}: directory loop (a symlink to an ancestor), skipped",
                                printable(&local.to_string_lossy())
                            ),
                        ));
                        continue;
                    }
                    ancestors.push(id);
                    let step = self.list_local(&local).await;
                    let Some(names) = self.absorb(step)? else {
                        continue;
                    };
                    let step = self
                        .make_remote_dir(&remote, meta.mode() & 0o777, &meta)
                        .await;
                    let Some(finish) = self.absorb(step)? else {
                        continue;
                    };
                    self.stats.dirs += 1;
                    stack.push(UpWork::Finish(finish));
                    for name in names.into_iter().rev() {
                        let Some(text) = name.to_str() else {
                            self.note(&Failure::new(
                                ExitCode::LocalIo,
                                format!(
                                    "{}: the name is not UTF-8, which SFTP cannot carry; skipped",
                                    printable(&local.join(&name).to_string_lossy())
                                ),
                            ));
                            continue;
                        };
                        stack.push(UpWork::Entry {
                            remote: remote_join(&remote, text),
                            local: local.join(&name),
                            ancestors: ancestors.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    async fn list_local(&self, dir: &Path) -> Step<Vec<std::ffi::OsString>> {
        let mut rd = tokio::fs::read_dir(dir)
            .await
            .map_err(|e| local_problem(dir, &e))?;
        let mut names = Vec::new();
        while let Some(entry) = rd.next_entry().await.map_err(|e| local_problem(dir, &e))? {
            names.push(entry.file_name());
        }
        names.sort();
        Ok(names)
    }

    // ---- download ----

    async fn download(&mut self, sources: &[String], destination: &str) -> Result<(), Failure> {
        let dest = PathBuf::from(destination);
        let dest_is_dir = tokio::fs::metadata(&dest).await.is_ok_and(|m| m.is_dir());
        if sources.len() > 1 && !dest_is_dir {
            return Err(Failure::new(
                ExitCode::LocalIo,
                format!(
                    "{}: not a directory (several sources need a directory destination)",
                    printable(destination)
                ),
            ));
        }
        for pattern in sources {
            let step = self.remote_path(pattern, true).await;
            let Some(pattern_abs) = self.absorb(step)? else {
                continue;
            };
            let paths = match remote_glob(self.sftp, &pattern_abs).await {
                Ok(p) => p,
                Err(e) => return Err(session_failure(&e)),
            };
            if paths.len() > 1 && !dest_is_dir {
                self.note(&Failure::new(
                    ExitCode::LocalIo,
                    format!(
                        "{}: matches {} files but {} is not a directory",
                        printable(pattern),
                        paths.len(),
                        printable(destination)
                    ),
                ));
                continue;
            }
            for path in paths {
                self.download_one(&path, &dest, dest_is_dir).await?;
            }
        }
        Ok(())
    }

    async fn download_one(
        &mut self,
        path: &str,
        dest: &Path,
        dest_is_dir: bool,
    ) -> Result<(), Failure> {
        let attrs = match self.sftp.metadata(path).await {
            Ok(a) => a,
            Err(e) => {
                self.absorb::<()>(Err(sftp_problem(path, &e)))?;
                return Ok(());
            }
        };
        let local = match (dest_is_dir, remote_basename(path)) {
            (true, Some(name)) => dest.join(name),
            _ => dest.to_owned(),
        };
        match attrs.file_type() {
            FileType::Dir if !self.opts.recursive => {
                self.note(&Failure::new(
                    REMOTE_FILE_ERROR,
                    format!("{}: is a directory (use -r)", printable(path)),
                ));
            }
            FileType::Dir => {
                let canonical = match self.sftp.canonicalize(path).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.absorb::<()>(Err(sftp_problem(path, &e)))?;
                        return Ok(());
                    }
                };
                self.download_tree(DownWork::Dir {
                    remote: path.to_owned(),
                    canonical,
                    local,
                    attrs,
                    ancestors: Vec::new(),
                })
                .await?;
            }
            FileType::File => {
                let step = self.download_file(path, &local, &attrs).await;
                self.absorb(step)?;
            }
            _ => self.note(&Failure::new(
                REMOTE_FILE_ERROR,
                format!("{}: not a regular file", printable(path)),
            )),
        }
        Ok(())
    }

    async fn download_file(
        &mut self,
        remote: &str,
        local: &Path,
        attrs: &FileAttributes,
    ) -> Step<()> {
        let mode = attrs.permissions.map_or(0o666, |m| m & 0o777);
        let mut source = self
            .sftp
            .open(remote)
            .await
            .map_err(|e| sftp_problem(remote, &e))?;
        let mut sink = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode | 0o200)
            .open(local)
            .await
            .map_err(|e| local_problem(local, &e))?;
        let name = remote_basename(remote).unwrap_or(remote).to_owned();
        let bar = self.bar(attrs.len(), &name);
        let result = self
            .pump_down(&mut source, &mut sink, remote, local, bar.as_ref())
            .await;
        // Closing a file we only read cannot fail in a way that matters: do not wait.
        drop(source);
        let n = match result {
            Ok(n) => n,
            Err(p) => {
                if let Some(bar) = bar {
                    bar.abandon();
                }
                return Err(p);
            }
        };
        if self.opts.preserve {
            let file = sink.into_std().await;
            let times = attrs.atime.zip(attrs.mtime);
            let local_owned = local.to_owned();
            tokio::task::spawn_blocking(move || set_attributes(&file, Some(mode), times))
                .await
                .map_err(|e| {
                    item(
                        ExitCode::LocalIo,
                        format!("{}: {e}", printable(&local_owned.to_string_lossy())),
                    )
                })?
                .map_err(|e| local_problem(local, &e))?;
        }
        if let Some(bar) = bar {
            bar.finish();
        }
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }

    async fn pump_down(
        &mut self,
        source: &mut File,
        sink: &mut tokio::fs::File,
        remote: &str,
        local: &Path,
        bar: Option<&ProgressBar>,
    ) -> Step<u64> {
        let mut total = 0u64;
        loop {
            let n = source
                .read(&mut self.buf)
                .await
                .map_err(|e| remote_io_problem(remote, &e))?;
            if n == 0 {
                break;
            }
            sink.write_all(&self.buf[..n])
                .await
                .map_err(|e| local_problem(local, &e))?;
            total += n as u64;
            if let Some(bar) = bar {
                bar.inc(n as u64);
            }
        }
        sink.flush().await.map_err(|e| local_problem(local, &e))?;
        Ok(total)
    }

    /// Creates (or reuses) a local directory; returns what it needs once filled.
    async fn make_local_dir(
        &self,
        local: &Path,
        attrs: &FileAttributes,
    ) -> Step<DirFinish<PathBuf>> {
        let mode = attrs.permissions.map_or(0o755, |m| m & 0o777);
        let times = if self.opts.preserve {
            attrs.atime.zip(attrs.mtime)
        } else {
            None
        };
        match tokio::fs::DirBuilder::new()
            .mode(mode | 0o700)
            .create(local)
            .await
        {
            Ok(()) => {
                // The umask took some bits: keep only those the source has too.
                let created = tokio::fs::metadata(local)
                    .await
                    .map_err(|e| local_problem(local, &e))?
                    .mode()
                    & 0o777;
                let wanted = if self.opts.preserve {
                    mode
                } else {
                    mode & created
                };
                Ok(DirFinish {
                    path: local.to_owned(),
                    mode: (wanted != created).then_some(wanted),
                    times,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match tokio::fs::metadata(local).await {
                    Ok(m) if m.is_dir() => Ok(DirFinish {
                        path: local.to_owned(),
                        mode: self.opts.preserve.then_some(mode),
                        times,
                    }),
                    _ => Err(item(
                        ExitCode::LocalIo,
                        format!(
                            "{}: exists and is not a directory",
                            printable(&local.to_string_lossy())
                        ),
                    )),
                }
            }
            Err(e) => Err(local_problem(local, &e)),
        }
    }

    async fn finish_local_dir(f: DirFinish<PathBuf>) -> Step<()> {
        if f.mode.is_none() && f.times.is_none() {
            return Ok(());
        }
        let path = f.path.clone();
        tokio::task::spawn_blocking(move || {
            set_attributes(&std::fs::File::open(&f.path)?, f.mode, f.times)
        })
        .await
        .map_err(|e| {
            item(
                ExitCode::LocalIo,
                format!("{}: {e}", printable(&path.to_string_lossy())),
            )
        })?
        .map_err(|e| local_problem(&path, &e))
    }

    async fn download_tree(&mut self, root: DownWork) -> Result<(), Failure> {
        let mut stack = vec![root];
        while let Some(work) = stack.pop() {
            match work {
                DownWork::Finish(f) => {
                    let step = Self::finish_local_dir(f).await;
                    self.absorb(step)?;
                }
                DownWork::File {
                    remote,
                    local,
                    attrs,
                } => {
                    let step = self.download_file(&remote, &local, &attrs).await;
                    self.absorb(step)?;
                }
                DownWork::Dir {
                    remote,
                    canonical,
                    local,
                    attrs,
                    mut ancestors,
                } => {
                    if ancestors.contains(&canonical) {
                        self.note(&Failure::new(
                            REMOTE_FILE_ERROR,
                            format!(
                                "{}: directory loop (a symlink to an ancestor), skipped",
                                printable(&remote)
                            ),
                        ));
                        continue;
                    }
                    ancestors.push(canonical.clone());
                    let entries = match self.sftp.read_dir(remote.as_str()).await {
                        Ok(rd) => rd,
                        Err(e) => {
                            self.absorb::<()>(Err(sftp_problem(&remote, &e)))?;
                            continue;
                        }
                    };
                    let mut entries: Vec<(String, FileAttributes)> =
                        entries.map(|e| (e.file_name(), e.metadata())).collect();
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                    let step = self.make_local_dir(&local, &attrs).await;
                    let Some(finish) = self.absorb(step)? else {
                        continue;
                    };
                    self.stats.dirs += 1;
                    stack.push(DownWork::Finish(finish));
                    let mut children = Vec::with_capacity(entries.len());
                    for (name, attrs) in entries {
                        if !is_plain_name(&name) {
                            self.note(&Failure::new(
                                REMOTE_FILE_ERROR,
                                format!(
                                    "{}: the server listed an invalid name {:?}; skipped",
                                    printable(&remote),
                                    name
                                ),
                            ));
                            continue;
                        }
                        let child_remote = remote_join(&remote, &name);
                        let child_local = local.join(&name);
                        let (attrs, canonical) = if attrs.file_type() == FileType::Symlink {
                            // Follow the link: its target decides.
                            match self.sftp.metadata(child_remote.as_str()).await {
                                Ok(a) if a.is_dir() => {
                                    match self.sftp.canonicalize(child_remote.as_str()).await {
                                        Ok(c) => (a, c),
                                        Err(e) => {
                                            self.absorb::<()>(Err(sftp_problem(
                                                &child_remote,
                                                &e,
                                            )))?;
                                            continue;
                                        }
                                    }
                                }
                                Ok(a) => (a, String::new()),
                                Err(e) => {
                                    self.absorb::<()>(Err(sftp_problem(&child_remote, &e)))?;
                                    continue;
                                }
                            }
                        } else {
                            (attrs, remote_join(&canonical, &name))
                        };
                        match attrs.file_type() {
                            FileType::Dir => children.push(DownWork::Dir {
                                remote: child_remote,
                                canonical,
                                local: child_local,
                                attrs,
                                ancestors: ancestors.clone(),
                            }),
                            FileType::File => children.push(DownWork::File {
                                remote: child_remote,
                                local: child_local,
                                attrs,
                            }),
                            _ => self.note(&Failure::new(
                                REMOTE_FILE_ERROR,
                                format!("{}: not a regular file", printable(&child_remote)),
                            )),
                        }
                    }
                    stack.extend(children.into_iter().rev());
                }
            }
        }
        Ok(())
    }
}

/// `path` made absolute against the absolute directory `cwd`: `~` and `~/…` are the
/// server's start directory, `~user/…` asks the server (expand-path extension). With
/// `pattern`, the directory prefix is quoted for [`remote_glob`] (`path` is a pattern).
pub(crate) async fn resolve_remote(
    sftp: &SftpSession,
    cwd: &str,
    path: &str,
    pattern: bool,
) -> Step<String> {
    let quote = |s: &str| {
        if pattern {
            escape_glob(s)
        } else {
            s.to_owned()
        }
    };
    if path.starts_with('/') {
        return Ok(path.to_owned());
    }
    if !path.starts_with('~') {
        return Ok(remote_join(&quote(cwd), path));
    }
    let (user, rest) = path.split_once('/').unwrap_or((path, ""));
    let home = if user == "~" {
        sftp.canonicalize(".")
            .await
            .map_err(|e| sftp_problem(".", &e))?
    } else {
        match sftp.expand_path(user).await {
            Ok(Some(expanded)) => expanded,
            Ok(None) => {
                return Err(item(
                    REMOTE_FILE_ERROR,
                    format!(
                        "{}: the server cannot expand ~user paths (no expand-path extension)",
                        printable(path)
                    ),
                ));
            }
            Err(e) => return Err(sftp_problem(user, &e)),
        }
    };
    Ok(remote_join(&quote(&home), rest))
}

// ---- globbing ----

/// Whether `pattern` has an unquoted `*`, `?` or `[`.
pub fn has_glob(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Drops the backslashes that quote characters in a pattern.
pub fn unescape_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().unwrap_or('\\'));
        } else {
            out.push(c);
        }
    }
    out
}

/// Quotes the characters a pattern treats specially, so `text` matches only itself.
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Shell-style match of one name against one pattern component. A leading '.' in the
/// name must be matched by a literal '.'.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') && !pattern.starts_with("\\.") {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    // Where to resume after the last '*': (pattern index after it, name index it took).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match match_class(&p[pi..], n[ni]) {
                Some((true, len)) => Some(pi + len),
                Some((false, _)) => None,
                // An unclosed '[' is a literal.
                None => (n[ni] == '[').then_some(pi + 1),
            },
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == n[ni]).then_some(pi + 2),
            Some(&c) => (c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class at the start of `p` (`[…]`); returns whether it matched
/// and the class's length, or `None` if the class is not closed.
fn match_class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&h| h != ']') {
            hi = p[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *p.get(i)?;
                i += 1;
            }
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

/// Expands a remote pattern into the paths that exist, sorted; a pattern without
/// wildcards, or one that matches nothing, comes back unquoted as the only path. Only
/// a lost session is an error.
pub async fn remote_glob(sftp: &SftpSession, pattern: &str) -> Result<Vec<String>, SftpError> {
    if !has_glob(pattern) {
        return Ok(vec![unescape_glob(pattern)]);
    }
    let absolute = pattern.starts_with('/');
    let mut bases = vec![if absolute {
        "/".to_owned()
    } else {
        String::new()
    }];
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        if has_glob(component) {
            for base in &bases {
                let dir = if base.is_empty() { "." } else { base.as_str() };
                let entries = match sftp.read_dir(dir).await {
                    Ok(rd) => rd,
                    Err(SftpError::Status(_)) => continue,
                    Err(e) => return Err(e),
                };
                let mut names: Vec<String> = entries
                    .map(|e| e.file_name())
                    .filter(|n| is_plain_name(n) && glob_match(component, n))
                    .collect();
                names.sort();
                next.extend(names.iter().map(|n| remote_join(base, n)));
            }
        } else {
            let literal = unescape_glob(component);
            next.extend(bases.iter().map(|b| remote_join(b, &literal)));
        }
        bases = next;
        if bases.is_empty() {
            break;
        }
    }
    if bases.is_empty() {
        return Ok(vec![unescape_glob(pattern)]);
    }
    Ok(bases)
}

/// Expands a local pattern like [`remote_glob`] (names that are not UTF-8 are left out).
pub fn local_glob(pattern: &str) -> Vec<String> {
    if !has_glob(pattern) {
        return vec![unescape_glob(pattern)];
    }
    let absolute = pattern.starts_with('/');
    let mut bases = vec![if absolute {
        "/".to_owned()
    } else {
        String::new()
    }];
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        if has_glob(component) {
            for base in &bases {
                let dir = if base.is_empty() { "." } else { base.as_str() };
                let Ok(rd) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| glob_match(component, n))
                    .collect();
                names.sort();
                next.extend(names.iter().map(|n| remote_join(base, n)));
            }
        } else {
            let literal = unescape_glob(component);
            next.extend(bases.iter().map(|b| remote_join(b, &literal)));
        }
        bases = next;
        if bases.is_empty() {
            break;
        }
    }
    if bases.is_empty() {
        return vec![unescape_glob(pattern)];
    }
    bases
}

#[cfg(test)]
#[path = "fixture_tests.rs"]
pub(crate) mod test_fixture;

#[cfg(test)]
#[path = "transfer_tests.rs"]
mod tests;
