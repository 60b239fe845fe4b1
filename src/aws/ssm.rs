//! SSM session calls: StartSession and TerminateSession.

use aws_config::SdkConfig;

use super::AwsError;

/// A session as StartSession returned it. The token is a credential: never log it.
#[derive(Clone)]
pub struct StartedSession {
    pub session_id: String,
    pub token: String,
    pub stream_url: String,
}

impl std::fmt::Debug for StartedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedSession")
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Which session document to start, with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionDocument {
    /// `AWS-StartSSHSession` to `portNumber` (an ssh ProxyCommand stream).
    Ssh { port: u16 },
}

pub struct Ssm {
    client: aws_sdk_ssm::Client,
}

impl Ssm {
    pub fn new(config: &SdkConfig) -> Ssm {
        Ssm {
            client: aws_sdk_ssm::Client::new(config),
        }
    }

    pub async fn start_session(
        &self,
        target: &str,
        document: &SessionDocument,
    ) -> Result<StartedSession, AwsError> {
        let mut req = self.client.start_session().target(target);
        match document {
            SessionDocument::Ssh { port } => {
                req = req
                    .document_name("AWS-StartSSHSession")
                    .parameters("portNumber", vec![port.to_string()]);
            }
        }
        let out = req
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("StartSession", e))?;
        let missing = |what: &str| {
            AwsError::new(
                super::AwsErrorKind::Service,
                format!("StartSession returned no {what}"),
            )
        };
        Ok(StartedSession {
            session_id: out.session_id.ok_or_else(|| missing("SessionId"))?,
            token: out.token_value.ok_or_else(|| missing("TokenValue"))?,
            stream_url: out.stream_url.ok_or_else(|| missing("StreamUrl"))?,
        })
    }

    pub async fn terminate_session(&self, session_id: &str) -> Result<(), AwsError> {
        self.client
            .terminate_session()
            .session_id(session_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TerminateSession", e))?;
        Ok(())
    }
}
