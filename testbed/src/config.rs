//! What the testbed serves: its instances and how its agent and relay behave.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::agent::AgentSettings;

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
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_ping_status() -> String {
    "Online".to_owned()
}
fn default_platform() -> String {
    "Amazon Linux".to_owned()
}
fn default_agent_version() -> String {
    // A current agent release line (PROTOCOL.md §0 read the code after 3.3.987.0).
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
        }
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

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct TestbedConfig {
    pub listen: SocketAddr,
    pub region: String,
    pub instances: Vec<InstanceConfig>,
    pub agent: AgentSettings,
    /// Round-trip time added by the relay: half of it each way, per message.
    pub rtt: Duration,
}

impl TestbedConfig {
    pub fn new(listen: SocketAddr, instances: Vec<InstanceConfig>) -> Self {
        TestbedConfig {
            listen,
            region: "us-east-1".to_owned(),
            instances,
            agent: AgentSettings::default(),
            rtt: Duration::ZERO,
        }
    }
}

/// Reads a TOML file of `[[instance]]` tables (see `instances.example.toml`).
pub fn load_instances(path: &std::path::Path) -> anyhow::Result<Vec<InstanceConfig>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct InstancesFile {
        #[serde(default)]
        instance: Vec<InstanceConfig>,
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
    Ok(file.instance)
}
