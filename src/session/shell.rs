//! `sallyport shell`: a Session Manager shell (Standard_Stream with the default document,
//! or any document given with `--document`, e.g. `AWS-StartInteractiveCommand`).
//!
//! The local terminal is raw while the session runs ([`RawMode`], restored on every exit
//! path), so Ctrl-C, Ctrl-Z and Ctrl-\ reach the remote side as bytes. Without a terminal
//! on stdin, SIGINT, SIGTSTP and SIGQUIT are turned into those bytes instead, as the
//! plugin does. The size goes to the agent once the session is up and again on every
//! SIGWINCH (no polling). The service's channel_closed text is shown at the end.

use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use crate::aws::{SessionDocument, Ssm, StartOptions};
use crate::error::{ExitCode, Failure};
use crate::proto::client::ClientEvent;
use crate::transport::{DriveError, LinkOptions};

use super::lifecycle::{self, Signals, StopSignal, now, sleep_opt};
use super::terminal::{FALLBACK_SIZE, RawMode, window_size};

/// Bytes read from stdin per message, as the plugin reads them.
const READ_CHUNK: usize = 1024;

pub struct ShellRequest {
    pub target: String,
    /// `None`: the service's default shell document (SSM-SessionManagerRunShell).
    pub document: Option<String>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub start: StartOptions,
    pub link: LinkOptions,
}

/// `k=v` for `--parameter`.
pub fn parse_parameter(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// Runs the shell until the remote side ends it; returns the exit code.
pub async fn run(ssm: &Ssm, req: &ShellRequest) -> Result<u8, Failure> {
    let document = SessionDocument::Named {
        name: req.document.clone(),
        parameters: req.parameters.clone(),
    };
    let mut opened = lifecycle::open(ssm, &req.target, &document, &req.start, &req.link).await?;
    let raw = match RawMode::enter() {
        Ok(r) => r,
        Err(e) => {
            opened.link.close().await;
            lifecycle::terminate(ssm, &opened.started.session_id).await;
            return Err(Failure::new(
                ExitCode::LocalIo,
                format!("cannot put the terminal in raw mode: {e}"),
            ));
        }
    };
    let result = drive(&mut opened, raw.is_some()).await;
    // Back to cooked mode before anything else is printed.
    drop(raw);
    opened.link.close().await;
    lifecycle::terminate(ssm, &opened.started.session_id).await;
    let output = result?;
    if !output.is_empty() {
        eprintln!("\nsallyport: {}: {output}", opened.started.session_id);
    }
    Ok(0)
}

/// Carries the session; returns the service's closing text.
async fn drive(opened: &mut lifecycle::Opened, raw: bool) -> Result<String, Failure> {
    let session = &mut opened.session;
    let link = &mut opened.link;
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut stdin_open = true;
    let mut signals = Signals::new();
    let mut winch = signal(SignalKind::window_change()).ok();
    let mut tstp = signal(SignalKind::from_raw(rustix::process::Signal::TSTP.as_raw())).ok();
    let mut last_size = None;
    let handshake_deadline = tokio::time::Instant::now() + lifecycle::HANDSHAKE_TIMEOUT;
    loop {
        lifecycle::answer_data_key(&*opened.data_keys, session, link).await?;
        let mut wrote = false;
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Data(bytes) | ClientEvent::StdErr(bytes) => {
                    write_out(&mut stdout, &bytes).await?;
                    wrote = true;
                }
                ClientEvent::Established {
                    customer_message, ..
                } => {
                    if !customer_message.is_empty() {
                        let line = format!("{customer_message}\r\n");
                        write_out(&mut stdout, line.as_bytes()).await?;
                    }
                    let size = window_size().unwrap_or(FALLBACK_SIZE);
                    let _ = session.send_size(now(), size);
                    last_size = Some(size);
                }
                ClientEvent::Closed { output } => {
                    let _ = stdout.flush().await;
                    return Ok(output);
                }
                ClientEvent::ExitCode(code) => {
                    tracing::debug!(code, "the remote command exited");
                }
                ClientEvent::PortConnectError => {}
            }
        }
        if wrote {
            let _ = stdout.flush().await;
        }
        lifecycle::flush(session, link);
        let timer = session.poll_timeout().map(tokio::time::Instant::from_std);
        let established = session.is_established();
        let can_read = stdin_open && established && session.window_available() > 0;
        tokio::select! {
            biased;
            event = link.recv() => lifecycle::on_link_event(session, event)
                .map_err(|e| Failure::drive(e, "", 0))?,
            _ = sleep_opt(timer) => session
                .handle_timeout(now())
                .map_err(lifecycle::protocol_failure)?,
            _ = tokio::time::sleep_until(handshake_deadline), if !established => {
                return Err(Failure::drive(
                    DriveError::HandshakeTimeout(lifecycle::HANDSHAKE_TIMEOUT), "", 0));
            }
            _ = lifecycle::recv_signal(&mut winch) => {
                let size = window_size().unwrap_or(FALLBACK_SIZE);
                if established && last_size != Some(size) {
                    let _ = session.send_size(now(), size);
                    last_size = Some(size);
                }
            }
            _ = lifecycle::recv_signal(&mut tstp) => {
                if established {
                    let _ = session.send_data(now(), &[0x1a]);
                }
            }
            sig = signals.recv() => {
                let byte = match sig {
                    StopSignal::Interrupt => 0x03,
                    StopSignal::Quit => 0x1c,
                    other => return Err(other.failure()),
                };
                if established {
                    let _ = session.send_data(now(), &[byte]);
                } else if !raw {
                    return Err(sig.failure());
                }
            }
            read = stdin.read(&mut buf), if can_read => match read {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    // The plugin's quirk: a lone newline is sent as a carriage return.
                    let data: &[u8] = if n == 1 && buf[0] == b'\n' { b"\r" } else { &buf[..n] };
                    let _ = session.send_data(now(), data);
                }
                Err(e) => {
                    return Err(Failure::new(ExitCode::LocalIo, format!("reading the terminal failed: {e}")));
                }
            },
        }
    }
}

async fn write_out(out: &mut tokio::io::Stdout, bytes: &[u8]) -> Result<(), Failure> {
    out.write_all(bytes).await.map_err(|e| {
        Failure::new(
            ExitCode::LocalIo,
            format!("writing the terminal failed: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_name_equals_value() {
        assert_eq!(
            parse_parameter("command=top -b").unwrap(),
            ("command".into(), "top -b".into())
        );
        assert_eq!(parse_parameter("a=").unwrap(), ("a".into(), String::new()));
        assert!(parse_parameter("=x").is_err());
        assert!(parse_parameter("novalue").is_err());
    }
}
