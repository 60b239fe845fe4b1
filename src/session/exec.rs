//! `sallyport exec`: one command on the target, its stdout on ours, its stderr on ours,
//! and its exit code as ours (NonInteractiveCommands with separate streams,
//! docs/protocol.md §8.2). The official plugin cannot return exit codes
//! (session-manager-plugin #59). The document is asked for separate streams when it
//! declares the parameter ([`super::exec_document`]); when no exit code comes, `exec`
//! says why and exits with the "no exit status" code
//! ([`SessionError::NoExitStatus`]), never 0.
//!
//! Local input is not sent: the agent discards it for this session type, except Ctrl-C
//! and Ctrl-\ bytes, which it turns into SIGINT and SIGQUIT for the command. So the first
//! SIGINT (SIGQUIT) we get is passed on that way; a second one, or SIGTERM/SIGHUP, ends
//! the session.

use std::collections::BTreeMap;

use super::SessionError;
use crate::aws::{SessionDocument, Ssm, StartOptions};
use crate::proto::client::ClientEvent;
use crate::transport::{Cx, Engine, Kind, OutputId, Ready};

use super::exec_document::{self as doc, Declared, DocumentCache, Plan};
use super::lifecycle::{self, Signals, StopSignal};

/// The document `exec` runs commands with unless told otherwise.
pub const DEFAULT_DOCUMENT: &str = "AWS-StartNonInteractiveCommand";

pub struct ExecRequest {
    pub target: String,
    /// The command line the remote shell runs.
    pub command: String,
    /// Another document than `AWS-StartNonInteractiveCommand` (it must take `command`).
    pub document: Option<String>,
    /// `--parameter NAME=VALUE`s: they replace the ones `exec` would send.
    pub parameters: BTreeMap<String, Vec<String>>,
    /// Identifies the AWS context (profile, region, endpoint, key ID) for the document
    /// cache.
    pub cache_scope: String,
    pub start: StartOptions,
    pub link: crate::transport::LinkOptions,
}

/// Runs the command; returns the exit code to leave with.
///
/// Stop signals are listened for from the start: one that comes while the session is set
/// up drops the set-up, whose guards end a session StartSession started (in the
/// background: the caller awaits [`Ssm::await_background`] before exiting).
pub async fn run(ssm: &Ssm, req: &ExecRequest) -> Result<u8, SessionError> {
    let name = req.document.as_deref().unwrap_or(DEFAULT_DOCUMENT);
    let mut signals = Signals::new();
    let set_up = async {
        let ahead = lifecycle::Ahead::start(ssm);
        let started = start(ssm, req, name).await?;
        lifecycle::attach_ahead(ssm, &req.target, started, &req.link, ahead).await
    };
    let mut opened = tokio::select! {
        opened = set_up => opened?,
        sig = signals.recv() => return Err(sig.failure()),
    };
    let result = drive(&mut opened, name, signals).await;
    opened.link.close().await;
    lifecycle::terminate(ssm, &opened.started.session_id).await;
    result
}

/// StartSession with the parameters [`doc::plan`] chooses; once more without
/// `separateOutputStream` when StartSession refuses the one we added.
async fn start<'a>(
    ssm: &'a Ssm,
    req: &ExecRequest,
    name: &str,
) -> Result<lifecycle::Started<'a>, SessionError> {
    let cache = DocumentCache::new();
    let key = DocumentCache::key(&req.cache_scope, name);
    let declared = if req.parameters.contains_key(doc::SEPARATE_OUTPUT) {
        // The user chose: nothing to learn.
        Declared::Unknown
    } else {
        doc::learn(ssm, cache.as_ref(), &key, name).await
    };
    let mut plan = doc::plan(&req.command, declared, &req.parameters);
    let mut retried = false;
    loop {
        let document = named(name, &plan);
        match lifecycle::start(ssm, &req.target, &document, &req.start).await {
            Ok(started) => {
                tracing::debug!(
                    session_id = started.session.session_id,
                    separate_output = plan.parameters.contains_key(doc::SEPARATE_OUTPUT),
                    "exec session started"
                );
                // Started only without it: the document does not take it (an
                // InvalidParameters about another parameter fails both times).
                if let (true, Some(c)) = (retried, &cache) {
                    c.put(&key, false);
                }
                return Ok(started);
            }
            Err(e) => match doc::retry_without_separate(&plan, &e) {
                Some(without) if !retried => {
                    tracing::debug!(
                        document = name,
                        "StartSession refused the parameters, again without {}: {e}",
                        doc::SEPARATE_OUTPUT
                    );
                    plan = without;
                    retried = true;
                }
                _ => {
                    return Err(SessionError::Aws {
                        source: e,
                        target: req.target.clone(),
                    });
                }
            },
        }
    }
}

fn named(name: &str, plan: &Plan) -> SessionDocument {
    SessionDocument::Named {
        name: Some(name.to_owned()),
        parameters: plan.parameters.clone(),
    }
}

/// The exit status an `EXIT_CODE: n` payload becomes (a process killed by a signal is
/// reported as -1 by the agent, which becomes 255).
pub fn exit_status(code: i32) -> u8 {
    (code & 0xff) as u8
}

async fn drive(
    opened: &mut lifecycle::Opened,
    document: &str,
    signals: Signals,
) -> Result<u8, SessionError> {
    let options = lifecycle::engine_options(opened);
    let mut engine = Engine::new(&mut opened.link, &mut opened.session, options);
    let mut kind = Exec {
        stdout: engine.output(tokio::io::stdout()),
        stderr: engine.output(tokio::io::stderr()),
        signals,
        interrupts: 0,
        session_id: opened.started.session_id.clone(),
        document: document.to_owned(),
    };
    engine.run(&mut kind).await?
}

/// The exec session kind: remote stdout and stderr to ours, signals to the command.
struct Exec {
    stdout: OutputId,
    stderr: OutputId,
    signals: Signals,
    interrupts: u32,
    session_id: String,
    document: String,
}

impl Kind for Exec {
    /// Ends after the engine wrote what was buffered, also on a failure the agent told.
    type Done = Result<u8, SessionError>;
    type Error = SessionError;
    type Local = StopSignal;

    fn on_event(
        &mut self,
        event: ClientEvent,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<Self::Done>, SessionError> {
        match event {
            ClientEvent::Data(bytes) => cx.write(self.stdout, &bytes),
            ClientEvent::StdErr(bytes) => cx.write(self.stderr, &bytes),
            // Everything the command printed came before its exit code.
            ClientEvent::ExitCode(code) => return Ok(Some(Ok(exit_status(code)))),
            ClientEvent::Established {
                customer_message, ..
            } => {
                if !customer_message.is_empty() {
                    cx.write(self.stderr, format!("{customer_message}\n").as_bytes());
                }
            }
            // Without separate streams the agent sends no exit code: never call that 0.
            ClientEvent::Closed { output } if output.is_empty() => {
                return Ok(Some(Err(no_exit_status(&self.document))));
            }
            ClientEvent::Closed { output } => {
                return Ok(Some(Err(SessionError::Ended(format!(
                    "{}: {output}",
                    self.session_id
                )))));
            }
            ClientEvent::PortConnectError => {}
        }
        Ok(None)
    }

    fn local(&mut self, _ready: Ready) -> impl Future<Output = StopSignal> {
        self.signals.recv()
    }

    fn on_local(
        &mut self,
        sig: StopSignal,
        cx: &mut Cx<'_, '_>,
    ) -> Result<Option<Self::Done>, SessionError> {
        let byte = match sig {
            StopSignal::Interrupt => 0x03,
            StopSignal::Quit => 0x1c,
            other => return Err(other.failure()),
        };
        self.interrupts += 1;
        if self.interrupts > 1 || !cx.session().is_established() {
            return Err(sig.failure());
        }
        // The agent signals the command; we keep waiting for its exit code.
        cx.send_data(&[byte])?;
        Ok(None)
    }

    fn on_output_error(
        &mut self,
        _output: OutputId,
        e: std::io::Error,
    ) -> Result<Option<Self::Done>, SessionError> {
        Err(match e.kind() {
            // Like a shell command whose reader went away (SIGPIPE).
            std::io::ErrorKind::BrokenPipe => SessionError::BrokenPipe,
            _ => SessionError::io("writing local output failed", e),
        })
    }
}

/// Why there is no exit status, in one line.
pub fn no_exit_status(document: &str) -> SessionError {
    SessionError::NoExitStatus(document.to_owned())
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
