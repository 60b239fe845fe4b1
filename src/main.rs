//! Parse arguments, run, map errors to exit codes; nothing else.

use clap::Parser;
use sallyport::cli::args::{Cli, Command, ConfigCommand};
use sallyport::cli::generate;
use sallyport::cli::{settings, tools};
use sallyport::error::{ExitCode, Failure};
use sallyport::session::exec::{self, ExecRequest};
use sallyport::session::forward::{self, ForwardRequest};
use sallyport::session::proxy::{self, ProxyRequest, PushKey};
use sallyport::session::shell::{self, ShellRequest};
use sallyport::{config_file, ssh, target};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report(Failure::new(
                ExitCode::Internal,
                format!("cannot start: {e}"),
            ));
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait for tokio's blocking stdin reader: after an error ssh may still hold our
    // stdin open, and a runtime drop would wait for that read forever.
    runtime.shutdown_background();
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(f) => report(f),
    }
}

/// Runs the command; `Ok` holds the exit code (the remote one for `exec`).
async fn run(cli: Cli) -> Result<u8, Failure> {
    // Generated from the clap definitions alone: no config file, no AWS.
    match &cli.command {
        Command::Completions(args) => {
            let mut out = Vec::new();
            generate::completions(args.shell, &mut out);
            return write_stdout(&out);
        }
        Command::Man { dir } => {
            let n = generate::write_man_pages(dir).map_err(|e| {
                Failure::new(
                    ExitCode::LocalIo,
                    format!("cannot write the man pages into {}: {e}", dir.display()),
                )
            })?;
            eprintln!("sallyport: wrote {n} man pages into {}", dir.display());
            return Ok(0);
        }
        _ => {}
    }
    let file = config_file::load(cli.global.config.as_deref()).map_err(settings::config_failure)?;
    let env = |k: &str| std::env::var(k).ok();
    let inputs = settings::Inputs {
        global: &cli.global,
        file: &file,
        env: &env,
        interactive: interactive(),
    };
    match cli.command {
        Command::Proxy(args) => {
            let s = inputs.target(&args.target)?;
            let (config, found) = target::locate(&s).await?;
            let ssm = sallyport::aws::Ssm::new(&config);
            let push = match (args.push_key, &args.user) {
                (true, Some(user)) => Some(PushKey {
                    eic: sallyport::aws::InstanceConnect::new(&config),
                    user: user.clone(),
                    public_key: proxy::key_to_push(args.ephemeral, args.identity.as_deref())
                        .await?,
                    profile: s.aws.profile.clone(),
                }),
                _ => None,
            };
            let req = ProxyRequest {
                target: found.id.clone(),
                port: args.port,
                start: found.start_options(&s),
                link: args.connection.link_options(),
                push,
            };
            let result = proxy::run(&ssm, &req).await;
            found.settle(&result);
            result.map(|()| 0)
        }
        Command::Exec(args) => {
            let raw = args.target.as_deref().unwrap_or_default();
            let (ssm, found, s) = resolve(&inputs, raw).await?;
            let req = ExecRequest {
                target: found.id.clone(),
                command: exec::command_line(&args.command),
                document: args.document,
                start: found.start_options(&s),
                link: args.connection.link_options(),
            };
            let result = exec::run(&ssm, &req).await;
            found.settle(&result);
            result
        }
        Command::Forward(args) => {
            let (ssm, found, s) = resolve(&inputs, &args.target).await?;
            let req = ForwardRequest {
                target: found.id.clone(),
                specs: args.specs,
                socks: args.socks,
                open: args.open,
                start: found.start_options(&s),
                link: args.connection.link_options(),
            };
            forward::run(&ssm, &req).await
        }
        Command::Shell(args) => {
            let raw = args.target.as_deref().unwrap_or_default();
            let (ssm, found, s) = resolve(&inputs, raw).await?;
            let mut parameters = std::collections::BTreeMap::<String, Vec<String>>::new();
            for (k, v) in args.parameters {
                parameters.entry(k).or_default().push(v);
            }
            let req = ShellRequest {
                target: found.id.clone(),
                document: args.document,
                parameters,
                start: found.start_options(&s),
                link: args.connection.link_options(),
            };
            let result = shell::run(&ssm, &req).await;
            found.settle(&result);
            result
        }
        Command::Ssh(args) => ssh::commands::ssh(&inputs, &args).await,
        Command::Scp(args) => ssh::commands::scp(&inputs, &args).await,
        Command::Sftp(args) => ssh::commands::sftp(&inputs, &args).await,
        Command::Ls(args) => tools::ls(&cli.global, &file, &args).await,
        Command::Doctor(args) => tools::doctor(&cli.global, &file, &args).await,
        Command::Config(ConfigCommand::Ssh(args)) => tools::config_ssh(&cli.global, &file, &args),
        Command::Completions(_) | Command::Man { .. } => Ok(0), // answered above
    }
}

/// Settings, SDK configuration and target lookup, as `proxy` does them.
async fn resolve(
    inputs: &settings::Inputs<'_>,
    raw_target: &str,
) -> Result<(sallyport::aws::Ssm, target::Found, target::TargetSettings), Failure> {
    let s = inputs.target(raw_target)?;
    let (config, found) = target::locate(&s).await?;
    Ok((sallyport::aws::Ssm::new(&config), found, s))
}

/// Stdin and stderr are terminals: a person may pick a node.
fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is not an error worth a message.
fn write_stdout(bytes: &[u8]) -> Result<u8, Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(Failure::new(
            ExitCode::LocalIo,
            format!("cannot write to stdout: {e}"),
        )),
    }
}

fn report(f: Failure) -> std::process::ExitCode {
    eprintln!("sallyport: {}", f.message);
    std::process::ExitCode::from(f.code as u8)
}

/// Diagnostics go to stderr only, and only when asked for (-v or RUST_LOG).
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        // Our warnings only: dependencies' chatter would land in the user's ssh session.
        0 => "error,sallyport=warn",
        1 => "info,sallyport=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
