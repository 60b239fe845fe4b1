//! Temporary files of a striped copy: each file is written under a temporary name beside
//! its destination, created private (0600) and empty, and renamed over the destination
//! once all its pieces are in, with its final mode (and, with `-p`, times) set first.
//!
//! * Download: the rename is `rename(2)`, atomic: the destination is the old file or the
//!   new one, never a part.
//! * Upload: the `posix-rename@openssh.com` extension where the server offers it
//!   (OpenSSH's sftp-server: `rename(2)`, atomic). Without it, SFTP's own rename refuses
//!   an existing target, so the old destination is removed first: an interruption between
//!   the two steps leaves no file under the destination's name and the complete new one
//!   under the temporary name (which is then kept, and named in the error); never a cut
//!   file under the destination's name.
//! * Final mode: `-p`: the source's. Otherwise an existing destination keeps its mode and
//!   a new file gets the source's bits minus the receiving side's umask, as in place:
//!   locally `(mode | 0200) & !umask` as OpenSSH's sftp creates it, remotely
//!   `mode & !umask` with sftp-server's umask, learnt once per copy by making and
//!   removing an empty directory.
//!
//! Temporary names are `.NAME.sallyport-PID-I.part` (NAME cut to 100 bytes). Those still
//! there when a copy stops (Ctrl-C, a failed file) are removed by [`Resources::release`]
//! where a session to remove them with is left; a killed process or a dead connection
//! leaves them behind, hidden and marked with the process ID.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::FileType;
use russh_sftp::protocol::{FileAttributes, OpenFlags};

use crate::ssh::SshError;
use crate::ssh::transfer::parallel::{FileJob, Resources};
use crate::ssh::transfer::{
    Copier, Problem, Step, local_basename, local_problem, printable, remote_join, set_attributes,
    sftp_problem,
};

/// Concurrent SFTP requests while preparing or finishing files.
const CONCURRENT: usize = 32;

/// `NAME` cut to at most 100 bytes (at a character boundary), so the temporary name
/// stays within the 255 bytes a file name may have.
fn short(name: &str) -> &str {
    let mut end = name.len().min(100);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The temporary name a download of `local` is written under.
pub(super) fn temp_name(local: &Path, i: usize) -> PathBuf {
    let name = local_basename(local).unwrap_or_else(|| "file".to_owned());
    let tmp = format!(
        ".{}.sallyport-{}-{i}.part",
        short(&name),
        std::process::id()
    );
    local.with_file_name(tmp)
}

/// The temporary name an upload to `remote` is written under, in the same directory.
pub(super) fn remote_temp_name(remote: &str, i: usize) -> String {
    let (dir, name) = match remote.rfind('/') {
        Some(at) => remote.split_at(at + 1),
        None => ("", remote),
    };
    format!(
        "{dir}.{}.sallyport-{}-{i}.part",
        short(name),
        std::process::id()
    )
}

/// This process's umask (Linux: `/proc/self/status`). Where it cannot be read, 077: new
/// files then get their owner's bits only, never more than the umask would give.
pub(super) fn local_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o077)
}

/// sftp-server's umask: an empty directory made without a mode gets 0777 minus it. 077
/// (the owner's bits only) when that cannot be learnt.
async fn remote_umask(raw: &RawSftpSession, dir: &str) -> u32 {
    let probe = remote_join(dir, &format!(".sallyport-{}-umask", std::process::id()));
    if raw
        .mkdir(probe.as_str(), FileAttributes::default())
        .await
        .is_err()
    {
        return 0o077;
    }
    let mode = raw
        .stat(probe.as_str())
        .await
        .ok()
        .and_then(|a| a.attrs.permissions);
    let _ = raw.rmdir(probe.as_str()).await;
    mode.map_or(0o077, |m| !m & 0o777)
}

/// The directory part of a remote path (`/` for `/f`, empty for `f`).
fn remote_dir(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(at) => &path[..at],
        None => "",
    }
}

impl Copier<'_> {
    /// Creates each download's temporary file, empty and 0600; `None` where it failed
    /// (reported).
    pub(super) fn prepare_downloads(
        &mut self,
        files: &[FileJob],
        res: &Resources,
    ) -> Result<Vec<Option<PathBuf>>, SshError> {
        let mut temps = Vec::with_capacity(files.len());
        for (i, job) in files.iter().enumerate() {
            let t = temp_name(&job.local, i);
            // No set_len: the size is the server's claim; pieces extend the file.
            let made = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&t);
            let step = match made {
                Ok(_) => {
                    res.temp_added(&t);
                    Ok(t)
                }
                Err(e) => Err(local_problem(&job.local, &e)),
            };
            temps.push(self.absorb(step)?);
        }
        Ok(temps)
    }

    /// Names each upload's temporary file on the server and creates those of files of
    /// several pieces (not `whole`), empty, exclusively and 0600 (a lane creates a
    /// one-piece file's when it copies it); `None` where that failed (reported).
    pub(super) async fn prepare_uploads(
        &mut self,
        files: &[FileJob],
        whole: &[bool],
        res: &Resources,
    ) -> Result<Vec<Option<String>>, SshError> {
        let sftp = self.sftp;
        let made: Vec<Step<String>> = futures_util::stream::iter(files.iter().enumerate())
            .map(|(i, job)| async move {
                let temp = remote_temp_name(&job.remote, i);
                if whole[i] {
                    return Ok(temp);
                }
                sftp.open_with_flags_and_attributes(
                    temp.as_str(),
                    OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
                    FileAttributes {
                        permissions: Some(0o600),
                        ..FileAttributes::default()
                    },
                )
                .await
                .map_err(|e| sftp_problem(&job.remote, &e))?;
                // Only ours to remove once made (EXCLUDE: never someone else's file).
                res.remote_temp_added(&temp);
                Ok(temp)
            })
            .buffered(CONCURRENT)
            .collect()
            .await;
        let mut temps = Vec::with_capacity(files.len());
        for step in made {
            temps.push(self.absorb(step)?);
        }
        Ok(temps)
    }

    /// Renames a finished download's temporary file over its destination, with its
    /// final mode and (`-p`) times.
    pub(super) fn finish_download(&self, job: &FileJob, temp: &Path, umask: u32) -> Step<()> {
        let mode = if self.opts.preserve {
            job.mode
        } else {
            std::fs::metadata(&job.local)
                .ok()
                .filter(|m| m.is_file())
                .map_or((job.mode | 0o200) & !umask, |m| m.mode() & 0o7777)
        };
        let times = if self.opts.preserve { job.times } else { None };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(temp)
            .map_err(|e| local_problem(temp, &e))?;
        set_attributes(&file, Some(mode), times).map_err(|e| local_problem(&job.local, &e))?;
        drop(file);
        std::fs::rename(temp, &job.local).map_err(|e| local_problem(&job.local, &e))
    }
}

/// What finishing uploads shares: the live lanes and what was learnt of the server.
pub(super) struct UploadFinish<'a> {
    pub lanes: &'a [RawSftpSession],
    pub res: &'a Resources,
    pub preserve: bool,
    pub umask: tokio::sync::OnceCell<u32>,
}

impl UploadFinish<'_> {
    /// Finishes upload `i` on lane `i` (modulo the lanes), so that finishes spread over
    /// the lanes' servers, or else on the next lane that is still alive.
    pub(super) async fn finish(&self, i: usize, job: &FileJob, temp: &str) -> Step<()> {
        let mut last = None;
        for raw in from_lane(self.lanes, i) {
            match self.finish_on(raw, job, temp).await {
                Err(Problem::Fatal(f)) => last = Some(f),
                done => return done,
            }
        }
        Err(Problem::Fatal(last.unwrap_or_else(|| {
            SshError::Connection(format!(
                "{}: no session left to rename the upload into place",
                printable(&job.remote)
            ))
        })))
    }

    async fn finish_on(&self, raw: &RawSftpSession, job: &FileJob, temp: &str) -> Step<()> {
        let remote = job.remote.as_str();
        let mode = if self.preserve {
            job.mode
        } else {
            match raw.stat(remote).await {
                Ok(a) if a.attrs.file_type() == FileType::File => {
                    a.attrs.permissions.unwrap_or(0o644) & 0o7777
                }
                Ok(_) | Err(SftpError::Status(_)) => {
                    let umask = self
                        .umask
                        .get_or_init(|| remote_umask(raw, remote_dir(remote)))
                        .await;
                    job.mode & !umask
                }
                Err(e) => return Err(sftp_problem(remote, &e)),
            }
        };
        let attrs = FileAttributes {
            permissions: Some(mode),
            atime: job.times.filter(|_| self.preserve).map(|t| t.0),
            mtime: job.times.filter(|_| self.preserve).map(|t| t.1),
            ..FileAttributes::default()
        };
        raw.setstat(temp, attrs)
            .await
            .map_err(|e| sftp_problem(remote, &e))?;
        if self.res.posix_rename() {
            let done = raw
                .extended(POSIX_RENAME, rename_request(temp, remote))
                .await
                .and_then(status_ok);
            done.map_err(|e| sftp_problem(remote, &e))?;
            self.res.remote_temp_gone(temp);
            return Ok(());
        }
        self.replace(raw, temp, remote).await
    }

    /// Without `posix-rename`: removes the destination, then renames (see the module doc).
    async fn replace(&self, raw: &RawSftpSession, temp: &str, remote: &str) -> Step<()> {
        // From here on the temporary file may be the only copy: keep it whatever happens.
        self.res.remote_temp_gone(temp);
        match raw.remove(remote).await {
            Ok(_) => {}
            Err(SftpError::Status(s))
                if s.status_code == russh_sftp::protocol::StatusCode::NoSuchFile => {}
            Err(e) => {
                self.res.remote_temp_added(temp);
                return Err(sftp_problem(remote, &e));
            }
        }
        raw.rename(temp, remote).await.map(drop).map_err(|e| {
            Problem::Item(SshError::RemoteFile(format!(
                "{}: the old file was removed but the new one could not be renamed into \
                     place ({}); it is complete at {}",
                printable(remote),
                problem_text(&sftp_problem(remote, &e)),
                printable(temp)
            )))
        })
    }
}

/// Every lane once, starting with lane `i` (modulo their number).
fn from_lane<T>(lanes: &[T], i: usize) -> impl Iterator<Item = &T> {
    let (head, tail) = lanes.split_at(i % lanes.len().max(1));
    tail.iter().chain(head)
}

/// The SFTP extension for an atomic rename over an existing file.
pub(super) const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// The extension's request data: old path, new path (SSH strings).
fn rename_request(from: &str, to: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(8 + from.len() + to.len());
    for s in [from, to] {
        data.extend_from_slice(&(s.len() as u32).to_be_bytes());
        data.extend_from_slice(s.as_bytes());
    }
    data
}

fn status_ok(p: russh_sftp::protocol::Packet) -> Result<(), SftpError> {
    use russh_sftp::protocol::{Packet, StatusCode};
    match p {
        Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
        Packet::Status(s) => Err(SftpError::Status(s)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}

fn problem_text(p: &Problem) -> String {
    match p {
        Problem::Item(e) | Problem::Fatal(e) => e.to_string(),
    }
}

/// Removes the remote temporary files `temps` over `raw` (best effort).
pub(super) async fn remove_remote(raw: &RawSftpSession, temps: &[String]) {
    futures_util::stream::iter(temps)
        .for_each_concurrent(CONCURRENT, |t| async move {
            let _ = raw.remove(t.as_str()).await;
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishes_start_on_their_own_lane_and_fall_back_on_each_other_once() {
        let lanes = ["a", "b", "c"];
        let order = |i| from_lane(&lanes, i).copied().collect::<Vec<_>>();
        assert_eq!(order(0), ["a", "b", "c"]);
        assert_eq!(order(1), ["b", "c", "a"]);
        assert_eq!(order(5), ["c", "a", "b"]);
        assert!(from_lane::<u8>(&[], 3).next().is_none());
    }

    #[test]
    fn temporary_names_sit_beside_the_destination() {
        let pid = std::process::id();
        assert_eq!(
            remote_temp_name("/d/f.txt", 3),
            format!("/d/.f.txt.sallyport-{pid}-3.part")
        );
        assert_eq!(
            remote_temp_name("/f", 0),
            format!("/.f.sallyport-{pid}-0.part")
        );
        assert_eq!(
            remote_temp_name("f", 1),
            format!(".f.sallyport-{pid}-1.part")
        );
        let long = "é".repeat(120);
        let t = temp_name(Path::new(&format!("/d/{long}")), 7);
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.len() < 255 && name.starts_with(".é"), "{name}");
        assert_eq!(remote_dir("/d/e/f"), "/d/e");
        assert_eq!(remote_dir("/f"), "/");
        assert_eq!(remote_dir("f"), "");
    }

    /// Finishes an upload of `job` (its data already in `temp`) over `raw`.
    async fn finish_one(raw: RawSftpSession, posix: bool, preserve: bool, job: &FileJob) {
        let res = Resources::default();
        res.posix_rename
            .store(posix, std::sync::atomic::Ordering::Relaxed);
        let lanes = [raw];
        let up = UploadFinish {
            lanes: &lanes,
            res: &res,
            preserve,
            umask: tokio::sync::OnceCell::new(),
        };
        let temp = remote_temp_name(&job.remote, 0);
        let done = tokio::time::timeout(super::super::super::test_fixture::LIMIT, async {
            up.finish(0, job, &temp).await
        })
        .await
        .expect("bounded");
        assert!(done.is_ok(), "posix-rename {posix}");
    }

    #[tokio::test]
    async fn uploads_are_renamed_into_place_with_or_without_posix_rename() {
        use super::super::super::test_fixture as fx;
        use std::os::unix::fs::PermissionsExt;
        let dir = fx::TempDir::new("finish-upload");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        for posix in [true, false] {
            for (name, existing) in [("new.bin", false), ("old.bin", true)] {
                let remote = dir.path().join(format!("{posix}-{name}"));
                if existing {
                    std::fs::write(&remote, b"old").unwrap();
                    std::fs::set_permissions(&remote, std::fs::Permissions::from_mode(0o600))
                        .unwrap();
                }
                let job = FileJob {
                    remote: remote.to_str().unwrap().to_owned(),
                    local: PathBuf::from("/nonexistent"),
                    size: 3,
                    mode: 0o666,
                    times: None,
                };
                let temp = PathBuf::from(remote_temp_name(&job.remote, 0));
                std::fs::write(&temp, b"new").unwrap();
                std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
                let Some((raw, _server)) = fx::start_raw(dir.path()).await else {
                    return;
                };
                finish_one(raw, posix, false, &job).await;
                assert_eq!(std::fs::read(&remote).unwrap(), b"new");
                assert!(!temp.exists(), "renamed, not copied");
                // An existing file keeps its mode; a new one: 0666 minus sftp-server's 022.
                let want = if existing { 0o600 } else { 0o644 };
                assert_eq!(mode(&remote), want, "{name}, posix-rename {posix}");
            }
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().contains("sallyport"))
            .collect();
        assert!(left.is_empty(), "no probe or temporary file left: {left:?}");
    }

    #[test]
    fn the_rename_request_is_two_ssh_strings() {
        assert_eq!(
            rename_request("a", "bc"),
            b"\0\0\0\x01a\0\0\0\x02bc".to_vec()
        );
    }
}
