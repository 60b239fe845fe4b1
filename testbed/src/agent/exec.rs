//! NonInteractiveCommands (docs/protocol.md §8.2), as `AWS-StartNonInteractiveCommand` and
//! the account's command documents run: the handshake (always, for this session type), then
//! `sh -c COMMAND` as the testbed's own user (this machine plays the instance).
//!
//! With `separateOutputStream` (the document parameter, substituted as a string into the
//! properties; the agent converts it with `ConvertToBool`): stdout as Output, stderr as
//! StdErr, each read at most `chunk_size` bytes at a time with a `pace` sleep after each
//! message; then `EXIT_CODE: <n>`. Without it (the document's default `"false"`, or a
//! document that does not declare it): stdout and stderr combined as Output and no exit
//! code, as the agent's own plugin does. Then the outgoing buffer is drained and the
//! session ends (agent_session_state Terminating, which the relay turns into
//! channel_closed).
//!
//! Unverified: the agent without separate streams writes the combined output to a file and
//! streams it after the process exits; the testbed streams one shared pipe as it comes
//! (same bytes, same order for a command that writes line by line). The
//! `stdoutSeparatorPrefix` / `stderrSeparatorPrefix` parameters are accepted and not
//! applied.
//!
//! Client input is discarded except the bytes 0x03 and 0x1C, which become SIGINT and
//! SIGQUIT for the command, as on the agent. A start-up failure is sent as StdErr text.

use std::process::Stdio;
use std::sync::Arc;

use crate::agent::channel::AgentEvent;
use crate::agent::payloads::{PayloadFlag, PayloadType};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc};

use crate::agent::{
    AgentIo, AgentOut, AgentSettings, Shared, feed, finish, handshake, lock, new_channel,
    next_timer, on_timer, send_now, sleep_opt,
};
use crate::world::state::SessionRecord;

/// Whether the session's properties ask for separate streams: the `separateOutputStream`
/// parameter as substituted. Absent: `AWS-StartNonInteractiveCommand`'s default `"false"`,
/// or a document that does not declare it, whose properties leave it unset (false).
pub(crate) fn separate_output(session: &SessionRecord) -> bool {
    let value = session
        .parameters
        .get("separateOutputStream")
        .and_then(|v| v.first());
    value.is_some_and(|v| convert_to_bool(&serde_json::Value::String(v.clone())))
}

/// The agent's `ConvertToBool` for a property: a bool as is, a string as Go's
/// `strconv.ParseBool` reads it (`1 t T TRUE true True`, and the false forms).
/// Unverified: what the agent does with any other value (an error); the testbed reads
/// false. StartSession only lets `true` and `false` through for the AWS document.
pub(crate) fn convert_to_bool(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => {
            matches!(s.as_str(), "1" | "t" | "T" | "TRUE" | "true" | "True")
        }
        _ => false,
    }
}

/// The `command` parameter, as the document substitutes it.
pub(crate) fn command_parameter(session: &SessionRecord) -> String {
    session
        .parameters
        .get("command")
        .map(|v| v.join(" "))
        .unwrap_or_default()
}

pub async fn run(
    session: Arc<SessionRecord>,
    settings: AgentSettings,
    mut io: AgentIo,
) -> anyhow::Result<()> {
    let ch = new_channel(&settings);
    let kms = crate::agent::kms_request(&session, &io);
    handshake(
        &ch,
        &mut io,
        &settings,
        &session.instance.agent_version,
        "NonInteractiveCommands",
        // Properties are null for the shell-family plugins (docs/protocol.md §5.3).
        serde_json::Value::Null,
        kms,
    )
    .await?;
    let separate = separate_output(&session);
    let command = command_parameter(&session);
    let spawned = if separate {
        spawn_separate(&command)
    } else {
        spawn_combined(&command)
    };
    let (mut child, combined) = match spawned {
        Ok(c) => c,
        Err(e) => {
            let text = format!("Failed to start command: {e}\n");
            send_now(&ch, &io.to_client, PayloadType::StdErr, text.into_bytes());
            finish(&ch, &mut io, String::new()).await;
            return Ok(());
        }
    };
    let pid = child.id();
    let sent = Arc::new(Notify::new());
    let (done_tx, mut done_rx) = mpsc::channel::<()>(2);
    // One pump per pipe the command has, in this order: stdout, the combined pipe, stderr.
    let pipes: [(Option<Pipe>, PayloadType); 3] = [
        (
            child.stdout.take().map(|r| Box::new(r) as Pipe),
            PayloadType::Output,
        ),
        (combined.map(|r| Box::new(r) as Pipe), PayloadType::Output),
        (
            child.stderr.take().map(|r| Box::new(r) as Pipe),
            PayloadType::StdErr,
        ),
    ];
    let pumps: Vec<_> = pipes
        .into_iter()
        .filter_map(|(pipe, kind)| {
            let pipe = pipe?;
            Some(tokio::spawn(pump(
                pipe,
                kind,
                ch.clone(),
                io.to_client.clone(),
                settings.clone(),
                sent.clone(),
                done_tx.clone(),
            )))
        })
        .collect();
    drop(done_tx);
    let running = Running {
        ch: &ch,
        pid,
        sent: &sent,
        open_pumps: pumps.len(),
    };
    let terminated = running.wait(&mut io, &mut child, &mut done_rx).await;
    for p in pumps {
        p.abort();
    }
    let Some(code) = terminated else {
        let _ = child.kill().await;
        let _ = io.to_client.send(AgentOut::Close {
            output: String::new(),
        });
        return Ok(());
    };
    if separate {
        send_now(
            &ch,
            &io.to_client,
            PayloadType::ExitCode,
            format!("EXIT_CODE: {code}").into_bytes(),
        );
    } else {
        tracing::debug!(
            code,
            "command ended; no separate output, so no exit code sent"
        );
    }
    finish(&ch, &mut io, String::new()).await;
    Ok(())
}

type Spawned = std::io::Result<(Child, Option<pipe::Receiver>)>;

/// One of the command's output pipes, as a pump reads it.
type Pipe = Box<dyn AsyncRead + Unpin + Send>;

/// A started command whose output is being pumped.
struct Running<'a> {
    ch: &'a Shared,
    pid: Option<u32>,
    /// Notified after each message a pump sends.
    sent: &'a Notify,
    /// Pumps whose pipe has not ended yet.
    open_pumps: usize,
}

impl Running<'_> {
    /// Serves the client (input, timers) until the command has exited and every pipe has
    /// ended: `Some(exit code)`; `None` when the client ended the session first.
    async fn wait(
        mut self,
        io: &mut AgentIo,
        child: &mut Child,
        done_rx: &mut mpsc::Receiver<()>,
    ) -> Option<i32> {
        let ch = self.ch;
        let mut status = None;
        loop {
            if self.open_pumps == 0
                && let Some(code) = status
            {
                return Some(code);
            }
            tokio::select! {
                frame = io.from_client.recv() => {
                    let frame = frame?;
                    if apply_input(feed(ch, &io.to_client, &frame), self.pid) {
                        return None;
                    }
                }
                _ = sleep_opt(next_timer(ch)) => on_timer(ch, &io.to_client),
                _ = self.sent.notified() => {}
                Some(()) = done_rx.recv(), if self.open_pumps > 0 => self.open_pumps -= 1,
                exit = child.wait(), if status.is_none() => {
                    // A process killed by a signal has no code; Go reports -1.
                    status = Some(exit.ok().and_then(|s| s.code()).unwrap_or(-1));
                }
            }
        }
    }
}

/// `sh -c COMMAND` with stdout and stderr on pipes of their own.
fn spawn_separate(command: &str) -> Spawned {
    let child = shell(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    Ok((child, None))
}

/// `sh -c COMMAND` with stdout and stderr on one pipe, whose read end is returned.
fn spawn_combined(command: &str) -> Spawned {
    let (reader, writer) = std::io::pipe()?;
    let child = {
        // The command (holding the write ends) is dropped here, so the reader sees EOF
        // when the process and its children are done.
        let mut cmd = shell(command);
        cmd.stdout(writer.try_clone()?).stderr(writer);
        cmd.spawn()?
    };
    let reader = pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader))?;
    Ok((child, Some(reader)))
}

/// `sh -c COMMAND`, started with default signal dispositions as a service's children are
/// ([`crate::agent::child`]).
fn shell(command: &str) -> Command {
    let mut cmd = crate::agent::child::with_default_signals("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Ctrl-C and Ctrl-\ bytes become signals for the command; all other input is dropped.
/// Returns true when the client asked to end the session.
fn apply_input(events: Vec<AgentEvent>, pid: Option<u32>) -> bool {
    for ev in events {
        let AgentEvent::Message(m) = ev else {
            continue;
        };
        match PayloadType::from_u32(m.payload_type) {
            Some(PayloadType::Output) => {
                for b in &m.payload {
                    let sig = match b {
                        0x03 => Signal::INT,
                        0x1c => Signal::QUIT,
                        _ => continue,
                    };
                    if let Some(pid) = pid {
                        signal(pid, sig);
                    }
                }
            }
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

/// Sends `sig` to process `pid`.
pub(crate) fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
}

/// Reads one output pipe the agent's way: at most `chunk_size` per message, one per `pace`.
async fn pump<R: AsyncRead + Unpin>(
    mut from: R,
    kind: PayloadType,
    ch: Shared,
    out: crate::agent::link::ToClient,
    settings: AgentSettings,
    sent: Arc<Notify>,
    done: mpsc::Sender<()>,
) {
    let mut buf = vec![0u8; settings.chunk_size.max(1)];
    let mut pacer = crate::agent::Pacer::new(settings.pace);
    loop {
        // A relay that does not take our output stops the reading (docs/protocol.md §6.4).
        out.ready().await;
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut c = lock(&ch);
                // Sealed when the session is KMS-encrypted (Output and StdErr both are).
                c.send_payload(kind, buf[..n].to_vec());
                crate::agent::flush(&mut c, &out);
            }
        }
        sent.notify_one();
        pacer.after_send().await;
    }
    let _ = done.send(()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn separate_output_is_read_as_the_agent_converts_it() {
        for t in [
            json!(true),
            json!("true"),
            json!("True"),
            json!("TRUE"),
            json!("1"),
            json!("t"),
        ] {
            assert!(convert_to_bool(&t), "{t}");
        }
        for f in [
            json!(false),
            json!("false"),
            json!("0"),
            json!(""),
            json!("yes"),
            json!(null),
            json!(1),
        ] {
            assert!(!convert_to_bool(&f), "{f}");
        }
    }

    #[test]
    fn without_the_parameter_the_streams_are_combined() {
        let mut session = SessionRecord {
            session_id: "s".into(),
            token: "t".into(),
            instance: crate::world::config::InstanceConfig::named("i-0123456789abcdef0", "x"),
            document: "AWS-StartNonInteractiveCommand".into(),
            parameters: [("command".to_owned(), vec!["true".to_owned()])].into(),
        };
        assert!(
            !separate_output(&session),
            "the document's default is \"false\""
        );
        session
            .parameters
            .insert("separateOutputStream".into(), vec!["true".into()]);
        assert!(separate_output(&session));
        session
            .parameters
            .insert("separateOutputStream".into(), vec!["false".into()]);
        assert!(!separate_output(&session));
    }
}
