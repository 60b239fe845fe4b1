//! The glue for `sallyport ssh`, `scp` and `sftp`: who to log in as, where, and with
//! which settings; then a [`Connection`] for the command to use.

use std::time::Duration;

use std::path::PathBuf;

use crate::aws::{InstanceConnect, Ssm};
use crate::error::{ExitCode, Failure};
use crate::target::{self, TargetSettings};
use crate::transport::LinkOptions;

use super::client::{self, Connection, SshOptions};
use super::known_hosts::{HostKeyPolicy, Strictness, typed_host_name};
use super::transfer::CopyPlan;

/// Sessions a `scp`/`sftp` copy may use when neither `-j` nor the config file says.
// Unverified: how many concurrent sessions the real service allows per instance and user,
// and how hard it throttles StartSession, were not measured; a refusal is survived
// (transfer::stripe backs off and goes on with the sessions it has).
pub const DEFAULT_PARALLEL: usize = 4;

/// Who logs in where and how, as the CLI resolved it.
pub struct Login {
    pub on: TargetSettings,
    /// The OS user named (`user@`, `-l`, the config file); `None`: guess from the platform.
    pub user: Option<String>,
    /// The port sshd listens on, on the instance.
    pub port: u16,
    /// `None`: ~/.ssh/known_hosts.
    pub known_hosts: Option<PathBuf>,
    pub strictness: Strictness,
    pub link: LinkOptions,
    /// Offer zlib compression.
    pub compression: bool,
}

/// `sallyport ssh`.
pub struct SshRun {
    pub login: Login,
    /// One command instead of a shell.
    pub command: Option<String>,
    /// Read nothing from stdin (ssh -n).
    pub stdin_null: bool,
}

/// `sallyport scp`.
pub struct ScpRun {
    pub login: Login,
    pub plan: CopyPlan,
    pub recursive: bool,
    pub preserve: bool,
    /// No progress bars.
    pub quiet: bool,
    pub verify: bool,
    /// Sessions the copy may use.
    pub lanes: usize,
}

/// `sallyport sftp`.
pub struct SftpRun {
    pub login: Login,
    /// Commands from this file (`-` for stdin) instead of a prompt.
    pub batch: Option<PathBuf>,
    /// Sessions a get or put may use.
    pub lanes: usize,
}

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

/// Looks the target up and settles the user, then connects: the SSM session and the key
/// push run side by side, then SSH authenticates.
pub async fn connect(login: &Login) -> Result<(Connection, String), Failure> {
    let (connector, conn) = connector(login).await?;
    Ok((conn, connector.target().to_owned()))
}

/// [`connect`], also returning the [`client::Connector`] that made the connection, to
/// open more like it.
pub async fn connector(login: &Login) -> Result<(client::Connector, Connection), Failure> {
    let s = &login.on;
    let (config, found) = target::locate(s).await?;
    let (user, guessed) = match login.user.clone() {
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
                 user@{} or --user to choose)",
                platform.map_or_else(|| "(unknown)".to_owned(), |p| format!("{p:?}")),
                s.raw
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
        port: login.port,
        // OpenSSH through the ProxyCommand keys a host on %h, the name typed: so do we,
        // beside the ID, or a name moved to another instance would pass unnoticed.
        host_keys: HostKeyPolicy::new(
            login.known_hosts.clone(),
            login.strictness,
            &found.id,
            login.port,
        )?
        .also_as(typed_host_name(&s.raw, &found.id)),
        start: found.start_options(s),
        link: login.link.clone(),
    };
    let ssm = Ssm::new(&config);
    let eic = InstanceConnect::new(&config.sdk);
    let mut connector =
        client::Connector::new(&ssm, &eic, &found.id, s.aws.profile.as_deref(), &opts)?;
    connector.compression = login.compression;
    let result = connector.connect().await;
    found.settle(&result);
    result.map(|c| (connector, c))
}

/// `sallyport ssh`: a shell, or one command.
pub async fn ssh(run: SshRun) -> Result<u8, Failure> {
    let (conn, _) = connect(&run.login).await?;
    super::remote::run(conn, run.command, run.stdin_null).await
}

/// `sallyport scp`: one remote side, copied through SFTP.
pub async fn scp(run: ScpRun) -> Result<u8, Failure> {
    let (args, lanes) = (&run, run.lanes);
    // Listen before connecting: a Ctrl-C must release the sessions and temporary files.
    let mut signals = crate::session::lifecycle::Signals::new();
    let connecting = connector(&run.login);
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
            &run.plan,
            &opts,
            &par,
            &mut report,
        );
        let result = tokio::select! {
            r = work => r,
            sig = signals.recv() => Err(interrupted(sig)),
        };
        res.release().await;
        connector.await_background(BACKGROUND_BUDGET).await;
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
        super::transfer::copy(sftp, &run.plan, &opts)
            .await
            .map(|_| 0)
    });
    tokio::select! {
        r = work => r,
        sig = signals.recv() => Err(interrupted(sig)),
    }
}

/// How long a copy waits, before it exits, for the sessions of connections cancelled
/// mid-setup to be ended on the service.
const BACKGROUND_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

fn interrupted(sig: crate::session::lifecycle::StopSignal) -> Failure {
    Failure::new(
        ExitCode::Interrupted,
        format!("interrupted by {}; the copy is incomplete", sig.name()),
    )
}

/// `sallyport sftp`: a prompt on a terminal, or a batch file (`-b`).
pub async fn sftp(run: SftpRun) -> Result<u8, Failure> {
    let args = &run;
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
    let lanes = run.lanes;
    let (connector, conn) = connector(&run.login).await?;
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
    connector.await_background(BACKGROUND_BUDGET).await;
    result
}

/// Opens the SFTP subsystem on `conn`, runs `work` with it, and closes everything. A
/// failure the data channel explains better replaces SFTP's own.
async fn with_sftp(
    mut conn: Connection,
    work: impl AsyncFnOnce(&super::transfer::Sftp) -> Result<u8, Failure>,
) -> Result<u8, Failure> {
    // Two channels: the session, and one for bounded directory listings.
    let opened = super::transfer::Sftp::open(&conn).await;
    let result = match opened {
        Ok(sftp) => {
            let r = work(&sftp).await;
            sftp.close().await;
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
