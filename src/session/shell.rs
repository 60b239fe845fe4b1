//! `sallyport shell`: a Session Manager shell (Standard_Stream with the default document,
//! or any document given with `--document`, e.g. `AWS-StartInteractiveCommand`).
//!
//! The local terminal is raw while the session runs ([`RawMode`], restored on every exit
//! path), so Ctrl-C, Ctrl-Z and Ctrl-\ reach the remote side as bytes. Without a terminal
//! on stdin, SIGINT, SIGTSTP and SIGQUIT are turned into those bytes instead, as the
//! plugin does. The size goes to the agent once the session is up and again on every
//! SIGWINCH (no polling). The service's channel_closed text is shown at the end.

use std::collections::BTreeMap;

use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

use super::SessionError;
use crate::aws::{SessionDocument, Ssm, StartOptions};
use crate::proto::client::ClientEvent;
use crate::proto::payload::SizeData;
use crate::transport::{Cx, Engine, Kind, LinkOptions, OutputId, Ready};

use super::lifecycle::{self, Signals, StopSignal};
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

/// Runs the shell until the remote side ends it; returns the exit code.
///
/// Stop signals are listened for from the start: one that comes while the session is set
/// up (the terminal not yet raw) drops the set-up, whose guards end a session StartSession
/// started (in the background: the caller awaits [`Ssm::await_background`] before exiting).
pub async fn run(ssm: &Ssm, req: &ShellRequest) -> Result<u8, SessionError> {
    let document = SessionDocument::Named {
        name: req.document.clone(),
        parameters: req.parameters.clone(),
    };
    let mut signals = Signals::new();
    let mut opened = tokio::select! {
        opened = lifecycle::open(ssm, &req.target, &document, &req.start, &req.link) => opened?,
        sig = signals.recv() => return Err(sig.failure()),
    };
    let raw = match RawMode::enter() {
        Ok(r) => r,
        Err(e) => {
            opened.link.close().await;
            lifecycle::terminate(ssm, &opened.started.session_id).await;
            return Err(SessionError::io("cannot put the terminal in raw mode", e));
        }
    };
    let result = drive(&mut opened, raw.is_some(), signals).await;
    // Back to cooked mode before anything else is printed.
    drop(raw);
    opened.link.close().await;
    lifecycle::terminate(ssm, &opened.started.session_id).await;
    let output = result?;
    if !output.is_empty() {
        // The service's closing text, after the terminal is back in cooked mode: as text.
        let output = crate::text::shown(output.trim());
        eprintln!("\nsallyport: {}: {output}", opened.started.session_id);
    }
    Ok(0)
}

/// Carries the session; returns the service's closing text.
async fn drive(
    opened: &mut lifecycle::Opened,
    raw: bool,
    signals: Signals,
) -> Result<String, SessionError> {
    let options = lifecycle::engine_options(opened);
    let mut engine = Engine::new(&mut opened.link, &mut opened.session, options);
    let mut kind = Shell {
        stdout: engine.output(tokio::io::stdout()),
        raw,
        stdin: tokio::io::stdin(),
        buf: vec![0u8; READ_CHUNK],
        stdin_open: true,
        signals,
        winch: signal(SignalKind::window_change()).ok(),
        tstp: signal(SignalKind::from_raw(rustix::process::Signal::TSTP.as_raw())).ok(),
        last_size: None,
    };
    engine.run(&mut kind).await
}

/// The shell session kind: a raw terminal's keys up, the remote pty's output down.
struct Shell {
    stdout: OutputId,
    /// The local terminal is raw: Ctrl-C and friends arrive as bytes, not signals.
    raw: bool,
    stdin: tokio::io::Stdin,
    buf: Vec<u8>,
    stdin_open: bool,
    signals: Signals,
    winch: Option<tokio::signal::unix::Signal>,
    tstp: Option<tokio::signal::unix::Signal>,
    last_size: Option<SizeData>,
}

enum ShellLocal {
    Read(std::io::Result<usize>),
    Resized,
    Suspend,
    Stop(StopSignal),
}

impl Kind for Shell {
    type Done = String;
    type Error = SessionError;
    type Local = ShellLocal;

    fn on_event(
        &mut self,
        event: ClientEvent,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<String>, SessionError> {
        match event {
            ClientEvent::Data(bytes) | ClientEvent::StdErr(bytes) => cx.write(self.stdout, &bytes),
            ClientEvent::Established {
                customer_message, ..
            } => {
                if !customer_message.is_empty() {
                    cx.write(self.stdout, format!("{customer_message}\r\n").as_bytes());
                }
                let size = window_size().unwrap_or(FALLBACK_SIZE);
                cx.send_size(size)?;
                self.last_size = Some(size);
            }
            ClientEvent::Closed { output } => return Ok(Some(output)),
            ClientEvent::ExitCode(code) => tracing::debug!(code, "the remote command exited"),
            ClientEvent::PortConnectError => {}
        }
        Ok(None)
    }

    fn local(&mut self, ready: Ready) -> impl Future<Output = ShellLocal> {
        let can_read = self.stdin_open && ready.can_send;
        let Shell {
            stdin,
            buf,
            signals,
            winch,
            tstp,
            ..
        } = self;
        async move {
            tokio::select! {
                () = lifecycle::recv_signal(winch) => ShellLocal::Resized,
                () = lifecycle::recv_signal(tstp) => ShellLocal::Suspend,
                sig = signals.recv() => ShellLocal::Stop(sig),
                read = stdin.read(buf), if can_read => ShellLocal::Read(read),
            }
        }
    }

    fn on_local(
        &mut self,
        local: ShellLocal,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<String>, SessionError> {
        let established = cx.session().is_established();
        match local {
            ShellLocal::Resized => {
                let size = window_size().unwrap_or(FALLBACK_SIZE);
                if established && self.last_size != Some(size) {
                    cx.send_size(size)?;
                    self.last_size = Some(size);
                }
            }
            ShellLocal::Suspend => {
                if established {
                    cx.send_data(&[0x1a])?;
                }
            }
            ShellLocal::Stop(sig) => {
                let byte = match sig {
                    StopSignal::Interrupt => 0x03,
                    StopSignal::Quit => 0x1c,
                    other => return Err(other.failure()),
                };
                if established {
                    cx.send_data(&[byte])?;
                } else if !self.raw {
                    return Err(sig.failure());
                }
            }
            ShellLocal::Read(Ok(0)) => self.stdin_open = false,
            ShellLocal::Read(Ok(n)) => {
                let data = self.buf.get(..n).unwrap_or_default();
                // The plugin's quirk: a lone newline is sent as a carriage return.
                let data: &[u8] = if data == b"\n" { b"\r" } else { data };
                cx.send_data(data)?;
            }
            ShellLocal::Read(Err(e)) => {
                return Err(SessionError::io("reading the terminal failed", e));
            }
        }
        Ok(None)
    }

    fn on_output_error(
        &mut self,
        _output: OutputId,
        e: std::io::Error,
    ) -> Result<Option<String>, SessionError> {
        Err(SessionError::io("writing the terminal failed", e))
    }
}
