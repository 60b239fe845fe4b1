//! A port session as a local byte stream: one end of an in-memory pipe is handed to
//! whoever speaks the remote port's protocol (the embedded SSH client), the other end is
//! driven over the data channel by [`crate::transport::drive_stream`], exactly as `proxy`
//! drives stdin/stdout. Resume, keep-alive, KMS and flow control come with it.

use std::time::Duration;

use tokio::io::DuplexStream;
use tokio::task::JoinHandle;

use super::SessionError;
use crate::aws::{SessionDocument, Ssm, StartOptions};
use crate::transport::{self, DriveOptions, LinkOptions, Outcome};

use super::lifecycle;

/// Bytes buffered in each direction of the pipe. The data channel's own window (4 MiB)
/// is the real limit; this only decouples the two tasks.
const PIPE_BUFFER: usize = 256 * 1024;

/// How long [`PortStream::finish`] waits for the driver to deliver the last bytes.
const FINISH_BUDGET: Duration = Duration::from_secs(12);

/// Opens port sessions as in-memory streams.
pub struct PortStream;

impl PortStream {
    /// StartSession (`AWS-StartSSHSession` to `port`) and the data channel, then a driver
    /// task pumping the pipe. Returns the pipe's near end, usable at once (bytes written
    /// before the agent's handshake completes wait in the pipe and the channel's window;
    /// dropping it ends the session's input), and the guard that ends the session.
    pub async fn open(
        ssm: &Ssm,
        target: &str,
        port: u16,
        start: &StartOptions,
        link: &LinkOptions,
    ) -> Result<(DuplexStream, SessionGuard), SessionError> {
        let document = SessionDocument::Ssh { port };
        let opened = lifecycle::open(ssm, target, &document, start, link).await?;
        let (local, remote) = tokio::io::duplex(PIPE_BUFFER);
        let session_id = opened.started.session_id.clone();
        let opts = DriveOptions {
            data_keys: Some(opened.data_keys.clone()),
            timeline: opened.timeline.clone(),
            ..DriveOptions::default()
        };
        let target_owned = target.to_owned();
        let driver = tokio::spawn(async move {
            let lifecycle::Opened {
                mut link,
                mut session,
                ..
            } = opened;
            session.set_input_gate(lifecycle::SSH_INPUT_GATE);
            let (reader, writer) = tokio::io::split(remote);
            let result =
                transport::drive_stream(&mut link, &mut session, reader, writer, &opts).await;
            link.close().await;
            result.map_err(|source| SessionError::Drive {
                source,
                target: target_owned,
                port,
            })
        });
        let guard = SessionGuard {
            session_id,
            driver: Some(driver),
            ssm: ssm.clone(),
            target: target.to_owned(),
            port,
            terminated: false,
        };
        Ok((local, guard))
    }
}

/// The driver of a [`PortStream`] and the session to terminate at the end.
pub struct SessionGuard {
    pub session_id: String,
    driver: Option<JoinHandle<Result<Outcome, SessionError>>>,
    ssm: Ssm,
    target: String,
    port: u16,
    /// [`SessionGuard::finish`] ran: the session was terminated.
    terminated: bool,
}

impl SessionGuard {
    /// If the driver already failed, its failure: a better explanation than whatever the
    /// protocol client saw (an unexpected end of stream). Waits up to `grace` for it.
    pub async fn failure(&mut self, grace: Duration) -> Option<SessionError> {
        let driver = self.driver.as_mut()?;
        let result = tokio::time::timeout(grace, driver).await.ok()?;
        self.driver = None;
        match result {
            Ok(Ok(outcome)) => explain_end(&outcome, &self.target, self.port),
            Ok(Err(f)) => Some(f),
            Err(join) => Some(SessionError::Internal(format!(
                "the session driver stopped: {join}"
            ))),
        }
    }

    /// Waits (bounded) for the driver to deliver what was written and the agent to
    /// acknowledge it, then terminates the session. The pipe must have been dropped or
    /// shut down first, or this waits out its budget.
    pub async fn finish(mut self) {
        if let Some(driver) = self.driver.take() {
            match tokio::time::timeout(FINISH_BUDGET, driver).await {
                Ok(Ok(Ok(outcome))) => tracing::debug!(?outcome, "session stream ended"),
                Ok(Ok(Err(e))) => tracing::debug!("session stream ended: {e}"),
                Ok(Err(e)) => tracing::debug!("session driver: {e}"),
                Err(_) => tracing::debug!("session driver did not finish in time"),
            }
        }
        lifecycle::terminate(&self.ssm, &self.session_id).await;
        self.terminated = true;
    }
}

impl SessionGuard {
    /// Terminates the session now, dropping what is still in flight either way: for a
    /// protocol on top whose every request that mattered was answered (SFTP), where
    /// waiting for the goodbye to cross costs a round trip and delivers nothing.
    pub async fn end_now(mut self) {
        if let Some(d) = self.driver.take() {
            d.abort();
        }
        lifecycle::terminate(&self.ssm, &self.session_id).await;
        self.terminated = true;
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            d.abort();
        }
        if self.terminated {
            return;
        }
        // Dropped mid-setup or mid-use: the session must still be ended on the service,
        // or it lingers until its idle timeout. Needs a runtime (always there: the guard
        // is made inside one).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (ssm, id) = (self.ssm.clone(), std::mem::take(&mut self.session_id));
            let task = rt.spawn({
                let ssm = ssm.clone();
                async move { lifecycle::terminate(&ssm, &id).await }
            });
            // The command awaits it before exiting (`Ssm::await_background`).
            ssm.keep_background(task);
        }
    }
}

/// The guard of a stream over either way: a Session Manager session or an EICE tunnel.
pub enum StreamGuard {
    Ssm(Box<SessionGuard>),
    Eice {
        guard: transport::TunnelGuard,
        target: String,
        port: u16,
    },
}

impl StreamGuard {
    /// See [`SessionGuard::failure`]; for a tunnel, how it ended if it did within `grace`.
    pub async fn failure(&mut self, grace: Duration) -> Option<SessionError> {
        match self {
            StreamGuard::Ssm(g) => g.failure(grace).await,
            StreamGuard::Eice {
                guard,
                target,
                port,
            } => guard
                .failure(grace)
                .await
                .map(|e| crate::session::eice::failure(e, target, *port)),
        }
    }

    /// A Session Manager session (which [`SessionGuard::end_now`] can end at once).
    pub fn ssm(self) -> Result<Box<SessionGuard>, StreamGuard> {
        match self {
            StreamGuard::Ssm(g) => Ok(g),
            other => Err(other),
        }
    }

    /// See [`SessionGuard::finish`]; a tunnel is given the same budget to deliver.
    pub async fn finish(self) {
        match self {
            StreamGuard::Ssm(g) => g.finish().await,
            StreamGuard::Eice { mut guard, .. } => {
                if let Some(e) = guard.failure(FINISH_BUDGET).await {
                    tracing::debug!("tunnel ended: {e}");
                }
            }
        }
    }
}

/// A clean end of the stream that still explains an early end of the protocol on top.
fn explain_end(outcome: &Outcome, target: &str, port: u16) -> Option<SessionError> {
    match outcome {
        Outcome::ClosedByService { output } => Some(SessionError::ClosedByService {
            target: target.to_owned(),
            port,
            output: (!output.is_empty()).then(|| crate::text::shown(output.trim()).into_owned()),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_closing_words_are_shown_as_text() {
        let outcome = Outcome::ClosedByService {
            output: "\x1b]0;pwned\x07bye\u{202e}\n".to_owned(),
        };
        let e = explain_end(&outcome, "i-0abc", 22).expect("explained");
        assert_eq!(
            e.to_string(),
            "the service closed the session to i-0abc port 22: \\x1b]0;pwned\\x07bye\\u{202e}"
        );
    }
}
