//! The account's VPC layout as EC2 sees it: the default VPC and subnet every instance sits
//! in unless `instances.toml` says otherwise, and the EC2 Instance Connect Endpoints
//! (`[[instance_connect_endpoint]]` tables, or `serve --eice`) that open tunnels into a VPC
//! (docs/protocol.md §10.3).

use serde::Deserialize;

/// The VPC an instance is in when `vpc_id` is not given.
pub const DEFAULT_VPC_ID: &str = "vpc-0de1a0170000e1ce0";
/// The subnet an instance is in when `subnet_id` is not given.
pub const DEFAULT_SUBNET_ID: &str = "subnet-0de1a0170000e1ce0";
/// The endpoint `serve --eice` adds.
pub const DEFAULT_ENDPOINT_ID: &str = "eice-0123456789abcdef0";
/// The documented concurrent-connection quota per endpoint (docs/protocol.md §10.3).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 20;

/// The states `DescribeInstanceConnectEndpoints` can report.
pub const ENDPOINT_STATES: [&str; 9] = [
    "create-in-progress",
    "create-complete",
    "create-failed",
    "delete-in-progress",
    "delete-complete",
    "delete-failed",
    "update-in-progress",
    "update-complete",
    "update-failed",
];

/// One EC2 Instance Connect Endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `eice-` and 17 hex digits.
    pub id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    /// One of [`ENDPOINT_STATES`]. Default `create-complete`.
    #[serde(default = "default_state")]
    pub state: String,
    /// Tunnels open at once through this endpoint; the next is refused. Default 20.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

fn default_state() -> String {
    "create-complete".to_owned()
}

impl EndpointConfig {
    /// An endpoint in `create-complete` with the default connection limit.
    pub fn new(id: &str, vpc_id: &str, subnet_id: &str) -> Self {
        EndpointConfig {
            id: id.to_owned(),
            vpc_id: vpc_id.to_owned(),
            subnet_id: subnet_id.to_owned(),
            state: default_state(),
            max_connections: None,
        }
    }

    pub fn max_connections(&self) -> u32 {
        self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS)
    }

    /// Whether the endpoint opens tunnels in this state: `create-complete` or `update-*`,
    /// the states the AWS CLI picks an endpoint in (docs/protocol.md §10.3).
    /// Unverified: whether the service itself refuses tunnels in the other states.
    pub fn is_usable(&self) -> bool {
        self.state == "create-complete" || self.state.starts_with("update-")
    }

    /// Refuses a malformed table (the file's name is added by the caller).
    pub fn validate(&self) -> anyhow::Result<()> {
        let hex17 = |s: &str| s.len() == 17 && s.bytes().all(|b| b.is_ascii_hexdigit());
        anyhow::ensure!(
            self.id.strip_prefix("eice-").is_some_and(hex17),
            "instance_connect_endpoint id {:?} is not `eice-` and 17 hex digits",
            self.id
        );
        anyhow::ensure!(
            ENDPOINT_STATES.contains(&self.state.as_str()),
            "instance_connect_endpoint {}: state {:?} is not one of {}",
            self.id,
            self.state,
            ENDPOINT_STATES.join(", ")
        );
        anyhow::ensure!(
            self.max_connections() >= 1,
            "instance_connect_endpoint {}: max_connections must be at least 1",
            self.id
        );
        Ok(())
    }
}
