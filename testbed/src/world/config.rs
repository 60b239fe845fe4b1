//! What the testbed serves: its instances and how its agent and relay behave.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The access key ID every testbed hands out; the secret is random per start.
pub const ACCESS_KEY_ID: &str = "AKIASALLYPORTTESTBED";
/// The AWS account the testbed plays.
pub const ACCOUNT_ID: &str = "123456789012";
/// The caller name that prefixes session IDs (AWS uses the IAM user or role session name).
pub const CALLER: &str = "sallyport-testbed";

/// The instance ID that `--ssh-target` creates.
pub const DEFAULT_INSTANCE_ID: &str = "i-0123456789abcdef0";

/// One managed node the testbed pretends to have.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// `i-…` or `mi-…`.
    pub id: String,
    /// Host that "localhost" on this instance stands for: a session to `portNumber` P dials
    /// `host:P`, unless `ports` maps P elsewhere.
    #[serde(default = "default_host")]
    pub host: String,
    /// Explicit per-port addresses, e.g. `22 = "127.0.0.1:2222"` for a test sshd.
    #[serde(default)]
    pub ports: BTreeMap<u16, SocketAddr>,
    /// Tags (the `Name` tag among them).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// SSM `PingStatus`: `Online`, `ConnectionLost` or `Inactive`.
    #[serde(default = "default_ping_status")]
    pub ping_status: String,
    /// SSM `PlatformName`, e.g. `Amazon Linux`, `Ubuntu`.
    #[serde(default = "default_platform")]
    pub platform: String,
    /// The version the agent reports in its handshake.
    #[serde(default = "default_agent_version")]
    pub agent_version: String,
    /// SSM `IPAddress`. Default: `172.31.X.Y`, X and Y from the ID's last hex digits.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// SSM `ComputerName`. Default: EC2's default host name for the IP
    /// (`ip-172-31-X-Y.ec2.internal`).
    #[serde(default)]
    pub computer_name: Option<String>,
    /// SSM `Name`: only on-premises nodes (`mi-…`) have one. Default: none.
    #[serde(default)]
    pub name: Option<String>,
    /// How long before the testbed started the agent last pinged, in seconds. Default: 0 for
    /// an `Online` instance, 1800 otherwise.
    #[serde(default)]
    pub last_ping_ago_secs: Option<u64>,
    /// Fault: for this many seconds after the testbed starts, StartSession answers
    /// `TargetNotConnected` and DescribeInstanceInformation says `ConnectionLost` (an agent
    /// that is still coming up after a boot). Default 0.
    #[serde(default)]
    pub not_connected_for_secs: u64,
    /// Fault: StartSession to this instance answers `AccessDeniedException`, as IAM does for
    /// a caller without `ssm:StartSession` on it. Default false.
    #[serde(default)]
    pub access_denied: bool,
    /// Fault: the first N StartSession calls to this instance answer `ThrottlingException`.
    /// Default 0.
    #[serde(default)]
    pub throttle_first: u32,
    /// KMS key (ID, ARN or alias) the account's Session Manager preferences name: the agent
    /// then demands KMS encryption for Standard_Stream and command sessions (never for port
    /// sessions, as on the real agent). Default: none.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// EC2 instance state, as EC2 Instance Connect sees it: `running`, `pending`, `stopping`,
    /// `stopped`, `shutting-down` or `terminated`. Only `running` takes pushed keys. Default:
    /// `running` when `ping_status` is `Online`, else `stopped` (an agent that stopped
    /// pinging most often belongs to a stopped instance).
    #[serde(default)]
    pub ec2_state: Option<String>,
    /// Fault: `SendSSHPublicKey` to this instance answers `AccessDeniedException`, as IAM does
    /// for a caller without `ec2-instance-connect:SendSSHPublicKey` on it. Default false.
    #[serde(default)]
    pub instance_connect_denied: bool,
    /// Fault: the instance's port 22 is a lying SSH/SFTP server the testbed runs
    /// (`crate::instance::hostile`) instead of `ports`' address, e.g.
    /// `hostile = ["huge-size", "new-host-key"]`. Default: none (an honest instance).
    #[serde(default)]
    pub hostile: Vec<crate::world::hostile_ssh::HostileSsh>,
    /// EC2 `VpcId`. Default: the account's default VPC
    /// ([`crate::world::endpoints::DEFAULT_VPC_ID`]).
    #[serde(default)]
    pub vpc_id: Option<String>,
    /// EC2 `SubnetId`. Default: the default VPC's subnet.
    #[serde(default)]
    pub subnet_id: Option<String>,
    /// EC2 `Ipv6Address` (the primary IPv6 address); an EC2 Instance Connect Endpoint
    /// tunnel may ask for it as well as for `ip_address`. Default: none.
    #[serde(default)]
    pub ipv6_address: Option<String>,
    /// Whether Session Manager knows the instance (a managed node). `false`: an EC2 instance
    /// with no agent registered, absent from `ssm:DescribeInstanceInformation`, refused by
    /// `ssm:StartSession`, present in `ec2:DescribeInstances` (and reachable through an
    /// EC2 Instance Connect Endpoint). Default true.
    #[serde(default = "default_managed")]
    pub managed: bool,
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_ping_status() -> String {
    "Online".to_owned()
}
fn default_managed() -> bool {
    true
}
fn default_platform() -> String {
    "Amazon Linux".to_owned()
}
fn default_agent_version() -> String {
    // A current agent release line (docs/protocol.md §0 read the code after 3.3.987.0).
    "3.3.987.0".to_owned()
}

impl InstanceConfig {
    /// The one-instance shortcut behind `--ssh-target ADDR`.
    pub fn ssh_shortcut(addr: SocketAddr) -> Self {
        InstanceConfig {
            id: DEFAULT_INSTANCE_ID.to_owned(),
            host: addr.ip().to_string(),
            ports: BTreeMap::from([(22, addr)]),
            tags: BTreeMap::from([("Name".to_owned(), "testbed-ssh".to_owned())]),
            ping_status: default_ping_status(),
            platform: default_platform(),
            agent_version: default_agent_version(),
            ip_address: None,
            computer_name: None,
            name: None,
            last_ping_ago_secs: None,
            not_connected_for_secs: 0,
            access_denied: false,
            throttle_first: 0,
            kms_key_id: None,
            ec2_state: None,
            instance_connect_denied: false,
            hostile: Vec::new(),
            vpc_id: None,
            subnet_id: None,
            ipv6_address: None,
            managed: true,
        }
    }

    /// A plain online instance with this ID and no ports (for API-only tests).
    pub fn named(id: &str, name: &str) -> Self {
        let mut i = InstanceConfig::ssh_shortcut(SocketAddr::from(([127, 0, 0, 1], 22)));
        i.id = id.to_owned();
        i.ports.clear();
        i.tags = BTreeMap::from([("Name".to_owned(), name.to_owned())]);
        i
    }

    /// SSM `IPAddress`: the configured one, else `172.31.X.Y` from the ID.
    pub fn ip_address(&self) -> String {
        if let Some(ip) = &self.ip_address {
            return ip.clone();
        }
        let hex: Vec<u8> = (self.id.bytes().rev())
            .filter_map(|b| char::from(b).to_digit(16).map(|d| d as u8))
            .take(3)
            .collect();
        let digit = |i: usize| hex.get(i).copied().unwrap_or(0);
        let (x, y) = (digit(2), digit(1) * 16 + digit(0));
        format!("172.31.{x}.{}", y.max(1))
    }

    /// SSM `ComputerName`: the configured one, else EC2's default host name for the IP.
    pub fn computer_name(&self) -> String {
        match &self.computer_name {
            Some(n) => n.clone(),
            None => format!(
                "ip-{}.ec2.internal",
                self.ip_address().replace(['.', ':'], "-")
            ),
        }
    }

    /// SSM `ResourceType`: `EC2Instance` for `i-…`, `ManagedInstance` for `mi-…`.
    pub fn resource_type(&self) -> &'static str {
        if self.id.starts_with("mi-") {
            "ManagedInstance"
        } else {
            "EC2Instance"
        }
    }

    /// SSM `PlatformType` from the platform name.
    pub fn platform_type(&self) -> &'static str {
        let p = self.platform.to_ascii_lowercase();
        if p.contains("windows") {
            "Windows"
        } else if p.contains("mac") {
            "MacOS"
        } else {
            "Linux"
        }
    }

    /// The EC2 state: the configured one, else `running` for an `Online` agent or an
    /// unmanaged instance and `stopped` otherwise.
    pub fn ec2_state(&self) -> &str {
        match &self.ec2_state {
            Some(s) => s,
            None if self.ping_status == "Online" || !self.managed => "running",
            None => "stopped",
        }
    }

    /// EC2 `VpcId`: the configured one, else the default VPC.
    pub fn vpc_id(&self) -> &str {
        (self.vpc_id.as_deref()).unwrap_or(crate::world::endpoints::DEFAULT_VPC_ID)
    }

    /// EC2 `SubnetId`: the configured one, else the default subnet.
    pub fn subnet_id(&self) -> &str {
        (self.subnet_id.as_deref()).unwrap_or(crate::world::endpoints::DEFAULT_SUBNET_ID)
    }

    /// Where a session to this instance's `port` connects.
    pub fn dial_target(&self, port: u16) -> String {
        match self.ports.get(&port) {
            Some(addr) => addr.to_string(),
            None if self.host.contains(':') => format!("[{}]:{port}", self.host),
            None => format!("{}:{port}", self.host),
        }
    }
}

/// How the agent behaves; the defaults are the real agent's (docs/protocol.md §6.6, §14).
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// Bytes read from the instance-side socket per message (StreamDataPayloadSize).
    pub chunk_size: usize,
    /// The sleep after each data message sent, as the agent's `time.Sleep(time.Millisecond)`,
    /// lengthened to stand in for the agent's own per-message work (see
    /// [`crate::agent::pace`]). Zero: no pacing.
    pub pace: Duration,
    /// How long the agent waits for each handshake step before failing the session.
    pub handshake_timeout: Duration,
    /// `--instance-write-rate`: bytes per second the instance side takes client data at
    /// (port connections and the shell's pty), after a 16 KiB burst; `None`: as fast as it
    /// reads. See [`crate::agent::write_rate`].
    pub instance_write_rate: Option<u64>,
    /// `--handshake-complete-lag`: how long after sending HandshakeComplete the agent
    /// still treats the handshake as incomplete (acknowledging and dropping client stream
    /// data) before it starts the session plugin. The real agent sets the flag right after
    /// the send returns, on another goroutine than the reader that drops input while it
    /// is unset (amazon-ssm-agent `datachannel.go`, `PerformHandshake`), so a client that
    /// sends the moment HandshakeComplete arrives can lose input when that goroutine
    /// stalls for a round trip (seen once in ~55 sessions against the official agent code
    /// on this machine). Zero (default): no stall. How long real stalls last on a busy
    /// instance is unknown.
    pub handshake_complete_lag: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            chunk_size: 1024,
            pace: Duration::from_micros(1600),
            handshake_timeout: Duration::from_secs(15),
            instance_write_rate: None,
            handshake_complete_lag: Duration::ZERO,
        }
    }
}

/// What the data channel does with an upgrade that is neither signed nor presigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsignedPolicy {
    /// Let it in, like a service that still admits plugins older than 1.2.764.0.
    Accept,
    /// 403, like a service enforcing the plugin's minimum supported version (the default).
    Refuse,
}

impl UnsignedPolicy {
    /// `accept` or `refuse`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accept" => Some(UnsignedPolicy::Accept),
            "refuse" => Some(UnsignedPolicy::Refuse),
            _ => None,
        }
    }
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct TestbedConfig {
    pub listen: SocketAddr,
    pub region: String,
    pub instances: Vec<InstanceConfig>,
    pub agent: AgentSettings,
    /// Round-trip time added by the relay: half of it each way, per message.
    pub rtt: Duration,
    /// Faults the relay injects (none by default).
    pub faults: crate::world::faults::FaultPlan,
    /// How far the testbed's clock is from this machine's, in seconds (requests signed more
    /// than 5 minutes off the testbed's clock are refused, as AWS does). Also the time
    /// EC2 Instance Connect stamps on pushed keys.
    pub clock_offset_secs: i64,
    /// Where `SendSSHPublicKey` records pushed keys, for `sallyport-testbed authorized-keys`
    /// (see [`crate::instance::eic_keys`]). None: `Testbed::start` makes a temporary directory.
    pub eic_state_dir: Option<PathBuf>,
    /// Fault: `tag:GetResources` answers `AccessDeniedException` (no tag permission).
    pub tagging_denied: bool,
    /// Fault: `ssm:DescribeInstanceInformation` answers `AccessDeniedException`.
    pub describe_denied: bool,
    /// Fault: `ssm:GetDocument` answers `AccessDeniedException`.
    pub get_document_denied: bool,
    /// Session documents the account owns: NonInteractiveCommands documents that declare
    /// only `command` (no `separateOutputStream`), by name.
    pub command_documents: Vec<String>,
    /// Serve HTTPS/WSS with a CA generated at start (`serve --tls`, [`crate::tls`]).
    pub tls: bool,
    /// Whether a data-channel upgrade without SigV4 headers or presigned query gets in.
    pub unsigned_data_channel: UnsignedPolicy,
    /// StartSession/ResumeSession hand out StreamUrls presigned by the testbed itself.
    pub presign_stream_urls: bool,
    /// The EC2 Instance Connect Endpoints (`[[instance_connect_endpoint]]`, `serve --eice`).
    pub instance_connect_endpoints: Vec<crate::world::endpoints::EndpointConfig>,
    /// `serve --eice-rate`: bytes per second each EICE tunnel carries, each direction.
    pub eice_rate: Option<u64>,
    /// Fault: `ec2:DescribeInstances` and `ec2:DescribeInstanceConnectEndpoints` answer
    /// `UnauthorizedOperation`.
    pub ec2_describe_denied: bool,
    /// `HOST[:PORT]` the StreamUrls name instead of this listener (`serve --stream-host`):
    /// a host the client cannot reach (a VPC endpoint's private name), or a `delay-proxy`
    /// in front of the listener. The path and query are the same.
    pub stream_host: Option<String>,
}

impl TestbedConfig {
    pub fn new(listen: SocketAddr, instances: Vec<InstanceConfig>) -> Self {
        TestbedConfig {
            listen,
            region: "us-east-1".to_owned(),
            instances,
            agent: AgentSettings::default(),
            rtt: Duration::ZERO,
            faults: crate::world::faults::FaultPlan::default(),
            clock_offset_secs: 0,
            eic_state_dir: None,
            tagging_denied: false,
            describe_denied: false,
            get_document_denied: false,
            command_documents: Vec::new(),
            tls: false,
            unsigned_data_channel: UnsignedPolicy::Refuse,
            presign_stream_urls: false,
            instance_connect_endpoints: Vec::new(),
            eice_rate: None,
            ec2_describe_denied: false,
            stream_host: None,
        }
    }
}

/// Reads a TOML file of `[[instance]]` tables (see `instances.example.toml`).
pub fn load_instances(path: &std::path::Path) -> anyhow::Result<Vec<InstanceConfig>> {
    load_world(path).map(|(instances, _)| instances)
}

/// Reads a TOML file of `[[instance]]` and `[[instance_connect_endpoint]]` tables (see
/// `instances.example.toml`).
pub fn load_world(
    path: &std::path::Path,
) -> anyhow::Result<(
    Vec<InstanceConfig>,
    Vec<crate::world::endpoints::EndpointConfig>,
)> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct InstancesFile {
        #[serde(default)]
        instance: Vec<InstanceConfig>,
        #[serde(default)]
        instance_connect_endpoint: Vec<crate::world::endpoints::EndpointConfig>,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read instances file {}: {e}", path.display()))?;
    // toml's error text names the line and column and quotes the offending line.
    let file: InstancesFile = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid instances file {}: {e}", path.display()))?;
    anyhow::ensure!(
        !file.instance.is_empty(),
        "instances file {} has no [[instance]] tables",
        path.display()
    );
    let mut seen = std::collections::HashSet::new();
    for i in &file.instance {
        anyhow::ensure!(
            seen.insert(i.id.as_str()),
            "instances file {}: instance {} is listed twice",
            path.display(),
            i.id
        );
    }
    for e in &file.instance_connect_endpoint {
        e.validate()
            .map_err(|err| anyhow::anyhow!("instances file {}: {err}", path.display()))?;
        anyhow::ensure!(
            seen.insert(e.id.as_str()),
            "instances file {}: instance_connect_endpoint {} is listed twice",
            path.display(),
            e.id
        );
    }
    Ok((file.instance, file.instance_connect_endpoint))
}
