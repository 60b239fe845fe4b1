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
    /// More diagnostics on stderr (-v, -vv); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pipe stdin/stdout to a port on the target: an ssh ProxyCommand.
    Proxy(ProxyArgs),
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Instance ID (i-…) or managed-node ID (mi-…); ssh passes it as %h.
    pub target: String,
    /// Port on the target; ssh passes it as %p.
    #[arg(long, short, default_value_t = 22)]
    pub port: u16,
}
