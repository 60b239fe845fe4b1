//! Remote sources (patterns) to a local destination: files, and trees with `-r`.
//!
//! A file is copied in place, reading until the server says end of file; the size its
//! stat claimed only sets the progress bar (nothing is allocated from it). A file that
//! ends before that size is an error ("the file got shorter while it was copied"), as
//! on the striped path, and a copy that fails midway removes the cut destination when it
//! is a regular file (never a device such as `/dev/null`). A tree is walked at most
//! [`MAX_DIR_DEPTH`] directories deep, so a server that hides a symlink loop (each
//! REALPATH answered as asked) cannot lead the walk on until the local path is too long:
//! the first directory past the bound is reported and the walk of that tree ends there
//! (files and directories not yet reached are not copied; other sources still are).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::FileAttributes;
use russh_sftp::protocol::FileType;
use russh_sftp::protocol::{OpenFlags, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::ssh::SshError;
use crate::ssh::transfer::stripe::Window;
use crate::ssh::transfer::{
    Copier, DirFinish, DownWork, Problem, Step, is_plain_name, list_problem, local_problem,
    parallel, printable, remote_basename, remote_glob, remote_join, set_attributes, sftp_problem,
};

/// How many directory levels a remote tree walk descends (`scp -r`, plain or striped, and
/// `sftp get -r`): the top directory and 63 below it, as OpenSSH's sftp client
/// (`MAX_DIR_DEPTH` in sftp-client.c). A directory deeper than that is reported and ends the
/// walk of its tree (OpenSSH goes on with its siblings; in a hidden loop each of those
/// is a copy of one above, reported again when it fails).
pub const MAX_DIR_DEPTH: usize = 64;

/// The failure for a file whose reads ended before the size its stat claimed.
fn shorter(remote: &str) -> Problem {
    Problem::Item(SshError::RemoteFile(format!(
        "{}: the file got shorter while it was copied",
        printable(remote)
    )))
}

/// Removes a destination a failed copy cut short, when it is a regular file: its old
/// content was truncated away already, and a cut file must not pass for a copy. Only the
/// file that was written is removed: the name is judged as found (a symlink is not
/// followed), and must still be that same file; a symlink the user put there stays.
async fn remove_cut(sink: tokio::fs::File, local: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let written = sink.metadata().await.ok().filter(|m| m.is_file());
    drop(sink);
    let found = tokio::fs::symlink_metadata(local).await.ok();
    let same = match (written, found) {
        (Some(w), Some(f)) => f.is_file() && (f.dev(), f.ino()) == (w.dev(), w.ino()),
        _ => false,
    };
    if same {
        let _ = tokio::fs::remove_file(local).await;
    }
}

/// Bytes a `-j 1` download asks for in one read.
const READ_LEN: u64 = 64 * 1024;
/// Reads a `-j 1` download keeps in flight at first, and at least (2 MiB): a file this size
/// is asked for in one round trip, and at Session Manager's ~0.6 MB/s an answer waits
/// ~3.5 s behind the others, far from russh-sftp's request timeout.
const READS_AT_LEAST: usize = 32;
/// Most reads in flight (8 MiB): more than [`READS_AT_LEAST`] only where the measured
/// rate and round trip call for it ([`Window`]), as through an EC2 Instance Connect
/// Endpoint tunnel, whose bandwidth-delay product 2 MiB do not cover.
const READS_AT_MOST: usize = 128;

/// Reads the open file `handle` into `sink`, in order, until the server says end of
/// file; returns the bytes written. The reads for the `claimed` size go out together (at
/// most [`READS_AT_LEAST`] at first, up to [`READS_AT_MOST`] as the link proves fast), the
/// last one ending at the claim, with one more at the claim to see the end in the same
/// round trip (russh-sftp's `File` learns the server's read size first, then finds the
/// end a round trip later). Nothing is allocated from the claim. A short answer (the file
/// changed, or a server that answers less than asked) drops the reads after it and asks
/// again from where it ended; a file longer than its claim is read on.
async fn pump_raw(
    raw: &std::sync::Arc<russh_sftp::client::RawSftpSession>,
    handle: &str,
    claimed: u64,
    sink: &mut tokio::fs::File,
    remote: &str,
    local: &Path,
    bar: Option<&ProgressBar>,
) -> Step<u64> {
    let read = |offset: u64, len: u64| {
        let raw = raw.clone();
        let handle = handle.to_owned();
        let sent = tokio::time::Instant::now();
        async move { (len, sent, raw.read(handle, offset, len as u32).await) }
    };
    let mut window = Window::new(READ_LEN, READS_AT_MOST);
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    // The next offset to ask for, and the bytes written (every byte before it).
    let (mut next, mut written) = (0u64, 0u64);
    loop {
        let room = window.requests().max(READS_AT_LEAST);
        while in_flight.len() < room && (next <= claimed || in_flight.is_empty()) {
            // Up to the claim, cut at it; at and past it, whole reads.
            let len = if next < claimed {
                READ_LEN.min(claimed - next)
            } else {
                READ_LEN
            };
            in_flight.push_back(read(next, len));
            next += len;
        }
        let Some((len, sent, answer)) = futures_util::StreamExt::next(&mut in_flight).await else {
            break;
        };
        let data = match answer {
            // Answers come in the order asked, and after a short one those behind it were
            // dropped, so each continues at `written`; an empty answer is an end too.
            // What was asked past the end says nothing more.
            Ok(d) if !d.data.is_empty() => d.data,
            Ok(_) => break,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break,
            Err(e) => return Err(sftp_problem(remote, &e)),
        };
        let got = (data.len() as u64).min(len);
        window.answered(sent, got);
        sink.write_all(&data[..got as usize])
            .await
            .map_err(|e| local_problem(local, &e))?;
        written += got;
        if let Some(bar) = bar {
            bar.inc(got);
        }
        if got < len {
            in_flight.clear();
            next = written;
        }
    }
    sink.flush().await.map_err(|e| local_problem(local, &e))?;
    Ok(written)
}

/// The failure for a directory [`MAX_DIR_DEPTH`] levels below the top of a walk.
fn too_deep(remote: &str) -> SshError {
    SshError::RemoteFile(format!(
        "{}: maximum directory depth of {MAX_DIR_DEPTH} exceeded; the rest of the tree \
             is not copied",
        printable(remote)
    ))
}

impl Copier<'_> {
    pub(super) async fn download(
        &mut self,
        sources: &[String],
        destination: &str,
    ) -> Result<(), SshError> {
        let dest = PathBuf::from(destination);
        let dest_is_dir = tokio::fs::metadata(&dest).await.is_ok_and(|m| m.is_dir());
        if sources.len() > 1 && !dest_is_dir {
            return Err(SshError::LocalIo(format!(
                "{}: not a directory (several sources need a directory destination)",
                printable(destination)
            )));
        }
        for pattern in sources {
            let step = self.remote_path(pattern, true).await;
            let Some(pattern_abs) = self.absorb(step)? else {
                continue;
            };
            let step = remote_glob(self.sftp, &pattern_abs)
                .await
                .map_err(|e| list_problem(pattern, &e));
            let Some(globbed) = self.absorb(step)? else {
                continue;
            };
            self.refused_names(&globbed.refused);
            let paths = globbed.paths;
            if paths.len() > 1 && !dest_is_dir {
                self.note(SshError::LocalIo(format!(
                    "{}: matches {} files but {} is not a directory",
                    printable(pattern),
                    paths.len(),
                    printable(destination)
                )));
                continue;
            }
            // Nothing matched: the pattern itself is tried as a name, as OpenSSH does.
            let unmatched = super::super::glob::has_glob(&pattern_abs)
                && paths == [super::super::glob::unescape_glob(&pattern_abs)];
            for path in paths {
                self.download_one(&path, &dest, dest_is_dir, unmatched)
                    .await?;
            }
        }
        Ok(())
    }

    /// Reports each name a pattern matched in a listing that is no plain entry name
    /// (`..`, `a/b`, an absolute path): never copied, and the copy ends non-zero.
    fn refused_names(&mut self, refused: &[(String, String)]) {
        for (dir, name) in refused {
            self.note(SshError::RemoteFile(format!(
                "{}: the server listed an invalid name \"{}\"; skipped",
                printable(dir),
                printable(name)
            )));
        }
    }

    async fn download_one(
        &mut self,
        path: &str,
        dest: &Path,
        dest_is_dir: bool,
        unmatched: bool,
    ) -> Result<(), SshError> {
        let attrs = match self.sftp.metadata(path).await {
            Ok(a) => a,
            Err(SftpError::Status(s))
                if unmatched && s.status_code == russh_sftp::protocol::StatusCode::NoSuchFile =>
            {
                self.note(SshError::RemoteFile(format!(
                    "{}: no such file or directory (the pattern matches nothing)",
                    printable(path)
                )));
                return Ok(());
            }
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
                self.note(SshError::RemoteFile(format!(
                    "{}: is a directory (use -r)",
                    printable(path)
                )));
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
            _ => self.note(SshError::RemoteFile(format!(
                "{}: not a regular file",
                printable(path)
            ))),
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
        if let Some(plan) = &mut self.plan {
            plan.room()?;
            plan.files.push(parallel::FileJob {
                remote: remote.to_owned(),
                local: local.to_owned(),
                size: attrs.len(),
                mode,
                times: attrs.atime.zip(attrs.mtime),
            });
            return Ok(());
        }
        let raw = self.sftp.raw();
        let handle = raw
            .open(remote, OpenFlags::READ, FileAttributes::default())
            .await
            .map_err(|e| sftp_problem(remote, &e))?
            .handle;
        // Closing a file we only read cannot fail in a way that matters: not waited for.
        let close = {
            let (raw, handle) = (raw.clone(), handle.clone());
            move || {
                tokio::spawn(async move {
                    let _ = raw.close(handle).await;
                });
            }
        };
        let opened = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode | 0o200)
            .open(local)
            .await;
        let mut sink = match opened {
            Ok(sink) => sink,
            Err(e) => {
                close();
                return Err(local_problem(local, &e));
            }
        };
        let name = remote_basename(remote).unwrap_or(remote).to_owned();
        let bar = self.bar(attrs.len(), &name);
        let claimed = attrs.size.unwrap_or(0);
        let result = pump_raw(
            raw,
            &handle,
            claimed,
            &mut sink,
            remote,
            local,
            bar.as_ref(),
        )
        .await
        .and_then(|n| match attrs.size {
            Some(claimed) if n < claimed => Err(shorter(remote)),
            _ => Ok(n),
        });
        close();
        let n = match result {
            Ok(n) => n,
            Err(p) => {
                if let Some(bar) = bar {
                    bar.abandon();
                }
                remove_cut(sink, local).await;
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
                    Problem::Item(SshError::LocalIo(format!(
                        "{}: {e}",
                        printable(&local_owned.to_string_lossy())
                    )))
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
                    _ => Err(Problem::Item(SshError::LocalIo(format!(
                        "{}: exists and is not a directory",
                        printable(&local.to_string_lossy())
                    )))),
                }
            }
            Err(e) => Err(local_problem(local, &e)),
        }
    }

    pub(super) async fn finish_local_dir(f: DirFinish<PathBuf>) -> Step<()> {
        if f.mode.is_none() && f.times.is_none() {
            return Ok(());
        }
        let path = f.path.clone();
        tokio::task::spawn_blocking(move || {
            set_attributes(&std::fs::File::open(&f.path)?, f.mode, f.times)
        })
        .await
        .map_err(|e| {
            Problem::Item(SshError::LocalIo(format!(
                "{}: {e}",
                printable(&path.to_string_lossy())
            )))
        })?
        .map_err(|e| local_problem(&path, &e))
    }

    /// Walks a remote tree depth-first in name order: directories are made as they are
    /// reached, files copied (or planned), and each directory's final mode and times set
    /// once its contents are in.
    async fn download_tree(&mut self, root: DownWork) -> Result<(), SshError> {
        let mut stack = vec![root];
        while let Some(work) = stack.pop() {
            match work {
                DownWork::Finish(f) => match &mut self.plan {
                    Some(plan) => plan.local_dirs.push(f),
                    None => {
                        let step = Self::finish_local_dir(f).await;
                        self.absorb(step)?;
                    }
                },
                DownWork::File {
                    remote,
                    local,
                    attrs,
                } => {
                    let step = self.download_file(&remote, &local, &attrs).await;
                    self.absorb(step)?;
                }
                DownWork::Dir {
                    remote, ancestors, ..
                } if ancestors.len() >= MAX_DIR_DEPTH => {
                    // Past this depth the tree is a loop the server hides: each level
                    // would repeat the ones above, so the walk ends here; directories
                    // already made still get their final modes.
                    self.note(too_deep(&remote));
                    stack.retain(|w| matches!(w, DownWork::Finish(_)));
                }
                DownWork::Dir {
                    remote,
                    canonical,
                    local,
                    attrs,
                    ancestors,
                } => {
                    let work = self
                        .enter_remote_dir(remote, canonical, local, attrs, ancestors)
                        .await?;
                    stack.extend(work);
                }
            }
        }
        Ok(())
    }

    /// Lists one remote directory and makes its local twin: the work it leaves, in stack
    /// order (its finish, then its entries last name first), or none when it is a loop
    /// or cannot be listed or made.
    async fn enter_remote_dir(
        &mut self,
        remote: String,
        canonical: String,
        local: PathBuf,
        attrs: FileAttributes,
        mut ancestors: Vec<String>,
    ) -> Result<Vec<DownWork>, SshError> {
        if ancestors.contains(&canonical) {
            self.note(SshError::RemoteFile(format!(
                "{}: directory loop (a symlink to an ancestor), skipped",
                printable(&remote)
            )));
            return Ok(Vec::new());
        }
        ancestors.push(canonical.clone());
        let step = self
            .sftp
            .list(&remote)
            .await
            .map_err(|e| list_problem(&remote, &e));
        let Some(mut entries) = self.absorb(step)? else {
            return Ok(Vec::new());
        };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let step = self.make_local_dir(&local, &attrs).await;
        let Some(finish) = self.absorb(step)? else {
            return Ok(Vec::new());
        };
        self.stats.dirs += 1;
        let mut children = Vec::with_capacity(entries.len());
        for (name, attrs) in entries {
            if !is_plain_name(&name) {
                self.note(SshError::RemoteFile(format!(
                    "{}: the server listed an invalid name {:?}; skipped",
                    printable(&remote),
                    name
                )));
                continue;
            }
            let child_remote = remote_join(&remote, &name);
            let (attrs, canonical) = if attrs.file_type() == FileType::Symlink {
                // Follow the link: its target decides.
                match self.follow_remote_link(&child_remote).await? {
                    Some(found) => found,
                    None => continue,
                }
            } else {
                (attrs, remote_join(&canonical, &name))
            };
            let child_local = local.join(&name);
            if let Some(work) =
                self.remote_child(child_remote, canonical, child_local, attrs, &ancestors)
            {
                children.push(work);
            }
        }
        // The subdirectories the walk will enter, listed ahead in the order it will get
        // to them: their round trips overlap instead of adding up.
        self.sftp
            .list_ahead(children.iter().filter_map(|w| match w {
                DownWork::Dir {
                    remote,
                    canonical,
                    ancestors,
                    ..
                } if ancestors.len() < MAX_DIR_DEPTH && !ancestors.contains(canonical) => {
                    Some(remote.as_str())
                }
                _ => None,
            }));
        let mut work = vec![DownWork::Finish(finish)];
        work.extend(children.into_iter().rev());
        Ok(work)
    }

    /// What a symlink in a remote tree points at: its attributes, and for a directory its
    /// canonical path (for loop detection); none when that cannot be told (reported).
    async fn follow_remote_link(
        &mut self,
        child_remote: &str,
    ) -> Result<Option<(FileAttributes, String)>, SshError> {
        match self.sftp.metadata(child_remote).await {
            Ok(a) if a.is_dir() => match self.sftp.canonicalize(child_remote).await {
                Ok(c) => Ok(Some((a, c))),
                Err(e) => {
                    self.absorb::<()>(Err(sftp_problem(child_remote, &e)))?;
                    Ok(None)
                }
            },
            Ok(a) => Ok(Some((a, String::new()))),
            Err(e) => {
                self.absorb::<()>(Err(sftp_problem(child_remote, &e)))?;
                Ok(None)
            }
        }
    }

    /// The work for one entry of a remote directory: a directory to walk or a file to
    /// copy; anything else is reported and skipped.
    fn remote_child(
        &mut self,
        remote: String,
        canonical: String,
        local: PathBuf,
        attrs: FileAttributes,
        ancestors: &[String],
    ) -> Option<DownWork> {
        match attrs.file_type() {
            FileType::Dir => Some(DownWork::Dir {
                remote,
                canonical,
                local,
                attrs,
                ancestors: ancestors.to_vec(),
            }),
            FileType::File => Some(DownWork::File {
                remote,
                local,
                attrs,
            }),
            _ => {
                self.note(SshError::RemoteFile(format!(
                    "{}: not a regular file",
                    printable(&remote)
                )));
                None
            }
        }
    }
}

#[cfg(test)]
mod cut_tests {
    use super::*;

    #[tokio::test]
    async fn a_cut_copy_removes_the_file_it_wrote_but_never_a_symlink_to_it() {
        let dir = std::env::temp_dir().join(format!("sallyport-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (target, link) = (dir.join("target"), dir.join("link"));
        std::fs::write(&target, b"cut").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // Written through the user's symlink, as a copy in place opens its destination.
        let sink = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&link)
            .await
            .unwrap();
        remove_cut(sink, &link).await;
        assert!(
            std::fs::symlink_metadata(&link).is_ok(),
            "the user's symlink was removed"
        );
        // A plain destination that was cut is removed.
        let sink = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .await
            .unwrap();
        remove_cut(sink, &target).await;
        assert!(!target.exists(), "the cut file stays as if complete");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
#[path = "raw_read_tests.rs"]
mod raw_read_tests;
