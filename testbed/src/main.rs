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
use sallyport_testbed::world::config::{AgentSettings, InstanceConfig, TestbedConfig, load_world};
use sallyport_testbed::world::endpoints::{DEFAULT_ENDPOINT_ID, EndpointConfig};
use sallyport_testbed::{Testbed, server};
use serve_args::{HostileList, ServeArgs, parse_duration};

mod serve_args;

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
    /// Also hold each new connection for one --rtt, as TCP's handshake costs on a real link.
    #[arg(long)]
    tcp_handshake: bool,
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
    let (mut instances, mut endpoints) = match (&args.instances, args.ssh_target, &args.hostile_ssh)
    {
        (Some(path), _, _) => load_world(path)?,
        (None, Some(addr), _) => (vec![InstanceConfig::ssh_shortcut(addr)], Vec::new()),
        // Port 22 becomes the hostile server's below; this address is never dialled.
        (None, None, Some(_)) => (
            vec![InstanceConfig::ssh_shortcut(SocketAddr::from((
                [127, 0, 0, 1],
                22,
            )))],
            Vec::new(),
        ),
        (None, None, None) => anyhow::bail!("give --instances FILE or --ssh-target ADDR"),
    };
    if args.eice {
        add_default_endpoint(&instances, &mut endpoints);
    }
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
    config.stream_host = args.stream_host;
    config.instance_connect_endpoints = endpoints;
    config.eice_rate = args.eice_rate;
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

/// `serve --eice`: one endpoint in the first instance's VPC and subnet, unless the
/// instances file already has one with that ID.
fn add_default_endpoint(instances: &[InstanceConfig], endpoints: &mut Vec<EndpointConfig>) {
    let Some(first) = instances.first() else {
        return;
    };
    if endpoints.iter().any(|e| e.id == DEFAULT_ENDPOINT_ID) {
        return;
    }
    endpoints.push(EndpointConfig::new(
        DEFAULT_ENDPOINT_ID,
        first.vpc_id(),
        first.subnet_id(),
    ));
}

async fn delay(args: DelayProxyArgs) -> anyhow::Result<()> {
    let listener = delay_proxy::bind(args.listen).await?;
    print_flush(&format!("LISTEN={}\n", listener.local_addr()?))?;
    tokio::select! {
        r = delay_proxy::serve_with(listener, args.to, args.rtt, args.tcp_handshake) => r,
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

#[cfg(test)]
mod tests {
    use super::*;
    use sallyport_testbed::world::config::{UnsignedPolicy, load_instances};
    use sallyport_testbed::world::endpoints::DEFAULT_VPC_ID;
    use sallyport_testbed::world::hostile_ssh::HostileSsh;

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
            ("1m30s", Duration::from_secs(90)),
            // The client's syntax takes a space before the unit; so does this one.
            ("40 ms", Duration::from_millis(40)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "40", "ms", "4x", "-1s", "1..2s", "1e3ms", "1.ms"] {
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
        assert!(!args.eice && args.eice_rate.is_none());
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
        let (instances, endpoints) = load_world(&path).unwrap();
        assert_eq!(
            instances[1].ec2_state(),
            "running",
            "reachable through EICE only"
        );
        assert_eq!(instances[1].vpc_id(), "vpc-0a1b2c3d4e5f60789");
        assert_eq!(instances[0].vpc_id(), DEFAULT_VPC_ID);
        assert_eq!(instances[0].ipv6_address.as_deref(), Some("fd00:ec2::7"));
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].vpc_id, "vpc-0a1b2c3d4e5f60789");
        assert_eq!(endpoints[0].state, "create-complete");
        assert_eq!(endpoints[0].max_connections(), 20);
    }

    #[test]
    fn cli_parses_eice() {
        let argv = ["x", "serve", "--ssh-target", "127.0.0.1:22", "--eice"];
        let more = ["--eice-rate", "1000000"];
        let Command::Serve(args) = Cli::try_parse_from(argv.iter().chain(&more))
            .unwrap()
            .command
        else {
            panic!("expected serve")
        };
        assert!(args.eice);
        assert_eq!(args.eice_rate, Some(1_000_000));
        let argv = [
            "x",
            "serve",
            "--ssh-target",
            "127.0.0.1:22",
            "--eice-rate",
            "0",
        ];
        let e = Cli::try_parse_from(argv)
            .err()
            .expect("0 refused")
            .to_string();
        assert!(e.contains("at least 1 byte per second"), "{e}");
    }

    #[test]
    fn eice_adds_one_endpoint_in_the_first_instance_vpc() {
        let instances = vec![InstanceConfig::ssh_shortcut(
            "127.0.0.1:22".parse().unwrap(),
        )];
        let mut endpoints = Vec::new();
        add_default_endpoint(&instances, &mut endpoints);
        add_default_endpoint(&instances, &mut endpoints);
        assert_eq!(
            endpoints,
            [EndpointConfig::new(
                DEFAULT_ENDPOINT_ID,
                DEFAULT_VPC_ID,
                sallyport_testbed::world::endpoints::DEFAULT_SUBNET_ID
            )]
        );
    }

    #[test]
    fn bad_endpoint_tables_are_refused() {
        let dir = std::env::temp_dir().join(format!("testbed-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("eice.toml");
        let instance = "[[instance]]\nid = \"i-0123456789abcdef0\"\n";
        let cases = [
            (
                "id = \"eice-1\"\nvpc_id = \"v\"\nsubnet_id = \"s\"",
                "17 hex digits",
            ),
            (
                "id = \"eice-0123456789abcdef0\"\nvpc_id = \"v\"\nsubnet_id = \"s\"\nstate = \"ready\"",
                "state \"ready\"",
            ),
            (
                "id = \"eice-0123456789abcdef0\"\nvpc_id = \"v\"\nsubnet_id = \"s\"\nmax_connections = 0",
                "at least 1",
            ),
            (
                "id = \"eice-0123456789abcdef0\"\nvpc_id = \"v\"",
                "subnet_id",
            ),
        ];
        for (table, want) in cases {
            let text = format!("{instance}[[instance_connect_endpoint]]\n{table}\n");
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", load_world(&path).unwrap_err());
            assert!(err.contains(want) && err.contains("eice.toml"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
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
