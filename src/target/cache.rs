//! A brief on-disk cache of target lookups, so repeated `ssh web-1` (scp, rsync, git each
//! start a new proxy) does not pay for DescribeInstanceInformation every time.
//!
//! One small JSON file per lookup under `$XDG_CACHE_HOME/sallyport/targets/` (0700), named
//! by the SHA-256 of profile, region, endpoint, access key ID and the target, written 0600
//! through a rename. Entries live [`TTL`]. Every failure here is only logged: the cache
//! never stops a command.
//!
//! A cache someone else could write would choose the instance we connect to: the
//! directory is used only when it is a real directory (not a symlink) owned by us and not
//! writable by group or others, and an entry only when it is a regular file (opened
//! without following a symlink) owned by us. Anything else is ignored with a debug line.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// How long a lookup is trusted.
pub const TTL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Cache {
    store: Store,
    ttl: Duration,
}

/// A private directory of small files, one per key: used only when it is ours (see the
/// module doc), written 0600 through a rename, read at most [`Store::MAX_ENTRY`] bytes.
/// Every cache sallyport keeps on disk goes through one (targets, session documents).
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    id: String,
    /// Unix seconds when written.
    at: u64,
}

/// The cache key of `target` in `scope` (hex SHA-256: file-name safe, reveals nothing).
pub fn key(scope: &str, target: &str) -> String {
    let digest = Sha256::new()
        .chain_update(scope.as_bytes())
        .chain_update([0])
        .chain_update(target.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Cache {
    /// The cache under the user's cache directory, if there is one.
    pub fn new() -> Option<Cache> {
        let dir = dirs::cache_dir()?.join("sallyport").join("targets");
        Some(Cache::at(dir, TTL))
    }

    pub fn at(dir: PathBuf, ttl: Duration) -> Cache {
        Cache {
            store: Store::at(dir),
            ttl,
        }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let entry: Entry = serde_json::from_slice(&self.store.get(key, "target cache")?).ok()?;
        (fresh(entry.at, self.ttl) && crate::target::is_instance_id(&entry.id)).then_some(entry.id)
    }

    pub fn put(&self, key: &str, id: &str) {
        let entry = Entry {
            id: id.to_owned(),
            at: now_secs(),
        };
        if let Ok(bytes) = serde_json::to_vec(&entry) {
            self.store.put(key, &bytes, "target cache");
        }
    }

    /// Drops an entry (when the ID it gave turned out not to work).
    pub fn remove(&self, key: &str) {
        if let Err(e) = self.store.trusted_dir() {
            tracing::debug!("target cache entry not removed: {e}");
            return;
        }
        let _ = std::fs::remove_file(self.store.dir.join(key));
    }
}

/// Whether an entry written at `at` (Unix seconds) is still to be trusted for `ttl`. A
/// clock that went backwards makes an entry look new: such an entry is distrusted too.
pub fn fresh(at: u64, ttl: Duration) -> bool {
    let now = now_secs();
    at <= now + 5 && now.saturating_sub(at) < ttl.as_secs()
}

impl Store {
    /// Most bytes of an entry that are read.
    pub const MAX_ENTRY: u64 = 4096;

    pub fn at(dir: PathBuf) -> Store {
        Store { dir }
    }

    /// An entry's bytes, or `None` (missing, untrusted or unreadable: logged as `what`).
    pub fn get(&self, key: &str, what: &str) -> Option<Vec<u8>> {
        match self.read(key) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::debug!("{what} not read: {e}");
                None
            }
        }
    }

    /// Writes an entry; a failure is only logged (as `what`).
    pub fn put(&self, key: &str, bytes: &[u8], what: &str) {
        if let Err(e) = self.try_put(key, bytes) {
            tracing::debug!("{what} not written: {e}");
        }
    }

    /// An entry's bytes, from a regular file of ours in a directory of ours; small. The
    /// file is judged as found (a symlink is not followed), and what was opened must be
    /// that same file.
    fn read(&self, key: &str) -> std::io::Result<Vec<u8>> {
        self.trusted_dir()?;
        let path = self.dir.join(key);
        let found = std::fs::symlink_metadata(&path)?;
        if found.file_type().is_symlink() {
            return Err(untrusted(&path, "is a symlink"));
        }
        if !found.is_file() {
            return Err(untrusted(&path, "is not a regular file"));
        }
        if found.uid() != rustix::process::geteuid().as_raw() {
            return Err(untrusted(&path, "belongs to another user"));
        }
        let f = std::fs::File::open(&path)?;
        let opened = f.metadata()?;
        if (opened.dev(), opened.ino()) != (found.dev(), found.ino()) {
            return Err(untrusted(&path, "changed while it was read"));
        }
        let mut bytes = Vec::new();
        f.take(Self::MAX_ENTRY).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The directory as found (not following a symlink): ours, a directory, private
    /// enough. NotFound passes through as such.
    fn trusted_dir(&self) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(&self.dir)?;
        if meta.file_type().is_symlink() {
            return Err(untrusted(&self.dir, "is a symlink"));
        }
        if !meta.is_dir() {
            return Err(untrusted(&self.dir, "is not a directory"));
        }
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(untrusted(&self.dir, "belongs to another user"));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(untrusted(&self.dir, "is writable by group or others"));
        }
        Ok(())
    }

    fn try_put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        self.trusted_dir()?;
        let tmp = self.dir.join(format!(".{key}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(key))
    }
}

/// Why a cache path is not used.
fn untrusted(path: &Path, why: &str) -> std::io::Error {
    std::io::Error::other(format!("{} {why}; ignoring the cache", path.display()))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sallyport-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_private_files_and_expiry() {
        let dir = temp_dir("rt");
        let c = Cache::at(dir.clone(), TTL);
        let k = key("default|us-east-1|", "web-1");
        assert_eq!(k.len(), 64);
        assert_ne!(k, key("other|us-east-1|", "web-1"), "scoped");
        assert_eq!(c.get(&k), None);
        c.put(&k, "i-0123456789abcdef0");
        assert_eq!(c.get(&k).as_deref(), Some("i-0123456789abcdef0"));
        let mode = std::fs::metadata(dir.join(&k))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);

        let stale = Entry {
            id: "i-0123456789abcdef0".into(),
            at: now_secs() - 61,
        };
        std::fs::write(dir.join(&k), serde_json::to_vec(&stale).unwrap()).unwrap();
        assert_eq!(c.get(&k), None, "expired");
        std::fs::write(dir.join(&k), b"{garbage").unwrap();
        assert_eq!(c.get(&k), None, "corrupt entries are ignored");
        c.put(&k, "i-0123456789abcdef0");
        c.remove(&k);
        assert_eq!(c.get(&k), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An entry someone else could have written picks the instance: ignored, and never
    /// written through.
    #[test]
    fn files_and_directories_of_others_and_symlinks_are_ignored() {
        use std::os::unix::fs::{chown, symlink};
        let id = "i-0123456789abcdef0";
        let fresh = serde_json::to_vec(&Entry {
            id: id.into(),
            at: now_secs(),
        })
        .unwrap();
        let k = key("s", "web-1");
        let other_uid = rustix::process::geteuid().as_raw() + 4242;

        // A file of another user in our directory.
        let dir = temp_dir("others-file");
        let c = Cache::at(dir.clone(), TTL);
        c.put(&k, id);
        assert_eq!(c.get(&k).as_deref(), Some(id), "ours is used");
        chown(dir.join(&k), Some(other_uid), None).unwrap();
        assert_eq!(c.get(&k), None, "another user's entry");

        // A symlink to an entry of ours.
        std::fs::write(dir.join("real"), &fresh).unwrap();
        std::fs::remove_file(dir.join(&k)).unwrap();
        symlink(dir.join("real"), dir.join(&k)).unwrap();
        assert_eq!(c.get(&k), None, "a symlinked entry");
        c.put(&k, id);
        assert!(
            !std::fs::symlink_metadata(dir.join(&k))
                .unwrap()
                .file_type()
                .is_symlink(),
            "put replaces the link, never writes through it"
        );
        assert_eq!(std::fs::read(dir.join("real")).unwrap(), fresh);
        let _ = std::fs::remove_dir_all(&dir);

        // A directory of another user: neither read nor written.
        let dir = temp_dir("others-dir");
        let c = Cache::at(dir.clone(), TTL);
        c.put(&k, id);
        chown(&dir, Some(other_uid), None).unwrap();
        assert_eq!(c.get(&k), None, "another user's directory");
        std::fs::remove_file(dir.join(&k)).unwrap();
        c.put(&k, id);
        assert!(!dir.join(&k).exists(), "nothing written into it");
        let _ = std::fs::remove_dir_all(&dir);

        // A group-writable directory.
        let dir = temp_dir("open-dir");
        let c = Cache::at(dir.clone(), TTL);
        c.put(&k, id);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(c.get(&k), None, "a directory others can write");
        let _ = std::fs::remove_dir_all(&dir);

        // The directory itself a symlink to one of ours.
        let real = temp_dir("real-dir");
        let c = Cache::at(real.clone(), TTL);
        c.put(&k, id);
        let link = temp_dir("link-dir");
        symlink(&real, &link).unwrap();
        let c = Cache::at(link.clone(), TTL);
        assert_eq!(c.get(&k), None, "a symlinked directory");
        c.remove(&k);
        assert!(real.join(&k).exists(), "nothing removed through it");
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir_all(&real);
    }
}
