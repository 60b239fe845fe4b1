//! `sallyport exec`: one command on the target, its stdout on ours, its stderr on ours,
//! and its exit code as ours (NonInteractiveCommands with separate streams, PROTOCOL.md
//! §8.2). The official plugin cannot return exit codes (session-manager-plugin #59).
//!
//! Local input is not sent: the agent discards it for this session type, except Ctrl-C
//! and Ctrl-\ bytes, which it turns into SIGINT and SIGQUIT for the command. So the first
//! SIGINT (SIGQUIT) we get is passed on that way; a second one, or SIGTERM/SIGHUP, ends
//! the session.

use tokio::io::AsyncWriteExt;

use crate::aws::{SessionDocument, Ssm, StartOptions};
use crate::error::{ExitCode, Failure};
use crate::proto::client::ClientEvent;
use crate::transport::DriveError;

use super::lifecycle::{self, Signals, StopSignal, sleep_opt};

pub struct ExecRequest {
    pub target: String,
    /// The command line the remote shell runs.
    pub command: String,
    /// Another document than `AWS-StartNonInteractiveCommand` (it must take `command`).
    pub document: Option<String>,
    pub start: StartOptions,
    pub link: crate::transport::LinkOptions,
}

/// Runs the command; returns the exit code to leave with.
pub async fn run(ssm: &Ssm, req: &ExecRequest) -> Result<u8, Failure> {
    let document = match &req.document {
        None => SessionDocument::NonInteractiveCommand {
            command: req.command.clone(),
        },
        Some(name) => SessionDocument::Named {
            name: Some(name.clone()),
            parameters: [("command".to_owned(), vec![req.command.clone()])].into(),
        },
    };
    let mut opened = lifecycle::open(ssm, &req.target, &document, &req.start, &req.link).await?;
    let result = drive(&mut opened).await;
    opened.link.close().await;
    lifecycle::terminate(ssm, &opened.started.session_id).await;
    result
}

/// The exit status an `EXIT_CODE: n` payload becomes (a process killed by a signal is
/// reported as -1 by the agent, which becomes 255).
pub fn exit_status(code: i32) -> u8 {
    (code & 0xff) as u8
}

async fn drive(opened: &mut lifecycle::Opened) -> Result<u8, Failure> {
    let session = &mut opened.session;
    let link = &mut opened.link;
    let session_id = opened.started.session_id.clone();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut signals = Signals::new();
    let handshake_deadline = tokio::time::Instant::now() + lifecycle::HANDSHAKE_TIMEOUT;
    let mut interrupts = 0u32;
    loop {
        lifecycle::answer_data_key(&*opened.data_keys, session, link).await?;
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Data(bytes) => write(&mut stdout, &bytes).await?,
                ClientEvent::StdErr(bytes) => write(&mut stderr, &bytes).await?,
                ClientEvent::ExitCode(code) => {
                    // Everything the command printed came before its exit code.
                    let _ = stdout.flush().await;
                    let _ = stderr.flush().await;
                    return Ok(exit_status(code));
                }
                ClientEvent::Established {
                    customer_message, ..
                } => {
                    if !customer_message.is_empty() {
                        eprintln!("{customer_message}");
                    }
                }
                ClientEvent::Closed { output } => {
                    let _ = stdout.flush().await;
                    let _ = stderr.flush().await;
                    if output.is_empty() {
                        eprintln!(
                            "sallyport: the session ended without an exit code (does the \
                             document set separateOutputStream?)"
                        );
                        return Ok(0);
                    }
                    return Err(Failure::new(
                        ExitCode::SessionEnded,
                        format!("{session_id}: {output}"),
                    ));
                }
                ClientEvent::PortConnectError => {}
            }
        }
        let timer = session.poll_timeout().map(tokio::time::Instant::from_std);
        let established = session.is_established();
        tokio::select! {
            biased;
            event = link.recv() => lifecycle::on_link_event(session, event)
                .map_err(|e| Failure::drive(e, "", 0))?,
            _ = sleep_opt(timer) => session
                .handle_timeout(lifecycle::now())
                .map_err(lifecycle::protocol_failure)?,
            _ = tokio::time::sleep_until(handshake_deadline), if !established => {
                return Err(Failure::drive(
                    DriveError::HandshakeTimeout(lifecycle::HANDSHAKE_TIMEOUT), "", 0));
            }
            sig = signals.recv() => {
                let byte = match sig {
                    StopSignal::Interrupt => 0x03,
                    StopSignal::Quit => 0x1c,
                    other => return Err(other.failure()),
                };
                interrupts += 1;
                if interrupts > 1 || !established {
                    return Err(sig.failure());
                }
                // The agent signals the command; we keep waiting for its exit code.
                let _ = session.send_data(lifecycle::now(), &[byte]);
            }
        }
    }
}

async fn write<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), Failure> {
    match w.write_all(bytes).await {
        Ok(()) => Ok(()),
        // Like a shell command whose reader went away (SIGPIPE).
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::new(
            ExitCode::LocalIo,
            "output closed (broken pipe)",
        )),
        Err(e) => Err(Failure::new(
            ExitCode::LocalIo,
            format!("writing local output failed: {e}"),
        )),
    }
}

/// Joins `args` into one command line for the remote shell. One argument is taken as a
/// command line already (`exec t -- 'ls | wc -l'`); several are quoted for a POSIX shell
/// where they need it, so `exec t -- sh -c 'echo a; exit 3'` runs what it says.
pub fn command_line(args: &[String]) -> String {
    if let [one] = args {
        return one.clone();
    }
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r#"'\''"#))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn one_argument_is_a_command_line() {
        assert_eq!(command_line(&s(&["ls -l | wc -l"])), "ls -l | wc -l");
    }

    #[test]
    fn several_arguments_are_quoted_where_needed() {
        assert_eq!(
            command_line(&s(&["sh", "-c", "echo out; echo err >&2; exit 3"])),
            "sh -c 'echo out; echo err >&2; exit 3'"
        );
        assert_eq!(
            command_line(&s(&["echo", "it's", ""])),
            r#"echo 'it'\''s' ''"#
        );
        assert_eq!(command_line(&s(&["ls", "/tmp/a=b"])), "ls /tmp/a=b");
    }

    #[test]
    fn exit_codes_map_like_a_shell() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(3), 3);
        assert_eq!(exit_status(255), 255);
        assert_eq!(exit_status(-1), 255);
        assert_eq!(exit_status(256), 0);
    }
}
