//! Whether an `/openTunnel` upgrade gets in, and where it leads.
//!
//! The query is `instanceConnectEndpointId`, `remotePort`, `privateIpAddress`, optional
//! `maxTunnelDuration` (1-3600 s), presigned with SigV4 query parameters: service
//! `ec2-instance-connect`, the testbed's region, signed header `host` = the endpoint's
//! DnsName as the EC2 API hands it out, payload hash of an empty body, `X-Amz-Expires`
//! at most 60 (docs/protocol.md §10.3).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hyper::StatusCode;
use hyper::http::request::Parts;

use crate::aws_api::account::Account;
use crate::aws_api::sigv4::{AuthError, EMPTY_PAYLOAD_SHA256, PresignRules, percent_decode};
use crate::world::config::InstanceConfig;
use crate::world::endpoints::EndpointConfig;

/// The signing name of the tunnel.
pub const SERVICE: &str = "ec2-instance-connect";
/// The path of the tunnel's websocket.
pub const PATH: &str = "/openTunnel";
/// The longest tunnel, and the default (docs/protocol.md §10.3).
pub const MAX_TUNNEL_SECS: u64 = 3600;
/// The longest presign validity the testbed accepts: the 60 s the AWS CLI and ec2ssh use.
/// Unverified: whether the service refuses a longer `X-Amz-Expires`.
pub const MAX_EXPIRES_SECS: i64 = 60;
/// Query parameters read at most (the tunnel's own four, the presign's seven, slack).
const MAX_QUERY_PARAMS: usize = 32;

/// A refused upgrade, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameter", message)
    }

    /// Unverified: what the service answers a tunnel to an address or port the endpoint
    /// does not serve (the TCP connection would fail or be filtered on AWS).
    fn not_served(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }
}

impl From<AuthError> for Refusal {
    /// Every signature problem is a 403 here. Unverified: the service's statuses and texts
    /// for a bad, expired or missing presign.
    fn from(e: AuthError) -> Self {
        let message = e.message.lines().next().unwrap_or_default().to_owned();
        Refusal::new(StatusCode::FORBIDDEN, e.code, message)
    }
}

/// Where an accepted tunnel leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTarget {
    pub endpoint: EndpointConfig,
    pub instance_id: String,
    /// The address that plays the instance's `remotePort`.
    pub dial: SocketAddr,
    pub max_duration: Duration,
}

/// Checks the upgrade's presign, then its query against the account's endpoints and
/// instances. Authentication comes first: an unsigned dial learns nothing about them.
pub fn check(state: &Account, parts: &Parts) -> Result<TunnelTarget, Refusal> {
    authenticate(state, parts)?;
    let query = parts.uri.query().unwrap_or("");
    let pairs: Vec<(String, String)> = (query.split('&').filter(|p| !p.is_empty()))
        .take(MAX_QUERY_PARAMS + 1)
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect();
    if pairs.len() > MAX_QUERY_PARAMS {
        return Err(Refusal::bad("too many query parameters"));
    }
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let required = |name: &str| {
        param(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Refusal::bad(format!("missing query parameter {name}")))
    };
    let endpoint_id = required("instanceConnectEndpointId")?;
    let port: u16 = (required("remotePort")?.parse().ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| Refusal::bad("remotePort must be a port number from 1 to 65535"))?;
    let ip: IpAddr = (required("privateIpAddress")?.parse())
        .map_err(|_| Refusal::bad("privateIpAddress must be an IPv4 or IPv6 address"))?;
    let max_duration = match param("maxTunnelDuration") {
        None => MAX_TUNNEL_SECS,
        Some(d) => (d.parse().ok())
            .filter(|d| (1..=MAX_TUNNEL_SECS).contains(d))
            .ok_or_else(|| Refusal::bad("maxTunnelDuration must be from 1 to 3600 seconds"))?,
    };
    let endpoint = (state.config.instance_connect_endpoints.iter())
        .find(|e| e.id == endpoint_id)
        .ok_or_else(|| {
            // Unverified: the status for an endpoint that does not exist.
            let msg = format!("The instance connect endpoint ID '{endpoint_id}' does not exist");
            Refusal::new(
                StatusCode::NOT_FOUND,
                "InvalidInstanceConnectEndpointId.NotFound",
                msg,
            )
        })?;
    if !endpoint.is_usable() {
        // Unverified: what an endpoint that is not ready answers.
        let msg = format!("endpoint {} is in state {}", endpoint.id, endpoint.state);
        return Err(Refusal::new(StatusCode::CONFLICT, "IncorrectState", msg));
    }
    let instance = (state.config.instances.iter())
        .filter(|i| i.vpc_id() == endpoint.vpc_id && i.id.starts_with("i-"))
        .find(|i| has_address(i, ip))
        .ok_or_else(|| {
            Refusal::not_served(format!(
                "endpoint {} serves no instance at {ip} in {}",
                endpoint.id, endpoint.vpc_id
            ))
        })?;
    if instance.ec2_state() != "running" {
        return Err(Refusal::not_served(format!(
            "instance {} at {ip} is {}",
            instance.id,
            instance.ec2_state()
        )));
    }
    let dial = *instance.ports.get(&port).ok_or_else(|| {
        Refusal::not_served(format!(
            "instance {} at {ip} has no port {port}",
            instance.id
        ))
    })?;
    Ok(TunnelTarget {
        endpoint: endpoint.clone(),
        instance_id: instance.id.clone(),
        dial,
        max_duration: Duration::from_secs(max_duration),
    })
}

/// Whether `ip` is the instance's private IPv4 or IPv6 address.
fn has_address(i: &InstanceConfig, ip: IpAddr) -> bool {
    let same = |s: &str| s.parse::<IpAddr>().is_ok_and(|a| a == ip);
    same(&i.ip_address()) || i.ipv6_address.as_deref().is_some_and(same)
}

/// The presign: scope, expiry, host = the DnsName handed out, signature, then the key's
/// own state (expired, session token).
fn authenticate(state: &Account, parts: &Parts) -> Result<String, Refusal> {
    let query = parts.uri.query().unwrap_or("");
    if !crate::aws_api::sigv4::is_presigned(query) {
        return Err(AuthError::missing().into());
    }
    let host = crate::aws_api::ec2_xml::endpoint_dns_name(state);
    let rules = PresignRules {
        region: &state.config.region,
        service: SERVICE,
        host: Some(&host),
        payload_hash: EMPTY_PAYLOAD_SHA256,
        max_expires: MAX_EXPIRES_SECS,
    };
    let now = crate::world::clock::now_secs(state.config.clock_offset_secs);
    let akid =
        crate::aws_api::sigv4::verify_presigned_with(parts, &rules, now, |k| state.secret_for(k))?;
    let cred = state
        .credential(&akid)
        .ok_or_else(AuthError::unknown_access_key)?;
    if cred.expired {
        return Err(AuthError::expired().into());
    }
    if let Some(token) = &cred.session_token {
        let sent = query
            .split('&')
            .find_map(|p| p.strip_prefix("X-Amz-Security-Token="))
            .map(dec);
        if sent.as_deref() != Some(token.as_str()) {
            return Err(AuthError::unknown_access_key().into());
        }
    }
    Ok(akid)
}

fn dec(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode(s)).into_owned()
}
