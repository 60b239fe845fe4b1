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
//!   SFTP mode; a pattern that matches nothing is used as a plain name, and when no such
//!   file exists either it is reported as a pattern that matches nothing (exit 17).
//! * Modes: a new file gets the source's permission bits (`& 0777`) minus the receiving
//!   side's umask (the local umask on download; sftp-server's on upload), like OpenSSH. An
//!   existing file keeps its mode. With `preserve` (`-p`), modes are set exactly and
//!   atime/mtime are copied. New directories get the source's bits minus the umask; they
//!   stay owner-writable while being filled and get their final mode afterwards.
//! * Symlinks are followed both ways (a link to a file is copied as a file, a link to a
//!   directory as a directory); a directory that is its own ancestor (a symlink loop) is
//!   reported and skipped. Sockets, FIFOs and devices are reported and skipped.
//! * A remote tree is walked at most [`MAX_DIR_DEPTH`] (64) directory levels deep, as
//!   OpenSSH's sftp client: the first deeper directory is reported ("maximum directory
//!   depth of 64 exceeded") and the walk of that tree ends there, so a symlink loop the
//!   server hides from REALPATH ends.
//! * A downloaded file that ends before the size the server claimed for it is an error
//!   ("the file got shorter while it was copied"), never a short copy; a download that
//!   fails midway removes the cut destination file.
//! * Names the server lists that are not plain names (empty, `.`, `..`, containing '/')
//!   are refused, so a hostile server cannot write outside the destination.
//! * Speed: russh-sftp's [`File`] keeps several reads and writes in flight; the session
//!   should be built with [`sftp_config`], which sets how many (see there).

use std::borrow::Cow;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::FileAttributes;

use super::glob::{escape_glob, remote_glob};
use crate::ssh::SshError;

mod download;
pub mod parallel;
mod session;
pub mod stripe;
mod upload;

pub use download::MAX_DIR_DEPTH;
pub(crate) use session::list_problem;
pub use session::{ListError, MAX_LISTING_ENTRIES, MAX_LISTING_NAME_BYTES, Sftp, Warm};

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
pub async fn copy(sftp: &Sftp, plan: &CopyPlan, opts: &CopyOptions) -> Result<CopyStats, SshError> {
    let mut report = |e: &SshError| eprintln!("sallyport: {e}");
    copy_reporting(sftp, plan, opts, &mut report).await
}

/// [`copy`], with each per-file problem handed to `report` instead of printed.
pub async fn copy_reporting(
    sftp: &Sftp,
    plan: &CopyPlan,
    opts: &CopyOptions,
    report: &mut (dyn FnMut(&SshError) + Send),
) -> Result<CopyStats, SshError> {
    let outcome = copy_collect(sftp, plan, opts, report).await?;
    match (outcome.problems, outcome.first) {
        (0, _) | (_, None) => Ok(outcome.stats),
        (count, Some(first)) => Err(SshError::NotCopied {
            count,
            first: Box::new(first),
        }),
    }
}

/// What a copy did, problems included.
pub(crate) struct Outcome {
    pub stats: CopyStats,
    /// How many problems were reported.
    pub problems: u64,
    /// The first one.
    pub first: Option<SshError>,
}

/// The copy; `Err` when it could not go on: the session failed
/// ([`SshError::is_link_problem`]) or the destination cannot take several sources.
pub(crate) async fn copy_collect(
    sftp: &Sftp,
    plan: &CopyPlan,
    opts: &CopyOptions,
    report: &mut (dyn FnMut(&SshError) + Send),
) -> Result<Outcome, SshError> {
    let mut copier = Copier::new(sftp, opts, report, None);
    match plan.direction {
        Direction::Upload => copier.upload(&plan.sources, &plan.destination).await?,
        Direction::Download => copier.download(&plan.sources, &plan.destination).await?,
    }
    Ok(Outcome {
        stats: copier.stats,
        problems: copier.problems,
        first: copier.first,
    })
}

/// Why a step stopped: this item only (reported; the copy goes on) or the whole copy.
pub(crate) enum Problem {
    Item(SshError),
    Fatal(SshError),
}

pub(crate) type Step<T> = Result<T, Problem>;

fn local_problem(path: &Path, e: &io::Error) -> Problem {
    Problem::Item(SshError::LocalIo(format!(
        "{}: {}",
        printable(&path.to_string_lossy()),
        io_text(e)
    )))
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
            // The server's words: shown as text, never as terminal controls.
            let text = if s.error_message.is_empty() {
                s.status_code.to_string()
            } else {
                crate::text::shown_max(&s.error_message, 512).into_owned()
            };
            remote_file(format!("{}: {text}", printable(path)))
        }
        SftpError::Limited(m) => remote_file(format!("{}: {m}", printable(path))),
        other => Problem::Fatal(session_failure(other)),
    }
}

/// The failure for a lost or broken SFTP session.
pub(crate) fn session_failure(e: &SftpError) -> SshError {
    let message = match e {
        SftpError::Timeout => format!(
            "the SFTP server did not answer a request within {} s; the connection to the \
             instance is stalled (run with -v to see the data channel's reconnects)",
            sftp_config().request_timeout_secs
        ),
        other => format!(
            "the SFTP session failed: {}",
            crate::text::shown_max(&other.to_string(), 512)
        ),
    };
    SshError::Connection(message)
}

/// The SFTP server refused one file or directory.
fn remote_file(message: String) -> Problem {
    Problem::Item(SshError::RemoteFile(message))
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
    let text = crate::text::shown_max(&e.to_string(), 512).into_owned();
    remote_file(format!("{}: {text}", printable(path)))
}

/// Shows control characters (a newline in a file name), escape sequences and bidi
/// overrides as escapes: [`crate::text::shown`].
pub fn printable(s: &str) -> Cow<'_, str> {
    crate::text::shown(s)
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
pub(crate) fn is_plain_name(name: &str) -> bool {
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
    sftp: &'a Sftp,
    opts: CopyOptions,
    stats: CopyStats,
    report: &'a mut (dyn FnMut(&SshError) + Send),
    problems: u64,
    first: Option<SshError>,
    start_dir: Option<String>,
    buf: Vec<u8>,
    /// Planning for a striped copy: files and directory finishes are collected here
    /// instead of being done ([`parallel`]).
    plan: Option<parallel::Plan>,
}

impl<'a> Copier<'a> {
    /// A copier that copies itself (`plan` None: it gets a copy buffer), or that only
    /// walks the sources and collects a striped copy's [`parallel::Plan`].
    fn new(
        sftp: &'a Sftp,
        opts: &CopyOptions,
        report: &'a mut (dyn FnMut(&SshError) + Send),
        plan: Option<parallel::Plan>,
    ) -> Copier<'a> {
        Copier {
            sftp,
            opts: *opts,
            stats: CopyStats::default(),
            report,
            problems: 0,
            first: None,
            start_dir: None,
            buf: if plan.is_none() {
                vec![0; BUFFER_LEN]
            } else {
                Vec::new()
            },
            plan,
        }
    }

    /// Reports an item problem and goes on; passes a fatal one up.
    fn absorb<T>(&mut self, step: Step<T>) -> Result<Option<T>, SshError> {
        match step {
            Ok(v) => Ok(Some(v)),
            Err(Problem::Item(e)) => {
                self.note(e);
                Ok(None)
            }
            Err(Problem::Fatal(f)) => Err(f),
        }
    }

    fn note(&mut self, e: SshError) {
        self.problems += 1;
        (self.report)(&e);
        self.first.get_or_insert(e);
    }

    fn bar(&self, len: u64, name: &str) -> Option<ProgressBar> {
        self.opts
            .progress
            .then(|| progress_bar(len, printable(name).into_owned()))
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
                return Err(Problem::Item(SshError::RemoteFile(format!(
                    "{}: the server cannot expand ~user paths (no expand-path extension)",
                    printable(path)
                ))));
            }
            Err(e) => return Err(sftp_problem(user, &e)),
        }
    };
    Ok(remote_join(&quote(&home), rest))
}

/// A progress bar on stderr for `len` bytes, labelled `message`: the one style of every
/// copy's bars.
fn progress_bar(len: u64, message: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{wide_msg} {percent:>3}% {bytes:>10} {binary_bytes_per_sec:>12} {eta:>4}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

#[cfg(test)]
#[path = "fixture_tests.rs"]
pub(crate) mod test_fixture;

#[cfg(test)]
#[path = "transfer_tests.rs"]
mod tests;
