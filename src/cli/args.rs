//! What the user typed, and nothing else.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sallyport",
    version,
    about = "ssh, scp and sftp into EC2 instances through AWS Systems Manager, without the AWS CLI or session-manager-plugin",
    after_help = "In ~/.ssh/config:\n\n  Host i-* mi-*\n      ProxyCommand sallyport proxy '%h' --port %p\n\n\
With keys pushed through EC2 Instance Connect (nothing installed on the instance):\n\n  \
Host i-*\n      ProxyCommand sallyport proxy '%h' --port %p --user '%r' --push-key --ephemeral\n"
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
    /// HTTP(S) proxy for every connection, API calls and data channel alike (e.g.
    /// http://user:password@proxy:3128); default: `proxy` in the config file, else
    /// HTTPS_PROXY / HTTP_PROXY / ALL_PROXY (NO_PROXY applies to all of them).
    #[arg(long, global = true, value_name = "URL")]
    pub proxy: Option<String>,
    /// Connect directly: ignore --proxy, the config file's `proxy` and *_PROXY variables.
    #[arg(long, global = true, conflicts_with = "proxy")]
    pub no_proxy: bool,
    /// Config file (default: ~/.config/sallyport/config.toml).
    #[arg(long, global = true, value_name = "FILE", env = "SALLYPORT_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// When a target matches several managed nodes: `first` takes the first of the listing
    /// (online, most recently seen) instead of failing.
    #[arg(long, global = true, value_enum, value_name = "HOW")]
    pub pick: Option<Pick>,
    /// Keep retrying while the target's SSM agent is not connected, up to this long
    /// (e.g. 90s, 2m): right after a boot the agent takes a while to come online.
    #[arg(long, global = true, value_name = "DURATION", value_parser = super::parse::duration)]
    pub wait: Option<std::time::Duration>,
    /// The way to the target: `ssm` (Session Manager), `eice` (an EC2 Instance Connect
    /// Endpoint tunnel) or `auto` (Session Manager when the agent is online, else an
    /// endpoint that serves the instance's VPC); default: `via` in the config file, else auto.
    #[arg(long, global = true, value_name = "WAY", value_parser = parse_via)]
    pub via: Option<crate::target::via::Via>,
    /// EICE: end each tunnel after this many seconds (1-3600, the service's maximum;
    /// default 3600).
    #[arg(long, global = true, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_tunnel_duration: Option<u64>,
    /// More diagnostics on stderr (-v, -vv); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

fn parse_via(s: &str) -> Result<crate::target::via::Via, String> {
    s.parse()
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
    /// SSH to the target as an OS user with a key pushed through EC2 Instance Connect: a
    /// shell on a pty, or one command. No key on disk, no ssh client needed.
    Ssh(SshArgs),
    /// Copy files to or from the target over SFTP, like scp: `target:path` on one side.
    Scp(ScpArgs),
    /// An SFTP prompt on the target (ls, cd, get, put, …), or a batch file with -b.
    Sftp(SftpArgs),
    /// List the managed nodes Session Manager can reach: online first, with Name tags.
    Ls(LsArgs),
    /// Check credentials, region, clock, endpoints and optionally one target; say what to fix.
    Doctor(DoctorArgs),
    /// Configuration for other tools (`config ssh`: the ~/.ssh/config block).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (e.g. `sallyport completions bash > /etc/bash_completion.d/sallyport`).
    Completions(CompletionsArgs),
    /// Write the man pages into DIR (`sallyport man contrib/man` regenerates the committed ones).
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only nodes matching one of these targets (ID, Name tag or glob such as `web-*`,
    /// tag:Key=Value, IP, host name, alias).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// One JSON array on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also check this target: found, agent online and new enough, Instance Connect.
    pub target: Option<String>,
    /// One JSON object on stdout instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the Host block that sends ssh to `i-*`, `mi-*` and the config file's aliases
    /// through this binary; --install writes it to ~/.ssh/sallyport.conf and includes it.
    Ssh(SshConfigArgs),
}

#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// The ProxyCommand pushes a key through EC2 Instance Connect for %r first.
    #[arg(long)]
    pub push_key: bool,
    /// With --push-key: an in-memory key added to the ssh-agent, no key file.
    #[arg(long, requires = "push_key")]
    pub ephemeral: bool,
    /// Write ~/.ssh/sallyport.conf and one `Include sallyport.conf` line at the top of
    /// ~/.ssh/config (backed up to ~/.ssh/config.sallyport.bak first); idempotent.
    #[arg(long)]
    pub install: bool,
    /// Reuse one connection per host: ControlMaster auto, a ControlPath in a private
    /// directory (~/.ssh/sallyport-mux, made 0700), ControlPersist 10m. Later ssh, scp,
    /// rsync and git to the same host ride the first one's session; `ssh -O exit HOST`
    /// ends it.
    #[arg(long)]
    pub multiplex: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// How the embedded SSH client logs in and checks the host.
#[derive(Debug, Clone, Args)]
pub struct SshClientArgs {
    /// The OS user to log in as (also `user@target`); default: the config file's `user`,
    /// else a guess from the platform (ec2-user on Amazon Linux, ubuntu on Ubuntu).
    #[arg(short = 'l', long, value_name = "USER")]
    pub user: Option<String>,
    /// The port sshd listens on, on the instance.
    #[arg(long = "ssh-port", value_name = "PORT", default_value_t = 22)]
    pub ssh_port: u16,
    /// known_hosts file to check and record host keys in (default ~/.ssh/known_hosts),
    /// under the instance ID as host name.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<std::path::PathBuf>,
    /// yes: refuse hosts not in known_hosts; accept-new: record them (default); no: also
    /// connect despite a changed key.
    #[arg(long, value_enum, value_name = "HOW", default_value = "accept-new")]
    pub strict_host_key_checking: HostKeyChecking,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// What to do about a host whose key is not recorded, or recorded differently
/// (`--strict-host-key-checking`, as OpenSSH's option of that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostKeyChecking {
    /// Refuse hosts that are not recorded yet.
    Yes,
    /// Record new hosts (saying so), refuse changed keys. The default.
    AcceptNew,
    /// Record new hosts and connect despite a changed key (with a warning).
    No,
}

impl From<HostKeyChecking> for crate::ssh::known_hosts::Strictness {
    fn from(h: HostKeyChecking) -> Self {
        match h {
            HostKeyChecking::Yes => Self::Yes,
            HostKeyChecking::AcceptNew => Self::AcceptNew,
            HostKeyChecking::No => Self::No,
        }
    }
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// `[user@]target`, the target in any form `proxy` accepts; none: pick an online node
    /// on the terminal.
    pub destination: Option<String>,
    /// A command to run instead of a shell; several words are joined with spaces, as ssh
    /// does (the remote shell parses them).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
    /// Read nothing from stdin (ssh -n).
    #[arg(short = 'n')]
    pub stdin_null: bool,
    #[command(flatten)]
    pub client: SshClientArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  sallyport scp report.csv i-0abc:/tmp/\n  \
sallyport scp -r ubuntu@web-1:logs ./logs\n  sallyport scp -p a b i-0abc:")]
pub struct ScpArgs {
    /// Sources then the destination; the remote side is `[user@]target:path`.
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    pub operands: Vec<String>,
    /// Copy directories recursively.
    #[arg(short = 'r')]
    pub recursive: bool,
    /// Keep modification times, access times and modes.
    #[arg(short = 'p')]
    pub preserve: bool,
    /// No progress bars.
    #[arg(short = 'q')]
    pub quiet: bool,
    /// Compare each copied file's SHA-256 with one computed on the instance (sha256sum).
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub client: SshClientArgs,
}

/// How `scp` and `sftp` move data.
#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// Spread the copy over up to N sessions (1 to 16; default 4, or `parallel` in the
    /// config file); more open only while there is work for them.
    #[arg(short = 'j', long = "parallel", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..=16))]
    pub parallel: Option<u8>,
    /// Compress the SSH connection (zlib@openssh.com): helps on text, costs CPU on random
    /// or already compressed data. Also `compression = true` in the config file.
    #[arg(short = 'C')]
    pub compression: bool,
}

#[derive(Debug, Args)]
pub struct SftpArgs {
    /// `[user@]target`, the target in any form `proxy` accepts.
    pub destination: String,
    /// Read commands from FILE (`-` for stdin) and stop at the first that fails, unless it
    /// is prefixed with `-`.
    #[arg(short = 'b', value_name = "FILE")]
    pub batch: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub client: SshClientArgs,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The target, in any form `proxy` accepts; none: pick an online node on the terminal.
    pub target: Option<String>,
    /// Session document (default: the service's, SSM-SessionManagerRunShell), e.g.
    /// AWS-StartInteractiveCommand.
    #[arg(long, value_name = "NAME")]
    pub document: Option<String>,
    /// A document parameter, NAME=VALUE; repeat for more (or for a list's values).
    #[arg(long = "parameter", value_name = "NAME=VALUE",
          value_parser = super::parse::parameter)]
    pub parameters: Vec<(String, String)>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "SPEC is [bind:]local:remote_port (a port on the target) or \
[bind:]local:host:port (a host the target reaches); local 0 picks a free port; bind \
defaults to 127.0.0.1.\n\nNo TARGET: pick an online node on the terminal. A first word \
that parses as a SPEC is one, not a TARGET (IDs, tag:Key=Value and IPs never do); a \
node whose name looks like a SPEC (e.g. 8080) is named by its ID or tag:Name=8080.\n\n\
Examples:\n  sallyport forward i-0abc 58888:8888 --open\n  \
sallyport forward web-1 5432:db.internal:5432 0:6379\n  sallyport forward web-1 -D 1080\n  \
sallyport forward 8888:localhost:8888    (pick the node)"
)]
pub struct ForwardArgs {
    /// The target, in any form `proxy` accepts; none: pick an online node on the terminal.
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,
    /// One session per SPEC, all in this process (at least one SPEC, or -D).
    #[arg(value_name = "SPEC", value_parser = super::parse::forward_spec)]
    pub specs: Vec<crate::session::forward::ForwardSpec>,
    /// A SOCKS5 server on [bind:]port whose connections leave from the target.
    #[arg(short = 'D', long = "socks", value_name = "[BIND:]PORT",
          value_parser = super::parse::socks_addr)]
    pub socks: Option<std::net::SocketAddr>,
    /// Let -D listen on an address other machines can reach (e.g. 0.0.0.0): anyone who
    /// reaches it gets into the target's network, without authentication.
    #[arg(long)]
    pub allow_remote_socks: bool,
    /// Open http://<bind>:<port>/ of the first SPEC in the browser once it is up
    /// (127.0.0.1 for a 0.0.0.0 bind).
    #[arg(long)]
    pub open: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The target, in any form `proxy` accepts; none: pick an online node on the terminal.
    pub target: Option<String>,
    /// Session document to run the command with instead of AWS-StartNonInteractiveCommand
    /// (it must take a `command` parameter; separateOutputStream=true is passed when it
    /// declares that parameter, which the exit code needs).
    #[arg(long, value_name = "NAME")]
    pub document: Option<String>,
    /// A document parameter, NAME=VALUE; repeat for more (or for a list's values). Replaces
    /// the value exec would pass (command, separateOutputStream).
    #[arg(long = "parameter", value_name = "NAME=VALUE",
          value_parser = super::parse::parameter)]
    pub parameters: Vec<(String, String)>,
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
    /// Push a public key through EC2 Instance Connect first (valid 60 s), for the OS user
    /// given by --user: the `.pub` of -i, else ~/.ssh/id_ed25519.pub or id_rsa.pub.
    #[arg(long)]
    pub push_key: bool,
    /// With --push-key: make an Ed25519 key in memory, add it to the ssh-agent
    /// (SSH_AUTH_SOCK) for 60 s and push that; no key file is needed or written.
    #[arg(long, requires = "push_key")]
    pub ephemeral: bool,
    /// The OS user the key is pushed for; ssh passes it as %r.
    #[arg(long, value_name = "USER", required_if_eq("push_key", "true"))]
    pub user: Option<String>,
    /// With --push-key: the key ssh will offer (its `.pub` is pushed), as ssh's -i.
    #[arg(
        short = 'i',
        long,
        value_name = "FILE",
        requires = "push_key",
        conflicts_with = "ephemeral"
    )]
    pub identity: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// How a data channel is kept alive and brought back after a drop.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Websocket keep-alive ping interval.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = super::parse::duration)]
    pub keepalive: std::time::Duration,
    /// Treat the data channel as dead after this long without hearing from the service.
    #[arg(long, value_name = "DURATION", default_value = "50s", value_parser = super::parse::duration)]
    pub dead_after: std::time::Duration,
    /// How long to keep trying to resume a dropped session before giving up.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::parse::duration)]
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
