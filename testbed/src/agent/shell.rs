//! The agent's shell plugins (docs/protocol.md §8): `SSM-SessionManagerRunShell`
//! (Standard_Stream: `sh`) and `AWS-StartInteractiveCommand` (InteractiveCommands:
//! `sh -c COMMAND`), on a real pty, as the testbed's own user (this machine plays the
//! instance). Without KMS there is no handshake: the agent just starts streaming (§5.1).
//!
//! As on the agent: `TERM=xterm-256color`, `LANG=C.UTF-8` if unset; the pty writer waits
//! 1 s before its first read; output is read at most `chunk_size` bytes at a time, an
//! incomplete UTF-8 sequence at the end held back for the next message, each message
//! followed by a `pace` sleep; Size payloads resize the pty; when the shell exits the
//! outgoing buffer is drained and the session ends (Terminating -> channel_closed).
//! Keystrokes are written to the pty before the next client frame is taken and
//! acknowledged after the write, at `--instance-write-rate` if set ([`crate::agent::write_rate`]).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::channel::AgentEvent;
use crate::agent::payloads::{PayloadFlag, PayloadType, SizeData};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::{Notify, mpsc};

use crate::agent::write_rate::{InstanceRate, write_instance};
use crate::agent::{
    AgentIo, AgentOut, AgentSettings, Shared, feed_held, finish, next_timer, on_timer,
    send_data_now, sleep_opt,
};
use crate::world::state::SessionRecord;

/// The agent's pty writer sleeps this long before its first read.
const FIRST_READ_DELAY: Duration = Duration::from_secs(1);
/// After the shell exits, how long its last output may take to come out of the pty
/// (normally the pty reports EOF at once; something the shell left running may keep it
/// open). Counts the first-read delay, since nothing is read before it.
const EXIT_GRACE: Duration = Duration::from_millis(1500);

/// The pty master, as a non-blocking reader and writer (tokio's pipe types work on any
/// pollable descriptor) and a descriptor for window-size changes.
struct Pty {
    reader: pipe::Receiver,
    writer: pipe::Sender,
    control: OwnedFd,
}

pub async fn run(
    session: Arc<SessionRecord>,
    settings: AgentSettings,
    mut io: AgentIo,
) -> anyhow::Result<()> {
    let ch = crate::agent::new_channel(&settings);
    let command = (session.document == "AWS-StartInteractiveCommand")
        .then(|| crate::agent::exec::command_parameter(&session));
    // Shells have no handshake unless KMS encryption is on (docs/protocol.md §5.1).
    if let Some(kms) = crate::agent::kms_request(&session, &io) {
        let session_type = if command.is_some() {
            "InteractiveCommands"
        } else {
            "Standard_Stream"
        };
        crate::agent::handshake(
            &ch,
            &mut io,
            &settings,
            &session.instance.agent_version,
            session_type,
            serde_json::Value::Null,
            Some(kms),
        )
        .await?;
    }
    let (
        Pty {
            reader,
            mut writer,
            control,
        },
        mut child,
    ) = match spawn_on_pty(command.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            let text = format!("Unable to start shell: {e}\r\n");
            send_data_now(&ch, &io.to_client, text.as_bytes());
            finish(&ch, &mut io, String::new()).await;
            return Ok(());
        }
    };
    let sent = Arc::new(Notify::new());
    let (eof_tx, mut eof_rx) = mpsc::channel::<()>(1);
    let pump = tokio::spawn(pump(
        reader,
        ch.clone(),
        io.to_client.clone(),
        settings.clone(),
        sent.clone(),
        eof_tx,
    ));
    let mut exited_at: Option<tokio::time::Instant> = None;
    let rate = InstanceRate::new(settings.instance_write_rate);
    let terminated = loop {
        tokio::select! {
            frame = io.from_client.recv() => {
                let Some(frame) = frame else { break true };
                let (events, replies) = feed_held(&ch, &frame);
                let mut pty = PtyInput { writer: &mut writer, control: &control, rate: &rate };
                let ended = apply_input(events, &mut pty, &ch, &io).await;
                replies.send(&io.to_client);
                if ended {
                    break true;
                }
            }
            _ = sleep_opt(next_timer(&ch)) => on_timer(&ch, &io.to_client),
            _ = sent.notified() => {}
            _ = eof_rx.recv() => break false,
            _ = child.wait(), if exited_at.is_none() => {
                exited_at = Some(tokio::time::Instant::now());
            }
            _ = sleep_opt(exited_at.map(|t| t + EXIT_GRACE)) => break false,
        }
    };
    pump.abort();
    let _ = child.kill().await;
    if terminated {
        let _ = io.to_client.send(AgentOut::Close {
            output: String::new(),
        });
    } else {
        finish(&ch, &mut io, String::new()).await;
    }
    Ok(())
}

/// Starts `sh` (or `sh -c command`) as the session leader of a new pty.
fn spawn_on_pty(command: Option<&str>) -> std::io::Result<(Pty, Child)> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave: OwnedFd = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    tcsetwinsize(
        &master,
        Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    let slave = File::from(slave);
    // `setsid --ctty` makes the pty the shell's controlling terminal (job control,
    // Ctrl-C as SIGINT) without unsafe pre-exec code here.
    let mut cmd = super::child::with_default_signals("setsid");
    cmd.arg("--ctty").arg("sh");
    if let Some(c) = command {
        cmd.arg("-c").arg(c);
    }
    cmd.env("TERM", "xterm-256color");
    if std::env::var_os("LANG").is_none() {
        cmd.env("LANG", "C.UTF-8");
    }
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave))
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let flags = fcntl_getfl(&master)?;
    fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;
    let master = File::from(master);
    let pty = Pty {
        reader: pipe::Receiver::from_file_unchecked(master.try_clone()?)?,
        writer: pipe::Sender::from_file_unchecked(master.try_clone()?)?,
        control: master.into(),
    };
    Ok((pty, child))
}

/// Where client input goes.
struct PtyInput<'a> {
    writer: &'a mut pipe::Sender,
    control: &'a OwnedFd,
    rate: &'a InstanceRate,
}

/// Keystrokes to the pty, Size to its window size; true when the client ends the session.
/// The caller acknowledges after this (the agent acks once its handler is done; a frame
/// that also released buffered messages is acked after those too, a small difference).
async fn apply_input(
    events: Vec<AgentEvent>,
    pty: &mut PtyInput<'_>,
    ch: &Shared,
    io: &AgentIo,
) -> bool {
    let control = pty.control;
    for ev in events {
        let AgentEvent::Message(m) = ev else {
            continue;
        };
        match PayloadType::from_u32(m.payload_type) {
            Some(PayloadType::Output)
                if write_instance(pty.writer, &m.payload, pty.rate, ch, &io.to_client)
                    .await
                    .is_err() =>
            {
                return true;
            }
            Some(PayloadType::Size) => match serde_json::from_slice::<SizeData>(&m.payload) {
                Ok(size) => {
                    let ws = Winsize {
                        ws_row: size.rows.min(u16::MAX as u32) as u16,
                        ws_col: size.cols.min(u16::MAX as u32) as u16,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    if let Err(e) = tcsetwinsize(control, ws) {
                        tracing::debug!("agent: resize failed: {e}");
                    }
                }
                Err(e) => tracing::debug!("agent: bad size payload: {e}"),
            },
            Some(PayloadType::Flag)
                if PayloadFlag::decode(&m.payload) == Some(PayloadFlag::TerminateSession) =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// How many bytes at the end of `data` are an incomplete UTF-8 sequence (0-3).
pub fn incomplete_utf8_tail(data: &[u8]) -> usize {
    for back in 1..=3.min(data.len()) {
        let b = data[data.len() - back];
        if b & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let need = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return 0,
        };
        return if back < need { back } else { 0 };
    }
    0
}

/// Reads the pty the agent's way: 1 s before the first read, then at most `chunk_size`
/// bytes per message with incomplete UTF-8 held back, one message per `pace`.
async fn pump(
    mut pty: pipe::Receiver,
    ch: Shared,
    out: crate::agent::link::ToClient,
    settings: AgentSettings,
    sent: Arc<Notify>,
    eof: mpsc::Sender<()>,
) {
    tokio::time::sleep(FIRST_READ_DELAY).await;
    let chunk = settings.chunk_size.max(4);
    let mut held: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; chunk];
    let mut pacer = crate::agent::Pacer::new(settings.pace);
    loop {
        out.ready().await;
        let room = chunk - held.len();
        // EIO once the shell and everything it started have closed the pty.
        let n = match pty.read(&mut buf[..room]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        held.extend_from_slice(&buf[..n]);
        let keep = incomplete_utf8_tail(&held);
        if keep == held.len() {
            continue; // only the start of a character so far
        }
        let ready: Vec<u8> = held.drain(..held.len() - keep).collect();
        send_data_now(&ch, &out, &ready);
        sent.notify_one();
        pacer.after_send().await;
    }
    if !held.is_empty() {
        send_data_now(&ch, &out, &held);
    }
    let _ = eof.send(()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_utf8_is_held_back() {
        assert_eq!(incomplete_utf8_tail(b"abc"), 0);
        let euro = "€".as_bytes(); // e2 82 ac
        assert_eq!(incomplete_utf8_tail(&euro[..1]), 1);
        assert_eq!(incomplete_utf8_tail(&euro[..2]), 2);
        assert_eq!(incomplete_utf8_tail(euro), 0);
        assert_eq!(incomplete_utf8_tail(&[b'a', 0xf0, 0x9f, 0x98]), 3);
        // Invalid bytes are passed through.
        assert_eq!(incomplete_utf8_tail(&[0xff]), 0);
        assert_eq!(incomplete_utf8_tail(&[0x80, 0x80, 0x80]), 0);
    }
}
