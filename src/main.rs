//! Parse arguments, run, map errors to exit codes; nothing else.

use clap::Parser;
use sallyport::cli::args::{Cli, Command};
use sallyport::cli::settings;
use sallyport::error::{ExitCode, Failure};
use sallyport::session::proxy::{self, ProxyRequest};

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
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(f) => report(f),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let aws = settings::aws_settings(&cli.global);
    match cli.command {
        Command::Proxy(args) => {
            let target = settings::target(&args.target)?;
            let config = sallyport::aws::load(&aws)
                .await
                .map_err(|e| Failure::aws(e, &target))?;
            let ssm = sallyport::aws::Ssm::new(&config);
            proxy::run(
                &ssm,
                &ProxyRequest {
                    target,
                    port: args.port,
                },
            )
            .await
        }
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
