//! `--verify`: `sha256sum` on the instance, over an exec channel of any open connection,
//! against the local copy's SHA-256.

use std::io;

use crate::ssh::SshError;
use crate::ssh::client::Connection;
use crate::ssh::transfer::parallel::{FileJob, Resources};
use crate::ssh::transfer::{Problem, Step, local_problem, printable};

/// Most bytes of `sha256sum` output read.
const VERIFY_OUTPUT_CAP: usize = 64 * 1024;

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Compares the SHA-256 of the local copy with `sha256sum` run on the instance.
pub(super) async fn verify(res: &Resources, job: &FileJob) -> Step<()> {
    let local = job.local.clone();
    let mine = tokio::task::spawn_blocking(move || -> io::Result<String> {
        use sha2::{Digest, Sha256};
        let mut f = std::fs::File::open(&local)?;
        let mut h = Sha256::new();
        io::copy(&mut f, &mut h)?;
        Ok(format!("{:x}", h.finalize()))
    })
    .await
    .map_err(|e| Problem::Item(SshError::Internal(e.to_string())))?
    .map_err(|e| local_problem(&job.local, &e))?;
    let theirs = remote_sha256(res, &job.remote).await?;
    if theirs != mine {
        return Err(Problem::Item(SshError::RemoteFile(format!(
            "{}: --verify failed: SHA-256 on the instance is {theirs}, the local copy's \
                 {mine} (was the file changed during the copy?)",
            printable(&job.remote)
        ))));
    }
    Ok(())
}

async fn remote_sha256(res: &Resources, remote: &str) -> Step<String> {
    let pool = res.pool.lock().await;
    let mut last = None;
    for conn in pool.iter() {
        match sha256_on(conn, remote).await {
            Ok(Some(h)) => return Ok(h),
            Ok(None) => {
                return Err(Problem::Item(SshError::RemoteFile(format!(
                    "{}: --verify: sha256sum failed on the instance (is coreutils' \
                         sha256sum installed?)",
                    printable(remote)
                ))));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Problem::Fatal(SshError::Connection(format!(
        "--verify: no connection to the instance could run sha256sum: {}",
        last.unwrap_or_else(|| "none open".to_owned())
    ))))
}

/// The hash `sha256sum` prints for `remote`, `None` if it failed; `Err` if the connection
/// could not run it.
async fn sha256_on(conn: &Connection, remote: &str) -> Result<Option<String>, String> {
    let mut ch = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| e.to_string())?;
    ch.exec(true, format!("sha256sum -- {}", shell_quote(remote)))
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut status = None;
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } if out.len() < VERIFY_OUTPUT_CAP => {
                out.extend_from_slice(&data);
            }
            russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    if status != Some(0) {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out);
    // sha256sum prefixes the line with '\' when it escaped the name: skip it.
    let hash = text.trim_start_matches('\\').split_whitespace().next();
    Ok(hash
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase))
}
