//! Host keys in OpenSSH's `known_hosts` format, keyed by the instance ID (so `ssh i-0abc`
//! through `sallyport proxy` and `sallyport ssh i-0abc` share entries).
//!
//! Read: comments, `@revoked` (a listed key is refused), `@cert-authority` (skipped: we do
//! not use host certificates), comma-separated patterns with `*`/`?` wildcards and `!`
//! negation, hashed names (`|1|salt|HMAC-SHA1`), `[host]:port` for ports other than 22.
//! Written: one plain line per new host, appended.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{ExitCode, Failure};

/// What to do about a host whose key is not recorded, or recorded differently
/// (`--strict-host-key-checking`, as OpenSSH's option of that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Refuse hosts that are not recorded yet.
    Yes,
    /// Record new hosts (saying so), refuse changed keys. The default.
    AcceptNew,
    /// Record new hosts and connect despite a changed key (with a warning).
    No,
}

/// A server's host key, as OpenSSH writes it: algorithm name and base64 blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub algorithm: String,
    pub base64: String,
    /// `SHA256:…`, as `ssh-keygen -l` shows it.
    pub fingerprint: String,
}

impl HostKey {
    pub fn from_public(key: &russh::keys::PublicKey) -> Result<HostKey, Failure> {
        let line = key.to_openssh().map_err(|e| {
            Failure::new(
                ExitCode::Protocol,
                format!("cannot encode the host key: {e}"),
            )
        })?;
        let mut parts = line.split_whitespace();
        let (Some(algorithm), Some(base64)) = (parts.next(), parts.next()) else {
            return Err(Failure::new(
                ExitCode::Protocol,
                "cannot encode the host key",
            ));
        };
        Ok(HostKey {
            algorithm: algorithm.to_owned(),
            base64: base64.to_owned(),
            fingerprint: key.fingerprint(russh::keys::HashAlg::Sha256).to_string(),
        })
    }
}

/// What the file says about a host and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// This key is recorded for the host.
    Known,
    /// The host has no entries.
    Unknown,
    /// The host has entries, none with this key: `(line number, algorithm)` of each.
    Changed(Vec<(usize, String)>),
    /// The key is marked `@revoked` (line number).
    Revoked(usize),
}

/// The name entries are recorded under: `host`, or `[host]:port` when port is not 22.
pub fn host_entry(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Looks `key` up for `host` in the text of a known_hosts file.
pub fn lookup(text: &str, host: &str, port: u16, key: &HostKey) -> Recorded {
    let name = host_entry(host, port).to_ascii_lowercase();
    let mut others = Vec::new();
    let mut known = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        let (marker, hosts) = if first.starts_with('@') {
            match fields.next() {
                Some(h) => (Some(first), h),
                None => continue,
            }
        } else {
            (None, first)
        };
        let (Some(algorithm), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !hosts_match(hosts, &name) {
            continue;
        }
        let same = algorithm == key.algorithm && blob == key.base64;
        match marker {
            Some("@revoked") if same => return Recorded::Revoked(line_no),
            Some(_) => {}
            None if same => known = true,
            None => others.push((line_no, algorithm.to_owned())),
        }
    }
    if known {
        Recorded::Known
    } else if others.is_empty() {
        Recorded::Unknown
    } else {
        Recorded::Changed(others)
    }
}

/// OpenSSH's pattern-list rule: a negated match vetoes, else any positive match matches.
fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for p in patterns.split(',') {
        let (negated, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        let hit = if let Some(hashed) = p.strip_prefix("|1|") {
            hashed_match(hashed, name)
        } else {
            wildcard_match(&p.to_ascii_lowercase(), name)
        };
        if hit && negated {
            return false;
        }
        matched |= hit;
    }
    matched
}

/// `salt|hash`, both base64: HMAC-SHA1(key = salt, name) == hash.
fn hashed_match(hashed: &str, name: &str) -> bool {
    use aws_lc_rs::hmac;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

/// `*` any run, `?` one character.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Checks a server's host key against one known_hosts file, recording it when new.
#[derive(Debug, Clone)]
pub struct HostKeyPolicy {
    pub path: PathBuf,
    pub strictness: Strictness,
    /// The instance ID.
    pub host: String,
    pub port: u16,
}

impl HostKeyPolicy {
    /// `~/.ssh/known_hosts` unless `path` is given.
    pub fn new(
        path: Option<PathBuf>,
        strictness: Strictness,
        host: &str,
        port: u16,
    ) -> Result<HostKeyPolicy, Failure> {
        let path = match path {
            Some(p) => p,
            None => dirs::home_dir()
                .map(|h| h.join(".ssh").join("known_hosts"))
                .ok_or_else(|| {
                    Failure::new(
                        ExitCode::LocalIo,
                        "no home directory for ~/.ssh/known_hosts: pass --known-hosts FILE",
                    )
                })?,
        };
        Ok(HostKeyPolicy {
            path,
            strictness,
            host: host.to_owned(),
            port,
        })
    }

    /// `Ok` to go on (after recording a new key, or warning about a changed one under
    /// `no`), `Err` with OpenSSH's kind of message otherwise. Notices go to stderr.
    pub fn check(&self, key: &HostKey) -> Result<(), Failure> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Failure::new(
                    ExitCode::LocalIo,
                    format!("cannot read {}: {e}", self.path.display()),
                ));
            }
        };
        let entry = host_entry(&self.host, self.port);
        match lookup(&text, &self.host, self.port, key) {
            Recorded::Known => Ok(()),
            Recorded::Revoked(line) => Err(Failure::new(
                ExitCode::HostKey,
                format!(
                    "the {} host key of {entry} ({}) is marked as revoked in {}:{line}; \
                     refusing to connect",
                    key.algorithm,
                    key.fingerprint,
                    self.path.display()
                ),
            )),
            Recorded::Unknown if self.strictness == Strictness::Yes => Err(Failure::new(
                ExitCode::HostKey,
                format!(
                    "no host key is known for {entry} in {} and --strict-host-key-checking=yes \
                     is set; the server offered {} {}. Host key verification failed.",
                    self.path.display(),
                    key.algorithm,
                    key.fingerprint
                ),
            )),
            Recorded::Unknown => {
                self.record(key)?;
                eprintln!(
                    "sallyport: permanently added {entry} ({} {}) to {}",
                    key.algorithm,
                    key.fingerprint,
                    self.path.display()
                );
                Ok(())
            }
            Recorded::Changed(lines) => {
                let warning = changed_warning(&entry, key, &self.path, &lines);
                if self.strictness == Strictness::No {
                    eprintln!(
                        "{warning}\nsallyport: connecting anyway (--strict-host-key-checking=no)"
                    );
                    Ok(())
                } else {
                    Err(Failure::new(ExitCode::HostKey, warning))
                }
            }
        }
    }

    /// Appends `entry algorithm base64` (creating `~/.ssh` 0700 if needed).
    fn record(&self, key: &HostKey) -> Result<(), Failure> {
        let io = |e: std::io::Error| {
            Failure::new(
                ExitCode::LocalIo,
                format!("cannot record the host key in {}: {e}", self.path.display()),
            )
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let existing = std::fs::read(&self.path).unwrap_or_default();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let mut line = String::new();
        if existing.last().is_some_and(|&b| b != b'\n') {
            line.push('\n');
        }
        line.push_str(&format!(
            "{} {} {}\n",
            host_entry(&self.host, self.port),
            key.algorithm,
            key.base64
        ));
        f.write_all(line.as_bytes()).map_err(io)
    }
}

use std::os::unix::fs::DirBuilderExt as _;

fn changed_warning(entry: &str, key: &HostKey, path: &Path, lines: &[(usize, String)]) -> String {
    let bar = "@".repeat(59);
    let offending: Vec<String> = lines
        .iter()
        .map(|(n, alg)| format!("Offending {alg} key in {}:{n}", path.display()))
        .collect();
    format!(
        "\n{bar}\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n{bar}\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
         It is also possible that the host key has just been changed, for example because \
         {entry} was rebuilt or replaced.\n\
         The fingerprint for the {} key sent by the remote host is\n{}.\n\
         {}\n\
         If you trust the change, remove the old entry with:\n  ssh-keygen -R {entry} -f {}\n\
         Host key verification failed.",
        key.algorithm,
        key.fingerprint,
        offending.join("\n"),
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(alg: &str, b64: &str) -> HostKey {
        HostKey {
            algorithm: alg.into(),
            base64: b64.into(),
            fingerprint: "SHA256:x".into(),
        }
    }

    #[test]
    fn plain_wildcard_negated_and_port_entries() {
        let k = key("ssh-ed25519", "AAAA1");
        let text = "# comment\n\ni-0abc ssh-ed25519 AAAA1 comment here\n";
        assert_eq!(lookup(text, "i-0abc", 22, &k), Recorded::Known);
        assert_eq!(
            lookup(text, "I-0ABC", 22, &k),
            Recorded::Known,
            "case-insensitive"
        );
        assert_eq!(lookup(text, "i-0abd", 22, &k), Recorded::Unknown);
        assert_eq!(lookup(text, "i-0abc", 2222, &k), Recorded::Unknown);
        let text = "[i-0abc]:2222\tssh-ed25519   AAAA1\n";
        assert_eq!(lookup(text, "i-0abc", 2222, &k), Recorded::Known);
        let text = "i-*,!i-bad ssh-ed25519 AAAA1\n";
        assert_eq!(lookup(text, "i-0abc", 22, &k), Recorded::Known);
        assert_eq!(lookup(text, "i-bad", 22, &k), Recorded::Unknown);
        assert!(wildcard_match("i-0?bc", "i-0abc"));
        assert!(!wildcard_match("i-0?bc", "i-0abbc"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn changed_revoked_and_cert_authority() {
        let k = key("ssh-ed25519", "NEW");
        let text = "i-0abc ssh-ed25519 OLD\n@cert-authority i-0abc ssh-ed25519 CA\nother ssh-rsa X\ni-0abc ssh-rsa RSA\n";
        assert_eq!(
            lookup(text, "i-0abc", 22, &k),
            Recorded::Changed(vec![(1, "ssh-ed25519".into()), (4, "ssh-rsa".into())])
        );
        let text = "@revoked * ssh-ed25519 NEW\ni-0abc ssh-ed25519 NEW\n";
        assert_eq!(lookup(text, "i-0abc", 22, &k), Recorded::Revoked(1));
    }

    #[test]
    fn hashed_names() {
        // The hashed form of "i-0abc" with salt 0x00..0x13, as `ssh-keygen -H` writes it;
        // the expected line was computed with Python's hmac module.
        use aws_lc_rs::hmac;
        let salt: Vec<u8> = (0u8..20).collect();
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt),
            b"i-0abc",
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let line = format!(
            "|1|{}|{} ssh-ed25519 AAAA1\n",
            b64.encode(&salt),
            b64.encode(tag.as_ref())
        );
        assert_eq!(
            line,
            "|1|AAECAwQFBgcICQoLDA0ODxAREhM=|3I9bXG0hN0y6n8Tqwm+gEivUQNM= ssh-ed25519 AAAA1\n"
        );
        let k = key("ssh-ed25519", "AAAA1");
        assert_eq!(lookup(&line, "i-0abc", 22, &k), Recorded::Known);
        assert_eq!(lookup(&line, "i-0abd", 22, &k), Recorded::Unknown);
    }

    #[test]
    fn policy_records_then_refuses_a_change() {
        let dir = std::env::temp_dir().join(format!("sp-kh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("known_hosts");
        let p =
            HostKeyPolicy::new(Some(path.clone()), Strictness::AcceptNew, "i-0abc", 22).unwrap();
        let k1 = key("ssh-ed25519", "ONE");
        p.check(&k1).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "i-0abc ssh-ed25519 ONE\n"
        );
        p.check(&k1).unwrap();
        let e = p.check(&key("ssh-ed25519", "TWO")).unwrap_err();
        assert_eq!(e.code, ExitCode::HostKey);
        assert!(e.message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"));
        assert!(e.message.contains(&format!("{}:1", path.display())));
        let lax = HostKeyPolicy {
            strictness: Strictness::No,
            ..p.clone()
        };
        lax.check(&key("ssh-ed25519", "TWO")).unwrap();
        let strict = HostKeyPolicy {
            strictness: Strictness::Yes,
            host: "i-0new".into(),
            ..p.clone()
        };
        assert_eq!(
            strict.check(&k1).unwrap_err().code,
            ExitCode::HostKey,
            "yes refuses unknown hosts"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
