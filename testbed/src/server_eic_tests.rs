//! EC2 Instance Connect through the whole listener: the AWS SDK's client and raw signed
//! requests against a started [`Testbed`] (the handler is [`crate::aws_api::eic`]).

use crate::server::Testbed;
use crate::world::config::{InstanceConfig, TestbedConfig};
use aws_sdk_ec2instanceconnect::config::{
    BehaviorVersion, Credentials, Region, retry::RetryConfig,
};
use aws_sdk_ec2instanceconnect::error::ProvideErrorMetadata as _;
use hyper::Request;
use serde_json::Value;

const RUNNING: &str = "i-0123456789abcdef0";
const STOPPED: &str = "i-0fedcba9876543210";
const PENDING: &str = "i-00000000000000001";
const DENIED: &str = "i-00000000000000002";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXR6Gmf1kUbUIe2mJvlP8Ph8EP+0G9fNn2uv7Jl5zOa test@host";

async fn testbed() -> Testbed {
    let running = InstanceConfig::named(RUNNING, "web");
    let mut stopped = InstanceConfig::named(STOPPED, "lost");
    stopped.ping_status = "ConnectionLost".to_owned();
    let mut pending = InstanceConfig::named(PENDING, "booting");
    pending.ec2_state = Some("pending".to_owned());
    let mut denied = InstanceConfig::named(DENIED, "denied");
    denied.instance_connect_denied = true;
    let config = TestbedConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![running, stopped, pending, denied],
    );
    Testbed::start(config).await.unwrap()
}

fn client(tb: &Testbed) -> aws_sdk_ec2instanceconnect::Client {
    let conf = aws_sdk_ec2instanceconnect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(tb.region.clone()))
        .endpoint_url(&tb.endpoint)
        .credentials_provider(Credentials::new(
            &tb.access_key_id,
            &tb.secret_access_key,
            None,
            None,
            "test",
        ))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_ec2instanceconnect::Client::from_conf(conf)
}

#[tokio::test]
async fn aws_sdk_pushes_a_key_and_reads_our_errors() {
    let tb = testbed().await;
    let eic = client(&tb);
    let push = |id: &str, user: &str, key: &str| {
        eic.send_ssh_public_key()
            .instance_id(id)
            .instance_os_user(user)
            .ssh_public_key(key)
            .availability_zone("us-east-1a")
            .send()
    };
    let out = push(RUNNING, "ec2-user", &format!("{KEY}\n"))
        .await
        .unwrap();
    assert!(out.success());
    let request_id = out.request_id().unwrap();
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
    let stored = std::fs::read_to_string(tb.eic_state_dir().join("ec2-user")).unwrap();
    let (t, rest) = stored.trim_end().split_once(' ').unwrap();
    assert_eq!(rest, format!("{RUNNING} {KEY}"));
    let t: i64 = t.parse().unwrap();
    assert!((crate::world::clock::now_secs(0) - t).abs() <= 2, "{t}");
    let call = tb.calls().pop().unwrap();
    assert_eq!(call.service, "ec2-instance-connect");
    assert_eq!(call.operation, "SendSSHPublicKey");
    assert_eq!(call.access_key_id, tb.access_key_id);
    assert_eq!(call.target.as_deref(), Some(RUNNING));
    assert_eq!(call.os_user.as_deref(), Some("ec2-user"));
    assert_eq!(call.ssh_public_key, Some(format!("{KEY}\n")));

    let err = push(STOPPED, "ec2-user", KEY).await.unwrap_err();
    assert!(
        err.code() == Some("EC2InstanceStateInvalidException"),
        "{err:?}"
    );
    assert!(
        err.into_service_error()
            .is_ec2_instance_state_invalid_exception()
    );
    let err = push(PENDING, "ec2-user", KEY).await.unwrap_err();
    assert!(
        err.into_service_error()
            .is_ec2_instance_unavailable_exception()
    );
    let err = push("i-0aaaaaaaaaaaaaaaa", "ec2-user", KEY)
        .await
        .unwrap_err();
    assert_eq!(err.message(), Some("The specified instance was not found."));
    assert!(
        err.into_service_error()
            .is_ec2_instance_not_found_exception()
    );
    let err = push(DENIED, "ec2-user", KEY).await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(
        err.message()
            .unwrap()
            .contains(&format!("instance/{DENIED}"))
    );
    let sk = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIFXNjotqNox+MZYb0lsO10gNjZ0q16x5th73vx6vMcrJAAAABHNzaDo=";
    let err = push(RUNNING, "ec2-user", sk).await.unwrap_err();
    assert_eq!(
        err.message(),
        Some(
            "Invalid input parameter received for Illegal argument exception: SSH Public key is invalid"
        )
    );
    assert!(err.into_service_error().is_invalid_args_exception());
    let err = push("mi-0123456789abcdef0", "ec2-user", KEY)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    assert_eq!(
        err.message(),
        Some(
            "1 validation error detected: Value 'mi-0123456789abcdef0' at 'instanceId' \
             failed to satisfy constraint: Member must satisfy regular expression pattern: \
             ^i-[a-f0-9]+$"
        )
    );
    // Nothing but the first push reached the store.
    let stored_now = std::fs::read_to_string(tb.eic_state_dir().join("ec2-user")).unwrap();
    assert_eq!(stored_now, stored);
    // Every call was recorded, the refused ones too.
    let eic_calls = tb
        .calls()
        .iter()
        .filter(|c| c.service == "ec2-instance-connect")
        .count();
    assert_eq!(eic_calls, 7);
}

#[tokio::test]
async fn wrong_signing_name_is_refused() {
    let tb = testbed().await;
    // The SSM client signs for `ssm`; the same target header must still be refused.
    let (parts, ()) = Request::builder()
        .method("POST")
        .uri("/")
        .header("host", tb.addr.to_string())
        .header(
            "x-amz-date",
            crate::world::clock::format_amz_date(crate::world::clock::now_secs(0)),
        )
        .header(
            "x-amz-target",
            "AWSEC2InstanceConnectService.SendSSHPublicKey",
        )
        .body(())
        .unwrap()
        .into_parts();
    let body =
        format!(r#"{{"InstanceId":"{RUNNING}","InstanceOSUser":"root","SSHPublicKey":"{KEY}"}}"#);
    let sign = |service| {
        crate::aws_api::sigv4::authorization_header(
            &parts,
            body.as_bytes(),
            &tb.access_key_id,
            &tb.secret_access_key,
            &tb.region,
            service,
        )
    };
    let send = |auth: String| {
        let (parts, body) = (parts.clone(), body.clone());
        let addr = tb.addr;
        async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut req = String::from("POST / HTTP/1.1\r\nconnection: close\r\n");
            for (n, v) in &parts.headers {
                req.push_str(&format!("{n}: {}\r\n", v.to_str().unwrap()));
            }
            req.push_str(&format!("authorization: {auth}\r\n"));
            req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    let resp = send(sign("ssm")).await;
    assert!(resp.starts_with("HTTP/1.1 403 "), "{resp}");
    assert!(
        resp.contains("x-amzn-errortype: InvalidSignatureException"),
        "{resp}"
    );
    let resp = send(sign("ec2-instance-connect")).await;
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    let json: Value = serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["Success"], true);
    let header_id = resp
        .lines()
        .find_map(|l| l.strip_prefix("x-amzn-requestid: "))
        .unwrap();
    assert_eq!(json["RequestId"], header_id.trim());
}
