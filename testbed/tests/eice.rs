//! The EC2 Instance Connect Endpoint side of the testbed, from outside: `/openTunnel`
//! presigned with the SDK's own signer (`aws-sigv4`) relays bytes to a local TCP echo,
//! refuses bad presigns and targets the endpoint does not serve, ends at
//! `maxTunnelDuration` and enforces the connection limit.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use aws_sdk_ec2instanceconnect::config::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use futures_util::{SinkExt as _, StreamExt as _};
use sallyport_testbed::world::endpoints::EndpointConfig;
use sallyport_testbed::{InstanceConfig, Testbed, TestbedConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const INSTANCE: &str = "i-0123456789abcdef0";
const IP: &str = "10.0.1.7";
const IPV6: &str = "fd00::7";
const ELSEWHERE: &str = "i-0fedcba9876543210";
const ELSEWHERE_IP: &str = "10.9.0.9";
const ENDPOINT: &str = "eice-0123456789abcdef0";
const PATIENCE: Duration = Duration::from_secs(20);

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A TCP echo on loopback; it serves until the test's runtime ends.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = conn.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
            });
        }
    });
    addr
}

/// A port that says `bye\n` and closes.
async fn greeter() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.write_all(b"bye\n").await;
        }
    });
    addr
}

/// An agent-less instance (reachable through EICE only) with port 22 = an echo and port
/// 23 = the greeter, and one in another VPC; an endpoint in the first one's VPC.
async fn start() -> Testbed {
    let mut here = InstanceConfig::named(INSTANCE, "web");
    here.ping_status = "ConnectionLost".to_owned();
    here.ec2_state = Some("running".to_owned());
    here.ip_address = Some(IP.to_owned());
    here.ipv6_address = Some(IPV6.to_owned());
    here.ports.insert(22, echo().await);
    here.ports.insert(23, greeter().await);
    let mut there = InstanceConfig::named(ELSEWHERE, "other");
    there.ip_address = Some(ELSEWHERE_IP.to_owned());
    there.vpc_id = Some("vpc-0000000000000ffff".to_owned());
    there.ports.insert(22, echo().await);
    let endpoint = EndpointConfig::new(ENDPOINT, here.vpc_id(), here.subnet_id());
    let mut config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![here, there]);
    config.instance_connect_endpoints = vec![endpoint];
    Testbed::start(config).await.unwrap()
}

/// How to presign; each field can be made wrong.
struct Presign {
    host: String,
    region: String,
    secret: String,
    time: SystemTime,
    expires: Duration,
}

fn presign(tb: &Testbed) -> Presign {
    Presign {
        host: tb.eice_dns_name(),
        region: tb.region.clone(),
        secret: tb.secret_access_key.clone(),
        time: SystemTime::now(),
        expires: Duration::from_secs(60),
    }
}

/// `ws://…/openTunnel?…`, presigned like the AWS CLI (service `ec2-instance-connect`,
/// `host` signed, empty body hashed) unless `p` is None.
fn tunnel_url(tb: &Testbed, query: &str, p: Option<&Presign>) -> String {
    let base = format!("ws://{}/openTunnel?{query}", tb.addr);
    let Some(p) = p else {
        return base;
    };
    let creds = Credentials::new(&tb.access_key_id, &p.secret, None, None, "test");
    let identity = creds.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(p.expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&p.region)
        .name("ec2-instance-connect")
        .time(p.time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = format!("https://{}/openTunnel?{query}", p.host);
    let request = SignableRequest::new(
        "GET",
        &url,
        [("host", p.host.as_str())].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let (_, extra) = instructions.into_parts();
    let mut out = base;
    for (k, v) in extra {
        out.push_str(&format!("&{k}={}", encode(&v)));
    }
    out
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(ip: &str, port: u16) -> String {
    format!(
        "instanceConnectEndpointId={ENDPOINT}&remotePort={port}&privateIpAddress={}",
        encode(ip)
    )
}

/// Opens the websocket; the HTTP status of a refusal otherwise.
async fn dial(tb: &Testbed, url: &str) -> Result<Ws, u16> {
    let tcp = TcpStream::connect(tb.addr).await.unwrap();
    let req = url.into_client_request().unwrap();
    match tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(req, tcp)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(resp.status().as_u16()),
        Ok(Err(e)) => panic!("websocket handshake failed: {e}"),
        Err(_) => panic!("no answer to the upgrade"),
    }
}

/// Reads until a close frame; returns the binary bytes and the close code and reason.
async fn read_to_close(ws: &mut Ws) -> (Vec<u8>, Option<(CloseCode, String)>) {
    let mut got = Vec::new();
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no close");
        match msg {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            Some(Ok(Message::Close(f))) => {
                return (got, f.map(|f| (f.code, f.reason.to_string())));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}"),
            None => return (got, None),
        }
    }
}

#[tokio::test]
async fn a_good_tunnel_relays_bytes_intact_both_ways() {
    let tb = start().await;
    let url = tunnel_url(&tb, &query(IP, 22), Some(&presign(&tb)));
    let mut ws = dial(&tb, &url).await.expect("tunnel opens");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut got = Vec::new();
    let mut biggest = 0;
    for chunk in data.chunks(65_000) {
        ws.send(Message::binary(chunk.to_vec())).await.unwrap();
    }
    while got.len() < data.len() {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("echo")
        {
            Some(Ok(Message::Binary(b))) => {
                biggest = biggest.max(b.len());
                got.extend_from_slice(&b);
            }
            other => panic!("expected binary, got {other:?}"),
        }
    }
    assert!(got == data, "echo differs");
    assert!(biggest <= 64 * 1024, "a frame of {biggest} bytes");
    ws.close(None).await.unwrap();
    let stats = tb.tunnel_stats();
    assert_eq!((stats.opened, stats.refused), (1, 0));
    assert_eq!(stats.bytes_to_instance, 1_000_000);
    assert_eq!(stats.bytes_to_client, 1_000_000);
    // The IPv6 address reaches the same instance; the instance's own close is a 1000.
    let url = tunnel_url(&tb, &query(IPV6, 23), Some(&presign(&tb)));
    let mut ws = dial(&tb, &url).await.expect("tunnel over IPv6 opens");
    let (got, close) = read_to_close(&mut ws).await;
    assert_eq!(got, b"bye\n");
    assert_eq!(close.map(|c| c.0), Some(CloseCode::Normal));
}

#[tokio::test]
async fn bad_presigns_are_refused() {
    let tb = start().await;
    let q = query(IP, 22);
    let good = presign(&tb);
    assert_eq!(
        dial(&tb, &tunnel_url(&tb, &q, None)).await.err(),
        Some(403),
        "unsigned"
    );
    let cases = [
        (
            "expired",
            Presign {
                time: SystemTime::now() - Duration::from_secs(120),
                ..presign(&tb)
            },
        ),
        (
            "too long",
            Presign {
                expires: Duration::from_secs(300),
                ..presign(&tb)
            },
        ),
        (
            "wrong region",
            Presign {
                region: "eu-west-1".to_owned(),
                ..presign(&tb)
            },
        ),
        (
            "wrong host",
            Presign {
                host: format!("localhost:{}", tb.addr.port()),
                ..presign(&tb)
            },
        ),
        (
            "bad signature",
            Presign {
                secret: "x".repeat(40),
                ..presign(&tb)
            },
        ),
    ];
    for (what, p) in cases {
        let url = tunnel_url(&tb, &q, Some(&p));
        assert_eq!(dial(&tb, &url).await.err(), Some(403), "{what}");
    }
    // A tampered query (the port changed after signing) breaks the signature.
    let url = tunnel_url(&tb, &q, Some(&good)).replace("remotePort=22", "remotePort=23");
    assert_eq!(dial(&tb, &url).await.err(), Some(403), "tampered");
    assert!(
        dial(&tb, &tunnel_url(&tb, &q, Some(&good))).await.is_ok(),
        "the good one"
    );
    assert_eq!(tb.tunnel_stats().refused, 7);
}

#[tokio::test]
async fn targets_the_endpoint_does_not_serve_are_refused() {
    let tb = &start().await;
    let refused = |q: String| {
        let url = tunnel_url(tb, &q, Some(&presign(tb)));
        async move { dial(tb, &url).await.err() }
    };
    assert_eq!(
        refused(query(ELSEWHERE_IP, 22)).await,
        Some(403),
        "other VPC"
    );
    assert_eq!(
        refused(query("10.0.1.8", 22)).await,
        Some(403),
        "no such address"
    );
    assert_eq!(refused(query(IP, 2222)).await, Some(403), "no such port");
    let unknown = query(IP, 22).replace(ENDPOINT, "eice-00000000000000000");
    assert_eq!(refused(unknown).await, Some(404), "no such endpoint");
    let bad = format!("{}&maxTunnelDuration=3601", query(IP, 22));
    assert_eq!(refused(bad).await, Some(400), "duration out of range");
}

#[tokio::test]
async fn max_tunnel_duration_ends_the_tunnel() {
    let tb = start().await;
    let q = format!("{}&maxTunnelDuration=1", query(IP, 22));
    let mut ws = dial(&tb, &tunnel_url(&tb, &q, Some(&presign(&tb))))
        .await
        .unwrap();
    ws.send(Message::binary(b"ping".to_vec())).await.unwrap();
    let started = std::time::Instant::now();
    let (got, close) = read_to_close(&mut ws).await;
    assert_eq!(got, b"ping");
    let (code, reason) = close.expect("a close frame");
    assert_ne!(code, CloseCode::Normal);
    assert!(reason.contains("maximum duration"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A TEXT frame is a protocol error.
    let mut ws = dial(&tb, &tunnel_url(&tb, &query(IP, 22), Some(&presign(&tb))))
        .await
        .unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    let (_, close) = read_to_close(&mut ws).await;
    assert_eq!(close.map(|c| c.0), Some(CloseCode::Protocol));
}

#[tokio::test]
async fn the_21st_connection_is_refused() {
    let tb = start().await;
    let url = || tunnel_url(&tb, &query(IP, 22), Some(&presign(&tb)));
    let mut open = Vec::new();
    for i in 0..20 {
        open.push(
            dial(&tb, &url())
                .await
                .unwrap_or_else(|s| panic!("{i}: {s}")),
        );
    }
    assert_eq!(tb.tunnel_stats().active, 20);
    assert_eq!(dial(&tb, &url()).await.err(), Some(429));
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    let _ = read_to_close(&mut first).await;
    // The place comes back once the testbed has seen the close.
    let deadline = std::time::Instant::now() + PATIENCE;
    while tb.tunnel_stats().active > 19 {
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dial(&tb, &url()).await.is_ok());
}

/// Signs and POSTs a Query-API form to the testbed; returns status and body.
async fn ec2_call(tb: &Testbed, form: &str) -> (u16, String) {
    let host = tb.addr.to_string();
    let amz_date = sallyport_testbed::world::clock::format_amz_date(
        sallyport_testbed::world::clock::now_secs(0),
    );
    let req = hyper::Request::post("/")
        .header("host", &host)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header("x-amz-date", &amz_date)
        .body(())
        .unwrap();
    let (parts, ()) = req.into_parts();
    let auth = sallyport_testbed::aws_api::sigv4::authorization_header(
        &parts,
        form.as_bytes(),
        &tb.access_key_id,
        &tb.secret_access_key,
        &tb.region,
        "ec2",
    );
    let mut tcp = TcpStream::connect(tb.addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded; \
         charset=utf-8\r\nx-amz-date: {amz_date}\r\nauthorization: {auth}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{form}",
        form.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

fn between<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.match_indices(&open)
        .filter_map(|(at, _)| {
            let rest = &xml[at + open.len()..];
            rest.find(&close).map(|end| &rest[..end])
        })
        .collect()
}

#[tokio::test]
async fn describe_calls_filter_paginate_and_fail_in_ec2_xml() {
    let mut instances: Vec<InstanceConfig> = (0..12)
        .map(|n| InstanceConfig::named(&format!("i-{n:017x}"), &format!("web-{n}")))
        .collect();
    instances[3].vpc_id = Some("vpc-0000000000000beef".to_owned());
    instances[4].ping_status = "ConnectionLost".to_owned();
    let mut config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), instances);
    config.instance_connect_endpoints = vec![EndpointConfig::new(
        ENDPOINT,
        sallyport_testbed::world::endpoints::DEFAULT_VPC_ID,
        sallyport_testbed::world::endpoints::DEFAULT_SUBNET_ID,
    )];
    let tb = Testbed::start(config).await.unwrap();
    let base = "Action=DescribeInstances&Version=2016-11-15";
    // Pages of 5: 5, 5, 2, each but the last with a nextToken.
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    for want in [5, 5, 2] {
        let mut form = format!("{base}&MaxResults=5");
        if let Some(t) = &token {
            form.push_str(&format!("&NextToken={}", encode(t)));
        }
        let (status, xml) = ec2_call(&tb, &form).await;
        assert_eq!(status, 200, "{xml}");
        assert!(xml.contains("xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\""));
        let page = between(&xml, "instanceId");
        assert_eq!(page.len(), want, "{xml}");
        ids.extend(page.iter().map(|s| s.to_string()));
        token = between(&xml, "nextToken").first().map(|s| s.to_string());
    }
    assert!(token.is_none());
    ids.dedup();
    assert_eq!(ids.len(), 12);
    let tb = &tb;
    let one = |form: String| async move {
        let (status, xml) = ec2_call(tb, &form).await;
        assert_eq!(status, 200, "{xml}");
        between(&xml, "instanceId")
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let f = |name: &str, value: &str| {
        format!(
            "{base}&Filter.1.Name={}&Filter.1.Value.1={}",
            encode(name),
            encode(value)
        )
    };
    assert_eq!(one(f("tag:Name", "web-2")).await, [format!("i-{:017x}", 2)]);
    assert_eq!(
        one(f("vpc-id", "vpc-0000000000000beef")).await,
        [format!("i-{:017x}", 3)]
    );
    assert_eq!(
        one(f("instance-state-name", "stopped")).await,
        [format!("i-{:017x}", 4)]
    );
    assert_eq!(
        one(f("tag:Name", "web-1*")).await.len(),
        3,
        "web-1, web-10, web-11"
    );
    assert_eq!(
        one(f("instance-id", &format!("i-{:017x}", 7))).await.len(),
        1
    );
    let by_id = format!("{base}&InstanceId.1=i-{:017x}&InstanceId.2=i-{:017x}", 1, 2);
    assert_eq!(one(by_id).await.len(), 2);
    // Errors, in EC2's error document.
    let err = |form: String| async move {
        let (status, xml) = ec2_call(tb, &form).await;
        assert!(xml.starts_with("<?xml") && xml.contains("<Response><Errors><Error><Code>"));
        assert!(xml.contains("<RequestID>"), "{xml}");
        (status, between(&xml, "Code")[0].to_owned())
    };
    let missing = format!("{base}&InstanceId.1=i-0000000000000dead");
    assert_eq!(
        err(missing).await,
        (400, "InvalidInstanceID.NotFound".to_owned())
    );
    let malformed = format!("{base}&InstanceId.1=web-1");
    assert_eq!(
        err(malformed).await,
        (400, "InvalidInstanceID.Malformed".to_owned())
    );
    assert_eq!(
        err(f("flavour", "x")).await,
        (400, "InvalidParameterValue".to_owned())
    );
    let small = format!("{base}&MaxResults=2");
    assert_eq!(err(small).await, (400, "InvalidParameterValue".to_owned()));
    // The endpoint list.
    let (status, xml) = ec2_call(
        tb,
        "Action=DescribeInstanceConnectEndpoints&Version=2016-11-15",
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(between(&xml, "instanceConnectEndpointId"), [ENDPOINT]);
    assert_eq!(between(&xml, "dnsName"), [tb.eice_dns_name().as_str()]);
    assert_eq!(between(&xml, "state"), ["create-complete"]);
}

#[tokio::test]
async fn a_caller_without_permission_gets_unauthorized_operation() {
    let mut config = TestbedConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![InstanceConfig::named(INSTANCE, "web")],
    );
    config.ec2_describe_denied = true;
    let tb = Testbed::start(config).await.unwrap();
    let (status, xml) = ec2_call(&tb, "Action=DescribeInstances&Version=2016-11-15").await;
    assert_eq!(status, 403);
    assert_eq!(between(&xml, "Code"), ["UnauthorizedOperation"]);
}
