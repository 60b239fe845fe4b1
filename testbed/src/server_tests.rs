//! The server's routes, the data-channel upgrade checks and TLS.

use super::*;
use crate::world::config::InstanceConfig;
use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use aws_sdk_ssm::error::ProvideErrorMetadata as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ONLINE: &str = crate::world::config::DEFAULT_INSTANCE_ID;
const LOST: &str = "i-0fedcba9876543210";

async fn testbed() -> Testbed {
    let online = InstanceConfig::ssh_shortcut("127.0.0.1:2222".parse().unwrap());
    let mut lost = online.clone();
    (lost.id, lost.ping_status) = (LOST.to_owned(), "ConnectionLost".to_owned());
    let config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![online, lost]);
    Testbed::start(config).await.unwrap()
}

fn client(tb: &Testbed, akid: &str, secret: &str) -> aws_sdk_ssm::Client {
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(tb.region.clone()))
        .endpoint_url(&tb.endpoint)
        .credentials_provider(Credentials::new(akid, secret, None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_ssm::Client::from_conf(conf)
}

#[tokio::test]
async fn aws_sdk_signs_and_reads_our_errors() {
    let tb = testbed().await;
    let ssm = client(&tb, &tb.access_key_id, &tb.secret_access_key);
    let start = |target: &str| ssm.start_session().target(target);
    let port = ("portNumber", vec!["22".to_owned()]);
    let ssh = start(ONLINE).document_name("AWS-StartSSHSession");
    let out = ssh.parameters(port.0, port.1).send().await.unwrap();
    let id = out.session_id().unwrap();
    assert_eq!(tb.sessions().get(id).unwrap().port_number(), Some(22));
    let url = out.stream_url().unwrap();
    assert!(url.starts_with(&format!("ws://{}/v1/data-channel/{id}?", tb.addr)));

    let err = start(LOST).send().await.unwrap_err();
    assert_eq!(err.code(), Some("TargetNotConnected"));
    assert_eq!(err.message(), Some("i-0fedcba9876543210 is not connected."));
    assert!(err.into_service_error().is_target_not_connected());
    let err = start(ONLINE).document_name("Nope-Doc").send().await;
    assert!(err.unwrap_err().into_service_error().is_invalid_document());
    let err = start("web-1").send().await.unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));

    let terminate = |c: &aws_sdk_ssm::Client| c.terminate_session().session_id(id).send();
    let done = terminate(&ssm).await.unwrap();
    assert_eq!(done.session_id(), Some(id));
    assert!(tb.sessions().is_terminated(id));
    let wrong = client(&tb, &tb.access_key_id, "not-the-secret");
    let err = terminate(&wrong).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    let stranger = client(&tb, "AKIAOTHER", "x");
    let err = terminate(&stranger).await.unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    tb.add_credentials("AKIAOTHER", "x");
    assert!(terminate(&stranger).await.is_ok());
}

/// One HTTP/1.1 exchange on a fresh connection, signed if `sign`; the response as text.
async fn raw(tb: &Testbed, method: &str, path: &str, body: &str, sign: bool) -> String {
    let (parts, ()) = Request::builder()
        .method(method)
        .uri(path)
        .header("host", tb.addr.to_string())
        // Now: requests signed more than 5 minutes off are refused, as by AWS.
        .header(
            "x-amz-date",
            crate::world::clock::format_amz_date(crate::world::clock::now_secs(0)),
        )
        .header("x-amz-target", "AmazonSSM.StartSession")
        .body(())
        .unwrap()
        .into_parts();
    let (akid, secret) = (&tb.access_key_id, &tb.secret_access_key);
    let mut req = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    for (n, v) in &parts.headers {
        req.push_str(&format!("{n}: {}\r\n", v.to_str().unwrap()));
    }
    if sign {
        let a = crate::aws_api::sigv4::authorization_header(
            &parts,
            body.as_bytes(),
            akid,
            secret,
            &tb.region,
            "ssm",
        );
        req.push_str(&format!("authorization: {a}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    let mut s = tokio::net::TcpStream::connect(tb.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn raw_http_error_shape_and_routes() {
    let tb = testbed().await;
    let body = format!(r#"{{"Target":"{LOST}"}}"#);
    let resp = raw(&tb, "POST", "/", &body, true).await;
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
    let want_headers = [
        "content-type: application/x-amz-json-1.1",
        "x-amzn-requestid: ",
    ];
    for h in want_headers
        .iter()
        .chain(&["x-amzn-errortype: TargetNotConnected"])
    {
        assert!(resp.contains(h), "{h} missing in {resp}");
    }
    let json: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let message = "i-0fedcba9876543210 is not connected.";
    let want = serde_json::json!({"__type": "TargetNotConnected", "Message": message});
    assert_eq!(json, want);

    let resp = raw(&tb, "POST", "/", &body, false).await;
    assert!(resp.starts_with("HTTP/1.1 403 "), "{resp}");
    assert!(resp.contains(r#""__type":"MissingAuthenticationTokenException""#));
    let resp = raw(&tb, "GET", "/elsewhere", "", false).await;
    assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");
}

#[tokio::test]
async fn data_channel_websocket_upgrade() {
    use tokio_tungstenite::{connect_async, tungstenite::Error as WsError};
    let tb = testbed().await;
    let ssm = client(&tb, &tb.access_key_id, &tb.secret_access_key);
    let out = ssm.start_session().target(ONLINE).send().await.unwrap();
    let url = out.stream_url().unwrap();
    let sign = |url: &str| signed_request(&tb, url, &tb.access_key_id, &tb.secret_access_key, 0);
    let (_ws, resp) = connect_async(sign(url)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);

    let status = |r: Result<_, WsError>| match r {
        Err(WsError::Http(resp)) => resp.status(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    };
    let unknown = format!(
        "ws://{}/v1/data-channel/x-1?role=publish_subscribe",
        tb.addr
    );
    assert_eq!(
        status(connect_async(sign(&unknown)).await.map(drop)),
        StatusCode::NOT_FOUND
    );
    let no_role = url.split('?').next().unwrap();
    assert_eq!(
        status(connect_async(sign(no_role)).await.map(drop)),
        StatusCode::BAD_REQUEST
    );
}

type WsRequest = tokio_tungstenite::tungstenite::handshake::client::Request;

/// A websocket upgrade request for `url` signed as the plugin signs it (GET, query
/// included, empty body, `ssmmessages`), `skew_secs` off the clock.
fn signed_request(tb: &Testbed, url: &str, akid: &str, secret: &str, skew: i64) -> WsRequest {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = url.into_client_request().unwrap();
    let date = crate::world::clock::format_amz_date(crate::world::clock::now_secs(skew));
    let host = req.headers()["host"].clone();
    let (parts, ()) = Request::builder()
        .method("GET")
        .uri(req.uri().path_and_query().unwrap().as_str())
        .header("host", host)
        .header("x-amz-date", &date)
        .body(())
        .unwrap()
        .into_parts();
    let service = crate::aws_api::data_auth::SERVICE;
    let auth =
        crate::aws_api::sigv4::authorization_header(&parts, b"", akid, secret, &tb.region, service);
    let h = req.headers_mut();
    h.insert("x-amz-date", date.parse().unwrap());
    h.insert("authorization", auth.parse().unwrap());
    req
}

/// The status and body of a refused upgrade.
fn refusal<T: std::fmt::Debug>(
    r: Result<T, tokio_tungstenite::tungstenite::Error>,
) -> (StatusCode, String) {
    match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            (resp.status(), String::from_utf8_lossy(&body).into_owned())
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

fn session(tb: &Testbed, id: &str) -> String {
    tb.state
        .account
        .sessions
        .insert(crate::world::state::SessionRecord {
            session_id: id.to_owned(),
            token: "t".to_owned(),
            instance: InstanceConfig::ssh_shortcut("127.0.0.1:2222".parse().unwrap()),
            document: "SSM-SessionManagerRunShell".to_owned(),
            parameters: Default::default(),
        });
    tb.state.account.stream_url(id, "cell-1")
}

async fn testbed_with(adjust: impl FnOnce(&mut TestbedConfig)) -> Testbed {
    let mut config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![]);
    adjust(&mut config);
    Testbed::start(config).await.unwrap()
}

#[tokio::test]
async fn data_channel_upgrade_must_be_signed() {
    use crate::aws_api::data_auth::{DialAuth, DialRecord};
    use tokio_tungstenite::connect_async;
    let tb = testbed_with(|_| {}).await;
    let url = session(&tb, "s-1");
    let (akid, secret) = (tb.access_key_id.clone(), tb.secret_access_key.clone());
    let dial = |akid: &str, secret: &str, skew: i64| {
        connect_async(signed_request(&tb, &url, akid, secret, skew))
    };
    let (_ws, resp) = dial(&akid, &secret, 0).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);

    let (status, body) = refusal(connect_async(url.as_str()).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("MissingAuthenticationTokenException"),
        "{body}"
    );
    let (status, body) = refusal(dial(&akid, "wrong-secret", 0).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("InvalidSignatureException"), "{body}");
    assert!(body.contains("does not match"), "{body}");
    assert!(!body.contains('\n'), "short body: {body}");
    let (status, body) = refusal(dial("AKIANOBODY", &secret, 0).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("UnrecognizedClientException"), "{body}");
    let (status, body) = refusal(dial(&akid, &secret, -600).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("InvalidSignatureException"), "{body}");
    // Signed for another service (the API's): refused.
    let mut ssm_signed = signed_request(&tb, &url, &akid, &secret, 0);
    let auth = ssm_signed.headers()["authorization"].to_str().unwrap();
    let auth = auth.replace("/ssmmessages/", "/ssm/");
    ssm_signed
        .headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let (status, body) = refusal(connect_async(ssm_signed).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("correct service"), "{body}");
    // A rotated key works until it is expired.
    tb.add_credentials("AKIAROTATED", "rotated-secret");
    let (_ws2, resp) = dial("AKIAROTATED", "rotated-secret", 0).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(tb.expire_credentials("AKIAROTATED"));
    let (status, body) = refusal(dial("AKIAROTATED", "rotated-secret", 0).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("ExpiredTokenException"), "{body}");

    let rec = |auth, key: Option<&str>, refused: Option<&str>| DialRecord {
        session_id: "s-1".to_owned(),
        auth,
        access_key_id: key.map(str::to_owned),
        refused: refused.map(str::to_owned),
    };
    let signed = DialAuth::Signed;
    let want = vec![
        rec(signed, Some(&akid), None),
        rec(
            DialAuth::Unsigned,
            None,
            Some("MissingAuthenticationTokenException"),
        ),
        rec(signed, Some(&akid), Some("InvalidSignatureException")),
        rec(
            signed,
            Some("AKIANOBODY"),
            Some("UnrecognizedClientException"),
        ),
        rec(signed, Some(&akid), Some("InvalidSignatureException")),
        rec(signed, Some(&akid), Some("InvalidSignatureException")),
        rec(signed, Some("AKIAROTATED"), None),
        rec(signed, Some("AKIAROTATED"), Some("ExpiredTokenException")),
    ];
    assert_eq!(tb.data_channel_dials(), want);
    // The same list in /testbed/stats, next to the unchanged "sessions".
    let resp = raw(&tb, "GET", STATS_PATH, "", false).await;
    let json: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(json["sessions"].is_array(), "{json}");
    assert_eq!(json["data_channel_dials"][0]["auth"], "signed");
    assert_eq!(
        json["data_channel_dials"][0]["access_key_id"],
        akid.as_str()
    );
    assert_eq!(json["data_channel_dials"][1]["auth"], "unsigned");
    assert_eq!(
        json["data_channel_dials"][7]["refused"],
        "ExpiredTokenException"
    );
}

/// `--unsigned-data-channel accept`: a raw websocket client without any signature gets in.
#[tokio::test]
async fn unsigned_data_channel_accept_lets_unsigned_in() {
    use crate::aws_api::data_auth::DialAuth;
    use crate::world::config::UnsignedPolicy;
    let tb = testbed_with(|c| c.unsigned_data_channel = UnsignedPolicy::Accept).await;
    let url = session(&tb, "s-2");
    let (_ws, resp) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let dials = tb.data_channel_dials();
    assert_eq!(dials.len(), 1);
    assert_eq!(
        (dials[0].auth, &dials[0].refused),
        (DialAuth::Unsigned, &None)
    );
    // Signatures are still checked when present.
    let bad = signed_request(&tb, &url, &tb.access_key_id, "wrong", 0);
    let (status, _) = refusal(tokio_tungstenite::connect_async(bad).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn presigned_stream_urls_need_no_headers() {
    use crate::aws_api::data_auth::{DialAuth, PRESIGN_ACCESS_KEY_ID};
    use tokio_tungstenite::connect_async;
    let tb = testbed_with(|c| c.presign_stream_urls = true).await;
    let url = session(&tb, "s-3");
    let query = url.split_once('?').unwrap().1;
    assert!(query.starts_with("role=publish_subscribe&cell-number=cell-1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="), "{url}");
    assert!(query.contains("&X-Amz-Signature="), "{url}");
    let (_ws, resp) = connect_async(url.as_str()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let tampered = url.replace("cell-number=cell-1", "cell-number=cell-2");
    let (status, body) = refusal(connect_async(tampered.as_str()).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("does not match"), "{body}");
    let dials = tb.data_channel_dials();
    assert_eq!(dials.len(), 2);
    assert_eq!(dials[0].auth, DialAuth::Presigned);
    assert_eq!(
        dials[0].access_key_id.as_deref(),
        Some(PRESIGN_ACCESS_KEY_ID)
    );
    assert_eq!(dials[0].refused, None);
    assert_eq!(
        dials[1].refused.as_deref(),
        Some("InvalidSignatureException")
    );
    // The presign key is the testbed's own: API calls signed with it are not accepted.
    assert!(tb.state.account.credential(PRESIGN_ACCESS_KEY_ID).is_none());
}

#[tokio::test]
async fn tls_serves_https_and_wss_with_its_own_ca() {
    use tokio_tungstenite::{Connector, connect_async_tls_with_config};
    let tb = testbed_with(|c| c.tls = true).await;
    assert_eq!(tb.endpoint, format!("https://{}", tb.addr));
    let ca = tb.ca_bundle.clone().unwrap();
    let pem = std::fs::read_to_string(&ca).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let env = tb.env();
    let bundle = env.iter().find(|(k, _)| k == "AWS_CA_BUNDLE").unwrap();
    assert_eq!(bundle.1, ca.display().to_string());
    let url = session(&tb, "s-4");
    assert!(
        url.starts_with(&format!("wss://{}/v1/data-channel/s-4?", tb.addr)),
        "{url}"
    );

    let trusting = || Some(Connector::Rustls(tb.tls_client_config().unwrap()));
    let req = signed_request(&tb, &url, &tb.access_key_id, &tb.secret_access_key, 0);
    let (_ws, resp) = connect_async_tls_with_config(req, None, false, trusting())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    // The leaf also names localhost (SNI) and is refused by a client that does not
    // trust the CA.
    let by_name = url.replace("127.0.0.1", "localhost");
    let req = signed_request(&tb, &by_name, &tb.access_key_id, &tb.secret_access_key, 0);
    let (_ws2, _) = connect_async_tls_with_config(req, None, false, trusting())
        .await
        .unwrap();
    let req = signed_request(&tb, &url, &tb.access_key_id, &tb.secret_access_key, 0);
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // Plain HTTP to the TLS port is not served.
    let resp = raw(&tb, "GET", STATS_PATH, "", false).await;
    assert!(!resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(tb.data_channel_dials().len(), 2);
}

#[tokio::test]
async fn env_and_loopback_only() {
    let tb = testbed().await;
    let s = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let want = vec![
        s("AWS_ENDPOINT_URL", &format!("http://{}", tb.addr)),
        s("AWS_ACCESS_KEY_ID", "AKIASALLYPORTTESTBED"),
        s("AWS_SECRET_ACCESS_KEY", &tb.secret_access_key),
        s("AWS_REGION", "us-east-1"),
        s("SALLYPORT_TESTBED_INSTANCE", ONLINE),
        s("SALLYPORT_TESTBED_INSTANCE", LOST),
    ];
    assert_eq!(tb.env(), want);
    assert_eq!(tb.secret_access_key.len(), 40);

    let public = TestbedConfig::new("0.0.0.0:0".parse().unwrap(), vec![]);
    let err = Testbed::start(public).await.err().unwrap();
    assert!(err.to_string().contains("loopback"), "{err}");
}
