//! What the user typed, and nothing else.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sallyport",
    version,
    about = "ssh, scp and sftp into EC2 instances through AWS Systems Manager, without the AWS CLI or session-manager-plugin",
    after_help = "In ~/.ssh/config:\n\n  Host i-* mi-*\n      ProxyCommand sallyport proxy %h --port %p\n"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// AWS profile to use (default: AWS_PROFILE, else "default").
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// AWS region (default: AWS_REGION, else the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Endpoint URL for the AWS APIs (e.g. a VPC endpoint or a local testbed).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Config file (default: ~/.config/sallyport/config.toml).
    #[arg(long, global = true, value_name = "FILE", env = "SALLYPORT_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// When a target matches several managed nodes: `first` takes the first of the listing
    /// (online, most recently seen) instead of failing.
    #[arg(long, global = true, value_enum, value_name = "HOW")]
    pub pick: Option<Pick>,
    /// Keep retrying while the target's SSM agent is not connected, up to this long
    /// (e.g. 90s, 2m): right after a boot the agent takes a while to come online.
    #[arg(long, global = true, value_name = "DURATION", value_parser = super::settings::parse_duration)]
    pub wait: Option<std::time::Duration>,
    /// More diagnostics on stderr (-v, -vv); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// What to do when a target matches several managed nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pick {
    /// Take the first: online before offline, then the most recently seen.
    First,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pipe stdin/stdout to a port on the target: an ssh ProxyCommand.
    Proxy(ProxyArgs),
    /// Run one command on the target: its stdout, stderr and exit code become ours.
    Exec(ExecArgs),
    /// Forward local ports to ports on the target or to hosts it reaches; -D for SOCKS5.
    Forward(ForwardArgs),
    /// A Session Manager shell on the target (or another session document).
    Shell(ShellArgs),
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The target, in any form `proxy` accepts.
    pub target: String,
    /// Session document (default: the service's, SSM-SessionManagerRunShell), e.g.
    /// AWS-StartInteractiveCommand.
    #[arg(long, value_name = "NAME")]
    pub document: Option<String>,
    /// A document parameter, NAME=VALUE; repeat for more (or for a list's values).
    #[arg(long = "parameter", value_name = "NAME=VALUE",
          value_parser = crate::session::shell::parse_parameter)]
    pub parameters: Vec<(String, String)>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "SPEC is [bind:]local:remote_port (a port on the target) or \
[bind:]local:host:port (a host the target reaches); local 0 picks a free port; bind \
defaults to 127.0.0.1.\n\nExamples:\n  sallyport forward i-0abc 58888:8888 --open\n  \
sallyport forward web-1 5432:db.internal:5432 0:6379\n  sallyport forward web-1 -D 1080"
)]
pub struct ForwardArgs {
    /// The target, in any form `proxy` accepts.
    pub target: String,
    /// One session per SPEC, all in this process.
    #[arg(value_name = "SPEC", required_unless_present = "socks",
          value_parser = |s: &str| s.parse::<crate::session::forward::ForwardSpec>())]
    pub specs: Vec<crate::session::forward::ForwardSpec>,
    /// A SOCKS5 server on [bind:]port whose connections leave from the target.
    #[arg(short = 'D', long = "socks", value_name = "[BIND:]PORT",
          value_parser = crate::session::forward::parse_socks_addr)]
    pub socks: Option<std::net::SocketAddr>,
    /// Open http://127.0.0.1:<port>/ of the first SPEC in the browser once it is up.
    #[arg(long)]
    pub open: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The target, in any form `proxy` accepts.
    pub target: String,
    /// Session document to run the command with instead of AWS-StartNonInteractiveCommand
    /// (it must take a `command` parameter and set separateOutputStream for exit codes).
    #[arg(long, value_name = "NAME")]
    pub document: Option<String>,
    /// The command; several words are quoted for the remote shell (`-- sh -c 'a; b'`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Instance ID (i-…, mi-…), Name tag value, tag:Key=Value, private IP, host name, or an
    /// alias from the config file; ssh passes it as %h.
    pub target: String,
    /// Port on the target; ssh passes it as %p.
    #[arg(long, short, default_value_t = 22)]
    pub port: u16,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// How a data channel is kept alive and brought back after a drop.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Websocket keep-alive ping interval.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = super::settings::parse_duration)]
    pub keepalive: std::time::Duration,
    /// Treat the data channel as dead after this long without hearing from the service.
    #[arg(long, value_name = "DURATION", default_value = "50s", value_parser = super::settings::parse_duration)]
    pub dead_after: std::time::Duration,
    /// How long to keep trying to resume a dropped session before giving up.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::settings::parse_duration)]
    pub resume_budget: std::time::Duration,
}

impl ConnectionArgs {
    pub fn link_options(&self) -> crate::transport::LinkOptions {
        crate::transport::LinkOptions {
            ping_interval: self.keepalive.max(std::time::Duration::from_millis(100)),
            dead_after: self.dead_after.max(self.keepalive),
            resume_budget: self.resume_budget,
        }
    }
}
