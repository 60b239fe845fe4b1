//! SSM session calls: StartSession, ResumeSession and TerminateSession, and GetDocument for
//! the parameters a session document declares.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::SdkUpgradeSigner;
use super::{AwsConfig, AwsError, AwsErrorKind};
use crate::transport::{Dialer, Resume, ResumeError, ResumeErrorKind, Resumed, UpgradeSigner};

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
    /// `AWS-StartPortForwardingSession`: a local listener to `portNumber` on the target.
    PortForward { port: u16, local_port: u16 },
    /// `AWS-StartPortForwardingSessionToRemoteHost`: the target dials `host:portNumber`.
    PortForwardToHost {
        host: String,
        port: u16,
        local_port: u16,
    },
    /// `AWS-StartNonInteractiveCommand` running `command` (NonInteractiveCommands).
    NonInteractiveCommand { command: String },
    /// `AWS-StartInteractiveCommand` running `command` on a pty (InteractiveCommands).
    InteractiveCommand { command: String },
    /// Any document by name with its parameters; no name means the service's default
    /// shell document (`SSM-SessionManagerRunShell`, Standard_Stream).
    Named {
        name: Option<String>,
        parameters: std::collections::BTreeMap<String, Vec<String>>,
    },
}

impl SessionDocument {
    /// The document name StartSession is given (`None`: the service's default).
    pub fn name(&self) -> Option<&str> {
        Some(match self {
            SessionDocument::Ssh { .. } => "AWS-StartSSHSession",
            SessionDocument::PortForward { .. } => "AWS-StartPortForwardingSession",
            SessionDocument::PortForwardToHost { .. } => {
                "AWS-StartPortForwardingSessionToRemoteHost"
            }
            SessionDocument::NonInteractiveCommand { .. } => "AWS-StartNonInteractiveCommand",
            SessionDocument::InteractiveCommand { .. } => "AWS-StartInteractiveCommand",
            SessionDocument::Named { name, .. } => return name.as_deref(),
        })
    }

    /// StartSession `Parameters` (name -> list of values).
    pub fn parameters(&self) -> Vec<(String, Vec<String>)> {
        let one = |k: &str, v: String| (k.to_owned(), vec![v]);
        match self {
            SessionDocument::Ssh { port } => vec![one("portNumber", port.to_string())],
            SessionDocument::PortForward { port, local_port } => vec![
                one("portNumber", port.to_string()),
                one("localPortNumber", local_port.to_string()),
            ],
            SessionDocument::PortForwardToHost {
                host,
                port,
                local_port,
            } => vec![
                one("host", host.clone()),
                one("portNumber", port.to_string()),
                one("localPortNumber", local_port.to_string()),
            ],
            SessionDocument::NonInteractiveCommand { command }
            | SessionDocument::InteractiveCommand { command } => {
                vec![one("command", command.clone())]
            }
            SessionDocument::Named { parameters, .. } => parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

#[derive(Clone)]
pub struct Ssm {
    client: aws_sdk_ssm::Client,
    /// For KMS-encrypted sessions (see `Ssm::kms` in kms.rs).
    pub(super) kms_client: aws_sdk_kms::Client,
    /// Signs every data-channel dial with the same credentials chain and region.
    signer: Option<Arc<SdkUpgradeSigner>>,
    /// The proxy routes and trust every data-channel dial takes, as [`super::load`]
    /// resolved them for the SDK's own calls.
    network: crate::transport::Network,
    /// Rewrites every StreamUrl's host when an ssmmessages endpoint is configured.
    endpoints: super::Endpoints,
    /// Where the StreamUrl will most likely lead, to open its connection early.
    origin_guess: Option<String>,
    /// Calls started where nothing could await them (a session guard dropped mid-setup
    /// ends its session from a spawned task), shared by every clone: awaited by
    /// [`Ssm::await_background`] before the command exits. At most one per session
    /// this client started.
    background: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Ssm {
    pub fn new(config: &AwsConfig) -> Ssm {
        let sdk = &config.sdk;
        Ssm {
            client: aws_sdk_ssm::Client::new(sdk),
            kms_client: aws_sdk_kms::Client::new(sdk),
            signer: SdkUpgradeSigner::from_config(sdk).map(Arc::new),
            network: config.network.clone(),
            endpoints: config.endpoints.clone(),
            origin_guess: super::stream_origin_guess(&config.endpoints, sdk),
            background: Arc::default(),
        }
    }

    /// Keeps `task` until [`Ssm::await_background`]: for calls started where nothing can
    /// await them (a drop), which must still finish before the process exits.
    pub fn keep_background(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.background.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Waits, at most `budget`, for the calls given to [`Ssm::keep_background`].
    pub async fn await_background(&self, budget: std::time::Duration) {
        let pending = self
            .background
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        if pending.is_empty() {
            return;
        }
        let _ = tokio::time::timeout(budget, futures_util::future::join_all(pending)).await;
    }

    /// Where StartSession's StreamUrl will most likely lead (`wss://host[:port]`).
    pub fn stream_origin_guess(&self) -> Option<&str> {
        self.origin_guess.as_deref()
    }

    /// How this session's websockets are dialled: signed with this client's credentials
    /// chain in its region (docs/protocol.md §2.6).
    pub fn dialer(&self) -> Dialer {
        Dialer {
            signer: self.signer.clone().map(|s| s as Arc<dyn UpgradeSigner>),
            network: self.network.clone(),
        }
    }

    pub async fn start_session(
        &self,
        target: &str,
        document: &SessionDocument,
    ) -> Result<StartedSession, AwsError> {
        let mut req = self.client.start_session().target(target);
        if let Some(name) = document.name() {
            req = req.document_name(name);
        }
        for (name, values) in document.parameters() {
            req = req.parameters(name, values);
        }
        let began = std::time::Instant::now();
        let out = req
            .customize()
            .interceptor(SetupTimes {
                attempt: std::sync::Mutex::new(None),
                timeline: self.network.timeline.clone(),
            })
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("StartSession", e))?;
        self.network
            .timeline
            .done(crate::timeline::Step::StartSession, began);
        let missing = |what: &str| {
            AwsError::new(
                AwsErrorKind::Service,
                format!("StartSession returned no {what}"),
            )
        };
        Ok(StartedSession {
            session_id: out.session_id.ok_or_else(|| missing("SessionId"))?,
            token: out.token_value.ok_or_else(|| missing("TokenValue"))?,
            stream_url: self.dialled(out.stream_url.ok_or_else(|| missing("StreamUrl"))?),
        })
    }

    /// ResumeSession. `Ok(None)` when the service says the session cannot be resumed
    /// (null TokenValue, or it no longer exists). The SDK client fetches credentials from
    /// its provider for every call, so SSO and role credentials are fresh here even hours
    /// into a session (the plugin's stale-credential 403 cannot happen).
    pub async fn resume_session(&self, session_id: &str) -> Result<Option<Resumed>, AwsError> {
        let out = match self
            .client
            .resume_session()
            .session_id(session_id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let e = AwsError::from_sdk("ResumeSession", e);
                if e.code.as_deref() == Some("DoesNotExistException") {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        Ok(match (out.token_value, out.stream_url) {
            (Some(token), Some(stream_url)) if !token.is_empty() => Some(Resumed {
                token,
                stream_url: self.dialled(stream_url),
            }),
            _ => None,
        })
    }

    /// The StreamUrl to dial for one the service returned: on the configured ssmmessages
    /// endpoint, if any (docs/protocol.md §2.8).
    fn dialled(&self, stream_url: String) -> String {
        match &self.endpoints.ssmmessages {
            Some(host) => {
                let url = host.rewrite(&stream_url);
                tracing::debug!(
                    endpoint = host.url(),
                    source = host.source,
                    "data channel host taken from the ssmmessages endpoint"
                );
                url
            }
            None => stream_url,
        }
    }

    /// GetDocument's `Content` of `name`, asked for as JSON (hostile text: the caller bounds
    /// and parses it).
    pub async fn document_content(&self, name: &str) -> Result<String, AwsError> {
        let out = self
            .client
            .get_document()
            .name(name)
            .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetDocument", e))?;
        Ok(out.content.unwrap_or_default())
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

impl Resume for Ssm {
    fn resume<'a>(
        &'a self,
        session_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Resumed>, ResumeError>> + Send + 'a>> {
        Box::pin(async move {
            self.resume_session(session_id)
                .await
                .map_err(|e| ResumeError {
                    kind: match e.kind {
                        AwsErrorKind::Credentials => ResumeErrorKind::Credentials,
                        AwsErrorKind::AccessDenied | AwsErrorKind::InvalidTarget => {
                            ResumeErrorKind::Refused
                        }
                        _ => ResumeErrorKind::Transient,
                    },
                    message: e.message,
                })
        })
    }
}

/// Puts StartSession's credential resolution on the set-up timeline: the SDK resolves the
/// identity between these two hooks of each attempt.
#[derive(Debug, Default)]
struct SetupTimes {
    attempt: std::sync::Mutex<Option<std::time::Instant>>,
    timeline: crate::timeline::Timeline,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for SetupTimes {
    fn name(&self) -> &'static str {
        "SetupTimes"
    }

    fn read_before_attempt(
        &self,
        _: &aws_sdk_ssm::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_sdk_ssm::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Ok(mut a) = self.attempt.lock() {
            *a = Some(std::time::Instant::now());
        }
        Ok(())
    }

    fn read_before_signing(
        &self,
        _: &aws_sdk_ssm::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_sdk_ssm::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(began) = self.attempt.lock().ok().and_then(|a| *a) {
            self.timeline
                .done(crate::timeline::Step::Credentials, began);
        }
        Ok(())
    }
}
