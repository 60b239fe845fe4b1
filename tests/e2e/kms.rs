//! KMS-encrypted sessions (docs/protocol.md §5.4) against the testbed's KMS API.
//!
//! Port sessions are never encrypted, so `ssh` through `sallyport proxy` must keep working
//! on an instance whose agent demands KMS. The encrypted Standard_Stream path is checked at
//! channel level: sallyport's `ClientSession` against the testbed's in-process agent end
//! ([`EncryptedAgent`]), frames passed in memory, with the data key from sallyport's real
//! KMS client talking to the running testbed over HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use sallyport::proto::client::{ClientError, ClientEvent, ClientSession};
use sallyport::proto::message::{Message, MessageType};
use sallyport::proto::payload::{EncChallenge, PayloadType};
use sallyport_testbed::agent::kms::{EncryptedAgent, KMS_NOTICE, encryption_context};
use sallyport_testbed::agent::payloads::PayloadType as AgentPayload;
use sallyport_testbed::{InstanceConfig, Testbed, TestbedConfig};

use crate::harness::{Fixture, ok, run};

const KEY: &str = "alias/ssm-session-key";
const INSTANCE: &str = "i-0kms0000000000001";
const SESSION: &str = "sallyport-testbed-0123456789abcdef0";

#[test]
fn ssh_through_proxy_works_on_a_kms_instance() {
    let f = Fixture::with_config(|c| c.instances[0].kms_key_id = Some(KEY.into()));
    let out = run(f.ssh().arg("echo ok"), None, Duration::from_secs(60));
    assert_eq!(ok(&out), "ok\n");
    // Port sessions are never encrypted: nobody asked KMS for anything.
    let calls = f.testbed.calls();
    assert!(calls.iter().any(|c| c.operation == "StartSession"));
    assert!(!calls.iter().any(|c| c.service == "kms"), "{calls:?}");
}

async fn testbed() -> Testbed {
    let mut instance = InstanceConfig::named(INSTANCE, "kms-box");
    instance.kms_key_id = Some(KEY.into());
    Testbed::start(TestbedConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![instance],
    ))
    .await
    .unwrap()
}

/// An SDK configuration pointing at the testbed, nothing from the developer's own setup.
async fn sdk_config(tb: &Testbed) -> SdkConfig {
    let creds = aws_sdk_kms::config::Credentials::new(
        &tb.access_key_id,
        &tb.secret_access_key,
        None,
        None,
        "testbed",
    );
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(tb.region.clone()))
        .endpoint_url(&tb.endpoint)
        .credentials_provider(creds)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// Frames as they crossed the (in-memory) wire.
#[derive(Default)]
struct Wire {
    to_agent: Vec<Message>,
    to_client: Vec<Message>,
}

/// Moves frames both ways until neither side has anything to send. A client error is
/// returned; agent failures stay in `agent.failure()`.
fn pump(
    client: &mut ClientSession,
    agent: &mut EncryptedAgent,
    wire: &mut Wire,
) -> Result<(), ClientError> {
    loop {
        let mut moved = false;
        while let Some(f) = agent.poll_transmit() {
            moved = true;
            wire.to_client.push(Message::decode(&f).unwrap());
            client.handle_frame(Instant::now(), &f)?;
        }
        while let Some(f) = client.poll_transmit() {
            moved = true;
            wire.to_agent.push(Message::decode(&f).unwrap());
            let _ = agent.handle_frame(Instant::now(), &f);
        }
        if !moved {
            return Ok(());
        }
    }
}

fn events(c: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn new_pair(tb: &Testbed, key: &str) -> (ClientSession, EncryptedAgent) {
    let now = Instant::now();
    let agent = EncryptedAgent::new(tb.kms(), key, SESSION, INSTANCE, "Standard_Stream", now);
    let client =
        ClientSession::with_defaults(now, 1_700_000_000_000, uuid::Uuid::new_v4().as_u128());
    (client, agent)
}

fn stream_payloads(msgs: &[Message], kind: PayloadType) -> Vec<&[u8]> {
    msgs.iter()
        .filter(|m| m.message_type != MessageType::Acknowledge && m.payload_type == kind as u32)
        .map(|m| m.payload.as_slice())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_standard_stream_round_trips_through_real_kms_calls() {
    let tb = testbed().await;
    let ssm = sallyport::aws::Ssm::new(&sdk_config(&tb).await.into());
    let keys = ssm.data_keys(SESSION, INSTANCE);
    let (mut client, mut agent) = new_pair(&tb, KEY);
    let mut wire = Wire::default();

    pump(&mut client, &mut agent, &mut wire).unwrap();
    assert!(client.is_waiting_for_data_key());
    let keyed = sallyport::transport::answer_data_key_request(&mut client, Some(&*keys)).await;
    keyed.unwrap();
    pump(&mut client, &mut agent, &mut wire).unwrap();
    assert_eq!(agent.failure(), None);
    assert!(agent.is_established() && client.is_established() && client.is_encrypted());
    let ev = events(&mut client);
    assert!(
        matches!(&ev[..], [ClientEvent::Established { params, customer_message }]
            if params.session_type == "Standard_Stream" && customer_message == KMS_NOTICE),
        "{ev:?}"
    );
    // The key came from the testbed's KMS API, with the session's context.
    let kms_calls: Vec<_> = tb
        .calls()
        .into_iter()
        .filter(|c| c.service == "kms")
        .collect();
    assert_eq!(kms_calls.len(), 1);
    assert_eq!(kms_calls[0].operation, "GenerateDataKey");

    // Client -> agent: several messages' worth, plaintext only at the ends.
    let input: Vec<u8> = b"echo top-secret-input; "
        .iter()
        .copied()
        .cycle()
        .take(5000)
        .collect();
    client.send_data(Instant::now(), &input).unwrap();
    pump(&mut client, &mut agent, &mut wire).unwrap();
    assert_eq!(agent.take_received(), input);

    // Agent -> client: Output, StdErr and ExitCode all sealed.
    let now = Instant::now();
    agent
        .send(now, AgentPayload::Output, b"top-secret-output\n")
        .unwrap();
    agent
        .send(now, AgentPayload::StdErr, b"top-secret-error\n")
        .unwrap();
    agent
        .send(now, AgentPayload::ExitCode, b"EXIT_CODE: 0")
        .unwrap();
    pump(&mut client, &mut agent, &mut wire).unwrap();
    assert_eq!(
        events(&mut client),
        [
            ClientEvent::Data(b"top-secret-output\n".to_vec()),
            ClientEvent::StdErr(b"top-secret-error\n".to_vec()),
            ClientEvent::ExitCode(0),
        ]
    );

    // What crossed the wire is not the plaintext.
    let sent = stream_payloads(&wire.to_agent, PayloadType::Output);
    assert_eq!(sent.len(), 5);
    for p in sent {
        assert!(!contains(p, b"top-secret"), "plaintext on the wire");
    }
    for kind in [
        PayloadType::Output,
        PayloadType::StdErr,
        PayloadType::ExitCode,
    ] {
        let got = stream_payloads(&wire.to_client, kind);
        assert_eq!(got.len(), 1, "{kind:?}");
        assert!(!contains(got[0], b"top-secret") && !contains(got[0], b"EXIT_CODE"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testbed_kms_rejects_a_wrong_encryption_context() {
    let tb = testbed().await;
    let config = sdk_config(&tb).await;
    let key = sallyport::aws::Kms::new(&config)
        .generate_data_key(KEY, SESSION, INSTANCE)
        .await
        .unwrap();
    assert_eq!(key.plaintext.len(), 64);
    let kms = aws_sdk_kms::Client::new(&config);
    let decrypt = |session: &str, target: &str| {
        let mut req = kms
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(
                key.ciphertext_blob.clone(),
            ));
        for (k, v) in encryption_context(session, target) {
            req = req.encryption_context(k, v);
        }
        req.send()
    };
    let right = decrypt(SESSION, INSTANCE).await.unwrap();
    assert_eq!(right.plaintext.unwrap().into_inner(), *key.plaintext);
    for (session, target) in [
        (SESSION, "i-0someoneelse00000"),
        ("other-session", INSTANCE),
    ] {
        let err = decrypt(session, target).await.unwrap_err();
        let err = err.into_service_error();
        assert!(err.is_invalid_ciphertext_exception(), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_under_another_key_fails_the_handshake_clearly() {
    let tb = testbed().await;
    let ssm = sallyport::aws::Ssm::new(&sdk_config(&tb).await.into());
    let keys = ssm.data_keys(SESSION, INSTANCE);
    let (mut client, mut agent) = new_pair(&tb, KEY);
    agent.seal_challenge_with_wrong_key();
    let mut wire = Wire::default();
    pump(&mut client, &mut agent, &mut wire).unwrap();
    sallyport::transport::answer_data_key_request(&mut client, Some(&*keys))
        .await
        .unwrap();
    let err = pump(&mut client, &mut agent, &mut wire).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("encryption challenge failed") && text.contains("same KMS data key"),
        "{text}"
    );
    assert!(!client.is_established());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_challenge_answer_makes_the_agent_end_the_session() {
    let tb = testbed().await;
    let config = sdk_config(&tb).await;
    let ssm = sallyport::aws::Ssm::new(&config.clone().into());
    let key = ssm
        .kms()
        .generate_data_key(KEY, SESSION, INSTANCE)
        .await
        .unwrap();
    let (mut client, mut agent) = new_pair(&tb, KEY);
    let mut wire = Wire::default();
    pump(&mut client, &mut agent, &mut wire).unwrap();
    let now = Instant::now();
    client.poll_data_key_request().unwrap();
    client
        .provide_data_key(now, &key.ciphertext_blob, &key.plaintext)
        .unwrap();
    // Deliver the response; the agent answers with its challenge.
    while let Some(f) = client.poll_transmit() {
        let _ = agent.handle_frame(now, &f);
    }
    while let Some(f) = agent.poll_transmit() {
        client.handle_frame(now, &f).unwrap();
    }
    // Swap the client's (correct) answer for other bytes sealed with the right key.
    let mut forged = sallyport::proto::crypto::SessionCipher::new(
        sallyport::proto::channel::Role::Client,
        &key.plaintext,
        5,
    )
    .unwrap();
    while let Some(f) = client.poll_transmit() {
        let mut m = Message::decode(&f).unwrap();
        if m.payload_type == PayloadType::EncChallengeResponse as u32 {
            m.payload = serde_json::to_vec(&EncChallenge {
                challenge: forged.seal(&[0u8; 64]).unwrap(),
            })
            .unwrap();
        }
        let _ = agent.handle_frame(now, &m.encode());
    }
    let failure = agent.failure().unwrap_or_default().to_owned();
    assert!(failure.contains("challenge"), "{failure}");
    pump(&mut client, &mut agent, &mut wire).unwrap();
    let ev = events(&mut client);
    assert!(
        matches!(&ev[..], [ClientEvent::Closed { output }] if output == &failure),
        "{ev:?}"
    );
    assert!(!client.is_established());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_fails_with_advice_and_tells_the_agent() {
    let tb = testbed().await;
    let ssm = sallyport::aws::Ssm::new(&sdk_config(&tb).await.into());
    let keys: Arc<dyn sallyport::transport::DataKeyProvider> = ssm.data_keys(SESSION, INSTANCE);
    let (mut client, mut agent) = new_pair(&tb, "alias/not-there");
    let mut wire = Wire::default();
    pump(&mut client, &mut agent, &mut wire).unwrap();
    let err = sallyport::transport::answer_data_key_request(&mut client, Some(&*keys))
        .await
        .unwrap_err();
    let failure = sallyport::error::Failure::drive(err, INSTANCE, 0);
    assert_eq!(failure.code, sallyport::error::ExitCode::Aws);
    assert!(
        failure.message.contains("requires KMS-encrypted sessions")
            && failure.message.contains("NotFoundException")
            && failure.message.contains("check that it exists"),
        "{}",
        failure.message
    );
    pump(&mut client, &mut agent, &mut wire).unwrap();
    let why = agent.failure().unwrap_or_default();
    assert!(why.contains("client failed action KMSEncryption"), "{why}");
}

fn sallyport_cmd(f: &Fixture, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(crate::harness::SALLYPORT);
    cmd.args(args);
    f.aws_env(&mut cmd);
    cmd
}

/// Over the real websocket path: the testbed's agent demands KMS for a command session,
/// sallyport gets a data key from the testbed's KMS, and output, stderr and the exit code
/// (all encrypted by the agent) come back intact.
#[test]
fn exec_on_a_kms_instance_is_encrypted_end_to_end() {
    let f = Fixture::with_config(|c| c.instances[0].kms_key_id = Some(KEY.into()));
    let out = run(
        &mut sallyport_cmd(
            &f,
            &[
                "exec",
                &f.instance,
                "--",
                "sh",
                "-c",
                "echo secret-out; echo err >&2; exit 4",
            ],
        ),
        None,
        Duration::from_secs(60),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secret-out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));
    assert_eq!(out.status.code(), Some(4));
    let asked = f
        .testbed
        .calls()
        .iter()
        .any(|c| c.operation == "GenerateDataKey");
    assert!(
        asked,
        "sallyport fetched a data key: {:?}",
        f.testbed.calls()
    );
}

/// An interactive command on a KMS instance: the notice is shown and the output arrives.
#[test]
fn interactive_command_on_a_kms_instance_shows_the_notice() {
    let f = Fixture::with_config(|c| c.instances[0].kms_key_id = Some(KEY.into()));
    let out = run(
        &mut sallyport_cmd(
            &f,
            &[
                "shell",
                &f.instance,
                "--document",
                "AWS-StartInteractiveCommand",
                "--parameter",
                "command=echo encrypted-shell-ran",
            ],
        ),
        None,
        Duration::from_secs(60),
    );
    let stdout = ok(&out);
    assert!(stdout.contains(KMS_NOTICE), "{stdout}");
    assert!(stdout.contains("encrypted-shell-ran"), "{stdout}");
}
