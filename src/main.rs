//! Parse arguments, run, map errors to exit codes; nothing else.

use clap::Parser;
use sallyport::cli::args::Cli;
use sallyport::cli::generate;
use sallyport::cli::resolve::{self, Resolved};
use sallyport::cli::tools;
use sallyport::error::{ExitCode, Failure};
use sallyport::session::exec::{self, ExecRequest};
use sallyport::session::forward::{self, ForwardRequest};
use sallyport::session::proxy::{self, ProxyRequest, PushKey};
use sallyport::session::shell::{self, ShellRequest};
use sallyport::{ssh, target};

fn main() -> std::process::ExitCode {
    sallyport::timeline::start();
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

/// Resolves the command (the one step that reads args, config file and environment),
/// then runs it; `Ok` holds the exit code (the remote one for `exec`).
async fn run(cli: Cli) -> Result<u8, Failure> {
    match resolve::resolve(cli)? {
        Resolved::Completions(shell) => {
            let mut out = Vec::new();
            generate::completions(shell, &mut out);
            write_stdout(&out)
        }
        Resolved::Man(dir) => {
            let n = generate::write_man_pages(&dir).map_err(|e| {
                Failure::new(
                    ExitCode::LocalIo,
                    format!("cannot write the man pages into {}: {e}", dir.display()),
                )
            })?;
            eprintln!("sallyport: wrote {n} man pages into {}", dir.display());
            Ok(0)
        }
        Resolved::Proxy(run) => {
            let (config, found) = target::locate(&run.on).await?;
            let ssm = sallyport::aws::Ssm::new(&config);
            let push = match run.push {
                Some(p) => Some(PushKey {
                    eic: sallyport::aws::InstanceConnect::new(&config.sdk),
                    user: p.user,
                    public_key: proxy::key_to_push(p.ephemeral, p.identity.as_deref()).await?,
                    profile: run.on.aws.profile.clone(),
                }),
                None => None,
            };
            let req = ProxyRequest {
                target: found.id.clone(),
                port: run.port,
                start: found.start_options(&run.on),
                link: run.link,
                push,
            };
            let result = proxy::run(&ssm, &req).await;
            found.settle(&result);
            result.map(|()| 0)
        }
        Resolved::Exec(run) => {
            let (config, found) = target::locate(&run.on).await?;
            let req = ExecRequest {
                target: found.id.clone(),
                command: run.command,
                document: run.document,
                parameters: run.parameters,
                cache_scope: run.on.cache_scope.clone(),
                start: found.start_options(&run.on),
                link: run.link,
            };
            let result = exec::run(&sallyport::aws::Ssm::new(&config), &req).await;
            found.settle(&result);
            result
        }
        Resolved::Forward(run) => {
            let (config, found) = target::locate(&run.on).await?;
            let req = ForwardRequest {
                target: found.id.clone(),
                specs: run.specs,
                socks: run.socks,
                open: run.open,
                start: found.start_options(&run.on),
                link: run.link,
            };
            forward::run(&sallyport::aws::Ssm::new(&config), &req).await
        }
        Resolved::Shell(run) => {
            let (config, found) = target::locate(&run.on).await?;
            let req = ShellRequest {
                target: found.id.clone(),
                document: run.document,
                parameters: run.parameters,
                start: found.start_options(&run.on),
                link: run.link,
            };
            let result = shell::run(&sallyport::aws::Ssm::new(&config), &req).await;
            found.settle(&result);
            result
        }
        Resolved::Ssh(run) => ssh::commands::ssh(run).await,
        Resolved::Scp(run) => ssh::commands::scp(run).await,
        Resolved::Sftp(run) => ssh::commands::sftp(run).await,
        Resolved::Ls(run) => tools::ls(&run).await,
        Resolved::Doctor(run) => tools::doctor(run).await,
        Resolved::ConfigSsh(run) => tools::config_ssh(run),
    }
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
///
/// Other crates never log below DEBUG, whatever RUST_LOG says: at TRACE the AWS SDK
/// prints requests and answers whole (StartSession's TokenValue, the signed headers with
/// the session token), and a pasted log must give nothing away.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
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
        .finish()
        .with(tracing_subscriber::filter::filter_fn(|meta| {
            sallyport::log_allowed(meta.target(), *meta.level())
        }))
        .init();
}
