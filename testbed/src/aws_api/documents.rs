//! The session documents the testbed knows, and SSM `GetDocument`.
//!
//! Each session document declares its parameters (name, default, allowed values) and the
//! properties the service substitutes them into before the agent gets them
//! (docs/protocol.md §1.2). StartSession refuses a parameter the document does not declare,
//! or a value outside its allowed values, with `InvalidParameters` ([`check_parameters`]).
//! Unverified: which error AWS's StartSession gives for that (`InvalidParameters` or a
//! `ValidationException` naming the parameter) and its text.
//!
//! `GetDocument` answers a session document's content as JSON (whatever `DocumentFormat`
//! asks), and the Session Manager preferences document, `SSM-SessionManagerRunShell`, for
//! `sallyport doctor`, which reads its `inputs.kmsKeyId` to say whether shell and command
//! sessions are KMS-encrypted. The testbed keeps the KMS key per instance
//! (`InstanceConfig::kms_key_id`), where AWS keeps one preferences document per account and
//! region: the document names the first configured instance's key. Without any, the
//! document does not exist, as in an account whose preferences were never saved
//! (`InvalidDocument`). Unknown documents are `InvalidDocument` too. Unverified: the exact
//! error text. With `TestbedConfig::get_document_denied`, every GetDocument is denied.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::aws_api::account::Account;
use crate::aws_api::json11::ApiError;
use crate::world::config::{ACCOUNT_ID, TestbedConfig};

pub const PREFERENCES: &str = "SSM-SessionManagerRunShell";
pub const NON_INTERACTIVE: &str = "AWS-StartNonInteractiveCommand";

/// One parameter a document declares (all of the testbed's are `String`).
#[derive(Clone, Debug)]
pub struct Param {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub allowed: &'static [&'static str],
}

const fn param(name: &'static str, default: Option<&'static str>) -> Param {
    Param {
        name,
        default,
        allowed: &[],
    }
}

/// A session document: its type, parameters and properties.
#[derive(Clone, Debug)]
pub struct SessionDoc {
    pub name: String,
    pub session_type: &'static str,
    pub parameters: Vec<Param>,
    pub properties: Value,
}

/// Shell properties for every platform (the agent's `ShellProperties`).
fn shell_properties(linux: Value) -> Value {
    json!({ "linux": linux, "windows": linux, "macos": linux })
}

/// The document named `name` (the AWS-owned ones, then the account's command documents).
pub fn session_document(config: &TestbedConfig, name: &str) -> Option<SessionDoc> {
    let doc = |session_type, parameters, properties| SessionDoc {
        name: name.to_owned(),
        session_type,
        parameters,
        properties,
    };
    let port = |p: &[&str]| {
        let mut props = serde_json::Map::new();
        for k in p {
            props.insert((*k).to_owned(), json!(format!("{{{{ {k} }}}}")));
        }
        Value::Object(props)
    };
    Some(match name {
        PREFERENCES => doc("Standard_Stream", vec![], json!({})),
        "AWS-StartSSHSession" => doc(
            "Port",
            vec![param("portNumber", Some("22"))],
            port(&["portNumber"]),
        ),
        "AWS-StartPortForwardingSession" => doc(
            "Port",
            vec![
                param("portNumber", Some("80")),
                param("localPortNumber", Some("0")),
            ],
            port(&["portNumber", "localPortNumber"]),
        ),
        "AWS-StartPortForwardingSessionToRemoteHost" => doc(
            "Port",
            vec![
                param("host", None),
                param("portNumber", Some("80")),
                param("localPortNumber", Some("0")),
            ],
            port(&["host", "portNumber", "localPortNumber"]),
        ),
        "AWS-StartInteractiveCommand" => doc(
            "InteractiveCommands",
            vec![param("command", None)],
            shell_properties(json!({"commands": "{{ command }}", "runAsElevated": false})),
        ),
        NON_INTERACTIVE => non_interactive(),
        _ if config.command_documents.iter().any(|d| d == name) => doc(
            "NonInteractiveCommands",
            vec![param("command", None)],
            shell_properties(json!({"commands": "{{ command }}", "runAsElevated": false})),
        ),
        _ => return None,
    })
}

/// `AWS-StartNonInteractiveCommand`.
///
/// Unverified: that AWS's own document has exactly these parameters. The evidence: a public
/// copy of a NonInteractiveCommands session document ("Document to run single
/// non-interactive command on an instance") declares `separateOutputStream` as a String
/// parameter, allowed `true`/`false`, default `false`, beside `stdoutSeparatorPrefix` and
/// `stderrSeparatorPrefix`, substituted as strings into the shell properties; the agent's
/// `ShellConfig.SeparateOutputStream` is an `interface{}` it converts with
/// `parameters.ConvertToBool` (so a substituted string works). So by default the agent
/// runs the command without separate streams and sends no exit code.
fn non_interactive() -> SessionDoc {
    SessionDoc {
        name: NON_INTERACTIVE.to_owned(),
        session_type: "NonInteractiveCommands",
        parameters: vec![
            param("command", None),
            Param {
                name: "separateOutputStream",
                default: Some("false"),
                allowed: &["true", "false"],
            },
            param("stdoutSeparatorPrefix", Some("")),
            param("stderrSeparatorPrefix", Some("")),
        ],
        properties: shell_properties(json!({
            "commands": "{{ command }}",
            "runAsElevated": false,
            "separateOutputStream": "{{ separateOutputStream }}",
            "stdOutSeparatorPrefix": "{{ stdoutSeparatorPrefix }}",
            "stdErrSeparatorPrefix": "{{ stderrSeparatorPrefix }}",
        })),
    }
}

/// StartSession's check of `given` against what `doc` declares.
pub fn check_parameters(
    doc: &SessionDoc,
    given: &BTreeMap<String, Vec<String>>,
) -> Result<(), ApiError> {
    for (name, values) in given {
        let Some(p) = doc.parameters.iter().find(|p| p.name == name) else {
            return Err(ApiError::modeled(
                "InvalidParameters",
                format!("Parameter {name} is not declared by document {}.", doc.name),
            ));
        };
        if let Some(bad) =
            (values.iter()).find(|v| !p.allowed.is_empty() && !p.allowed.contains(&v.as_str()))
        {
            return Err(ApiError::modeled(
                "InvalidParameters",
                format!(
                    "Value {bad} of parameter {name} is not one of its allowed values: {}.",
                    p.allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The document's content, as `GetDocument` returns it (JSON).
pub fn content(doc: &SessionDoc) -> Value {
    let mut parameters = serde_json::Map::new();
    for p in &doc.parameters {
        let mut decl = serde_json::Map::new();
        decl.insert("type".into(), json!("String"));
        decl.insert("description".into(), json!(format!("The {}.", p.name)));
        if !p.allowed.is_empty() {
            decl.insert("allowedValues".into(), json!(p.allowed));
        }
        if let Some(d) = p.default {
            decl.insert("default".into(), json!(d));
        }
        parameters.insert(p.name.to_owned(), Value::Object(decl));
    }
    let mut content = json!({
        "schemaVersion": "1.0",
        "description": format!("Session document {}", doc.name),
        "sessionType": doc.session_type,
        "properties": doc.properties,
    });
    if !parameters.is_empty() {
        content["parameters"] = Value::Object(parameters);
    }
    content
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetDocumentRequest {
    name: Option<String>,
}

pub fn get_document(
    state: &Account,
    caller_arn: &str,
    req: GetDocumentRequest,
) -> Result<Value, ApiError> {
    let name = req.name.ok_or_else(|| {
        ApiError::validation(
            "Value null at 'name' failed to satisfy constraint: Member must not be null",
        )
    })?;
    if state.config.get_document_denied {
        // AWS-owned documents have no account in their ARN.
        let account = if name.starts_with("AWS-") {
            ""
        } else {
            ACCOUNT_ID
        };
        return Err(ApiError::modeled(
            "AccessDeniedException",
            format!(
                "User: {caller_arn} is not authorized to perform: ssm:GetDocument on resource: \
                 arn:aws:ssm:{}:{account}:document/{name} because no identity-based policy \
                 allows the ssm:GetDocument action",
                state.config.region
            ),
        ));
    }
    let content = if name == PREFERENCES {
        preferences(state)
    } else {
        session_document(&state.config, &name).map(|d| content(&d))
    };
    let Some(content) = content else {
        return Err(ApiError::modeled(
            "InvalidDocument",
            "The specified document does not exist.",
        ));
    };
    Ok(json!({
        "Name": name,
        "DocumentType": "Session",
        "DocumentFormat": "JSON",
        "DocumentVersion": "1",
        "Status": "Active",
        "Content": content.to_string(),
    }))
}

/// The preferences document, when an instance names a KMS key.
fn preferences(state: &Account) -> Option<Value> {
    let key = (state.config.instances.iter()).find_map(|i| i.kms_key_id.clone())?;
    Some(json!({
        "schemaVersion": "1.0",
        "description": "Document to hold regional settings for Session Manager",
        "sessionType": "Standard_Stream",
        "inputs": {
            "s3BucketName": "",
            "s3KeyPrefix": "",
            "s3EncryptionEnabled": true,
            "cloudWatchLogGroupName": "",
            "cloudWatchEncryptionEnabled": true,
            "idleSessionTimeout": "20",
            "kmsKeyId": key,
            "runAsEnabled": false,
            "runAsDefaultUser": "",
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::config::TestbedConfig;

    fn config() -> TestbedConfig {
        let mut c = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![]);
        c.command_documents = vec!["Custom-Command".into()];
        c
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    #[test]
    fn non_interactive_declares_separate_output_defaulting_to_false() {
        let doc = session_document(&config(), NON_INTERACTIVE).unwrap();
        let c = content(&doc);
        let p = &c["parameters"]["separateOutputStream"];
        assert_eq!(p["default"], "false");
        assert_eq!(p["allowedValues"], json!(["true", "false"]));
        assert_eq!(c["sessionType"], "NonInteractiveCommands");
        assert_eq!(
            c["properties"]["linux"]["separateOutputStream"],
            "{{ separateOutputStream }}"
        );
        assert!(c["parameters"]["stdoutSeparatorPrefix"].is_object());
        assert!(c["parameters"]["stderrSeparatorPrefix"].is_object());
    }

    #[test]
    fn undeclared_parameters_and_disallowed_values_are_refused() {
        let c = config();
        let ni = session_document(&c, NON_INTERACTIVE).unwrap();
        assert!(
            check_parameters(
                &ni,
                &given(&[("command", "ls"), ("separateOutputStream", "true")])
            )
            .is_ok()
        );
        let bad = check_parameters(&ni, &given(&[("separateOutputStream", "yes")])).unwrap_err();
        assert_eq!(bad.code, "InvalidParameters");
        let custom = session_document(&c, "Custom-Command").unwrap();
        assert!(check_parameters(&custom, &given(&[("command", "ls")])).is_ok());
        let e = check_parameters(&custom, &given(&[("separateOutputStream", "true")])).unwrap_err();
        assert_eq!(e.code, "InvalidParameters");
        assert!(e.message.contains("separateOutputStream"), "{}", e.message);
        assert!(
            content(&custom)
                .get("parameters")
                .unwrap()
                .get("separateOutputStream")
                .is_none()
        );
        assert!(session_document(&c, "Nope").is_none());
    }
}
