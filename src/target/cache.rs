//! A brief on-disk cache of target lookups, so repeated `ssh web-1` (scp, rsync, git each
//! start a new proxy) does not pay for DescribeInstanceInformation every time.
//!
//! One small JSON file per lookup under `$XDG_CACHE_HOME/sallyport/targets/` (0700), named
//! by the SHA-256 of profile, region, endpoint, access key ID and the target, written 0600
//! through a rename. Entries live [`TTL`]. Every failure here is only logged: the cache
//! never stops a command.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// How long a lookup is trusted.
pub const TTL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
    ttl: Duration,
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
        Cache { dir, ttl }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let bytes = std::fs::read(self.dir.join(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        let now = now_secs();
        // A clock that went backwards makes an entry look new: distrust it too.
        let fresh = entry.at <= now + 5 && now.saturating_sub(entry.at) < self.ttl.as_secs();
        (fresh && crate::target::is_instance_id(&entry.id)).then_some(entry.id)
    }

    pub fn put(&self, key: &str, id: &str) {
        if let Err(e) = self.try_put(key, id) {
            tracing::debug!("target cache not written: {e}");
        }
    }

    /// Drops an entry (when the ID it gave turned out not to work).
    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.dir.join(key));
    }

    fn try_put(&self, key: &str, id: &str) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let entry = Entry {
            id: id.to_owned(),
            at: now_secs(),
        };
        let tmp = self.dir.join(format!(".{key}.{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(&entry).map_err(std::io::Error::other)?)?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(key))
    }
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
}
