//! The client side of the session handshake (PROTOCOL.md §5) as a typestate:
//! [`AwaitingRequest`] -> [`AwaitingComplete`] -> [`Established`]. Each step consumes the
//! previous state, so data cannot be sent before HandshakeComplete by construction.

use serde_json::Value;

use super::payload::{
    HandshakeComplete, HandshakeRequest, HandshakeResponse, KmsEncryptionRequest,
    ProcessedClientAction, SessionTypeRequest, action_status,
};

/// The version we report to the agent. The agent gates features on it (PROTOCOL.md §7.1,
/// §7.2): it must be at least 1.1.70 for smux port forwarding and above 1.2.331.0 so the
/// agent keeps smux keep-alives off; 1.2.0.0 would switch those off. We report a current
/// plugin release number because we implement that release's behaviour.
pub const CLIENT_VERSION: &str = "1.2.707.0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the agent's handshake request is not valid JSON: {0}")]
    BadRequest(String),
    #[error("the agent's handshake request has no session type")]
    NoSessionType,
    #[error(
        "the target requires KMS encryption for this session ({0}); this version of sallyport cannot encrypt sessions yet"
    )]
    KmsUnsupported(String),
    #[error("the agent's handshake-complete message is not valid JSON: {0}")]
    BadComplete(String),
}

/// What the agent asked for and we agreed to.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionParams {
    pub agent_version: String,
    /// `Port`, `Standard_Stream`, `InteractiveCommands` or `NonInteractiveCommands`.
    pub session_type: String,
    /// The document's substituted properties (for Port: portNumber, type, host …).
    pub properties: Value,
}

/// Waiting for the agent's HandshakeRequest.
#[derive(Debug, Clone)]
pub struct AwaitingRequest {
    pub client_version: String,
}

impl Default for AwaitingRequest {
    fn default() -> Self {
        AwaitingRequest {
            client_version: CLIENT_VERSION.to_owned(),
        }
    }
}

/// Our response went out; waiting for HandshakeComplete.
#[derive(Debug, Clone)]
pub struct AwaitingComplete {
    pub params: SessionParams,
}

/// The handshake is over; stream data may flow.
#[derive(Debug, Clone)]
pub struct Established {
    pub params: SessionParams,
    /// Text the agent wants shown to the user (e.g. the KMS notice); often empty.
    pub customer_message: String,
}

impl AwaitingRequest {
    /// Answers a HandshakeRequest payload; returns the next state and the HandshakeResponse
    /// payload to send.
    pub fn on_request(self, payload: &[u8]) -> Result<(AwaitingComplete, Vec<u8>), HandshakeError> {
        let req: HandshakeRequest = serde_json::from_slice(payload)
            .map_err(|e| HandshakeError::BadRequest(e.to_string()))?;
        let mut session: Option<SessionTypeRequest> = None;
        let mut processed = Vec::new();
        let mut errors = Vec::new();
        for action in &req.requested_client_actions {
            match action.action_type.as_str() {
                "SessionType" => {
                    let st: SessionTypeRequest =
                        serde_json::from_value(action.action_parameters.clone())
                            .map_err(|e| HandshakeError::BadRequest(e.to_string()))?;
                    session = Some(st);
                    processed.push(ProcessedClientAction {
                        action_type: action.action_type.clone(),
                        action_status: action_status::SUCCESS,
                        action_result: Value::Null,
                        error: String::new(),
                    });
                }
                "KMSEncryption" => {
                    let kms: Result<KmsEncryptionRequest, _> =
                        serde_json::from_value(action.action_parameters.clone());
                    let key = kms.map(|k| k.kms_key_id).unwrap_or_default();
                    return Err(HandshakeError::KmsUnsupported(key));
                }
                other => {
                    // Say so instead of pretending (the plugin leaves ActionStatus 0 here).
                    errors.push(format!("Unsupported action {other}"));
                    processed.push(ProcessedClientAction {
                        action_type: other.to_owned(),
                        action_status: action_status::UNSUPPORTED,
                        action_result: Value::Null,
                        error: format!("Unsupported action {other}"),
                    });
                }
            }
        }
        let session = session.ok_or(HandshakeError::NoSessionType)?;
        let response = HandshakeResponse {
            client_version: self.client_version,
            processed_client_actions: processed,
            errors: if errors.is_empty() {
                None
            } else {
                Some(errors)
            },
        };
        let bytes = serde_json::to_vec(&response).unwrap_or_default();
        Ok((
            AwaitingComplete {
                params: SessionParams {
                    agent_version: req.agent_version,
                    session_type: session.session_type,
                    properties: session.properties,
                },
            },
            bytes,
        ))
    }
}

impl AwaitingComplete {
    pub fn on_complete(self, payload: &[u8]) -> Result<Established, HandshakeError> {
        let done: HandshakeComplete = serde_json::from_slice(payload)
            .map_err(|e| HandshakeError::BadComplete(e.to_string()))?;
        Ok(Established {
            params: self.params,
            customer_message: done.customer_message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = r#"{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"52983"}}}]}"#;

    #[test]
    fn answers_like_the_plugin_in_the_capture() {
        let start = AwaitingRequest {
            client_version: "1.2.0.0".into(),
        };
        let (next, resp) = start.on_request(REQ.as_bytes()).unwrap();
        assert_eq!(
            std::str::from_utf8(&resp).unwrap(),
            r#"{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
        assert_eq!(next.params.session_type, "Port");
        assert_eq!(next.params.agent_version, "3.3.0.0");
        let done = next
            .on_complete(br#"{"HandshakeTimeToComplete":631840026,"CustomerMessage":""}"#)
            .unwrap();
        assert_eq!(done.params.properties["portNumber"], "52983");
    }

    #[test]
    fn kms_is_refused_with_a_clear_error_for_now() {
        let req = r#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:us-east-1:1:key/k","Challenge":"AAAA"}}]}"#;
        let err = AwaitingRequest::default()
            .on_request(req.as_bytes())
            .unwrap_err();
        assert!(err.to_string().contains("KMS"));
    }

    #[test]
    fn garbage_and_missing_session_type_are_errors() {
        assert!(matches!(
            AwaitingRequest::default().on_request(b"{nope"),
            Err(HandshakeError::BadRequest(_))
        ));
        assert_eq!(
            AwaitingRequest::default()
                .on_request(br#"{"AgentVersion":"1","RequestedClientActions":[]}"#)
                .unwrap_err(),
            HandshakeError::NoSessionType
        );
    }

    #[test]
    fn unknown_actions_are_reported_unsupported() {
        let req = r#"{"AgentVersion":"9","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{}}},{"ActionType":"Teleport","ActionParameters":null}]}"#;
        let (_, resp) = AwaitingRequest::default()
            .on_request(req.as_bytes())
            .unwrap();
        let resp: HandshakeResponse = serde_json::from_slice(&resp).unwrap();
        assert_eq!(resp.processed_client_actions[1].action_status, 3);
        assert_eq!(resp.errors.unwrap(), ["Unsupported action Teleport"]);
    }
}
