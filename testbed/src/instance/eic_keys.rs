//! The EC2 Instance Connect key store: what `SendSSHPublicKey` leaves for the instance, and
//! what the instance side (`sallyport-testbed authorized-keys`, standing in for the EIC
//! package's `eic_run_authorized_keys`, docs/protocol.md §10.2) hands to sshd.
//!
//! On AWS the key travels through the instance metadata service, signed by AWS; here it is a
//! directory with one file per OS user, `DIR/<user>`, one line per push:
//!
//! ```text
//! <push time, epoch seconds> <instance id> <OpenSSH public key line>
//! ```
//!
//! A key is served while the push is less than [`KEY_LIFETIME_SECS`] old, for the instance it
//! was pushed to, and (when sshd passes `%f`) only if its fingerprint is the one sshd asks
//! about, as the EIC package does.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, STANDARD_NO_PAD as B64_NO_PAD};
use sha2::{Digest as _, Sha256};

/// How long a pushed key stays usable (AWS: "The key remains for 60 seconds").
pub const KEY_LIFETIME_SECS: i64 = 60;

/// Key types EC2 Instance Connect takes (docs/protocol.md §10.1: RSA and ED25519; security-key
/// types such as `sk-ssh-ed25519@openssh.com` are refused).
pub const KEY_TYPES: &[&str] = &["ssh-rsa", "ssh-ed25519"];

/// An OpenSSH one-line public key that passed [`parse_public_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// `ssh-rsa` or `ssh-ed25519`.
    pub key_type: String,
    /// The decoded key blob (what fingerprints are computed over).
    pub blob: Vec<u8>,
    /// The whole line, trimmed: `<type> <base64> [comment]`.
    pub line: String,
}

impl PublicKey {
    /// `SHA256:<base64 without padding>`, as `ssh-keygen -lf` and sshd's `%f` print it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }
}

/// The SHA-256 fingerprint of a key blob, OpenSSH style.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", B64_NO_PAD.encode(Sha256::digest(blob)))
}

/// Why a key line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not `<type> <base64> [comment]` on one line, or the base64 does not decode.
    Malformed,
    /// A type other than `ssh-rsa` / `ssh-ed25519`.
    UnsupportedType(String),
    /// The blob's inner type string differs from the line's, or its fields are wrong.
    BadBlob,
}

/// Parses an OpenSSH one-line public key (`ssh-ed25519 AAAA… comment`) of a type EC2 Instance
/// Connect accepts. Surrounding whitespace (a trailing newline from `file://key.pub`) is
/// ignored; anything else on other lines is not.
pub fn parse_public_key(text: &str) -> Result<PublicKey, KeyError> {
    let line = text.trim();
    if line.is_empty() || line.contains(['\n', '\r', '\0']) {
        return Err(KeyError::Malformed);
    }
    let mut fields = line.split_ascii_whitespace();
    let key_type = fields.next().ok_or(KeyError::Malformed)?;
    let b64 = fields.next().ok_or(KeyError::Malformed)?;
    if !KEY_TYPES.contains(&key_type) {
        return Err(KeyError::UnsupportedType(key_type.to_owned()));
    }
    let blob = B64.decode(b64).map_err(|_| KeyError::Malformed)?;
    check_blob(key_type, &blob)?;
    Ok(PublicKey {
        key_type: key_type.to_owned(),
        blob,
        line: line.to_owned(),
    })
}

/// The blob must be the SSH wire encoding of a key of `key_type`, with nothing after it:
/// `string type, mpint e, mpint n` for RSA, `string type, string key(32)` for Ed25519.
fn check_blob(key_type: &str, blob: &[u8]) -> Result<(), KeyError> {
    let mut r = WireReader(blob);
    if r.string()? != key_type.as_bytes() {
        return Err(KeyError::BadBlob);
    }
    match key_type {
        "ssh-rsa" => {
            let e = r.string()?;
            let n = r.string()?;
            // Positive, minimal mpints. Unverified: whether AWS also insists on a minimum or
            // maximum modulus size (docs/protocol.md §13 item 5); the testbed takes any size.
            for m in [e, n] {
                let positive = m.first().is_some_and(|b| b & 0x80 == 0);
                let minimal = !(m.len() > 1 && m[0] == 0 && m[1] & 0x80 == 0);
                if !positive || !minimal {
                    return Err(KeyError::BadBlob);
                }
            }
        }
        "ssh-ed25519" => {
            if r.string()?.len() != 32 {
                return Err(KeyError::BadBlob);
            }
        }
        _ => return Err(KeyError::UnsupportedType(key_type.to_owned())),
    }
    if r.0.is_empty() {
        Ok(())
    } else {
        Err(KeyError::BadBlob)
    }
}

struct WireReader<'a>(&'a [u8]);

impl<'a> WireReader<'a> {
    fn string(&mut self) -> Result<&'a [u8], KeyError> {
        let (len, rest) = self.0.split_first_chunk::<4>().ok_or(KeyError::BadBlob)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(KeyError::BadBlob);
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(s)
    }
}

/// Whether `user` can name a file in the store: the API's user pattern already rules out
/// `/` and leading dots; this is the store's own guard.
fn safe_user(user: &str) -> bool {
    !user.is_empty() && !user.starts_with('.') && !user.contains(['/', '\0'])
}

/// One line of a store file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedKey {
    pub pushed_at: i64,
    pub instance_id: String,
    pub key: PublicKey,
}

/// Parses `<epoch> <instance id> <key line>`; None for anything else.
pub fn parse_line(line: &str) -> Option<PushedKey> {
    let mut parts = line.splitn(3, ' ');
    let pushed_at = parts.next()?.parse().ok()?;
    let instance_id = parts.next()?;
    if instance_id.is_empty() {
        return None;
    }
    let key = parse_public_key(parts.next()?).ok()?;
    Some(PushedKey {
        pushed_at,
        instance_id: instance_id.to_owned(),
        key,
    })
}

/// Whether a key pushed at `pushed_at` is still served at `now` (both epoch seconds).
pub fn is_fresh(pushed_at: i64, now: i64) -> bool {
    now < pushed_at.saturating_add(KEY_LIFETIME_SECS)
}

/// The key lines `authorized-keys` prints: pushed for `user` less than 60 s before `now`,
/// for `instance` if given, matching `fingerprint` (`SHA256:…`) if given. Each distinct key
/// once, oldest push first. A missing store or user file means no keys; unreadable lines are
/// skipped.
pub fn authorized_keys(
    dir: &Path,
    user: &str,
    instance: Option<&str>,
    fingerprint: Option<&str>,
    now: i64,
) -> std::io::Result<Vec<String>> {
    if !safe_user(user) {
        return Ok(Vec::new());
    }
    let text = match std::fs::read(dir.join(user)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<String> = Vec::new();
    for pushed in text.lines().filter_map(parse_line) {
        let wanted = is_fresh(pushed.pushed_at, now)
            && instance.is_none_or(|i| i == pushed.instance_id)
            && fingerprint.is_none_or(|f| f == pushed.key.fingerprint());
        if wanted && !out.contains(&pushed.key.line) {
            out.push(pushed.key.line);
        }
    }
    Ok(out)
}

/// The server's side of the store: appends pushes, and backdates them for tests.
pub struct KeyStore {
    dir: PathBuf,
    /// Serialises appends against [`KeyStore::age`]'s rewrite.
    lock: Mutex<()>,
}

impl KeyStore {
    /// A store in `dir`; nothing is created until the first push.
    pub fn new(dir: impl Into<PathBuf>) -> KeyStore {
        KeyStore {
            dir: dir.into(),
            lock: Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one push (creating the directory, mode 0700, and the file, mode 0600).
    pub fn push(
        &self,
        user: &str,
        instance_id: &str,
        key: &PublicKey,
        now: i64,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(safe_user(user), "unusable OS user name {user:?}");
        anyhow::ensure!(
            !instance_id.is_empty() && !instance_id.contains(char::is_whitespace),
            "unusable instance ID {instance_id:?}"
        );
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(user);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // One write per line, so a concurrent reader sees whole lines.
        let line = format!("{now} {instance_id} {}\n", key.line);
        file.write_all(line.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Moves every recorded push `secs` seconds into the past (each file is rewritten and
    /// renamed into place). Lines that do not parse are kept as they are.
    pub fn age(&self, secs: i64) -> anyhow::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(user) = name.to_str().filter(|u| safe_user(u)) else {
                continue;
            };
            if !entry.file_type()?.is_file() {
                continue;
            }
            let path = entry.path();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut out = String::with_capacity(text.len());
            for line in text.lines() {
                match line.split_once(' ') {
                    Some((t, rest)) if t.parse::<i64>().is_ok() => {
                        let t: i64 = t.parse().unwrap_or_default();
                        out.push_str(&format!("{} {rest}\n", t.saturating_sub(secs)));
                    }
                    _ => {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
            let tmp = self.dir.join(format!(".{user}.tmp"));
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(out.as_bytes())?;
            f.sync_all()?;
            drop::<File>(f);
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("replacing {}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `ssh-keygen -t ed25519` public key (the private half was thrown away).
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXR6Gmf1kUbUIe2mJvlP8Ph8EP+0G9fNn2uv7Jl5zOa test@host";

    fn ed25519_line(seed: u8) -> String {
        let mut blob = Vec::new();
        for part in [b"ssh-ed25519".as_slice(), &[seed; 32]] {
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        format!("ssh-ed25519 {} key-{seed}", B64.encode(blob))
    }

    fn wire(parts: &[&[u8]]) -> String {
        let mut blob = Vec::new();
        for p in parts {
            blob.extend_from_slice(&(p.len() as u32).to_be_bytes());
            blob.extend_from_slice(p);
        }
        B64.encode(blob)
    }

    fn dir(name: &str) -> crate::instance::sshd::TempDir {
        crate::instance::sshd::TempDir::new(&format!("eic-keys-{name}")).unwrap()
    }

    #[test]
    fn parses_rsa_and_ed25519_and_refuses_the_rest() {
        let k = parse_public_key(&format!("{ED25519}\n")).unwrap();
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.line, ED25519);
        assert_eq!(k.blob.len(), 4 + 11 + 4 + 32);
        let n = [&[0x00u8, 0xc1][..], &[7u8; 255][..]].concat();
        let rsa = format!("ssh-rsa {} me", wire(&[b"ssh-rsa", &[1, 0, 1], &n]));
        assert_eq!(parse_public_key(&rsa).unwrap().key_type, "ssh-rsa");

        let sk = format!(
            "sk-ssh-ed25519@openssh.com {}",
            wire(&[b"sk-ssh-ed25519@openssh.com", &[1; 32], b"ssh:"])
        );
        assert!(matches!(
            parse_public_key(&sk),
            Err(KeyError::UnsupportedType(_))
        ));
        let ecdsa = format!("ecdsa-sha2-nistp256 {}", wire(&[b"ecdsa-sha2-nistp256"]));
        assert!(matches!(
            parse_public_key(&ecdsa),
            Err(KeyError::UnsupportedType(_))
        ));
        // Inner type differs from the prefix.
        let mismatch = format!("ssh-rsa {}", wire(&[b"ssh-ed25519", &[1; 32]]));
        assert_eq!(parse_public_key(&mismatch), Err(KeyError::BadBlob));
        // Wrong key length, trailing bytes, negative or non-minimal mpints.
        for bad in [
            wire(&[b"ssh-ed25519", &[1; 31]]),
            wire(&[b"ssh-ed25519", &[1; 32], b""]),
        ] {
            let line = format!("ssh-ed25519 {bad}");
            assert_eq!(parse_public_key(&line), Err(KeyError::BadBlob), "{line}");
        }
        for bad_n in [&[0x80u8, 1][..], &[0, 1][..], &[][..]] {
            let line = format!("ssh-rsa {}", wire(&[b"ssh-rsa", &[1, 0, 1], bad_n]));
            assert_eq!(parse_public_key(&line), Err(KeyError::BadBlob), "{line}");
        }
        for malformed in [
            "",
            "ssh-ed25519",
            "ssh-ed25519 not*base64",
            &format!("{ED25519}\n{ED25519}"),
            &ED25519.replacen("AAAAC3", "AAAAC", 1),
        ] {
            assert_eq!(
                parse_public_key(malformed),
                Err(KeyError::Malformed),
                "{malformed:?}"
            );
        }
        // Options before the key (authorized_keys syntax) are not a public key.
        assert!(parse_public_key(&format!("command=\"x\" {ED25519}")).is_err());
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // What `ssh-keygen -lf` printed for the same line.
        let fp = parse_public_key(ED25519).unwrap().fingerprint();
        assert_eq!(fp, "SHA256:vJmiZ/rXDYsTj1clIpQ/WL34uj6RVWdyE8lcesDm11w");
    }

    #[test]
    fn expiry_boundary_is_sixty_seconds() {
        let now = 1_700_000_000;
        assert!(is_fresh(now, now));
        assert!(is_fresh(now - 59, now));
        assert!(!is_fresh(now - 60, now));
        assert!(!is_fresh(now - 61, now));
        // Pushed "in the future" (the instance's clock is behind): still served.
        assert!(is_fresh(now + 30, now));

        let d = dir("boundary");
        let store = KeyStore::new(d.path().join("state"));
        let key = parse_public_key(&ed25519_line(1)).unwrap();
        store
            .push("ec2-user", "i-0123456789abcdef0", &key, now)
            .unwrap();
        let keys = |at| authorized_keys(store.dir(), "ec2-user", None, None, at).unwrap();
        assert_eq!(keys(now + 59), vec![key.line.clone()]);
        assert!(keys(now + 60).is_empty());
        store.age(61).unwrap();
        assert!(keys(now).is_empty());
        assert_eq!(keys(now - 61), vec![key.line.clone()]);
    }

    #[test]
    fn per_user_per_instance_and_fingerprint() {
        let d = dir("filters");
        let store = KeyStore::new(d.path().join("state"));
        let now = 1_700_000_000;
        let (a, b, c) = (
            parse_public_key(&ed25519_line(1)).unwrap(),
            parse_public_key(&ed25519_line(2)).unwrap(),
            parse_public_key(&ed25519_line(3)).unwrap(),
        );
        let (i1, i2) = ("i-0123456789abcdef0", "i-0fedcba9876543210");
        store.push("ec2-user", i1, &a, now).unwrap();
        store.push("ec2-user", i2, &b, now).unwrap();
        store.push("ubuntu", i1, &c, now).unwrap();
        store.push("ec2-user", i1, &a, now + 1).unwrap();
        let dir = store.dir();
        let got = |user, inst, fp| authorized_keys(dir, user, inst, fp, now + 5).unwrap();
        assert_eq!(
            got("ec2-user", None, None),
            vec![a.line.clone(), b.line.clone()]
        );
        assert_eq!(got("ec2-user", Some(i1), None), vec![a.line.clone()]);
        assert_eq!(got("ec2-user", Some(i2), None), vec![b.line.clone()]);
        assert_eq!(got("ubuntu", None, None), vec![c.line.clone()]);
        assert!(got("root", None, None).is_empty());
        assert!(got("../state/ubuntu", None, None).is_empty());
        let fp = b.fingerprint();
        assert_eq!(got("ec2-user", None, Some(&fp)), vec![b.line.clone()]);
        assert!(got("ec2-user", Some(i1), Some(&fp)).is_empty());
        assert!(got("ec2-user", None, Some("SHA256:nope")).is_empty());

        // Mode 0700 on the directory, 0600 on the files.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir), 0o700);
        assert_eq!(mode(&dir.join("ubuntu")), 0o600);
    }

    #[test]
    fn garbage_lines_are_skipped_and_survive_aging() {
        let d = dir("garbage");
        let now = 1_700_000_000;
        let good = ed25519_line(9);
        let text = format!(
            "garbage\n\n{now}\n{now} i-1\nx i-0123456789abcdef0 {good}\n\
             {now} i-0123456789abcdef0 ssh-ed25519 !!!\n{now} i-0123456789abcdef0 {good}\n"
        );
        std::fs::write(d.path().join("ec2-user"), &text).unwrap();
        let keys = authorized_keys(d.path(), "ec2-user", None, None, now).unwrap();
        assert_eq!(keys, vec![good.clone()]);
        let store = KeyStore::new(d.path());
        store.age(10).unwrap();
        let aged = std::fs::read_to_string(d.path().join("ec2-user")).unwrap();
        assert!(aged.starts_with("garbage\n\n"), "{aged}");
        assert!(aged.ends_with(&format!("{} i-0123456789abcdef0 {good}\n", now - 10)));
        assert!(
            authorized_keys(&d.path().join("missing"), "ec2-user", None, None, now)
                .unwrap()
                .is_empty()
        );
        // Aging a store that was never written is fine.
        KeyStore::new(d.path().join("never")).age(5).unwrap();
    }
}
