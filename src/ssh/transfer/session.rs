//! The SFTP session copies and the `sftp` prompt work with: russh-sftp's [`SftpSession`]
//! (it derefs to it) and, on a second channel of the same connection, a
//! [`RawSftpSession`] for directory listings (and `-j 1` downloads' reads, which ask by
//! the claimed size: `download.rs`). russh-sftp's own `read_dir` collects a whole
//! listing however long the server makes it; [`Sftp::list`] reads two replies at a time
//! and stops at a bound.
//!
//! Bounds (a listing is the server's claim, so it is believed only this far):
//! * one listing: at most [`MAX_LISTING_ENTRIES`] entries and [`MAX_LISTING_NAME_BYTES`]
//!   bytes of names, about 250 MB at worst (an entry is ~130 bytes besides its name);
//!   more is refused with one line naming the directory (exit 17);
//! * one pattern's matches ([`crate::ssh::glob`]): at most as many paths;
//! * each reply is one SFTP packet of at most 256 KiB ([`super::sftp_config`]);
//! * a walk lists up to [`LISTINGS_AHEAD`] subdirectories ahead ([`Sftp::list_ahead`]),
//!   each held to that share of the bounds above (more is listed again when the walk
//!   gets there), so together they hold no more than one listing may.
//!
//! While the session starts (russh-sftp asks for `limits@openssh.com` after INIT, one more
//! round trip), the lister is already up: it asks what the command will ask first
//! ([`Warm`]: the start directory, the operands' stats), and [`Sftp::metadata`] and
//! [`Sftp::canonicalize`] hand those answers out once instead of asking again. On every
//! `scp` and `sftp` that is one round trip less before the first byte moves, two with a
//! relative path.

use russh_sftp::client::RawSftpSession;
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::FileAttributes;
use russh_sftp::protocol::StatusCode;

use crate::ssh::SshError;
use crate::ssh::client::Connection;
use crate::ssh::glob::has_glob;
use crate::ssh::transfer::{
    CopyPlan, Direction, Problem, parallel, printable, remote_join, session_failure, sftp_config,
    sftp_problem,
};

/// Most entries one directory listing may have.
pub const MAX_LISTING_ENTRIES: usize = 1_000_000;
/// Most bytes of names one directory listing may have.
pub const MAX_LISTING_NAME_BYTES: usize = 64 * 1024 * 1024;

/// Why a listing gave nothing.
#[derive(Debug)]
pub enum ListError {
    /// The server refused, or the session failed.
    Sftp(SftpError),
    /// More than the bound: `entries` was the limit crossed.
    TooLong { entries: usize },
}

/// An SFTP session, with a second, raw channel for bounded listings and `-j 1` reads.
pub struct Sftp {
    session: SftpSession,
    lister: std::sync::Arc<RawSftpSession>,
    max_entries: usize,
    /// Answers asked ahead ([`Warm`]), each handed out once.
    asked: std::sync::Mutex<Asked>,
    /// Listings asked ahead ([`Sftp::list_ahead`]), by directory, each handed out once.
    ahead: std::sync::Mutex<Vec<(String, Prefetch)>>,
}

/// A listing asked ahead: its task.
type Prefetch = tokio::task::JoinHandle<Result<Vec<(String, FileAttributes)>, ListError>>;

/// Most listings asked ahead at once. Each is held to this share of a listing's bounds, so
/// that all of them together hold no more than one listing may.
const LISTINGS_AHEAD: usize = 8;

/// Most operands whose stat is asked ahead.
const MAX_WARM_STATS: usize = 8;

/// What a command will ask the server first, asked on the lister while the session is
/// still starting: the start directory (`realpath .`) and the stat of some operands.
#[derive(Debug, Default, Clone)]
pub struct Warm {
    start_dir: bool,
    stats: Vec<WarmStat>,
}

/// One operand to stat ahead.
#[derive(Debug, Clone)]
struct WarmStat {
    /// The path the request names: the operand if absolute, else relative to the server's
    /// start directory (the server resolves it there, as the walk will after joining).
    ask: String,
    /// For a relative operand: the part the walk joins to the start directory.
    relative: Option<String>,
}

impl Warm {
    /// The start directory only (the `sftp` prompt's first question).
    pub fn start_dir() -> Warm {
        Warm {
            start_dir: true,
            stats: Vec::new(),
        }
    }

    /// What [`super::copy`] asks first for `plan`: a download stats each source that is
    /// not a pattern, an upload its destination; relative ones need the start directory.
    /// `~user` paths and sources with a backslash are left to the walk (they need the
    /// server's expand-path, or unescaping).
    pub fn for_copy(plan: &CopyPlan) -> Warm {
        let operands = match plan.direction {
            Direction::Download => plan.sources.as_slice(),
            Direction::Upload => std::slice::from_ref(&plan.destination),
        };
        let mut warm = Warm::default();
        for op in operands.iter().take(MAX_WARM_STATS) {
            if plan.direction == Direction::Download && (has_glob(op) || op.contains('\\')) {
                continue;
            }
            let relative = if op.starts_with('/') {
                None
            } else if op.is_empty() || op == "~" {
                Some("")
            } else if let Some(rest) = op.strip_prefix("~/") {
                Some(rest)
            } else if op.starts_with('~') {
                continue;
            } else {
                Some(op.as_str())
            };
            let stat = match relative {
                None => WarmStat {
                    ask: op.clone(),
                    relative: None,
                },
                Some(rel) => {
                    warm.start_dir = true;
                    WarmStat {
                        ask: if rel.is_empty() { "." } else { rel }.to_owned(),
                        relative: Some(rel.to_owned()),
                    }
                }
            };
            warm.stats.push(stat);
        }
        warm
    }

    /// Asks it all on `lister` at once; every answer (refusals and failures too) is kept
    /// as the walk would have got it.
    async fn ask(&self, lister: &RawSftpSession) -> Asked {
        let start = async {
            if !self.start_dir {
                return None;
            }
            Some(match lister.realpath(".").await {
                Ok(name) => match name.files.into_iter().next() {
                    Some(f) => Ok(f.filename),
                    None => Err(SftpError::UnexpectedBehavior("no file".to_owned())),
                },
                Err(e) => Err(e),
            })
        };
        let stats = futures_util::future::join_all(
            self.stats
                .iter()
                .map(|s| async { lister.stat(s.ask.as_str()).await.map(|a| a.attrs) }),
        );
        let (start_dir, answers) = tokio::join!(start, stats);
        let base = match &start_dir {
            Some(Ok(dir)) => Some(dir.clone()),
            _ => None,
        };
        // A relative operand's answer is kept under the path the walk will name; without
        // the start directory, the walk asks again.
        let stats = self
            .stats
            .iter()
            .zip(answers)
            .filter_map(|(s, answer)| match (&s.relative, &base) {
                (None, _) => Some((s.ask.clone(), answer)),
                (Some(rel), Some(dir)) => Some((remote_join(dir, rel), answer)),
                (Some(_), None) => None,
            })
            .collect();
        Asked { start_dir, stats }
    }
}

/// Answers asked ahead, not yet handed out.
#[derive(Default)]
struct Asked {
    start_dir: Option<Result<String, SftpError>>,
    stats: Vec<(String, Result<FileAttributes, SftpError>)>,
}

impl std::ops::Deref for Sftp {
    type Target = SftpSession;
    fn deref(&self) -> &SftpSession {
        &self.session
    }
}

impl Sftp {
    /// From a session and an initialised raw session on the same server.
    pub fn new(session: SftpSession, lister: RawSftpSession) -> Sftp {
        Sftp {
            session,
            lister: std::sync::Arc::new(lister),
            max_entries: MAX_LISTING_ENTRIES,
            asked: Default::default(),
            ahead: Default::default(),
        }
    }

    /// The second channel, for what needs SFTP's own requests: listings, and `-j 1`
    /// downloads' positioned reads.
    pub(crate) fn raw(&self) -> &std::sync::Arc<RawSftpSession> {
        &self.lister
    }

    /// Lowers the entry bound (tests).
    #[cfg(test)]
    pub(crate) fn set_max_entries(&mut self, n: usize) {
        self.max_entries = n;
    }

    /// The most entries a listing (or a pattern's matches) may have.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Opens both SFTP channels on `conn`, side by side (each start costs round trips),
    /// and asks `warm` on the lister while the session finishes starting.
    pub async fn open(conn: &Connection, warm: &Warm) -> Result<Sftp, SshError> {
        Sftp::start(
            parallel::sftp_channel(conn),
            parallel::sftp_channel(conn),
            warm,
        )
        .await
    }

    /// [`Sftp::open`] on the streams the two futures give.
    pub(crate) async fn start<S, L>(
        session: impl Future<Output = Result<S, SshError>>,
        lister: impl Future<Output = Result<L, SshError>>,
        warm: &Warm,
    ) -> Result<Sftp, SshError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        L: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let session = async {
            SftpSession::new_with_config(session.await?, sftp_config())
                .await
                .map_err(|e| {
                    SshError::Connection(format!(
                        "SFTP did not start (is the server's sftp subsystem enabled?): {e}"
                    ))
                })
        };
        let lister = async {
            let raw = RawSftpSession::new_with_config(lister.await?, sftp_config());
            raw.init().await.map_err(|e| session_failure(&e))?;
            let asked = warm.ask(&raw).await;
            Ok::<_, SshError>((raw, asked))
        };
        match tokio::join!(session, lister) {
            (Ok(session), Ok((lister, asked))) => {
                let sftp = Sftp::new(session, lister);
                if let Ok(mut a) = sftp.asked.lock() {
                    *a = asked;
                }
                Ok(sftp)
            }
            (Ok(session), Err(f)) => {
                let _ = session.close().await;
                Err(f)
            }
            (Err(f), lister) => {
                if let Ok((lister, _)) = lister {
                    let _ = lister.close_session();
                }
                Err(f)
            }
        }
    }

    /// The attributes of `path` (following symlinks), as [`SftpSession::metadata`]: the
    /// answer asked ahead for it if there is one (once), else the server's.
    pub async fn metadata<P: Into<String>>(&self, path: P) -> Result<FileAttributes, SftpError> {
        let path = path.into();
        let ahead = self.asked.lock().ok().and_then(|mut a| {
            let i = a.stats.iter().position(|(p, _)| *p == path)?;
            Some(a.stats.swap_remove(i).1)
        });
        match ahead {
            Some(answer) => answer,
            None => self.session.metadata(path).await,
        }
    }

    /// The server's canonical form of `path`, as [`SftpSession::canonicalize`]: for `.`
    /// the answer asked ahead if there is one (once), else the server's.
    pub async fn canonicalize<T: Into<String>>(&self, path: T) -> Result<String, SftpError> {
        let path = path.into();
        let ahead = (path == ".")
            .then(|| self.asked.lock().ok().and_then(|mut a| a.start_dir.take()))
            .flatten();
        match ahead {
            Some(answer) => answer,
            None => self.session.canonicalize(path).await,
        }
    }

    /// Closes both channels.
    pub async fn close(&self) {
        if let Ok(mut ahead) = self.ahead.lock() {
            ahead.drain(..).for_each(|(_, task)| task.abort());
        }
        let _ = self.session.close().await;
        let _ = self.lister.close_session();
    }

    /// Starts listing `dirs` (in the order given) in the background, as many as there is
    /// room for ([`LISTINGS_AHEAD`] not yet handed out), so that a walk finds them listed
    /// when it gets there: [`Sftp::list`] hands each out once. A listing ahead that would
    /// pass its share of the bounds is dropped, and `list` asks again with the full ones.
    pub fn list_ahead<'d>(&self, dirs: impl IntoIterator<Item = &'d str>) {
        let Ok(mut ahead) = self.ahead.lock() else {
            return;
        };
        for dir in dirs {
            if ahead.len() >= LISTINGS_AHEAD {
                break;
            }
            if ahead.iter().any(|(d, _)| d == dir) {
                continue;
            }
            let (lister, owned) = (self.lister.clone(), dir.to_owned());
            let bounds = (
                self.max_entries / LISTINGS_AHEAD,
                MAX_LISTING_NAME_BYTES / LISTINGS_AHEAD,
            );
            let task = tokio::spawn(async move { list_on(&lister, &owned, bounds).await });
            ahead.push((dir.to_owned(), task));
        }
    }

    /// The entries of directory `dir` but `.` and `..`, in the server's order: at most
    /// [`MAX_LISTING_ENTRIES`] and [`MAX_LISTING_NAME_BYTES`] bytes of names.
    ///
    /// READDIRs go two at a time, so the end of a listing (EOF) comes in the round trip
    /// of its last names instead of one after; after an EOF, what is still in flight is
    /// read too, so an answer overtaken by the EOF is not lost. The handle's CLOSE is not
    /// waited for. A listing takes two round trips (OPENDIR, a pair), and one more for
    /// every further pair.
    pub async fn list(&self, dir: &str) -> Result<Vec<(String, FileAttributes)>, ListError> {
        let ahead = self.ahead.lock().ok().and_then(|mut a| {
            let i = a.iter().position(|(d, _)| d == dir)?;
            Some(a.swap_remove(i).1)
        });
        if let Some(task) = ahead {
            match task.await {
                // Past its share of the bounds (or the task was lost): asked again below,
                // with the full bounds.
                Ok(Err(ListError::TooLong { .. })) | Err(_) => {}
                Ok(listed) => return listed,
            }
        }
        let bounds = (self.max_entries, MAX_LISTING_NAME_BYTES);
        list_on(&self.lister, dir, bounds).await
    }
}

/// [`Sftp::list`] on `lister`, within `(entries, name bytes)`.
async fn list_on(
    lister: &std::sync::Arc<RawSftpSession>,
    dir: &str,
    (max_entries, max_bytes): (usize, usize),
) -> Result<Vec<(String, FileAttributes)>, ListError> {
    let handle = lister.opendir(dir).await.map_err(ListError::Sftp)?.handle;
    let readdir = || {
        let (lister, handle) = (lister.clone(), handle.clone());
        async move { lister.readdir(handle).await }
    };
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut ended = false;
    let result = 'reading: loop {
        // In pairs: a pair's answers come in one round trip, so the EOF's pair ends the
        // listing (topping up after each answer would leave one more in flight).
        if !ended && in_flight.is_empty() {
            for _ in 0..READDIRS_IN_FLIGHT {
                in_flight.push_back(readdir());
            }
        }
        let Some(reply) = futures_util::StreamExt::next(&mut in_flight).await else {
            break Ok(());
        };
        match reply {
            Ok(name) => {
                for f in name.files {
                    if f.filename == "." || f.filename == ".." {
                        continue;
                    }
                    bytes = bytes.saturating_add(f.filename.len());
                    if out.len() >= max_entries || bytes > max_bytes {
                        break 'reading Err(ListError::TooLong {
                            entries: max_entries,
                        });
                    }
                    out.push((f.filename, f.attrs));
                }
            }
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => ended = true,
            Err(e) => break Err(ListError::Sftp(e)),
        }
    };
    drop(in_flight);
    // Closing a handle we only read cannot fail in a way that matters; the answer (or
    // the session's end) ends the task.
    let lister = lister.clone();
    tokio::spawn(async move {
        let _ = lister.close(handle).await;
    });
    result.map(|()| out)
}

/// READDIRs one listing keeps in flight.
const READDIRS_IN_FLIGHT: usize = 2;

/// The problem for a failed listing of `path` (a directory or a pattern).
pub(crate) fn list_problem(path: &str, e: &ListError) -> Problem {
    match e {
        ListError::Sftp(e) => sftp_problem(path, e),
        ListError::TooLong { entries } => Problem::Item(SshError::RemoteFile(format!(
            "{}: the server lists more than {entries} entries or {} MiB of names; \
                 refused",
            printable(path),
            MAX_LISTING_NAME_BYTES >> 20
        ))),
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
