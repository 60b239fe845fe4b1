//! Local sources to a remote destination: files, and trees with `-r`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::fs::File;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ssh::SshError;
use crate::ssh::transfer::{
    Copier, DirFinish, Problem, Step, UpWork, local_basename, local_problem, parallel, printable,
    remote_io_problem, remote_join, session_failure, sftp_problem, unix_time,
};

impl Copier<'_> {
    pub(super) async fn upload(
        &mut self,
        sources: &[String],
        destination: &str,
    ) -> Result<(), SshError> {
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
            return Err(SshError::RemoteFile(format!(
                "{}: not a directory (several sources need a directory destination)",
                printable(destination)
            )));
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
                    self.note(SshError::LocalIo(format!(
                        "{}: is a directory (use -r)",
                        printable(src)
                    )));
                    continue;
                }
                self.upload_tree(local, target, meta).await?;
            } else if meta.is_file() {
                let step = self.upload_file(&local, &meta, &target).await;
                self.absorb(step)?;
            } else {
                self.note(SshError::LocalIo(format!(
                    "{}: not a regular file",
                    printable(src)
                )));
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
        if let Some(plan) = &mut self.plan {
            plan.room()?;
            plan.files.push(parallel::FileJob {
                remote: remote.to_owned(),
                local: local.to_owned(),
                size: meta.len(),
                mode,
                times: unix_time(meta.accessed()).zip(unix_time(meta.modified())),
            });
            return Ok(());
        }
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
        // The MKDIR and a STAT of what it leaves go out together (one round trip): the
        // server answers them in order, so the STAT sees the new directory, or what stood
        // in the way. (Straight to the session: an answer asked ahead predates the MKDIR.)
        let session: &russh_sftp::client::SftpSession = self.sftp;
        let (made, seen) = tokio::join!(session.create_dir(remote), session.metadata(remote));
        match made {
            Ok(()) => {
                // A server that answered out of order: ask again.
                let attrs = match seen {
                    Ok(a) if a.is_dir() => a,
                    _ => session
                        .metadata(remote)
                        .await
                        .map_err(|e| sftp_problem(remote, &e))?,
                };
                // sftp-server created it 0777 minus its umask: keep those of the source's
                // bits the umask allows, and stay writable until the contents are in.
                let created = attrs.permissions.unwrap_or(0o755) & 0o777;
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
            Err(e @ SftpError::Status(_)) => match seen {
                Ok(a) if a.is_dir() => Ok(DirFinish {
                    path: remote.to_owned(),
                    mode: self.opts.preserve.then_some(mode),
                    times,
                }),
                Ok(_) => Err(Problem::Item(SshError::RemoteFile(format!(
                    "{}: exists and is not a directory",
                    printable(remote)
                )))),
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

    pub(super) async fn finish_remote_dir(&self, f: &DirFinish<String>) -> Step<()> {
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

    /// Walks a local tree depth-first in name order: directories are made as they are
    /// reached, files copied (or planned), and each directory's final mode and times set
    /// once its contents are in.
    async fn upload_tree(
        &mut self,
        local: PathBuf,
        remote: String,
        meta: std::fs::Metadata,
    ) -> Result<(), SshError> {
        let mut stack = vec![UpWork::Dir {
            local,
            remote,
            meta,
            ancestors: Vec::new(),
        }];
        while let Some(work) = stack.pop() {
            match work {
                UpWork::Finish(f) => match &mut self.plan {
                    Some(plan) => plan.remote_dirs.push(f),
                    None => {
                        let step = self.finish_remote_dir(&f).await;
                        self.absorb(step)?;
                    }
                },
                UpWork::Entry {
                    local,
                    remote,
                    ancestors,
                } => {
                    let dir = self.upload_entry(local, remote, ancestors).await?;
                    stack.extend(dir);
                }
                UpWork::Dir {
                    local,
                    remote,
                    meta,
                    ancestors,
                } => {
                    let work = self.enter_local_dir(local, remote, meta, ancestors).await?;
                    stack.extend(work);
                }
            }
        }
        Ok(())
    }

    /// One entry of a local tree: a file is copied (or planned); a directory comes back
    /// to be walked; anything else is reported and skipped.
    async fn upload_entry(
        &mut self,
        local: PathBuf,
        remote: String,
        ancestors: Vec<(u64, u64)>,
    ) -> Result<Option<UpWork>, SshError> {
        // Follows symlinks, as scp does on upload.
        let meta = match tokio::fs::metadata(&local).await {
            Ok(m) => m,
            Err(e) => {
                self.absorb::<()>(Err(local_problem(&local, &e)))?;
                return Ok(None);
            }
        };
        if meta.is_dir() {
            return Ok(Some(UpWork::Dir {
                local,
                remote,
                meta,
                ancestors,
            }));
        }
        if meta.is_file() {
            let step = self.upload_file(&local, &meta, &remote).await;
            self.absorb(step)?;
        } else {
            self.note(SshError::LocalIo(format!(
                "{}: not a regular file",
                printable(&local.to_string_lossy())
            )));
        }
        Ok(None)
    }

    /// Lists one local directory and makes its remote twin: the work it leaves, in stack
    /// order (its finish, then its entries last name first), or none when it is a loop
    /// or cannot be listed or made.
    async fn enter_local_dir(
        &mut self,
        local: PathBuf,
        remote: String,
        meta: std::fs::Metadata,
        mut ancestors: Vec<(u64, u64)>,
    ) -> Result<Vec<UpWork>, SshError> {
        let id = (meta.dev(), meta.ino());
        if ancestors.contains(&id) {
            self.note(SshError::LocalIo(format!(
                "{}: directory loop (a symlink to an ancestor), skipped",
                printable(&local.to_string_lossy())
            )));
            return Ok(Vec::new());
        }
        ancestors.push(id);
        let step = self.list_local(&local).await;
        let Some(names) = self.absorb(step)? else {
            return Ok(Vec::new());
        };
        let step = self
            .make_remote_dir(&remote, meta.mode() & 0o777, &meta)
            .await;
        let Some(finish) = self.absorb(step)? else {
            return Ok(Vec::new());
        };
        self.stats.dirs += 1;
        let mut work = vec![UpWork::Finish(finish)];
        for name in names.into_iter().rev() {
            let Some(text) = name.to_str() else {
                self.note(SshError::LocalIo(format!(
                    "{}: the name is not UTF-8, which SFTP cannot carry; skipped",
                    printable(&local.join(&name).to_string_lossy())
                )));
                continue;
            };
            work.push(UpWork::Entry {
                remote: remote_join(&remote, text),
                local: local.join(&name),
                ancestors: ancestors.clone(),
            });
        }
        Ok(work)
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
}
