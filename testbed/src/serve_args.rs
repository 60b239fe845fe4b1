//! `sallyport-testbed serve`'s flags and their parsers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sallyport_testbed::world::config::{AgentSettings, UnsignedPolicy};
use sallyport_testbed::world::hostile_ssh::HostileSsh;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: SocketAddr,
    /// TOML file of [[instance]] tables (see instances.example.toml).
    #[arg(
        long,
        required_unless_present_any = ["ssh_target", "hostile_ssh"],
        conflicts_with = "ssh_target"
    )]
    pub(crate) instances: Option<PathBuf>,
    /// Shortcut: one instance whose port 22 is this address (e.g. a test sshd).
    #[arg(long, value_name = "ADDR")]
    pub(crate) ssh_target: Option<SocketAddr>,
    /// Every instance's port 22 is a lying SSH/SFTP server run by the testbed: evil-names,
    /// huge-size, endless-listing, short-read, lying-status, symlink-loop, new-host-key,
    /// mute (comma-separated). Alone: one instance, as --ssh-target makes.
    #[arg(long, value_name = "BEHAVIOUR[,..]", value_parser = parse_hostile_ssh)]
    pub(crate) hostile_ssh: Option<HostileList>,
    /// Round-trip time the relay adds, e.g. 40ms (half each way).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub(crate) rtt: Duration,
    /// Bytes the agent reads from the instance-side socket per message.
    #[arg(long, default_value_t = AgentSettings::default().chunk_size)]
    pub(crate) chunk_size: usize,
    /// The agent's sleep after each data message it sends (the real agent sleeps 1 ms; the
    /// default also covers its slower read and send, calibrated against the official
    /// agent code), e.g. 1ms; 0 for no pacing.
    #[arg(long, default_value = "1600us", value_parser = parse_duration)]
    pub(crate) pace: Duration,
    /// A slow instance: the agent writes client data to the instance side (port
    /// connections, the shell's pty) at most this fast, after a 16 KiB burst. While a write
    /// waits, the agent reads and acknowledges no further client messages, as the real
    /// agent does. Default: no limit.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_rate)]
    pub(crate) instance_write_rate: Option<u64>,
    /// An agent slow to mark its handshake done: for this long after it sent
    /// HandshakeComplete it acknowledges and drops client data, and the instance port is
    /// dialled only after it (a stalled agent goroutine; see docs/protocol.md §5.2). e.g. 300ms.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub(crate) handshake_complete_lag: Duration,
    /// Region the testbed claims to be; requests must be signed for it.
    #[arg(long, default_value = "us-east-1")]
    pub(crate) region: String,
    /// Where EC2 Instance Connect records pushed keys, for `authorized-keys --state DIR`
    /// (default: a temporary directory, printed as SALLYPORT_TESTBED_EIC_STATE).
    #[arg(long, value_name = "DIR")]
    pub(crate) eic_state: Option<PathBuf>,
    /// Serve HTTPS and WSS with a CA made at start; prints AWS_CA_BUNDLE=<its PEM file>.
    #[arg(long)]
    pub(crate) tls: bool,
    /// A data-channel upgrade without SigV4 headers or a presigned URL: `refuse` (403, like
    /// a service enforcing the plugin's minimum version) or `accept` (older clients).
    #[arg(long, default_value = "refuse", value_name = "accept|refuse", value_parser = parse_unsigned)]
    pub(crate) unsigned_data_channel: UnsignedPolicy,
    /// Hand out StreamUrls with presigned SigV4 query parameters (X-Amz-Signature, …).
    #[arg(long)]
    pub(crate) presign_stream_urls: bool,
    /// StreamUrls name HOST[:PORT] instead of this listener (path and query unchanged): an
    /// unreachable host for a client that rewrites it, or a delay-proxy in front of --listen.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) stream_host: Option<String>,
    /// Add an EC2 Instance Connect Endpoint (eice-0123456789abcdef0) in the VPC and subnet
    /// of the --ssh-target instance (with --instances: of the first instance), so
    /// DescribeInstanceConnectEndpoints lists it and /openTunnel reaches that VPC.
    #[arg(long)]
    pub(crate) eice: bool,
    /// Bytes per second each EICE tunnel carries, each direction (on top of --rtt,
    /// --relay-rate and --jitter). Default: no limit.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_rate)]
    pub(crate) eice_rate: Option<u64>,
    #[command(flatten)]
    pub(crate) faults: FaultArgs,
}

/// Faults the relay injects (see testbed/src/world/faults.rs).
#[derive(Args)]
pub(crate) struct FaultArgs {
    /// Close every client websocket this long after it opens (code 1000), like the
    /// service's recycle; clients must ResumeSession.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) recycle_every: Option<Duration>,
    /// Probability of losing a message, each direction (e.g. 0.01).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) drop: f64,
    /// Probability of duplicating a message, each direction.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) duplicate: f64,
    /// Probability of holding a message back behind the next one, each direction.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) reorder: f64,
    /// Answer ResumeSession with 403 AccessDenied.
    #[arg(long)]
    pub(crate) refuse_resume: bool,
    /// Send one malformed frame after the handshake: short, wrong-header-length,
    /// wrong-digest, absurd-length, unknown-type, negative-sequence, far-sequence, huge-json.
    #[arg(long, value_parser = parse_hostile)]
    pub(crate) hostile: Option<sallyport_testbed::world::faults::Hostile>,
    /// Send pause_publication at AFTER, start_publication DURATION later (e.g. 2s+3s).
    #[arg(long, value_name = "AFTER+DURATION", value_parser = parse_window)]
    pub(crate) pause: Option<sallyport_testbed::world::faults::Window>,
    /// The relay goes silent (no reads, no pongs, no writes) at AFTER for DURATION.
    #[arg(long, value_name = "AFTER+DURATION", value_parser = parse_window)]
    pub(crate) vanish: Option<sallyport_testbed::world::faults::Window>,
    /// The agent freezes at AFTER for DURATION.
    #[arg(long, value_name = "AFTER+DURATION", value_parser = parse_window)]
    pub(crate) stall: Option<sallyport_testbed::world::faults::Window>,
    /// End sessions after this long without client input (the service's idle timeout).
    #[arg(long, value_parser = parse_duration)]
    pub(crate) idle_timeout: Option<Duration>,
    /// End sessions this long after they start.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) max_duration: Option<Duration>,
    /// Messages the relay holds in flight per direction (delay line and agent queue
    /// included); when full it stops reading from the sender, as a full TCP path does,
    /// and never drops. Default: 100000 (the agent's own buffer size).
    #[arg(long, value_name = "MESSAGES", value_parser = parse_queue)]
    pub(crate) relay_queue: Option<usize>,
    /// Bytes per second each relay direction carries (a bottleneck in each direction, on
    /// top of --rtt); frames queue behind it up to --relay-queue.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_rate)]
    pub(crate) relay_rate: Option<u64>,
    /// Extra one-way delay per frame, uniform between 0 and this (e.g. 5ms); frames
    /// never overtake each other.
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    pub(crate) jitter: Duration,
    /// End the Nth session started once its agent sent BYTES to the client (N:BYTES).
    #[arg(long, value_name = "N:BYTES", value_parser = sallyport_testbed::world::faults::KillSession::parse)]
    pub(crate) kill_session: Option<sallyport_testbed::world::faults::KillSession>,
}

/// A whole number of at least 1 `unit` (`units` in the plural), e.g. `example`.
pub(crate) fn parse_positive(
    s: &str,
    unit: &str,
    units: &str,
    example: &str,
) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err(format!("must be at least 1 {unit}")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "'{s}' is not a whole number of {units} (e.g. {example})"
        )),
    }
}

pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    parse_positive(s, "byte per second", "bytes per second", "2000000")
}

pub(crate) fn parse_queue(s: &str) -> Result<usize, String> {
    let n = parse_positive(s, "message", "messages", "256")?;
    usize::try_from(n).map_err(|_| format!("'{s}' is too large"))
}

pub(crate) fn parse_window(s: &str) -> Result<sallyport_testbed::world::faults::Window, String> {
    sallyport_testbed::world::faults::Window::parse(s, |d| {
        parse_duration(d).map_err(|e| e.to_string())
    })
}

pub(crate) fn parse_unsigned(s: &str) -> Result<UnsignedPolicy, String> {
    UnsignedPolicy::parse(s).ok_or_else(|| format!("'{s}' is neither accept nor refuse"))
}

/// `--hostile-ssh`'s list (one value to clap, not one per behaviour).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HostileList(pub(crate) Vec<HostileSsh>);

pub(crate) fn parse_hostile_ssh(s: &str) -> Result<HostileList, String> {
    HostileSsh::parse_list(s).map(HostileList)
}

pub(crate) fn parse_hostile(s: &str) -> Result<sallyport_testbed::world::faults::Hostile, String> {
    sallyport_testbed::world::faults::Hostile::parse(s)
        .ok_or_else(|| format!("unknown hostile frame kind {s:?}"))
}

impl FaultArgs {
    pub(crate) fn plan(&self) -> sallyport_testbed::world::faults::FaultPlan {
        let imp = sallyport_testbed::world::faults::Impairment {
            drop: self.drop,
            duplicate: self.duplicate,
            reorder: self.reorder,
        };
        sallyport_testbed::world::faults::FaultPlan {
            recycle_every: self.recycle_every,
            to_client: imp,
            to_agent: imp,
            refuse_resume: self.refuse_resume,
            hostile: self.hostile,
            pause: self.pause,
            vanish: self.vanish,
            stall: self.stall,
            idle_timeout: self.idle_timeout,
            max_duration: self.max_duration,
            seed: 1,
            relay_queue: self.relay_queue,
            relay_rate: self.relay_rate,
            jitter: self.jitter,
            kill_session: self.kill_session.clone(),
        }
    }
}

/// A duration in the syntax the client takes too (the `humantime` crate's): `0`, or a
/// number with a unit (`ns`, `us` or `µs`, `ms`, `s`, `m`, `h`), fractions allowed
/// (`1.5s`), terms adding up (`1m30s`). A plain number other than 0 is refused: is
/// `--rtt 40` seconds or milliseconds?
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration ({e}): write e.g. 40ms, 1s or 250us"))
}
