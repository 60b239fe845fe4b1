//! Parse arguments, run, map errors to exit codes; nothing else.

use clap::Parser;
use sallyport::cli::args::Cli;
use sallyport::cli::generate;
use sallyport::cli::resolve::{self, Resolved};
use sallyport::commands;
use sallyport::error::{ExitCode, Failure};

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

/// Resolves the command (the one step that reads args, config file and environment),
/// then runs it; `Ok` holds the exit code (the remote one for `exec`).
async fn run(cli: Cli) -> Result<u8, Failure> {
    match resolve::resolve(cli)? {
        Resolved::Completions(shell) => {
            let mut out = Vec::new();
            generate::completions(shell, &mut out);
            Ok(commands::stdout(&out).map(|()| 0)?)
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
        Resolved::Proxy(run) => Ok(commands::proxy::run(run).await?),
        Resolved::Exec(run) => Ok(commands::exec::run(run).await?),
        Resolved::Forward(run) => Ok(commands::forward::run(run).await?),
        Resolved::Shell(run) => Ok(commands::shell::run(run).await?),
        Resolved::Ssh(run) => Ok(commands::ssh::run(run).await?),
        Resolved::Scp(run) => Ok(commands::scp::run(run).await?),
        Resolved::Sftp(run) => Ok(commands::sftp::run(run).await?),
        Resolved::Ls(run) => Ok(commands::ls::run(&run).await?),
        Resolved::Doctor(run) => Ok(commands::doctor::run(run).await?),
        Resolved::ConfigSsh(run) => Ok(commands::ssh_config::run(run)?),
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
