//! Shell-style patterns for `scp` and `sftp` sources, as OpenSSH's scp (SFTP mode) and
//! sftp expand them: `*`, `?`, `[…]` (with `!` negation and ranges), a backslash quotes
//! the next character; names starting with `.` match only an explicit `.`.
//!
//! Bounds: each remote directory is listed through [`Sftp::list`] (at most
//! [`MAX_LISTING_ENTRIES`] entries), and a pattern expands to at most that many paths at
//! any step (local patterns too); beyond that the expansion is an error, not a truncation.

use russh_sftp::client::error::Error as SftpError;

use crate::wildcard::{self, Syntax};

use super::transfer::{ListError, MAX_LISTING_ENTRIES, Sftp, is_plain_name, remote_join};

/// Whether `pattern` has an unquoted `*`, `?` or `[`.
pub fn has_glob(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Drops the backslashes that quote characters in a pattern.
pub fn unescape_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().unwrap_or('\\'));
        } else {
            out.push(c);
        }
    }
    out
}

/// Quotes the characters a pattern treats specially, so `text` matches only itself.
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Shell-style match of one name against one pattern component. A leading '.' in the
/// name must be matched by a literal '.'.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') && !pattern.starts_with("\\.") {
        return false;
    }
    wildcard::matches(pattern, name, Syntax::SHELL)
}

/// What a pattern expanded to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Globbed {
    /// The paths that exist, sorted (or the unquoted pattern: see [`remote_glob`]).
    pub paths: Vec<String>,
    /// Names the server listed that the pattern matches but that are no plain entry
    /// names (`../x`, `a/b`, an absolute path, a NUL): (directory, name). They are never
    /// expanded into a path; the caller reports them.
    pub refused: Vec<(String, String)>,
}

/// Expands a remote pattern into the paths that exist, sorted; a pattern without
/// wildcards, or one that matches nothing, comes back unquoted as the only path. A
/// directory that cannot be listed matches nothing there; a listing or a set of matches
/// (refused names included) beyond [`Sftp::max_entries`] is an error, as is a lost
/// session.
pub async fn remote_glob(sftp: &Sftp, pattern: &str) -> Result<Globbed, ListError> {
    let cap = sftp.max_entries();
    let too_many = || ListError::TooLong { entries: cap };
    expand(pattern, cap, too_many, async |dir: &str| {
        match sftp.list(dir).await {
            Ok(entries) => Ok(Some(entries.into_iter().map(|(name, _)| name).collect())),
            // Missing or unreadable: no matches there.
            Err(ListError::Sftp(SftpError::Status(_))) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
}

/// A local pattern matched more than [`MAX_LISTING_ENTRIES`] paths (or a directory on
/// the way has more entries).
#[derive(Debug, PartialEq, Eq)]
pub struct TooMany;

/// Expands a local pattern like [`remote_glob`] (names that are not UTF-8 are left out).
pub async fn local_glob(pattern: &str) -> Result<Vec<String>, TooMany> {
    let cap = MAX_LISTING_ENTRIES;
    expand(
        pattern,
        cap,
        || TooMany,
        async |dir: &str| {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return Ok(None);
            };
            let names: Vec<String> = rd
                .take(cap + 1)
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            if names.len() > cap {
                return Err(TooMany);
            }
            Ok(Some(names))
        },
    )
    .await
    .map(|g| g.paths)
}

/// The walk both expansions share, one path component at a time: `list(dir)` gives the
/// names in a directory (`None`: it cannot be listed, so nothing matches there). A
/// matching name that is not a plain entry name is refused, not joined. More than `cap`
/// paths and refused names at any step is `too_many()`.
async fn expand<E>(
    pattern: &str,
    cap: usize,
    too_many: impl Fn() -> E,
    mut list: impl AsyncFnMut(&str) -> Result<Option<Vec<String>>, E>,
) -> Result<Globbed, E> {
    let literal = |p: &str| Globbed {
        paths: vec![unescape_glob(p)],
        refused: Vec::new(),
    };
    if !has_glob(pattern) {
        return Ok(literal(pattern));
    }
    let mut refused = Vec::new();
    let absolute = pattern.starts_with('/');
    let mut bases = vec![if absolute {
        "/".to_owned()
    } else {
        String::new()
    }];
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        if has_glob(component) {
            for base in &bases {
                let dir = if base.is_empty() { "." } else { base.as_str() };
                let Some(names) = list(dir).await? else {
                    continue;
                };
                let (mut names, invalid): (Vec<String>, Vec<String>) = names
                    .into_iter()
                    .filter(|n| glob_match(component, n))
                    .partition(|n| is_plain_name(n));
                names.sort();
                if next.len() + refused.len() + names.len() + invalid.len() > cap {
                    return Err(too_many());
                }
                next.extend(names.iter().map(|n| remote_join(base, n)));
                refused.extend(invalid.into_iter().map(|n| (dir.to_owned(), n)));
            }
        } else {
            let literal = unescape_glob(component);
            next.extend(bases.iter().map(|b| remote_join(b, &literal)));
        }
        bases = next;
        if bases.is_empty() {
            break;
        }
    }
    if bases.is_empty() {
        return Ok(Globbed {
            refused,
            ..literal(pattern)
        });
    }
    Ok(Globbed {
        paths: bases,
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", ".hidden.txt"));
        assert!(glob_match(".*", ".hidden"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("[]]", "]"));
        assert!(glob_match("a\\*", "a*"));
        assert!(!glob_match("a\\*", "ab"));
        assert!(glob_match("*日本*", "é 日本.txt"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("[", "["));
        assert!(has_glob("a*") && !has_glob("a\\*") && !has_glob("plain"));
        assert_eq!(unescape_glob(&escape_glob("a*b[c]\\d")), "a*b[c]\\d");
        assert!(glob_match(&escape_glob("x[1]*"), "x[1]*"));
    }

    #[tokio::test]
    async fn matching_names_that_are_no_plain_names_are_refused_not_joined() {
        let listing = ["ok.txt", "a/b", "/abs", "nul\0x", "../up", ".hidden"];
        let glob = async |pattern: &str| {
            expand(
                pattern,
                100,
                || (),
                async |dir: &str| {
                    assert_eq!(dir, "/d");
                    Ok(Some(listing.iter().map(|n| n.to_string()).collect()))
                },
            )
            .await
            .unwrap()
        };
        let refused = |names: &[&str]| -> Vec<(String, String)> {
            names
                .iter()
                .map(|n| ("/d".to_owned(), n.to_string()))
                .collect()
        };
        let got = glob("/d/*").await;
        assert_eq!(got.paths, ["/d/ok.txt"]);
        assert_eq!(got.refused, refused(&["a/b", "/abs", "nul\0x"]));
        let got = glob("/d/.*").await;
        assert_eq!(got.paths, ["/d/.hidden"]);
        assert_eq!(got.refused, refused(&["../up"]));
        // Only refused names match: the pattern stands for itself, the names are still told.
        let got = glob("/d/a*").await;
        assert_eq!(got.paths, ["/d/a*"]);
        assert_eq!(got.refused, refused(&["a/b"]));
        let got = glob("/d/*.txt").await;
        assert_eq!(
            (got.paths, got.refused),
            (vec!["/d/ok.txt".to_owned()], vec![])
        );
    }

    #[tokio::test]
    async fn local_patterns_expand_sorted_and_fall_back_to_the_pattern() {
        let dir = std::env::temp_dir().join(format!("sp-glob-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for name in ["b.txt", "a.txt", ".hidden.txt", "c.log", "sub/d.txt"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let base = escape_glob(dir.to_str().unwrap());
        let got = local_glob(&format!("{base}/*.txt")).await.unwrap();
        assert_eq!(got, [format!("{base}/a.txt"), format!("{base}/b.txt")]);
        let got = local_glob(&format!("{base}/*/*.txt")).await.unwrap();
        assert_eq!(got, [format!("{base}/sub/d.txt")]);
        let none = format!("{base}/*.none");
        assert_eq!(local_glob(&none).await, Ok(vec![none]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
