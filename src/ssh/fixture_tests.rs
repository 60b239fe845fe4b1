//! Test fixture: OpenSSH's real `sftp-server` as a child process, an [`SftpSession`] on
//! its stdio (and a second one for the [`Sftp`]'s listings) (optionally through a pipe that delays each direction), and temporary
//! directories that clean up after themselves. Also [`Files`], an in-memory SFTP server
//! that reads files and counts opens and closes, and [`delayed`] for any stream.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use russh_sftp::client::{Config, RawSftpSession, SftpSession};

use crate::ssh::transfer::Sftp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const SERVERS: [&str; 3] = [
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/sftp-server",
];

/// Every await in the tests is bounded by this.
pub(crate) const LIMIT: Duration = Duration::from_secs(120);

pub(crate) struct Server {
    pub sftp: Sftp,
    child: Child,
    lister: Child,
}

impl Server {
    /// Ends sftp-server, as a dropped connection would.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill sftp-server");
        self.lister.kill().await.expect("kill sftp-server");
    }
}

/// Starts sftp-server (umask 022) and a raw SFTP session on it (initialised). `None` if
/// this machine has no sftp-server (see [`start`]).
pub(crate) async fn start_raw(start: &Path) -> Option<(RawSftpSession, Child)> {
    let Some(program) = SERVERS.iter().find(|p| Path::new(p).exists()) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no sftp-server at {SERVERS:?}: install the Debian package openssh-sftp-server"
        );
        return None;
    };
    let mut child = Command::new(program)
        .args(["-u", "022", "-d"])
        .arg(start)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sftp-server");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let raw = RawSftpSession::new_with_config(
        tokio::io::join(stdout, stdin),
        crate::ssh::transfer::sftp_config(),
    );
    tokio::time::timeout(LIMIT, raw.init())
        .await
        .expect("SFTP init timed out")
        .expect("SFTP init");
    Some((raw, child))
}

/// Starts sftp-server (umask 022, start directory `start`) and an SFTP session on it with
/// `config`; `delay` is added to each direction. `None` (with the reason printed) if this
/// machine has no sftp-server.
pub(crate) async fn start(start: &Path, config: Config, delay: Option<Duration>) -> Option<Server> {
    let Some(program) = SERVERS.iter().find(|p| Path::new(p).exists()) else {
        // In CI a missing prerequisite is a failure, never a silent pass.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no sftp-server at {SERVERS:?}: install the Debian package openssh-sftp-server \
             (`bash .ci/install-deps`)"
        );
        eprintln!("skipped: no sftp-server at {SERVERS:?} (install openssh-sftp-server)");
        return None;
    };
    let spawn = || {
        Command::new(program)
            .args(["-u", "022", "-d"])
            .arg(start)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sftp-server")
    };
    let mut child = spawn();
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let lister_config = config.clone();
    let session = async {
        match delay {
            None => SftpSession::new_with_config(tokio::io::join(stdout, stdin), config).await,
            Some(d) => SftpSession::new_with_config(delayed(stdout, stdin, d), config).await,
        }
    };
    let session = tokio::time::timeout(LIMIT, session)
        .await
        .expect("SFTP init timed out")
        .expect("SFTP init");
    let mut lister = spawn();
    let stdin = lister.stdin.take().expect("stdin");
    let stdout = lister.stdout.take().expect("stdout");
    let raw = RawSftpSession::new_with_config(tokio::io::join(stdout, stdin), lister_config);
    tokio::time::timeout(LIMIT, raw.init())
        .await
        .expect("SFTP init timed out")
        .expect("SFTP init");
    Some(Server {
        sftp: Sftp::new(session, raw),
        child,
        lister,
    })
}

/// A stream to the server whose bytes each take `delay` to arrive, either way.
pub(crate) fn delayed<R, W>(
    from_server: R,
    to_server: W,
    delay: Duration,
) -> tokio::io::DuplexStream
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (client, near) = tokio::io::duplex(1 << 20);
    let (near_read, near_write) = tokio::io::split(near);
    tokio::spawn(pump(near_read, to_server, delay));
    tokio::spawn(pump(from_server, near_write, delay));
    client
}

async fn pump<R, W>(mut from: R, mut to: W, delay: Duration)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A fresh directory under the system temp dir, removed (with everything in it) on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("sallyport-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&path).expect("create temp dir");
        // Canonical, so paths compare with what sftp-server reports.
        TempDir(path.canonicalize().expect("canonicalize temp dir"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path as the remote side sees it (the server runs on this machine).
    pub fn remote(&self, rel: &str) -> String {
        let base = self.0.to_str().expect("UTF-8 temp path");
        if rel.is_empty() {
            base.to_owned()
        } else {
            format!("{base}/{rel}")
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        make_writable(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_writable(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for entry in rd.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&entry.path());
            }
        }
    }
}

/// This process's umask, found by creating a probe file (the umask is process-wide:
/// reading it with umask(2) would change it for a moment).
pub(crate) fn local_umask(dir: &Path) -> u32 {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(format!(".umask-probe-{}", uuid::Uuid::new_v4()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o777)
        .open(&probe)
        .expect("probe file");
    let mode = std::fs::metadata(&probe)
        .expect("probe")
        .permissions()
        .mode()
        & 0o777;
    std::fs::remove_file(&probe).expect("remove probe");
    !mode & 0o777
}

pub(crate) fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub(crate) fn make_dir(path: &Path, mode: u32) {
    std::fs::create_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Deterministic bytes (xorshift), fast enough for tens of MB.
pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a [`Files`] server saw: opens and closes, and the handles still open.
#[derive(Default)]
pub(crate) struct Seen {
    pub opens: usize,
    pub closes: usize,
    pub open: Vec<String>,
}

/// An SFTP server reading from files in memory, counting opens and closes. It answers a
/// read with at most `most` bytes, or (`empty`) with none, which no server should.
pub(crate) struct Files {
    files: std::collections::HashMap<String, Vec<u8>>,
    handles: std::collections::HashMap<String, String>,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    pub most: usize,
    pub empty: bool,
}

impl Files {
    /// Serving `files` (by path), reporting to `seen`; whole answers.
    pub(crate) fn new(
        files: std::collections::HashMap<String, Vec<u8>>,
        seen: &std::sync::Arc<std::sync::Mutex<Seen>>,
    ) -> Files {
        Files {
            files,
            handles: Default::default(),
            seen: seen.clone(),
            most: usize::MAX,
            empty: false,
        }
    }
}

impl russh_sftp::server::Handler for Files {
    type Error = russh_sftp::protocol::StatusCode;

    fn unimplemented(&self) -> Self::Error {
        Self::Error::OpUnsupported
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        _flags: russh_sftp::protocol::OpenFlags,
        _attrs: russh_sftp::protocol::FileAttributes,
    ) -> Result<russh_sftp::protocol::Handle, Self::Error> {
        if !self.files.contains_key(&filename) {
            return Err(Self::Error::NoSuchFile);
        }
        let mut seen = self.seen.lock().unwrap();
        seen.opens += 1;
        let handle = format!("h{}", seen.opens);
        seen.open.push(handle.clone());
        self.handles.insert(handle.clone(), filename);
        Ok(russh_sftp::protocol::Handle { id, handle })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<russh_sftp::protocol::Data, Self::Error> {
        let name = self.handles.get(&handle).ok_or(Self::Error::Failure)?;
        let file = &self.files[name];
        let from = (offset as usize).min(file.len());
        if from == file.len() {
            return Err(Self::Error::Eof);
        }
        let to = (from + (len as usize).min(self.most)).min(file.len());
        let data = if self.empty {
            Vec::new()
        } else {
            file[from..to].to_vec()
        };
        Ok(russh_sftp::protocol::Data { id, data })
    }

    async fn close(
        &mut self,
        id: u32,
        handle: String,
    ) -> Result<russh_sftp::protocol::Status, Self::Error> {
        self.handles.remove(&handle).ok_or(Self::Error::Failure)?;
        let mut seen = self.seen.lock().unwrap();
        seen.closes += 1;
        seen.open.retain(|h| *h != handle);
        Ok(russh_sftp::protocol::Status {
            id,
            status_code: Self::Error::Ok,
            error_message: String::new(),
            language_tag: "en-US".to_owned(),
        })
    }
}
