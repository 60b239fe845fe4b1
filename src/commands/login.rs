//! What `sallyport ssh`, `scp` and `sftp` share: who to log in as, where, and with
//! which settings; then a [`Connection`] for the command to use.

use std::time::Duration;

use std::path::PathBuf;

use super::{BACKGROUND_BUDGET, CommandError};
use crate::aws::{AwsConfig, InstanceConnect, Ssm};
use crate::session::lifecycle::{Signals, StopSignal};
use crate::ssh::client::{self, Connection, SshOptions};
use crate::ssh::known_hosts::{HostKeyPolicy, Strictness, typed_host_name};
use crate::target::{self, Found, TargetSettings};
use crate::transport::LinkOptions;

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
    /// The connections carry file copies (a wide SSH channel window:
    /// [`client::COPY_WINDOW`]).
    pub copies: bool,
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
/// push run side by side, then SSH authenticates. See [`connector`] for `signals`.
pub async fn connect(
    login: &Login,
    signals: &mut Signals,
    stopped: fn(StopSignal) -> CommandError,
) -> Result<(Connection, String), CommandError> {
    let (connector, conn) = connector(login, signals, stopped).await?;
    Ok((conn, connector.target().to_owned()))
}

/// [`connect`], also returning the [`client::Connector`] that made the connection, to
/// open more like it.
///
/// A stop signal on `signals` drops the set-up, whose guards end a session StartSession
/// started in the background; that is waited for (at most [`BACKGROUND_BUDGET`]) before
/// `stopped(signal)` is returned, so the command can exit at once.
pub async fn connector(
    login: &Login,
    signals: &mut Signals,
    stopped: fn(StopSignal) -> CommandError,
) -> Result<(client::Connector, Connection), CommandError> {
    let (config, found, mut connector) = tokio::select! {
        prepared = prepare(login) => prepared?,
        sig = signals.recv() => return Err(stopped(sig)),
    };
    let connected = tokio::select! {
        c = open(&mut connector, &config, &found, login) => c,
        sig = signals.recv() => {
            connector.await_background(BACKGROUND_BUDGET).await;
            return Err(stopped(sig));
        }
    };
    connected.map(|c| (connector, c))
}

/// Looks the target up, settles the user and the way (Session Manager or an EC2
/// Instance Connect Endpoint): a [`client::Connector`] that has opened nothing yet.
async fn prepare(login: &Login) -> Result<(AwsConfig, Found, client::Connector), CommandError> {
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
        return Err(super::CommandError::EmptyUser);
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
    connector.copies = login.copies;
    connector.eice = super::way_first(&config, &found, s, login.port).await?;
    Ok((config, found, connector))
}

/// The first connection: the way [`prepare`] chose, else through an endpoint when
/// Session Manager cannot reach the node and `--via` allows it.
async fn open(
    connector: &mut client::Connector,
    config: &AwsConfig,
    found: &Found,
    login: &Login,
) -> Result<Connection, CommandError> {
    let s = &login.on;
    let mut result = connector.connect().await.map_err(CommandError::from);
    if connector.eice.is_none()
        && let Err(f) = result
    {
        result = match super::way_after(config, found, s, login.port, f).await {
            Ok(tunnel) => {
                connector.eice = Some(tunnel);
                connector.connect().await.map_err(CommandError::from)
            }
            Err(f) => Err(f),
        };
    }
    super::settled(found, result)
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
