//! `sallyport-testbed`: run the local Session Manager stand-in, or a latency-adding TCP relay.
//!
//! `serve` prints `KEY=VALUE` lines on stdout (the environment that points an AWS SDK at the
//! testbed) and then serves until SIGINT/SIGTERM. Logs go to stderr (`-v`, or `RUST_LOG`),
//! and so does one line per session that ends, with its stream data and retransmission
//! counts (also at `GET /testbed/stats` on the listen address).
//!
//! Faults are flags of `serve`; among them, for proving a client's congestion control:
//! `--instance-write-rate BYTES_PER_SEC` (the instance takes client data that fast, and
//! the agent reads and acknowledges no faster) and `--relay-queue MESSAGES` (the relay
//! holds that many messages per direction, then stops reading from the sender).

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sallyport_testbed::tools::delay_proxy;
use sallyport_testbed::world::config::{
    AgentSettings, InstanceConfig, TestbedConfig, UnsignedPolicy, load_instances,
};
use sallyport_testbed::world::hostile_ssh::HostileSsh;
use sallyport_testbed::{Testbed, server};

#[derive(Parser)]
#[command(name = "sallyport-testbed", version, about)]
struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the fake SSM API, relay and agent on a loopback address.
    Serve(Box<ServeArgs>),
    /// Relay TCP connections to ADDR, delaying each direction by half of --rtt.
    DelayProxy(DelayProxyArgs),
    /// Run real ssh and scp through `sallyport proxy` against a throw-away sshd and this
    /// testbed, and say what happened (needs root and openssh-server).
    Demo(DemoArgs),
    /// The instance side of EC2 Instance Connect, for sshd's
    /// `AuthorizedKeysCommand … %u %f`: print the keys pushed for USER less than 60 s ago.
    AuthorizedKeys(AuthorizedKeysArgs),
}

#[derive(Args)]
struct AuthorizedKeysArgs {
    /// The key store `serve --eic-state` (or the Testbed's `eic_state_dir()`) writes.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Only keys pushed to this instance ID.
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    /// Seconds to add to this machine's clock (the instance's clock skew).
    #[arg(
        long,
        default_value_t = 0,
        allow_hyphen_values = true,
        value_name = "SECS"
    )]
    clock_offset: i64,
    /// The user sshd is authenticating (`%u`).
    user: String,
    /// Only the key with this fingerprint (`%f`, `SHA256:…`).
    fingerprint: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// TOML file of [[instance]] tables (see instances.example.toml).
    #[arg(
        long,
        required_unless_present_any = ["ssh_target", "hostile_ssh"],
        conflicts_with = "ssh_target"
    )]
    instances: Option<PathBuf>,
    /// Shortcut: one instance whose port 22 is this address (e.g. a test sshd).
    #[arg(long, value_name = "ADDR")]
    ssh_target: Option<SocketAddr>,
    /// Every instance's port 22 is a lying SSH/SFTP server run by the testbed: evil-names,
    /// huge-size, endless-listing, short-read, lying-status, symlink-loop, new-host-key
    /// (comma-separated). Alone: one instance, as --ssh-target makes.
    #[arg(long, value_name = "BEHAVIOUR[,..]", value_parser = parse_hostile_ssh)]
    hostile_ssh: Option<HostileList>,
    /// Round-trip time the relay adds, e.g. 40ms (half each way).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    rtt: Duration,
    /// Bytes the agent reads from the instance-side socket per message.
    #[arg(long, default_value_t = AgentSettings::default().chunk_size)]
    chunk_size: usize,
    /// The agent's sleep after each data message it sends (the real agent sleeps 1 ms; the
    /// default also covers its slower read and send, calibrated against the official
    /// agent code), e.g. 1ms; 0 for no pacing.
    #[arg(long, default_value = "1600us", value_parser = parse_duration)]
    pace: Duration,
    /// A slow instance: the agent writes client data to the instance side (port
    /// connections, the shell's pty) at most this fast, after a 16 KiB burst. While a write
    /// waits, the agent reads and acknowledges no further client messages, as the real
    /// agent does. Default: no limit.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_rate)]
    instance_write_rate: Option<u64>,
    /// An agent slow to mark its handshake done: for this long after it sent
    /// HandshakeComplete it acknowledges and drops client data, and the instance port is
    /// dialled only after it (a stalled agent goroutine; see docs/protocol.md §5.2). e.g. 300ms.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    handshake_complete_lag: Duration,
    /// Region the testbed claims to be; requests must be signed for it.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Where EC2 Instance Connect records pushed keys, for `authorized-keys --state DIR`
    /// (default: a temporary directory, printed as SALLYPORT_TESTBED_EIC_STATE).
    #[arg(long, value_name = "DIR")]
    eic_state: Option<PathBuf>,
    /// Serve HTTPS and WSS with a CA made at start; prints AWS_CA_BUNDLE=<its PEM file>.
    #[arg(long)]
    tls: bool,
    /// A data-channel upgrade without SigV4 headers or a presigned URL: `refuse` (403, like
    /// a service enforcing the plugin's minimum version) or `accept` (older clients).
    #[arg(long, default_value = "refuse", value_name = "accept|refuse", value_parser = parse_unsigned)]
    unsigned_data_channel: UnsignedPolicy,
    /// Hand out StreamUrls with presigned SigV4 query parameters (X-Amz-Signature, …).
    #[arg(long)]
    presign_stream_urls: bool,
    #[command(flatten)]
    faults: FaultArgs,
}

/// Faults the relay injects (see testbed/src/world/faults.rs).
#[derive(Args)]
struct FaultArgs {
    /// Close every client websocket this long after it opens (code 1000), like the
    /// service's recycle; clients must ResumeSession.
    #[arg(long, value_parser = parse_duration)]
    recycle_every: Option<Duration>,
    /// Probability of losing a message, each direction (e.g. 0.01).
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
    /// Probability of duplicating a message, each direction.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability of holding a message back behind the next one, each direction.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Answer ResumeSession with 403 AccessDenied.
    #[arg(long)]
    refuse_resume: bool,
    /// Send one malformed frame after the handshake: short, wrong-header-length,
    /// wrong-digest, absurd-length, unknown-type, negative-sequence, far-sequence, huge-json.
    #[arg(long, value_parser = parse_hostile)]
    hostile: Option<sallyport_testbed::world::faults::Hostile>,
    /// Send pause_publication at AFTER, start_publication DURATION later (e.g. 2s+3s).
    #[arg(long, value_name = "AFTER+DURATION", value_parser = parse_window)]
    pause: Option<sallyport_testbed::world::faults::Window>,
    /// The relay goes silent (no reads, no pongs, no writes) at AFTER for DURATION.
    #[arg(long, value_name = "AFTER+DURATION", value_parser = parse_window)]
    vanish: Option<sallyport_testbed::world::faults::Window>,
    /// The agent freezes at AFTER for DURATION.
    #[arg(long, value_name = "AFTER+DURATION", value_parser = parse_window)]
    stall: Option<sallyport_testbed::world::faults::Window>,
    /// End sessions after this long without client input (the service's idle timeout).
    #[arg(long, value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// End sessions this long after they start.
    #[arg(long, value_parser = parse_duration)]
    max_duration: Option<Duration>,
    /// Messages the relay holds in flight per direction (delay line and agent queue
    /// included); when full it stops reading from the sender, as a full TCP path does,
    /// and never drops. Default: 100000 (the agent's own buffer size).
    #[arg(long, value_name = "MESSAGES", value_parser = parse_queue)]
    relay_queue: Option<usize>,
    /// Bytes per second each relay direction carries (a bottleneck in each direction, on
    /// top of --rtt); frames queue behind it up to --relay-queue.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_rate)]
    relay_rate: Option<u64>,
    /// Extra one-way delay per frame, uniform between 0 and this (e.g. 5ms); frames
    /// never overtake each other.
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    jitter: Duration,
    /// End the Nth session started once its agent sent BYTES to the client (N:BYTES).
    #[arg(long, value_name = "N:BYTES", value_parser = sallyport_testbed::world::faults::KillSession::parse)]
    kill_session: Option<sallyport_testbed::world::faults::KillSession>,
}

/// A whole number of at least 1 `unit` (`units` in the plural), e.g. `example`.
fn parse_positive(s: &str, unit: &str, units: &str, example: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err(format!("must be at least 1 {unit}")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "'{s}' is not a whole number of {units} (e.g. {example})"
        )),
    }
}

fn parse_rate(s: &str) -> Result<u64, String> {
    parse_positive(s, "byte per second", "bytes per second", "2000000")
}

fn parse_queue(s: &str) -> Result<usize, String> {
    let n = parse_positive(s, "message", "messages", "256")?;
    usize::try_from(n).map_err(|_| format!("'{s}' is too large"))
}

fn parse_window(s: &str) -> Result<sallyport_testbed::world::faults::Window, String> {
    sallyport_testbed::world::faults::Window::parse(s, |d| {
        parse_duration(d).map_err(|e| e.to_string())
    })
}

fn parse_unsigned(s: &str) -> Result<UnsignedPolicy, String> {
    UnsignedPolicy::parse(s).ok_or_else(|| format!("'{s}' is neither accept nor refuse"))
}

/// `--hostile-ssh`'s list (one value to clap, not one per behaviour).
#[derive(Clone, Debug, PartialEq)]
struct HostileList(Vec<HostileSsh>);

fn parse_hostile_ssh(s: &str) -> Result<HostileList, String> {
    HostileSsh::parse_list(s).map(HostileList)
}

fn parse_hostile(s: &str) -> Result<sallyport_testbed::world::faults::Hostile, String> {
    sallyport_testbed::world::faults::Hostile::parse(s)
        .ok_or_else(|| format!("unknown hostile frame kind {s:?}"))
}

impl FaultArgs {
    fn plan(&self) -> sallyport_testbed::world::faults::FaultPlan {
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

#[derive(Args)]
struct DelayProxyArgs {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Round-trip time to add, e.g. 40ms.
    #[arg(long, value_parser = parse_duration)]
    rtt: Duration,
    /// Where to relay connections (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    to: String,
}

#[derive(Args)]
struct DemoArgs {
    /// The sallyport binary to use (default: next to this executable).
    #[arg(long)]
    sallyport: Option<std::path::PathBuf>,
    /// Size of the file copied with scp, in MB.
    #[arg(long, default_value_t = 2)]
    size_mb: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Command::AuthorizedKeys(args) = &cli.command {
        // sshd runs this for every key offered: no runtime, nothing on stdout but keys.
        return match authorized_keys(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::anyhow!("cannot start the tokio runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::DelayProxy(args) => delay(args).await,
            Command::Demo(args) => {
                let bin = sallyport_testbed::tools::demo::find_sallyport(args.sallyport)?;
                sallyport_testbed::tools::demo::run(&bin, args.size_mb).await
            }
            Command::AuthorizedKeys(args) => authorized_keys(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn authorized_keys(args: &AuthorizedKeysArgs) -> anyhow::Result<()> {
    let now = sallyport_testbed::world::clock::now_secs(args.clock_offset);
    let keys = sallyport_testbed::instance::eic_keys::authorized_keys(
        &args.state,
        &args.user,
        args.instance.as_deref(),
        args.fingerprint.as_deref(),
        now,
    )
    .map_err(|e| anyhow::anyhow!("reading the key store {}: {e}", args.state.display()))?;
    let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
    print_flush(&text)
}

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("sallyport-testbed: error: {e:#}");
    ExitCode::FAILURE
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    server::ensure_loopback(args.listen)?;
    anyhow::ensure!(args.chunk_size > 0, "--chunk-size must be at least 1");
    let mut instances = match (&args.instances, args.ssh_target, &args.hostile_ssh) {
        (Some(path), _, _) => load_instances(path)?,
        (None, Some(addr), _) => vec![InstanceConfig::ssh_shortcut(addr)],
        // Port 22 becomes the hostile server's below; this address is never dialled.
        (None, None, Some(_)) => vec![InstanceConfig::ssh_shortcut(SocketAddr::from((
            [127, 0, 0, 1],
            22,
        )))],
        (None, None, None) => anyhow::bail!("give --instances FILE or --ssh-target ADDR"),
    };
    if let Some(HostileList(behaviours)) = &args.hostile_ssh {
        for i in &mut instances {
            i.hostile = behaviours.clone();
        }
    }
    let mut config = TestbedConfig::new(args.listen, instances);
    config.region = args.region;
    config.rtt = args.rtt;
    config.faults = args.faults.plan();
    config.eic_state_dir = args.eic_state;
    (config.tls, config.presign_stream_urls) = (args.tls, args.presign_stream_urls);
    config.unsigned_data_channel = args.unsigned_data_channel;
    config.agent = AgentSettings {
        chunk_size: args.chunk_size,
        pace: args.pace,
        instance_write_rate: args.instance_write_rate,
        handshake_complete_lag: args.handshake_complete_lag,
        ..AgentSettings::default()
    };
    let testbed = Testbed::start(config).await?;
    let mut lines: String = testbed
        .env()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    lines.push_str(&format!(
        "SALLYPORT_TESTBED_EIC_STATE={}\n",
        testbed.eic_state_dir().display()
    ));
    print_flush(&lines)?;
    wait_for_signal().await?;
    tracing::info!("shutting down");
    testbed.shutdown();
    Ok(())
}

async fn delay(args: DelayProxyArgs) -> anyhow::Result<()> {
    let listener = delay_proxy::bind(args.listen).await?;
    print_flush(&format!("LISTEN={}\n", listener.local_addr()?))?;
    tokio::select! {
        r = delay_proxy::serve(listener, args.to, args.rtt) => r,
        r = wait_for_signal() => r,
    }
}

fn print_flush(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// `0`, or a number with a unit: `ns`, `us` (or `µs`), `ms`, `s`, `m`. Fractions are allowed
/// (`1.5s`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{s}' has no unit: write e.g. 40ms, 1s or 250us"))?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' does not start with a number"))?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{s}' (use ns, us, ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("'{s}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("0", Duration::ZERO),
            ("40ms", Duration::from_millis(40)),
            ("1s", Duration::from_secs(1)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("0ms", Duration::ZERO),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "40", "ms", "40 ms", "4x", "-1s", "1..2s", "1e3ms"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "sallyport-testbed",
            "serve",
            "--ssh-target",
            "127.0.0.1:2222",
            "--rtt",
            "40ms",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(args.rtt, Duration::from_millis(40));
        assert_eq!(args.pace, Duration::from_micros(1600));
        assert_eq!(
            args.pace,
            AgentSettings::default().pace,
            "flag default = agent default"
        );
        assert_eq!(args.chunk_size, 1024);
        assert_eq!(args.handshake_complete_lag, Duration::ZERO);
        assert_eq!(args.instance_write_rate, None);
        assert_eq!(args.faults.relay_queue, None);
        assert_eq!(args.unsigned_data_channel, UnsignedPolicy::Refuse);
        assert!(!args.tls && !args.presign_stream_urls);
        let cli = Cli::try_parse_from([
            "sallyport-testbed",
            "serve",
            "--ssh-target",
            "127.0.0.1:2222",
            "--instance-write-rate",
            "2000000",
            "--relay-queue",
            "256",
            "--relay-rate",
            "500000",
            "--jitter",
            "5ms",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(args.instance_write_rate, Some(2_000_000));
        assert_eq!(args.faults.plan().relay_queue, Some(256));
        assert_eq!(args.faults.plan().relay_rate, Some(500_000));
        assert_eq!(args.faults.plan().jitter, Duration::from_millis(5));
        let argv = ["x", "serve", "--ssh-target", "127.0.0.1:22", "--tls"];
        let more = ["--unsigned-data-channel", "accept", "--presign-stream-urls"];
        let Command::Serve(args) = Cli::try_parse_from(argv.iter().chain(&more))
            .unwrap()
            .command
        else {
            panic!("expected serve")
        };
        assert_eq!(args.unsigned_data_channel, UnsignedPolicy::Accept);
        assert!(args.tls && args.presign_stream_urls);
        let refused = |flag: &str, value: &str| {
            let argv = ["x", "serve", "--ssh-target", "127.0.0.1:22", flag, value];
            match Cli::try_parse_from(argv) {
                Ok(_) => panic!("{flag} {value} should be refused"),
                Err(e) => e.to_string(),
            }
        };
        let e = refused("--instance-write-rate", "0");
        assert!(e.contains("at least 1 byte per second"), "{e}");
        let e = refused("--instance-write-rate", "2MB");
        assert!(
            e.contains("'2MB' is not a whole number of bytes per second"),
            "{e}"
        );
        let e = refused("--unsigned-data-channel", "maybe");
        assert!(e.contains("'maybe' is neither accept nor refuse"), "{e}");
        let e = refused("--relay-queue", "0");
        assert!(e.contains("at least 1 message"), "{e}");
        let e = refused("--relay-queue", "lots");
        assert!(
            e.contains("'lots' is not a whole number of messages"),
            "{e}"
        );
        let argv = ["x", "serve", "--hostile-ssh", "huge-size,new-host-key"];
        let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("expected serve")
        };
        assert_eq!(
            args.hostile_ssh,
            Some(HostileList(vec![
                HostileSsh::HugeSize,
                HostileSsh::NewHostKey
            ]))
        );
        let e = refused("--hostile-ssh", "wrong-digest");
        assert!(e.contains("unknown hostile SSH behaviour"), "{e}");
        // One of --instances / --ssh-target is required, not both.
        assert!(Cli::try_parse_from(["sallyport-testbed", "serve"]).is_err());
        assert!(
            Cli::try_parse_from([
                "x",
                "serve",
                "--instances",
                "f",
                "--ssh-target",
                "127.0.0.1:22"
            ])
            .is_err()
        );
    }

    #[test]
    fn authorized_keys_cli() {
        let parse = |args: &[&str]| {
            let all = ["sallyport-testbed", "authorized-keys"].iter().chain(args);
            match Cli::try_parse_from(all).map(|c| c.command) {
                Ok(Command::AuthorizedKeys(a)) => Ok(a),
                Ok(_) => panic!("expected authorized-keys"),
                Err(e) => Err(e),
            }
        };
        let a = parse(&["--state", "/s", "root"]).unwrap();
        assert_eq!(a.state, PathBuf::from("/s"));
        assert_eq!(
            (a.user.as_str(), a.fingerprint, a.instance),
            ("root", None, None)
        );
        assert_eq!(a.clock_offset, 0);
        let a = parse(&[
            "--state",
            "/s",
            "--instance",
            "i-0123456789abcdef0",
            "--clock-offset",
            "-30",
            "--",
            "ec2-user",
            "SHA256:abc",
        ])
        .unwrap();
        assert_eq!(a.clock_offset, -30);
        assert_eq!(a.instance.as_deref(), Some("i-0123456789abcdef0"));
        assert_eq!(a.fingerprint.as_deref(), Some("SHA256:abc"));
        assert_eq!(
            parse(&["--state", "/s", "--clock-offset=45", "u"])
                .unwrap()
                .clock_offset,
            45
        );
        assert!(parse(&["root"]).is_err());
        assert!(parse(&["--state", "/s"]).is_err());
    }

    #[test]
    fn example_instances_file_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("instances.example.toml");
        let instances = load_instances(&path).unwrap();
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[0].dial_target(22), "127.0.0.1:2222");
        assert_eq!(
            instances[0].tags.get("Name").map(String::as_str),
            Some("web-1")
        );
        assert_eq!(instances[1].ping_status, "ConnectionLost");
    }

    #[test]
    fn bad_instances_file_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("testbed-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(
            &path,
            "[[instance]]\nid = \"i-0123456789abcdef0\"\nbogus = 1\n",
        )
        .unwrap();
        let err = format!("{:#}", load_instances(&path).unwrap_err());
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        std::fs::write(&path, "[[instance]\n").unwrap();
        let err = format!("{:#}", load_instances(&path).unwrap_err());
        assert!(err.contains("line 1"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
