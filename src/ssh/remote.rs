//! `sallyport ssh`: a shell on a pty (raw mode, resize, `~.`), or one command with its
//! stdout, stderr and exit status kept apart, over an authenticated [`Connection`].

use std::sync::Arc;
use tokio::sync::Notify;

use russh::ChannelMsg;
use russh::client::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use crate::session::lifecycle::{Signals, recv_signal};
use crate::session::terminal::{FALLBACK_SIZE, RawMode, window_size};
use crate::ssh::SshError;

use super::client::Connection;

/// What OpenSSH's ssh exits with when the remote side gives no status (or a signal).
pub const NO_STATUS: u8 = 255;

const READ_CHUNK: usize = 32 * 1024;

/// Runs `command`, or a login shell when `command` is `None` (on a pty when stdin is a
/// terminal); the remote exit status is the result. `stdin_null` is ssh's `-n`; `signals`,
/// listening since before the connection was made, end it early.
pub async fn run(
    mut conn: Connection,
    command: Option<String>,
    stdin_null: bool,
    signals: Signals,
) -> Result<u8, SshError> {
    let result = session(&mut conn, command, stdin_null, signals).await;
    let result = match result {
        Err(e) if e.is_link_problem() => Err(conn.link_failure().await.unwrap_or(e)),
        other => other,
    };
    conn.close().await;
    result
}

async fn session(
    conn: &mut Connection,
    command: Option<String>,
    stdin_null: bool,
    mut signals: Signals,
) -> Result<u8, SshError> {
    // As OpenSSH: a pty for a shell when stdin is a terminal, none for a command or
    // piped input (`echo ls | sallyport ssh host` runs a shell reading a pipe).
    let asked = command.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdin());
    // A server that never answers must not make a stop signal wait: the set-up races it.
    let Started {
        channel,
        early,
        tty,
    } = tokio::select! {
        started = start(conn, command.as_deref(), asked) => started?,
        sig = signals.recv() => return Err(sig.failure().into()),
    };
    let raw = if tty {
        RawMode::enter()
            .map_err(|e| SshError::LocalIo(format!("cannot put the terminal in raw mode: {e}")))?
    } else {
        None
    };
    let (reader, writer) = channel.split();
    let writer = Arc::new(writer);
    let escaped = Arc::new(Notify::new());
    let input = if stdin_null {
        let w = writer.clone();
        let _ = w.eof().await;
        None
    } else {
        let task = pump_stdin(writer.clone(), raw.is_some(), escaped.clone());
        Some(tokio::spawn(task))
    };
    let status = tokio::select! {
        s = pump_output(reader, writer.clone(), tty, signals, early) => s,
        // `~.`: the connection is dropped at once, with ssh's status for that.
        _ = escaped.notified() => Ok(NO_STATUS),
    };
    if let Some(task) = input {
        task.abort();
    }
    drop(raw);
    status
}

/// The most output kept while waiting for the server to answer the requests (a server
/// sends none before it has started the command).
const MAX_EARLY_OUTPUT: usize = 1024 * 1024;

/// A channel the command or shell started on.
struct Started {
    channel: russh::Channel<Msg>,
    /// What came before the server's answers, for the output.
    early: Vec<ChannelMsg>,
    /// A pty was granted (the terminal goes raw).
    tty: bool,
}

/// Opens the channel, asks for a pty (`tty`), the locale and the command (or a shell),
/// and waits for the server's answers: a refused pty is said and the shell runs without
/// one, the terminal left as it is (as OpenSSH does); a refused command or shell is an
/// error (the server keeps the channel open, so not waiting would wait for its output
/// forever).
async fn start(conn: &Connection, command: Option<&str>, tty: bool) -> Result<Started, SshError> {
    let lost = |e: russh::Error| SshError::Connection(format!("the SSH connection failed: {e}"));
    let mut channel = conn.handle.channel_open_session().await.map_err(lost)?;
    if tty {
        let size = window_size().unwrap_or(FALLBACK_SIZE);
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".to_owned());
        channel
            .request_pty(true, &term, size.cols, size.rows, 0, 0, &[])
            .await
            .map_err(lost)?;
    }
    // LANG and friends, as OpenSSH sends them by default (sshd accepts what AcceptEnv lists).
    for var in ["LANG", "LC_ALL", "LC_CTYPE"] {
        if let Ok(v) = std::env::var(var) {
            let _ = channel.set_env(false, var, v).await;
        }
    }
    match command {
        Some(c) => channel.exec(true, c.as_bytes()).await.map_err(lost)?,
        None => channel.request_shell(true).await.map_err(lost)?,
    }
    let what = if command.is_some() {
        "run the command"
    } else {
        "start a shell"
    };
    // The answers come in the order asked: the pty's first, when asked.
    let mut pty_answer = tty;
    let mut granted = tty;
    let mut early = Vec::new();
    let mut early_bytes = 0usize;
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) if pty_answer => pty_answer = false,
            Some(ChannelMsg::Success) => {
                return Ok(Started {
                    channel,
                    early,
                    tty: granted,
                });
            }
            Some(ChannelMsg::Failure) if pty_answer => {
                pty_answer = false;
                granted = false;
                eprintln!(
                    "sallyport: the server refused a terminal (pty); the shell runs without one"
                );
            }
            Some(ChannelMsg::Failure) => {
                return Err(SshError::Refused(format!(
                    "the server refused to {what} (its sshd_config, a ForceCommand or a \
                     login restriction may say why)"
                )));
            }
            Some(ChannelMsg::Close) | None => {
                return Err(SshError::Connection(format!(
                    "the server closed the channel instead of answering; it did not {what}"
                )));
            }
            Some(msg @ (ChannelMsg::Data { .. } | ChannelMsg::ExtendedData { .. })) => {
                let n = match &msg {
                    ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
                    _ => 0,
                };
                early_bytes = early_bytes.saturating_add(n);
                if early_bytes > MAX_EARLY_OUTPUT {
                    return Err(SshError::Connection(format!(
                        "the server sent more than {} KiB before answering whether it would \
                         {what}",
                        MAX_EARLY_OUTPUT / 1024
                    )));
                }
                early.push(msg);
            }
            Some(
                msg @ (ChannelMsg::Eof
                | ChannelMsg::ExitStatus { .. }
                | ChannelMsg::ExitSignal { .. }),
            ) => {
                early.push(msg);
            }
            // Window adjustments and the like.
            Some(_) => {}
        }
    }
}

/// Local input to the channel; in raw mode through the `~` escape filter. Ends the channel
/// input at EOF.
async fn pump_stdin(writer: Arc<ChannelWriteHalf<Msg>>, escapes: bool, escaped: Arc<Notify>) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut filter = EscapeFilter::default();
    loop {
        let n = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (bytes, action) = if escapes {
            filter.feed(&buf[..n])
        } else {
            (buf[..n].to_vec(), None)
        };
        if !bytes.is_empty() && writer.data_bytes(bytes).await.is_err() {
            return;
        }
        match action {
            Some(Escape::Disconnect) => {
                let mut err = tokio::io::stderr();
                let _ = err.write_all(b"\r\nConnection closed (~.).\r\n").await;
                escaped.notify_one();
                return;
            }
            Some(Escape::Help) => {
                let mut err = tokio::io::stderr();
                let _ = err
                    .write_all(
                        b"\r\nSupported escape sequences:\r\n ~.  - terminate connection\r\n \
                          ~?  - this message\r\n ~~  - send the escape character by typing it \
                          twice\r\n(Note that escapes are only recognized immediately after \
                          newline.)\r\n",
                    )
                    .await;
            }
            None => {}
        }
    }
    let _ = writer.eof().await;
}

/// Remote output to stdout/stderr until the channel closes; window changes and signals
/// meanwhile. The exit status is the result.
async fn pump_output(
    mut reader: ChannelReadHalf,
    writer: Arc<ChannelWriteHalf<Msg>>,
    pty: bool,
    mut signals: Signals,
    early: Vec<ChannelMsg>,
) -> Result<u8, SshError> {
    let mut out = Output {
        stdout: tokio::io::stdout(),
        stderr: tokio::io::stderr(),
        status: None,
    };
    let mut winch = signal(SignalKind::window_change()).ok();
    let mut last_size = window_size();
    for msg in early {
        out.show(Some(msg)).await?;
    }
    loop {
        tokio::select! {
            msg = reader.wait() => if out.show(msg).await? {
                break;
            },
            _ = recv_signal(&mut winch), if pty => {
                let size = window_size();
                if size != last_size {
                    let s = size.unwrap_or(FALLBACK_SIZE);
                    let _ = writer.window_change(s.cols, s.rows, 0, 0).await;
                    last_size = size;
                }
            }
            sig = signals.recv() => {
                // In raw mode keys arrive as bytes; a signal here came from outside.
                return Err(sig.failure().into());
            }
        }
    }
    let _ = out.stdout.flush().await;
    let _ = out.stderr.flush().await;
    match out.status {
        Some(s) => Ok(s),
        None => Err(SshError::Connection(
            "the SSH channel closed without an exit status".to_owned(),
        )),
    }
}

/// Where the remote output goes, and the exit status once told.
struct Output {
    stdout: tokio::io::Stdout,
    stderr: tokio::io::Stderr,
    status: Option<u8>,
}

impl Output {
    /// Shows one message from the channel; `true` when the channel closed.
    async fn show(&mut self, msg: Option<ChannelMsg>) -> Result<bool, SshError> {
        let local =
            |e: std::io::Error| SshError::LocalIo(format!("writing the output failed: {e}"));
        match msg {
            Some(ChannelMsg::Data { data }) => {
                self.stdout.write_all(&data).await.map_err(local)?;
                self.stdout.flush().await.map_err(local)?;
            }
            Some(ChannelMsg::ExtendedData { data, .. }) => {
                self.stderr.write_all(&data).await.map_err(local)?;
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                self.status = Some((exit_status & 0xff) as u8);
            }
            Some(ChannelMsg::ExitSignal {
                signal_name,
                error_message,
                ..
            }) => {
                // The server's words, shown as text (no terminal escapes).
                let detail = if error_message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", crate::text::shown_max(&error_message, 512))
                };
                eprintln!(
                    "sallyport: the remote command was killed by signal {signal_name:?}{detail}"
                );
                self.status = Some(NO_STATUS);
            }
            Some(ChannelMsg::Close) | None => return Ok(true),
            Some(_) => {}
        }
        Ok(false)
    }
}

/// An escape typed after a newline, as OpenSSH's `~` sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// `~.`: close the connection.
    Disconnect,
    /// `~?`: list the escapes.
    Help,
}

/// OpenSSH's escape rule: `~` right after a newline (or at the start) is held; the next
/// byte decides: `.` disconnects, `?` shows help, `~` sends one `~`, anything else sends
/// both.
#[derive(Debug, Clone)]
pub struct EscapeFilter {
    at_line_start: bool,
    pending: bool,
}

impl Default for EscapeFilter {
    fn default() -> Self {
        EscapeFilter {
            at_line_start: true,
            pending: false,
        }
    }
}

impl EscapeFilter {
    /// The bytes to send, and the first escape seen (input after it is dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, Option<Escape>) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    b'.' => return (out, Some(Escape::Disconnect)),
                    b'?' => {
                        self.at_line_start = true;
                        return (out, Some(Escape::Help));
                    }
                    b'~' => {
                        out.push(b'~');
                        self.at_line_start = false;
                        continue;
                    }
                    _ => out.push(b'~'),
                }
            } else if self.at_line_start && b == b'~' {
                self.pending = true;
                continue;
            }
            out.push(b);
            self.at_line_start = b == b'\r' || b == b'\n';
        }
        (out, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_only_after_a_newline() {
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(b"~."), (vec![], Some(Escape::Disconnect)));
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(b"a~.b"), (b"a~.b".to_vec(), None));
        assert_eq!(f.feed(b"\r~"), (b"\r".to_vec(), None), "held");
        assert_eq!(f.feed(b"."), (vec![], Some(Escape::Disconnect)));
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(b"~~x"), (b"~x".to_vec(), None));
        assert_eq!(f.feed(b"\n~x"), (b"\n~x".to_vec(), None));
        assert_eq!(f.feed(b"\n~?"), (b"\n".to_vec(), Some(Escape::Help)));
        assert_eq!(
            f.feed(b"~."),
            (vec![], Some(Escape::Disconnect)),
            "after help"
        );
    }
}
