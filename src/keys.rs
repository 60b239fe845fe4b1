//! Keys for Instance Connect: an Ed25519 key made in memory for one command (never
//! written anywhere), or the public half of a key OpenSSH will offer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::agent::Constraint;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Algorithm, PrivateKey};

/// Why no key could be had, by whose fault: the user's files and setup, or this
/// computer. Only `crate::error` turns it into an exit code.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    // The user's setup.
    /// `--ephemeral` without an ssh-agent to hold the key.
    #[error(
        "--ephemeral needs a running ssh-agent, and SSH_AUTH_SOCK is not set: start one \
         (`eval $(ssh-agent)`) or push your own key with --push-key alone"
    )]
    NoAgent,
    /// The ssh-agent could not be reached or refused the key (`what`: "reach", "add a
    /// key to").
    #[error("cannot {what} the ssh-agent at {} (SSH_AUTH_SOCK): {source}", sock.display())]
    Agent {
        what: &'static str,
        sock: PathBuf,
        #[source]
        source: russh::keys::Error,
    },
    /// No home directory to look for the default keys in.
    #[error("no home directory to find ~/.ssh/id_ed25519.pub in: pass -i KEY")]
    NoHome,
    /// None of the candidate public key files exists (`hint`: how to make one).
    #[error("no public key to push: {} not found; {hint}", tried.join(", "))]
    NoPublicKey { tried: Vec<String>, hint: String },
    /// A public key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no OpenSSH public key.
    #[error("{} is not an OpenSSH public key: {source}", path.display())]
    NotAPublicKey {
        path: PathBuf,
        #[source]
        source: russh::keys::ssh_key::Error,
    },
    /// A key type EC2 Instance Connect does not take.
    #[error(
        "{} is a {algorithm} key; EC2 Instance Connect accepts only Ed25519 and RSA keys: pass \
         another with -i, or use --ephemeral",
        path.display()
    )]
    UnsupportedType { path: PathBuf, algorithm: String },

    // This computer (a bug or a broken random source).
    /// The key could not be generated.
    #[error("cannot generate an Ed25519 key: {0}")]
    Generate(#[source] russh::keys::ssh_key::Error),
    /// The public key could not be encoded.
    #[error("cannot encode the public key: {0}")]
    Encode(#[source] russh::keys::ssh_key::Error),
}

/// Comment on ephemeral keys, so `ssh-add -l` and the instance's logs say whose they are.
const EPHEMERAL_COMMENT: &str = "sallyport-ephemeral";

/// A fresh Ed25519 key in memory. `ssh_key` wipes the private half when it is dropped.
pub fn ephemeral() -> Result<PrivateKey, KeyError> {
    let mut rng = rand::rng();
    let mut key = PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(KeyError::Generate)?;
    key.set_comment(EPHEMERAL_COMMENT);
    Ok(key)
}

/// `ssh-ed25519 AAAA… comment`, the one line Instance Connect takes.
pub fn public_line(key: &PrivateKey) -> Result<String, KeyError> {
    key.public_key().to_openssh().map_err(KeyError::Encode)
}

/// Adds `key` to the ssh-agent at `SSH_AUTH_SOCK`, to be forgotten after `lifetime`, so
/// that ssh (and scp, rsync, VS Code) can use it without it ever touching a disk.
pub async fn add_to_agent(key: &PrivateKey, lifetime: Duration) -> Result<(), KeyError> {
    let Some(sock) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) else {
        return Err(KeyError::NoAgent);
    };
    add_to_agent_at(Path::new(&sock), key, lifetime).await
}

/// [`add_to_agent`] for the agent listening on `sock`.
pub async fn add_to_agent_at(
    sock: &Path,
    key: &PrivateKey,
    lifetime: Duration,
) -> Result<(), KeyError> {
    let agent_err = |what: &'static str| {
        move |source| KeyError::Agent {
            what,
            sock: sock.to_path_buf(),
            source,
        }
    };
    let mut agent = AgentClient::connect_uds(sock)
        .await
        .map_err(agent_err("reach"))?;
    let seconds = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX).max(1);
    agent
        .add_identity(key, &[Constraint::KeyLifetime { seconds }])
        .await
        .map_err(agent_err("add a key to"))?;
    tracing::debug!(seconds, "ephemeral key added to the ssh-agent");
    Ok(())
}

/// The public key OpenSSH will offer: `identity` (`-i`; its `.pub` next to it, or the
/// file itself if it is a public key), else the first of `~/.ssh/id_ed25519.pub` and
/// `~/.ssh/id_rsa.pub`. Returns the file read and its one-line key.
pub fn default_public_key(
    identity: Option<&Path>,
    home: Option<&Path>,
) -> Result<(PathBuf, String), KeyError> {
    let candidates: Vec<PathBuf> = match identity {
        Some(p) if p.extension().is_some_and(|e| e == "pub") => vec![p.to_path_buf()],
        Some(p) => {
            let mut pub_path = p.as_os_str().to_owned();
            pub_path.push(".pub");
            vec![PathBuf::from(pub_path)]
        }
        None => {
            let Some(home) = home else {
                return Err(KeyError::NoHome);
            };
            ["id_ed25519.pub", "id_rsa.pub"]
                .iter()
                .map(|n| home.join(".ssh").join(n))
                .collect()
        }
    };
    for path in &candidates {
        match std::fs::read_to_string(path) {
            Ok(text) => return Ok((path.clone(), check_public_line(path, &text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(KeyError::Read {
                    path: path.clone(),
                    source: e,
                });
            }
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    let hint = match identity {
        Some(p) => format!(
            "write it with `ssh-keygen -y -f {0} > {0}.pub`",
            p.display()
        ),
        None => {
            "create a key with `ssh-keygen -t ed25519`, pass -i KEY, or use --ephemeral".to_owned()
        }
    };
    Err(KeyError::NoPublicKey { tried, hint })
}

/// The first key line of a `.pub` file, if it is a type Instance Connect accepts.
fn check_public_line(path: &Path, text: &str) -> Result<String, KeyError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    let parsed =
        russh::keys::PublicKey::from_openssh(line).map_err(|source| KeyError::NotAPublicKey {
            path: path.to_path_buf(),
            source,
        })?;
    match parsed.algorithm() {
        Algorithm::Ed25519 | Algorithm::Rsa { .. } => Ok(line.to_owned()),
        other => Err(KeyError::UnsupportedType {
            path: path.to_path_buf(),
            algorithm: other.as_str().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_keys_are_fresh_ed25519() {
        let a = ephemeral().unwrap();
        let b = ephemeral().unwrap();
        let line = public_line(&a).unwrap();
        assert!(
            line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"),
            "{line}"
        );
        assert!(line.ends_with(" sallyport-ephemeral"));
        assert!(
            (80..=4096).contains(&line.len()),
            "Instance Connect's limits"
        );
        assert_ne!(line, public_line(&b).unwrap());
    }

    #[test]
    fn finds_the_key_openssh_would_offer() {
        let home = std::env::temp_dir().join(format!("sp-keys-{}", std::process::id()));
        let ssh = home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let e = default_public_key(None, Some(&home)).unwrap_err();
        assert!(e.to_string().contains("id_ed25519.pub"), "{e}");
        let keygen = |kind: &str, name: &str| {
            let path = ssh.join(name);
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", "me@laptop", "-f"])
                .arg(&path)
                .status()
                .expect("ssh-keygen (openssh-client)")
                .success();
            assert!(ok);
            let _ = std::fs::remove_file(&path); // only the .pub is needed
            std::fs::read_to_string(ssh.join(format!("{name}.pub"))).unwrap()
        };
        let rsa_line = keygen("rsa", "id_rsa");
        let rsa_line = rsa_line.trim();
        let (path, line) = default_public_key(None, Some(&home)).unwrap();
        assert_eq!(path, ssh.join("id_rsa.pub"));
        assert_eq!(line, rsa_line);
        let ed = public_line(&ephemeral().unwrap()).unwrap();
        std::fs::write(ssh.join("id_ed25519.pub"), &ed).unwrap();
        assert_eq!(
            default_public_key(None, Some(&home)).unwrap().1,
            ed,
            "ed25519 first"
        );
        // -i names the private key; its .pub is pushed.
        std::fs::write(ssh.join("work.pub"), &ed).unwrap();
        let (path, _) = default_public_key(Some(&ssh.join("work")), None).unwrap();
        assert_eq!(path, ssh.join("work.pub"));
        let e = default_public_key(Some(&ssh.join("nope")), None).unwrap_err();
        assert!(e.to_string().contains("ssh-keygen -y -f"), "{e}");
        keygen("ecdsa", "ec");
        let e = default_public_key(Some(&ssh.join("ec.pub")), None).unwrap_err();
        assert!(e.to_string().contains("only Ed25519 and RSA"), "{e}");
        let _ = std::fs::remove_dir_all(&home);
    }
}
