//! The glue for `sallyport ssh`, `scp` and `sftp`: who to log in as, where, and with
//! which settings; then a [`Connection`] for the command to use.

use std::time::Duration;

use crate::aws::{InstanceConnect, Ssm};
use crate::cli::args::SshClientArgs;
use crate::cli::settings::Inputs;
use crate::error::{ExitCode, Failure};
use crate::target;

use super::client::{self, Connection, SshOptions};
use super::known_hosts::HostKeyPolicy;

/// Sessions a `scp`/`sftp` copy may use when neither `-j` nor the config file says.
// Unverified: how many concurrent sessions the real service allows per instance and user,
// and how hard it throttles StartSession, were not measured; a refusal is survived
// (transfer::stripe backs off and goes on with the sessions it has).
const DEFAULT_PARALLEL: usize = 4;

/// How long the platform lookup for guessing the OS user may take.
const PLATFORM_LOOKUP_BUDGET: Duration = Duration::from_secs(10);

/// `user@target` → (`Some(user)`, `target`); a bare target → (`None`, target). The last
/// `@` splits, so a user name may not contain one but a target never does.
pub fn split_destination(destination: &str) -> (Option<&str>, &str) {
    match destination.rsplit_once('@') {
        Some((user, target)) if !user.is_empty() => (Some(user), target),
        Some((_, target)) => (None, target),
        None => (None, destination),
    }
}

/// The usual login user of an AMI, from SSM's platform name (e.g. "Amazon Linux",
/// "Ubuntu"). Unknown platforms get `ec2-user`, the most common default.
pub fn guess_user(platform: Option<&str>) -> &'static str {
    let p = platform.unwrap_or_default().to_ascii_lowercase();
    let table: [(&str, &str); 7] = [
        ("ubuntu", "ubuntu"),
        ("debian", "admin"),
        ("centos", "centos"),
        ("fedora", "fedora"),
        ("rocky", "rocky"),
        ("alma", "ec2-user"),
        ("bitnami", "bitnami"),
    ];
    table
        .iter()
        .find(|(needle, _)| p.contains(needle))
        .map_or("ec2-user", |(_, user)| user)
}

/// Resolves the target and the user, then connects: the SSM session and the key push
/// run side by side, then SSH authenticates.
pub async fn connect(
    inputs: &Inputs<'_>,
    dest_user: Option<&str>,
    raw_target: &str,
    args: &SshClientArgs,
) -> Result<(Connection, String), Failure> {
    let (connector, conn) = connector(inputs, dest_user, raw_target, args, false).await?;
    Ok((conn, connector.target().to_owned()))
}

/// [`connect`], also returning the [`client::Connector`] that made the connection, to
/// open more like it; `compression` offers zlib compression.
pub async fn connector(
    inputs: &Inputs<'_>,
    dest_user: Option<&str>,
    raw_target: &str,
    args: &SshClientArgs,
    compression: bool,
) -> Result<(client::Connector, Connection), Failure> {
    let (s, config_user) = inputs.target_and_user(raw_target)?;
    let (config, found) = target::locate(&s).await?;
    let explicit = dest_user
        .map(str::to_owned)
        .or_else(|| args.user.clone())
        .or(config_user);
    let (user, guessed) = match explicit {
        Some(u) => (u, false),
        None => {
            let node =
                tokio::time::timeout(PLATFORM_LOOKUP_BUDGET, found.instances.node(&found.id))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten();
            let platform = node.and_then(|n| n.platform);
            let user = guess_user(platform.as_deref()).to_owned();
            eprintln!(
                "sallyport: logging in as {user:?} (guessed from the platform {}; pass \
                 user@{raw_target} or --user to choose)",
                platform.map_or_else(|| "(unknown)".to_owned(), |p| format!("{p:?}"))
            );
            (user, true)
        }
    };
    if user.is_empty() {
        return Err(Failure::new(ExitCode::Config, "the OS user name is empty"));
    }
    let opts = SshOptions {
        user,
        user_guessed: guessed,
        port: args.ssh_port,
        host_keys: HostKeyPolicy::new(
            args.known_hosts.clone(),
            args.strict_host_key_checking,
            &found.id,
            args.ssh_port,
        )?,
        start: found.start_options(&s),
        link: args.connection.link_options(),
    };
    let ssm = Ssm::new(&config);
    let eic = InstanceConnect::new(&config);
    let mut connector =
        client::Connector::new(&ssm, &eic, &found.id, s.aws.profile.as_deref(), &opts)?;
    connector.compression = compression;
    let result = connector.connect().await;
    found.settle(&result);
    result.map(|c| (connector, c))
}

/// `sallyport ssh`: a shell, or one command.
pub async fn ssh(inputs: &Inputs<'_>, args: &crate::cli::args::SshArgs) -> Result<u8, Failure> {
    let (user, target) = split_destination(args.destination.as_deref().unwrap_or_default());
    let (conn, _) = connect(inputs, user, target, &args.client).await?;
    let command = (!args.command.is_empty()).then(|| args.command.join(" "));
    super::remote::run(conn, command, args.stdin_null).await
}

/// `sallyport scp`: one remote side, copied through SFTP.
pub async fn scp(inputs: &Inputs<'_>, args: &crate::cli::args::ScpArgs) -> Result<u8, Failure> {
    let ops = super::scp_args::parse_operands(&args.operands)
        .map_err(|e| Failure::new(ExitCode::Usage, e.to_string()))?;
    let t = &args.transfer;
    let lanes = t.parallel.map_or(
        inputs.file.parallel.unwrap_or(DEFAULT_PARALLEL),
        usize::from,
    );
    let compression = t.compression || inputs.file.compression.unwrap_or(false);
    // Listen before connecting: a Ctrl-C must release the sessions and temporary files.
    let mut signals = crate::session::lifecycle::Signals::new();
    let connecting = connector(
        inputs,
        ops.user.as_deref(),
        &ops.target,
        &args.client,
        compression,
    );
    let (connector, conn) = tokio::select! {
        c = connecting => c?,
        sig = signals.recv() => return Err(interrupted(sig)),
    };
    let opts = super::transfer::CopyOptions {
        recursive: args.recursive,
        preserve: args.preserve,
        progress: !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    if lanes > 1 || args.verify {
        let par = super::transfer::parallel::ParallelOptions {
            lanes,
            verify: args.verify,
        };
        let res = super::transfer::parallel::Resources::default();
        let mut report = |f: &Failure| eprintln!("sallyport: {}", f.message);
        let work = super::transfer::parallel::copy(
            &connector,
            conn,
            &res,
            &ops.plan,
            &opts,
            &par,
            &mut report,
        );
        let result = tokio::select! {
            r = work => r,
            sig = signals.recv() => Err(interrupted(sig)),
        };
        res.release().await;
        let outcome = result?;
        return match (outcome.problems, outcome.first_code) {
            (0, _) | (_, None) => Ok(0),
            (n, Some(code)) => Err(Failure::new(
                code,
                if n == 1 {
                    "1 file or directory could not be copied".to_owned()
                } else {
                    format!("{n} files or directories could not be copied")
                },
            )),
        };
    }
    // -j 1: one session, written in place, as before striping existed.
    let work = with_sftp(conn, async |sftp| {
        super::transfer::copy(sftp, &ops.plan, &opts)
            .await
            .map(|_| 0)
    });
    tokio::select! {
        r = work => r,
        sig = signals.recv() => Err(interrupted(sig)),
    }
}

fn interrupted(sig: crate::session::lifecycle::StopSignal) -> Failure {
    Failure::new(
        ExitCode::Interrupted,
        format!("interrupted by {}; the copy is incomplete", sig.name()),
    )
}

/// `sallyport sftp`: a prompt on a terminal, or a batch file (`-b`).
pub async fn sftp(inputs: &Inputs<'_>, args: &crate::cli::args::SftpArgs) -> Result<u8, Failure> {
    use std::io::IsTerminal as _;
    // Open the batch file before connecting: a typo should not cost a session.
    let batch: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>> = match &args.batch {
        Some(p) if p.as_os_str() == "-" => Some(Box::new(tokio::io::stdin())),
        Some(p) => Some(Box::new(tokio::fs::File::open(p).await.map_err(|e| {
            Failure::new(
                ExitCode::LocalIo,
                format!("cannot read the batch file {}: {e}", p.display()),
            )
        })?)),
        None => None,
    };
    let (user, target) = split_destination(&args.destination);
    let t = &args.transfer;
    let lanes = t.parallel.map_or(
        inputs.file.parallel.unwrap_or(DEFAULT_PARALLEL),
        usize::from,
    );
    let compression = t.compression || inputs.file.compression.unwrap_or(false);
    let (connector, conn) = connector(inputs, user, target, &args.client, compression).await?;
    let res = super::transfer::parallel::Resources::default();
    let striping = super::sftp_shell::Striping {
        connector: &connector,
        res: &res,
        lanes,
    };
    // A channel on this connection for striped get/put; without one they run unstriped.
    let striped = lanes > 1 && res.add_lane_on(&conn).await.is_ok();
    let opts = super::sftp_shell::ShellOptions {
        batch: batch.is_some(),
        interactive: batch.is_none() && std::io::stdin().is_terminal(),
        progress: std::io::stdout().is_terminal(),
    };
    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match batch {
        Some(b) => b,
        None => Box::new(tokio::io::stdin()),
    };
    let work = with_sftp(conn, async |sftp| {
        let mut out = tokio::io::stdout();
        let mut err = tokio::io::stderr();
        let input = tokio::io::BufReader::new(input);
        let code = super::sftp_shell::run_striped(
            sftp,
            striped.then_some(&striping),
            input,
            &opts,
            &mut out,
            &mut err,
        )
        .await?;
        Ok(code)
    });
    // Striped: a signal must still remove the temporary files of a `get` and end the
    // extra sessions. (Unstriped, the default action stays: the process ends.)
    let result = if striped {
        let mut signals = crate::session::lifecycle::Signals::new();
        tokio::select! {
            r = work => r,
            sig = signals.recv() => Err(interrupted(sig)),
        }
    } else {
        work.await
    };
    res.release().await;
    result
}

/// Opens the SFTP subsystem on `conn`, runs `work` with it, and closes everything. A
/// failure the data channel explains better replaces SFTP's own.
async fn with_sftp(
    mut conn: Connection,
    work: impl AsyncFnOnce(&russh_sftp::client::SftpSession) -> Result<u8, Failure>,
) -> Result<u8, Failure> {
    let opened = open_sftp(&conn).await;
    let result = match opened {
        Ok(sftp) => {
            let r = work(&sftp).await;
            let _ = sftp.close().await;
            r
        }
        Err(f) => Err(f),
    };
    let result = match result {
        Err(f) if f.code == ExitCode::Protocol => Err(conn.link_failure().await.unwrap_or(f)),
        other => other,
    };
    conn.close().await;
    result
}

async fn open_sftp(conn: &Connection) -> Result<russh_sftp::client::SftpSession, Failure> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Failure::new(ExitCode::Protocol, format!("{what}: {e}"))
    };
    let channel = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| failed("cannot open an SSH channel", &e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| failed("the server refused the sftp subsystem", &e))?;
    russh_sftp::client::SftpSession::new_with_config(
        channel.into_stream(),
        super::transfer::sftp_config(),
    )
    .await
    .map_err(|e| {
        failed(
            "SFTP did not start (is the server's sftp subsystem enabled?)",
            &e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_and_guesses() {
        assert_eq!(split_destination("ubuntu@web-1"), (Some("ubuntu"), "web-1"));
        assert_eq!(split_destination("i-0abc"), (None, "i-0abc"));
        assert_eq!(split_destination("@i-0abc"), (None, "i-0abc"));
        assert_eq!(guess_user(Some("Amazon Linux")), "ec2-user");
        assert_eq!(guess_user(Some("Ubuntu")), "ubuntu");
        assert_eq!(guess_user(Some("Debian GNU/Linux")), "admin");
        assert_eq!(guess_user(None), "ec2-user");
    }
}
