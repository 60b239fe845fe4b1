//! Host keys in OpenSSH's `known_hosts` format, keyed by the instance ID (so `ssh i-0abc`
//! through `sallyport proxy` and `sallyport ssh i-0abc` share entries) and, when the target
//! was typed as a name, tag, IP address or alias, by that name too, as OpenSSH keys a
//! ProxyCommand host on `%h`: `ssh db-1` and `sallyport ssh db-1` share entries, and a
//! name that now leads to an instance with another key is refused, whatever its ID.
//!
//! Read: comments, `@revoked` (a listed key is refused), `@cert-authority` (skipped: we do
//! not use host certificates), comma-separated patterns with `*`/`?` wildcards and `!`
//! negation, hashed names (`|1|salt|HMAC-SHA1`), `[host]:port` for ports other than 22.
//! Written: one plain line per new name, appended; a name that cannot stand in a
//! known_hosts line as it is (a space, a comma, a pattern character) is written hashed.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::ssh::SshError;
use crate::wildcard::{self, Syntax};

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
    pub fn from_public(key: &russh::keys::PublicKey) -> Result<HostKey, SshError> {
        let line = key
            .to_openssh()
            .map_err(|e| SshError::Connection(format!("cannot encode the host key: {e}")))?;
        let mut parts = line.split_whitespace();
        let (Some(algorithm), Some(base64)) = (parts.next(), parts.next()) else {
            return Err(SshError::Connection(
                "cannot encode the host key".to_owned(),
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
            wildcard::matches(&p.to_ascii_lowercase(), name, Syntax::PLAIN)
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

/// The name a target was typed as, when host keys should be checked under it too: `None`
/// for no target or an instance ID typed as such. ssh lower-cases `%h`; a trailing dot is
/// dropped here (as the target parser drops it) so `db-1.` cannot step round `db-1`'s
/// entry, and an IP address loses its brackets (`[::1]`).
pub fn typed_host_name(raw: &str, id: &str) -> Option<String> {
    let t = raw.trim().trim_end_matches('.');
    let t = match t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) if inner.parse::<std::net::IpAddr>().is_ok() => inner,
        _ => t,
    };
    let name = t.to_ascii_lowercase();
    (!name.is_empty() && name != id.to_ascii_lowercase()).then_some(name)
}

/// Whether `name` can be written into a known_hosts line as it is: anything that would
/// split the line or read as a pattern, negation, marker, hash or comment cannot.
fn plain_writable(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['#', '@', '|', '['])
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, ',' | '*' | '?' | '!' | ']')
        })
}

/// `|1|salt|HMAC-SHA1(salt, name)`, as `ssh-keygen -H` and `HashKnownHosts yes` write.
fn hashed_entry(name: &str) -> Result<String, SshError> {
    use aws_lc_rs::{hmac, rand};
    let mut salt = [0u8; 20];
    rand::fill(&mut salt).map_err(|_| {
        SshError::Internal("no random bytes for a hashed known_hosts entry".to_owned())
    })?;
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt),
        name.as_bytes(),
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(format!(
        "|1|{}|{}",
        b64.encode(salt),
        b64.encode(tag.as_ref())
    ))
}

/// Checks a server's host key against one known_hosts file, recording it when new.
#[derive(Debug, Clone)]
pub struct HostKeyPolicy {
    pub path: PathBuf,
    pub strictness: Strictness,
    /// The instance ID.
    pub host: String,
    /// The name the target was typed as (see [`typed_host_name`]), checked and recorded
    /// beside the instance ID.
    pub typed: Option<String>,
    pub port: u16,
}

impl HostKeyPolicy {
    /// `~/.ssh/known_hosts` unless `path` is given.
    pub fn new(
        path: Option<PathBuf>,
        strictness: Strictness,
        host: &str,
        port: u16,
    ) -> Result<HostKeyPolicy, SshError> {
        let path = match path {
            Some(p) => p,
            None => dirs::home_dir()
                .map(|h| h.join(".ssh").join("known_hosts"))
                .ok_or_else(|| {
                    SshError::LocalIo(
                        "no home directory for ~/.ssh/known_hosts: pass --known-hosts FILE"
                            .to_owned(),
                    )
                })?,
        };
        Ok(HostKeyPolicy {
            path,
            strictness,
            host: host.to_owned(),
            typed: None,
            port,
        })
    }

    /// Also checks and records the key under `name`, the target as typed.
    pub fn also_as(mut self, name: Option<String>) -> HostKeyPolicy {
        self.typed = name.filter(|n| !n.eq_ignore_ascii_case(&self.host));
        self
    }

    /// `Ok` to go on (after recording a new key, or warning about a changed one under
    /// `no`), `Err` with OpenSSH's kind of message otherwise. Notices go to stderr.
    /// Every name is looked up before anything is written: a refusal records nothing.
    pub fn check(&self, key: &HostKey) -> Result<(), SshError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(SshError::LocalIo(format!(
                    "cannot read {}: {e}",
                    self.path.display()
                )));
            }
        };
        let id = lookup(&text, &self.host, self.port, key);
        let typed = (self.typed.as_deref()).map(|n| (n, lookup(&text, n, self.port, key)));
        let entry = host_entry(&self.host, self.port);
        for (name, recorded) in
            std::iter::once((self.host.as_str(), &id)).chain(typed.iter().map(|(n, r)| (*n, r)))
        {
            if let Recorded::Revoked(line) = recorded {
                return Err(self.revoked(&host_entry(name, self.port), key, *line));
            }
        }
        let mut changed = Vec::new();
        if let Recorded::Changed(lines) = &id {
            changed.push(changed_warning(&entry, key, &self.path, lines));
        }
        if let Some((name, Recorded::Changed(lines))) = &typed {
            changed.push(self.name_changed(name, key, lines));
        }
        if !changed.is_empty() {
            let warning = changed.join("\n");
            if self.strictness != Strictness::No {
                return Err(SshError::HostKey(warning));
            }
            eprintln!("{warning}\nsallyport: connecting anyway (--strict-host-key-checking=no)");
            return Ok(());
        }
        let mut new: Vec<&str> = Vec::new();
        if id == Recorded::Unknown {
            new.push(&self.host);
        }
        if let Some((name, Recorded::Unknown)) = &typed {
            new.push(name);
        }
        let all_new = new.len() == 1 + usize::from(typed.is_some());
        if new.is_empty() || (self.strictness == Strictness::Yes && !all_new) {
            // Known under at least one name; `yes` writes nothing.
            return Ok(());
        }
        let shown: Vec<String> = new.iter().map(|n| host_entry(n, self.port)).collect();
        if self.strictness == Strictness::Yes {
            return Err(SshError::HostKey(format!(
                "no host key is known for {} in {} and --strict-host-key-checking=yes \
                     is set; the server offered {} {}. Host key verification failed.",
                shown.join(" or "),
                self.path.display(),
                key.algorithm,
                key.fingerprint
            )));
        }
        self.record(&new, key)?;
        eprintln!(
            "sallyport: permanently added {} ({} {}) to {}",
            shown.join(", "),
            key.algorithm,
            key.fingerprint,
            self.path.display()
        );
        Ok(())
    }

    fn revoked(&self, entry: &str, key: &HostKey, line: usize) -> SshError {
        SshError::HostKey(format!(
            "the {} host key of {entry} ({}) is marked as revoked in {}:{line}; \
                 refusing to connect",
            key.algorithm,
            key.fingerprint,
            self.path.display()
        ))
    }

    /// The refusal when the typed name has another key on record than its instance has.
    fn name_changed(&self, name: &str, key: &HostKey, lines: &[(usize, String)]) -> String {
        let entry = host_entry(name, self.port);
        let at: Vec<String> = lines
            .iter()
            .map(|(n, alg)| format!("{alg} at {}:{n}", self.path.display()))
            .collect();
        format!(
            "the host key recorded for {entry} ({}) is not the key of {}, the instance \
             {name} now names: it offered {} {}. Someone may have given another instance \
             the name {name} (for example a Name tag). Connect by instance ID if {} is the \
             host you mean; if {name} was moved on purpose, remove the old entry with: \
             ssh-keygen -R {entry} -f {}. Host key verification failed.",
            at.join(", "),
            self.host,
            key.algorithm,
            key.fingerprint,
            self.host,
            self.path.display()
        )
    }

    /// Appends `name algorithm base64` for each of `names` (hashed where a name cannot be
    /// written plainly), creating `~/.ssh` 0700 if needed.
    fn record(&self, names: &[&str], key: &HostKey) -> Result<(), SshError> {
        let io = |e: std::io::Error| {
            SshError::LocalIo(format!(
                "cannot record the host key in {}: {e}",
                self.path.display()
            ))
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
        let mut text = String::new();
        if existing.last().is_some_and(|&b| b != b'\n') {
            text.push('\n');
        }
        for name in names {
            let entry = host_entry(name, self.port);
            let entry = if plain_writable(name) {
                entry
            } else {
                hashed_entry(&entry.to_ascii_lowercase())?
            };
            text.push_str(&format!("{entry} {} {}\n", key.algorithm, key.base64));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)
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
    use crate::error::{ExitCode, Failure};

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
        assert!(e.is_host_key(), "{e}");
        assert!(
            e.to_string()
                .contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        );
        assert!(e.to_string().contains(&format!("{}:1", path.display())));
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
            Failure::from(strict.check(&k1).unwrap_err()).code,
            ExitCode::HostKey,
            "yes refuses unknown hosts"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    fn temp_file(tag: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("sp-kh-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (dir.join("known_hosts"), dir)
    }

    #[test]
    fn typed_names_are_what_ssh_keys_percent_h_on() {
        assert_eq!(typed_host_name("DB-1", "i-0abc"), Some("db-1".into()));
        assert_eq!(typed_host_name("db-1.", "i-0abc"), Some("db-1".into()));
        assert_eq!(typed_host_name("[::1]", "i-0abc"), Some("::1".into()));
        assert_eq!(
            typed_host_name("10.0.0.7", "i-0abc"),
            Some("10.0.0.7".into())
        );
        assert_eq!(
            typed_host_name("tag:Env=prod", "i-0abc"),
            Some("tag:env=prod".into())
        );
        assert_eq!(typed_host_name("I-0ABC", "i-0abc"), None, "the ID itself");
        assert_eq!(typed_host_name("", "i-0abc"), None, "no target: picked");
    }

    #[test]
    fn a_name_is_recorded_beside_the_id_and_a_moved_name_is_refused() {
        let (path, dir) = temp_file("name");
        let p = HostKeyPolicy::new(Some(path.clone()), Strictness::AcceptNew, "i-0aaa", 22)
            .unwrap()
            .also_as(typed_host_name("DB-1", "i-0aaa"));
        let ka = key("ssh-ed25519", "KEYA");
        p.check(&ka).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "i-0aaa ssh-ed25519 KEYA\ndb-1 ssh-ed25519 KEYA\n",
            "one plain line per name, as OpenSSH writes for `ssh db-1`"
        );
        // The name now leads to another instance with another key: refused, nothing written.
        let moved = HostKeyPolicy {
            host: "i-0bbb".into(),
            ..p.clone()
        };
        let before = std::fs::read_to_string(&path).unwrap();
        let e = moved.check(&key("ssh-ed25519", "KEYB")).unwrap_err();
        assert!(e.is_host_key(), "{e}");
        assert!(
            e.to_string().contains("db-1") && e.to_string().contains("i-0bbb"),
            "{}",
            e.to_string()
        );
        assert!(
            e.to_string().contains(&format!("{}:2", path.display())),
            "{}",
            e.to_string()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        // By its ID, the other instance is simply new.
        let by_id = HostKeyPolicy {
            typed: None,
            ..moved.clone()
        };
        by_id.check(&key("ssh-ed25519", "KEYB")).unwrap();
        // `no` warns and goes on; `yes` accepts a key known under one of the names.
        let lax = HostKeyPolicy {
            strictness: Strictness::No,
            ..moved.clone()
        };
        lax.check(&key("ssh-ed25519", "KEYB")).unwrap();
        let strict = HostKeyPolicy {
            strictness: Strictness::Yes,
            typed: Some("db-2".into()),
            ..p.clone()
        };
        strict.check(&ka).unwrap();
        assert!(
            !std::fs::read_to_string(&path).unwrap().contains("db-2"),
            "yes writes nothing"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_name_recorded_by_openssh_is_honoured_hashed_or_not() {
        let (path, dir) = temp_file("ossh");
        let ka = key("ssh-ed25519", "KEYA");
        // What `ssh -o HashKnownHosts=yes db-1` would have written, with a port.
        let hashed = hashed_entry("[db-1]:2222").unwrap();
        std::fs::write(&path, format!("{hashed} ssh-ed25519 OTHER\n")).unwrap();
        let p = HostKeyPolicy::new(Some(path.clone()), Strictness::AcceptNew, "i-0aaa", 2222)
            .unwrap()
            .also_as(Some("db-1".into()));
        let e = p.check(&ka).unwrap_err();
        assert!(e.is_host_key(), "{e}");
        assert!(e.to_string().contains("[db-1]:2222"), "{}", e.to_string());
        std::fs::write(&path, format!("{hashed} ssh-ed25519 KEYA\n")).unwrap();
        p.check(&ka).unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("[i-0aaa]:2222 ssh-ed25519 KEYA\n"),
            "the ID is added; the name's entry stands"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_that_cannot_stand_plainly_are_hashed() {
        let (path, dir) = temp_file("hash");
        let p = HostKeyPolicy::new(Some(path.clone()), Strictness::AcceptNew, "i-0aaa", 22)
            .unwrap()
            .also_as(Some("my server,*".into()));
        let ka = key("ssh-ed25519", "KEYA");
        p.check(&ka).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let second = text.lines().nth(1).unwrap();
        assert!(second.starts_with("|1|"), "{text}");
        assert_eq!(lookup(&text, "my server,*", 22, &ka), Recorded::Known);
        assert_eq!(lookup(&text, "other", 22, &ka), Recorded::Unknown);
        assert!(plain_writable("db-1") && plain_writable("10.0.0.7") && plain_writable("::1"));
        for bad in ["a b", "a,b", "*", "!x", "#x", "@x", "|1|x", "[x", "a\tb"] {
            assert!(!plain_writable(bad), "{bad:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
