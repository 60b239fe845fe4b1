//! The client against a scripted HTTP server on 127.0.0.1: what it sends (form POST, signed
//! for `ec2`, `Version=2016-11-15`, the page token) and what it makes of the answers.

use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// One request as the server saw it: the head (lower-cased) and the body.
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: String,
}

/// Serves `answers` in order (status, body), one per connection, and records requests.
async fn server(answers: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        for (status, body) in answers {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body_start) = loop {
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0 && buf.len() < 1 << 20, "request ended early");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (String::from_utf8_lossy(&buf[..i]).to_lowercase(), i + 4);
                }
            };
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < body_start + len {
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "body ended early");
                buf.extend_from_slice(&chunk[..n]);
            }
            let req_body = String::from_utf8_lossy(&buf[body_start..body_start + len]).into();
            record.lock().unwrap().push(Seen {
                head,
                body: req_body,
            });
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(resp.as_bytes()).await.unwrap();
        }
    });
    (url, seen)
}

fn config(url: &str) -> SdkConfig {
    let http =
        crate::aws::network::http_client(&crate::transport::Network::default(), None).unwrap();
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(url)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("TOKEN".into()),
            None,
            "test",
        )))
        .http_client(http)
        .build()
}

fn endpoints_page(id: &str, next: Option<&str>) -> String {
    format!(
        "<DescribeInstanceConnectEndpointsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><instanceConnectEndpointSet><item><instanceConnectEndpointId>{id}</instanceConnectEndpointId><state>create-complete</state><vpcId>vpc-1</vpcId><subnetId>subnet-1</subnetId><dnsName>127.0.0.1:1</dnsName></item></instanceConnectEndpointSet>{}</DescribeInstanceConnectEndpointsResponse>",
        next.map(|t| format!("<nextToken>{t}</nextToken>"))
            .unwrap_or_default()
    )
}

#[tokio::test]
async fn pages_are_followed_and_each_request_is_a_signed_form_post() {
    let (url, seen) = server(vec![
        (200, endpoints_page("eice-1", Some("tok+/="))),
        (200, endpoints_page("eice-2", None)),
    ])
    .await;
    let ec2 = Ec2::new(&config(&url));
    let all = ec2.describe_endpoints(Some("vpc-1")).await.unwrap();
    let ids: Vec<_> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["eice-1", "eice-2"]);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert!(s.head.starts_with("post / http/1.1"), "{}", s.head);
        assert!(
            s.head
                .contains("content-type: application/x-www-form-urlencoded"),
            "{}",
            s.head
        );
        assert!(
            s.head
                .contains("authorization: aws4-hmac-sha256 credential=akidexample/")
                && s.head.contains("/eu-west-1/ec2/aws4_request"),
            "{}",
            s.head
        );
        assert!(s.head.contains("x-amz-security-token: token"), "{}", s.head);
        assert!(
            s.body
                .starts_with("Action=DescribeInstanceConnectEndpoints&Version=2016-11-15"),
            "{}",
            s.body
        );
        assert!(
            s.body
                .contains("&Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-1")
        );
        assert!(
            !s.head.contains("wjalrxutnfemi"),
            "the secret is never sent"
        );
    }
    assert!(!seen[0].body.contains("NextToken"));
    assert!(
        seen[1].body.contains("&NextToken=tok%2B%2F%3D"),
        "{}",
        seen[1].body
    );
}

#[tokio::test]
async fn ec2_errors_become_clear_failures() {
    let denied = "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>x</RequestID></Response>";
    let not_found = "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-0123' does not exist</Message></Error></Errors><RequestID>x</RequestID></Response>";
    let (url, _) = server(vec![(403, denied.into()), (400, not_found.into())]).await;
    let ec2 = Ec2::new(&config(&url));
    let e = ec2.describe_endpoints(None).await.unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::AccessDenied);
    assert_eq!(
        e.message,
        "DescribeInstanceConnectEndpoints failed: UnauthorizedOperation: You are not authorized to perform this operation."
    );
    let q = InstanceQuery {
        ids: vec!["i-0123".into()],
        ..Default::default()
    };
    let e = ec2.describe_instances(&q).await.unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::InvalidTarget);
    assert!(
        e.message.contains("InvalidInstanceID.NotFound"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn an_answer_that_is_not_ec2s_is_refused_in_one_line() {
    let (url, _) = server(vec![(200, "<html>captive portal</html>".into())]).await;
    let ec2 = Ec2::new(&config(&url));
    let e = ec2
        .describe_instances(&InstanceQuery::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::Service);
    assert!(e.message.contains("cannot be read"), "{}", e.message);
    assert!(!e.message.contains('\n'));
}

#[tokio::test]
async fn a_page_token_that_repeats_ends_the_lookup() {
    let (url, seen) = server(vec![
        (200, endpoints_page("eice-1", Some("same"))),
        (200, endpoints_page("eice-2", Some("same"))),
    ])
    .await;
    let ec2 = Ec2::new(&config(&url));
    let all = ec2.describe_endpoints(None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn default_endpoints() {
    assert_eq!(
        default_endpoint("eu-west-1", false, false),
        "https://ec2.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        default_endpoint("us-east-1", true, false),
        "https://ec2-fips.us-east-1.amazonaws.com"
    );
    assert_eq!(
        default_endpoint("cn-north-1", false, false),
        "https://ec2.cn-north-1.amazonaws.com.cn"
    );
    assert_eq!(
        default_endpoint("eu-west-1", false, true),
        "https://ec2.eu-west-1.api.aws"
    );
}

#[test]
fn fips_is_read_from_the_loaded_config() {
    let c = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .use_fips(true)
        .build();
    let ec2 = Ec2::new(&c);
    assert!(ec2.fips());
    assert_eq!(ec2.endpoint(), "https://ec2-fips.us-east-1.amazonaws.com");
}
