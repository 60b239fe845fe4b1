//! How a hostile instance lies: the behaviours of the SSH/SFTP server in
//! `instance::hostile`, chosen per instance (`hostile = ["huge-size", …]` in an instances
//! file) or for every instance (`serve --hostile-ssh huge-size,…`).

use serde::Deserialize;

/// One lie the hostile instance tells. Several can be combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum HostileSsh {
    /// Directory listings hold `.`, `..`, `../…`, names with `/`, absolute paths, NUL,
    /// newlines and terminal escape sequences; every such path reads as a small file.
    EvilNames,
    /// Every size (stat, lstat, fstat, directory entries) is `u64::MAX`; a file still
    /// ends (EOF) after 64 KiB.
    HugeSize,
    /// Reading a directory never ends: each READDIR answers another batch of names.
    EndlessListing,
    /// Files claim 1 MiB, every READ returns at most 1000 bytes, and EOF comes at 300 000.
    ShortRead,
    /// Every status message carries terminal escape sequences and a forged line; WRITE
    /// answers OK while nothing is kept, and closing a written file fails.
    LyingStatus,
    /// `loop` in a listing is a symlink to a directory that holds `loop` again, and
    /// REALPATH never admits the cycle (it answers the path as asked).
    SymlinkLoop,
    /// A freshly generated host key on every connection.
    NewHostKey,
    /// A command or shell asked for is never answered (neither started nor refused);
    /// without this lie both are refused at once.
    Mute,
}

impl HostileSsh {
    /// Every behaviour with its name, in the order the help lists them.
    pub const ALL: [(&'static str, HostileSsh); 8] = [
        ("evil-names", HostileSsh::EvilNames),
        ("huge-size", HostileSsh::HugeSize),
        ("endless-listing", HostileSsh::EndlessListing),
        ("short-read", HostileSsh::ShortRead),
        ("lying-status", HostileSsh::LyingStatus),
        ("symlink-loop", HostileSsh::SymlinkLoop),
        ("new-host-key", HostileSsh::NewHostKey),
        ("mute", HostileSsh::Mute),
    ];

    /// The behaviour named `s` (as in [`HostileSsh::ALL`]).
    pub fn parse(s: &str) -> Option<HostileSsh> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, b)| *b)
    }

    /// A comma-separated list (`huge-size,new-host-key`), refusing unknown names.
    pub fn parse_list(s: &str) -> Result<Vec<HostileSsh>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| HostileSsh::parse(n).ok_or_else(|| unknown(n)))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|v| {
                if v.is_empty() {
                    Err("no hostile SSH behaviour named".to_owned())
                } else {
                    Ok(v)
                }
            })
    }
}

fn unknown(name: &str) -> String {
    let names: Vec<&str> = HostileSsh::ALL.iter().map(|(n, _)| *n).collect();
    format!(
        "unknown hostile SSH behaviour {name:?} (one of: {})",
        names.join(", ")
    )
}

impl TryFrom<String> for HostileSsh {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        HostileSsh::parse(&s).ok_or_else(|| unknown(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_are_refused() {
        for (name, b) in HostileSsh::ALL {
            assert_eq!(HostileSsh::parse(name), Some(b));
        }
        assert_eq!(
            HostileSsh::parse_list("huge-size, new-host-key"),
            Ok(vec![HostileSsh::HugeSize, HostileSsh::NewHostKey])
        );
        let e = HostileSsh::parse_list("huge-size,wrong-digest").unwrap_err();
        assert!(
            e.contains("\"wrong-digest\"") && e.contains("evil-names"),
            "{e}"
        );
        assert!(HostileSsh::parse_list(",").is_err());
    }

    #[test]
    fn an_instances_file_names_them_per_instance() {
        use crate::world::config::InstanceConfig;
        let text = "id = \"i-0123456789abcdef0\"\nhostile = [\"huge-size\", \"symlink-loop\"]\n";
        let i: InstanceConfig = toml::from_str(text).unwrap();
        assert_eq!(i.hostile, [HostileSsh::HugeSize, HostileSsh::SymlinkLoop]);
        let honest: InstanceConfig = toml::from_str("id = \"i-0123456789abcdef0\"").unwrap();
        assert!(honest.hostile.is_empty());
        let bad = "id = \"i-0123456789abcdef0\"\nhostile = [\"wrong-digest\"]\n";
        let e = toml::from_str::<InstanceConfig>(bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown hostile SSH behaviour \"wrong-digest\""),
            "{e}"
        );
    }
}
