//! The SFTP session copies and the `sftp` prompt work with: russh-sftp's [`SftpSession`]
//! (it derefs to it) and, on a second channel of the same connection, a
//! [`RawSftpSession`] for directory listings. russh-sftp's own `read_dir` collects a whole
//! listing however long the server makes it; [`Sftp::list`] reads one reply at a time and
//! stops at a bound.
//!
//! Bounds (a listing is the server's claim, so it is believed only this far):
//! * one listing: at most [`MAX_LISTING_ENTRIES`] entries and [`MAX_LISTING_NAME_BYTES`]
//!   bytes of names, about 250 MB at worst (an entry is ~130 bytes besides its name);
//!   more is refused with one line naming the directory (exit 17);
//! * one pattern's matches ([`crate::ssh::glob`]): at most as many paths;
//! * each reply is one SFTP packet of at most 256 KiB ([`super::sftp_config`]).

use russh_sftp::client::RawSftpSession;
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::FileAttributes;
use russh_sftp::protocol::StatusCode;

use crate::ssh::SshError;
use crate::ssh::client::Connection;
use crate::ssh::transfer::{Problem, parallel, printable, sftp_problem};

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

/// An SFTP session, with a second channel for bounded listings.
pub struct Sftp {
    session: SftpSession,
    lister: RawSftpSession,
    max_entries: usize,
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
            lister,
            max_entries: MAX_LISTING_ENTRIES,
        }
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

    /// Opens both SFTP channels on `conn`, side by side (each start costs round trips).
    pub async fn open(conn: &Connection) -> Result<Sftp, SshError> {
        let (session, lister) =
            tokio::join!(parallel::open_session(conn), parallel::open_lister(conn));
        match (session, lister) {
            (Ok(session), Ok(lister)) => Ok(Sftp::new(session, lister)),
            (Ok(session), Err(f)) => {
                let _ = session.close().await;
                Err(f)
            }
            (Err(f), lister) => {
                if let Ok(lister) = lister {
                    let _ = lister.close_session();
                }
                Err(f)
            }
        }
    }

    /// Closes both channels.
    pub async fn close(&self) {
        let _ = self.session.close().await;
        let _ = self.lister.close_session();
    }

    /// The entries of directory `dir` but `.` and `..`, in the server's order: at most
    /// [`MAX_LISTING_ENTRIES`] and [`MAX_LISTING_NAME_BYTES`] bytes of names.
    pub async fn list(&self, dir: &str) -> Result<Vec<(String, FileAttributes)>, ListError> {
        let handle = self
            .lister
            .opendir(dir)
            .await
            .map_err(ListError::Sftp)?
            .handle;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let result = 'reading: loop {
            match self.lister.readdir(handle.as_str()).await {
                Ok(name) => {
                    for f in name.files {
                        if f.filename == "." || f.filename == ".." {
                            continue;
                        }
                        bytes = bytes.saturating_add(f.filename.len());
                        if out.len() >= self.max_entries || bytes > MAX_LISTING_NAME_BYTES {
                            break 'reading Err(ListError::TooLong {
                                entries: self.max_entries,
                            });
                        }
                        out.push((f.filename, f.attrs));
                    }
                }
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(()),
                Err(e) => break Err(ListError::Sftp(e)),
            }
        };
        let _ = self.lister.close(handle).await;
        result.map(|()| out)
    }
}

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
