//! One file per command: each takes the plain settings `cli/` resolved for it (its `…Run`
//! type, defined here) and runs its flow on the layers below. `proxy`, `exec`,
//! `forward` and `shell` run a session kind on one node; `ssh`, `scp` and `sftp` the
//! embedded SSH client ([`login`] is what they share); `ls`, `doctor` and `config ssh`
//! ([`ssh_config`]) help people find and reach their nodes. Nothing here parses
//! arguments or reads the config file.

pub mod doctor;
mod doctor_eice;
mod doctor_probe;
mod error;
pub mod exec;
pub mod forward;
pub mod login;
pub mod ls;
mod ls_eice;
pub mod proxy;
pub mod scp;
pub mod sftp;
pub mod shell;
pub mod ssh;
pub mod ssh_config;

use crate::aws::AwsConfig;

use crate::target::{self, Found, TargetSettings};
pub use error::CommandError;

/// Finds the node `on` names (loading the AWS configuration for it), runs `work` there,
/// and forgets a cached lookup whose ID the service then refused.
async fn on_node<T>(
    on: &TargetSettings,
    work: impl AsyncFnOnce(&AwsConfig, &Found) -> Result<T, CommandError>,
) -> Result<T, CommandError> {
    let (config, found) = target::locate(on).await?;
    let result = work(&config, &found).await;
    settled(&found, result)
}

/// `result`, after telling `found` whether the service refused its target (a cached
/// lookup it came from is then forgotten).
fn settled<T>(found: &Found, result: Result<T, CommandError>) -> Result<T, CommandError> {
    found.settle(
        result
            .as_ref()
            .err()
            .is_some_and(CommandError::target_refused),
    );
    result
}

/// `exec` and `shell` run a Session Manager document on the agent; an EC2 Instance Connect
/// Endpoint carries only TCP ports. Asked for EICE (`--via eice`, or `via = "eice"` in the
/// config file), they say so before any call rather than quietly taking Session Manager.
fn session_manager_only(on: &TargetSettings, command: &'static str) -> Result<(), CommandError> {
    if on.via != crate::target::via::Via::Eice {
        return Ok(());
    }
    Err(CommandError::SessionManagerOnly(command))
}

/// The ways to the node `found` for streams to `port`: Session Manager first unless
/// `--via eice`; see [`way_after`].
fn choice<'a>(
    ec2: &'a crate::aws::Ec2,
    found: &'a Found,
    on: &TargetSettings,
    port: u16,
) -> crate::target::via::Choice<'a> {
    crate::target::via::Choice {
        via: on.via,
        instances: &found.instances,
        ec2,
        port,
        max_duration: on.max_tunnel_duration,
        waiting: on.wait.is_some(),
    }
}

/// `--via eice`: the tunnels to open from the start; otherwise `None` (Session Manager
/// is tried first).
async fn way_first(
    config: &AwsConfig,
    found: &Found,
    on: &TargetSettings,
    port: u16,
) -> Result<Option<crate::session::eice::EiceStream>, CommandError> {
    if on.via != crate::target::via::Via::Eice {
        tracing::info!("{}: via Session Manager first (--via {})", found.id, on.via);
        return Ok(None);
    }
    let ec2 = crate::aws::Ec2::new(&config.sdk);
    let way = choice(&ec2, found, on, port).choose(&found.id).await?;
    eice_stream(config, found, way).map(Some)
}

/// Session Manager could not reach the node (`failed`): the EICE tunnels to use instead
/// under `auto` when it refused the target, or the failure to report (with the EICE
/// hint or what EICE lacks).
async fn way_after(
    config: &AwsConfig,
    found: &Found,
    on: &TargetSettings,
    port: u16,
    failed: CommandError,
) -> Result<crate::session::eice::EiceStream, CommandError> {
    use crate::target::via::NoEice;
    if !failed.target_refused() {
        return Err(failed);
    }
    let ec2 = crate::aws::Ec2::new(&config.sdk);
    match choice(&ec2, found, on, port)
        .after_ssm_refusal(&found.id)
        .await
    {
        Ok(way) => eice_stream(config, found, way),
        Err(NoEice::Stands) => Err(failed),
        Err(NoEice::Hint(hint)) => Err(hint.into()),
        Err(NoEice::Missing(missing)) => Err(CommandError::NoWay {
            failed: Box::new(failed),
            missing,
        }),
    }
}

fn eice_stream(
    config: &AwsConfig,
    found: &Found,
    way: crate::target::via::Way,
) -> Result<crate::session::eice::EiceStream, CommandError> {
    use crate::target::via::Way;
    match way {
        Way::Eice { tunnel, why } => {
            tracing::info!(
                "{}: via EC2 Instance Connect Endpoint {} ({}): {why}",
                found.id,
                tunnel.endpoint_id,
                tunnel.dns_name
            );
            Ok(crate::session::eice::EiceStream::new(
                config, tunnel, &found.id,
            )?)
        }
        Way::Ssm { why } => Err(CommandError::WrongWay {
            node: found.id.clone(),
            why,
        }),
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error, and unlike
/// `print!` a failed write is a message, not a panic.
pub fn stdout(bytes: &[u8]) -> Result<(), CommandError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CommandError::Stdout(e)),
        _ => Ok(()),
    }
}

/// How long a command that sets up sessions waits, before it exits, for the sessions of
/// set-ups cancelled midway to be ended on the service.
const BACKGROUND_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

fn interrupted(sig: crate::session::lifecycle::StopSignal) -> CommandError {
    CommandError::CopyInterrupted(sig.name())
}
