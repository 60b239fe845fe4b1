//! EC2's XML: the `DescribeInstances` and `DescribeInstanceConnectEndpoints` answers in
//! the 2016-11-15 namespace (element names from botocore's `ec2/2016-11-15/service-2.json`:
//! `reservationSet`/`item`/`instancesSet`/`item`, `instanceConnectEndpointSet`/`item`,
//! `nextToken`) and EC2's error document
//! (`<Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors><RequestID>…`).

use std::net::IpAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::aws_api::account::Account;
use crate::aws_api::sigv4::AuthError;
use crate::world::config::{ACCOUNT_ID, InstanceConfig};
use crate::world::endpoints::EndpointConfig;

const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// An EC2 error: HTTP status, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Ec2Error {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Ec2Error {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_value(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameterValue", message)
    }

    pub fn invalid_filter(name: &str) -> Self {
        Self::bad_value(format!("The filter '{name}' is invalid"))
    }

    /// What IAM answers a caller without the `ec2:ACTION` permission.
    pub fn unauthorized(caller: &str, action: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "UnauthorizedOperation",
            format!(
                "You are not authorized to perform this operation. User: {caller} is not \
                 authorized to perform: ec2:{action} because no identity-based policy allows \
                 the ec2:{action} action"
            ),
        )
    }
}

impl From<AuthError> for Ec2Error {
    /// EC2 names the signature errors its own way. Unverified: the statuses and the code
    /// for an expired temporary key (`RequestExpired` is EC2's for a stale signature).
    fn from(e: AuthError) -> Self {
        let (status, code) = match e.code {
            "UnrecognizedClientException" => (StatusCode::UNAUTHORIZED, "AuthFailure"),
            "InvalidSignatureException" if e.message.starts_with("Signature") => {
                (StatusCode::BAD_REQUEST, "RequestExpired")
            }
            "InvalidSignatureException" => (StatusCode::FORBIDDEN, "SignatureDoesNotMatch"),
            "ExpiredTokenException" => (StatusCode::BAD_REQUEST, "RequestExpired"),
            "MissingAuthenticationTokenException" => {
                (StatusCode::UNAUTHORIZED, "MissingAuthenticationToken")
            }
            "IncompleteSignatureException" => (StatusCode::BAD_REQUEST, "IncompleteSignature"),
            other => (e.status, other),
        };
        Ec2Error::new(status, code, e.message)
    }
}

/// EC2's state code for a state name.
fn state_code(name: &str) -> u16 {
    match name {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        _ => 80,
    }
}

/// The last 17 hex digits of an ID, padded, to derive related IDs from.
fn suffix(id: &str) -> String {
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    format!("{hex:0>17}")[..17].to_owned()
}

fn tag_set(tags: &std::collections::BTreeMap<String, String>) -> String {
    let items: String = (tags.iter())
        .map(|(k, v)| {
            format!(
                "<item><key>{}</key><value>{}</value></item>",
                escape(k),
                escape(v)
            )
        })
        .collect();
    format!("<tagSet>{items}</tagSet>")
}

fn instance_item(i: &InstanceConfig, region: &str) -> String {
    let state = i.ec2_state();
    let ip = escape(&i.ip_address());
    let (vpc, subnet) = (escape(i.vpc_id()), escape(i.subnet_id()));
    let ipv6 = i.ipv6_address.as_deref().map(escape);
    let ipv6_top = (ipv6.as_ref())
        .map(|a| format!("<ipv6Address>{a}</ipv6Address>"))
        .unwrap_or_default();
    let ipv6_set = (ipv6.as_ref())
        .map(|a| {
            format!(
                "<item><ipv6Address>{a}</ipv6Address><isPrimaryIpv6>true</isPrimaryIpv6></item>"
            )
        })
        .unwrap_or_default();
    let windows = i.platform_type() == "Windows";
    let platform = if windows {
        "<platform>windows</platform>"
    } else {
        ""
    };
    let details = if windows { "Windows" } else { "Linux/UNIX" };
    let dns = format!(
        "ip-{}.ec2.internal",
        i.ip_address().replace(['.', ':'], "-")
    );
    let sfx = suffix(&i.id);
    format!(
        "<item><instanceId>{id}</instanceId><imageId>ami-{sfx}</imageId>\
         <instanceState><code>{code}</code><name>{state}</name></instanceState>\
         <privateDnsName>{dns}</privateDnsName><dnsName/><instanceType>t3.micro</instanceType>\
         <launchTime>2026-01-01T00:00:00.000Z</launchTime>\
         <placement><availabilityZone>{region}a</availabilityZone><tenancy>default</tenancy></placement>\
         {platform}<platformDetails>{details}</platformDetails>\
         <subnetId>{subnet}</subnetId><vpcId>{vpc}</vpcId><privateIpAddress>{ip}</privateIpAddress>{ipv6_top}\
         <architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>\
         <networkInterfaceSet><item><networkInterfaceId>eni-{sfx}</networkInterfaceId>\
         <subnetId>{subnet}</subnetId><vpcId>{vpc}</vpcId><ownerId>{ACCOUNT_ID}</ownerId>\
         <status>in-use</status><privateIpAddress>{ip}</privateIpAddress>\
         <privateIpAddressesSet><item><privateIpAddress>{ip}</privateIpAddress><primary>true</primary></item></privateIpAddressesSet>\
         <ipv6AddressesSet>{ipv6_set}</ipv6AddressesSet></item></networkInterfaceSet>\
         {tags}</item>",
        id = escape(&i.id),
        code = state_code(state),
        state = escape(state),
        dns = escape(&dns),
        tags = tag_set(&i.tags),
    )
}

/// `DescribeInstancesResponse`: one reservation per instance.
pub fn describe_instances(state: &Account, page: &[&InstanceConfig], next: Option<&str>) -> String {
    let region = &state.config.region;
    let reservations: String = (page.iter())
        .map(|i| {
            format!(
                "<item><reservationId>r-{}</reservationId><ownerId>{ACCOUNT_ID}</ownerId>\
                 <groupSet/><instancesSet>{}</instancesSet></item>",
                suffix(&i.id),
                instance_item(i, region)
            )
        })
        .collect();
    document(
        "DescribeInstancesResponse",
        &format!("<reservationSet>{reservations}</reservationSet>"),
        next,
    )
}

/// The `DnsName` the testbed hands out for its endpoints: its own listener, `HOST:PORT`, or
/// the bare host on port 443 (the only form the AWS CLI v2 can dial; docs/protocol.md
/// §10.3). On AWS it is a name under `ec2-instance-connect-endpoint.REGION.amazonaws.com`.
pub fn endpoint_dns_name(state: &Account) -> String {
    let addr = state.local_addr;
    let host = match addr.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    if addr.port() == 443 {
        host
    } else {
        format!("{host}:{}", addr.port())
    }
}

fn endpoint_item(e: &EndpointConfig, state: &Account) -> String {
    let region = &state.config.region;
    let dns = escape(&endpoint_dns_name(state));
    let id = escape(&e.id);
    let sfx = suffix(&e.id);
    format!(
        "<item><ownerId>{ACCOUNT_ID}</ownerId><instanceConnectEndpointId>{id}</instanceConnectEndpointId>\
         <instanceConnectEndpointArn>arn:aws:ec2:{region}:{ACCOUNT_ID}:instance-connect-endpoint/{id}</instanceConnectEndpointArn>\
         <state>{st}</state><stateMessage/><dnsName>{dns}</dnsName><fipsDnsName>{dns}</fipsDnsName>\
         <networkInterfaceIdSet><item>eni-{sfx}</item></networkInterfaceIdSet>\
         <vpcId>{vpc}</vpcId><availabilityZone>{region}a</availabilityZone>\
         <createdAt>2026-01-01T00:00:00.000Z</createdAt><subnetId>{subnet}</subnetId>\
         <preserveClientIp>false</preserveClientIp><securityGroupIdSet><item>sg-{sfx}</item></securityGroupIdSet>\
         <tagSet/><ipAddressType>ipv4</ipAddressType></item>",
        st = escape(&e.state),
        vpc = escape(&e.vpc_id),
        subnet = escape(&e.subnet_id),
    )
}

/// `DescribeInstanceConnectEndpointsResponse`.
pub fn describe_endpoints(state: &Account, page: &[&EndpointConfig], next: Option<&str>) -> String {
    let items: String = page.iter().map(|e| endpoint_item(e, state)).collect();
    document(
        "DescribeInstanceConnectEndpointsResponse",
        &format!("<instanceConnectEndpointSet>{items}</instanceConnectEndpointSet>"),
        next,
    )
}

fn document(root: &str, body: &str, next: Option<&str>) -> String {
    let next = next
        .map(|t| format!("<nextToken>{}</nextToken>", escape(t)))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"{XMLNS}\">\
         <requestId>{}</requestId>{body}{next}</{root}>\n",
        uuid::Uuid::new_v4()
    )
}

pub fn error_response(e: &Ec2Error) -> Response<Full<Bytes>> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
         <Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>\n",
        e.code,
        escape(&e.message),
        uuid::Uuid::new_v4()
    );
    respond(e.status, xml)
}

pub fn respond(status: StatusCode, xml: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(xml)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}
