//! `sallyport config ssh`: the `~/.ssh/config` block that sends ssh through this binary,
//! printed, or installed as `~/.ssh/sallyport.conf` plus one `Include` line at the top of
//! `~/.ssh/config`.
//!
//! Installing is idempotent and conservative: `sallyport.conf` is ours and is rewritten;
//! `config` gets only the `Include` line, added once at the top (an `Include` inside a
//! `Host` or `Match` block would only apply there), after a copy of the old file is kept
//! as `config.sallyport.bak`. No other line is touched. The `Include` names the file by
//! absolute path, in double quotes (a home with a space): ssh resolves `~` and relative
//! includes against the passwd home, which is not `$HOME` in sandboxes and tests.
//!
//! A `config` (or `sallyport.conf`) that is a symlink, as dotfile managers make, is
//! written through to the file it points to, never replaced by a plain file: the new text
//! goes to a 0600 temporary file beside that target, which is then renamed over it.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::CommandError;

/// What the block is made from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockSettings {
    /// This binary's absolute path (`std::env::current_exe`).
    pub exe: PathBuf,
    /// Options placed before `proxy` (`--config FILE`, `--profile P`, `--region R` when
    /// they were given explicitly), already split into words.
    pub global_args: Vec<String>,
    /// Alias names from the config file, matched by ssh as host names.
    pub aliases: Vec<String>,
    pub push_key: bool,
    pub ephemeral: bool,
    /// `--multiplex`: the private directory for ssh's control sockets.
    pub control_dir: Option<PathBuf>,
}

/// ssh's `%C`: a 40-character hash of the local host, host, port and user.
const CONTROL_NAME_LEN: usize = 40;
/// While it sets a master up, ssh binds `PATH.` plus 16 random characters, then renames.
const CONTROL_TEMP_SUFFIX: usize = 17;
/// `sun_path` (Linux: 108 bytes, macOS and the BSDs: 104), less its terminating NUL.
#[cfg(target_os = "linux")]
const SOCKET_PATH_MAX: usize = 107;
#[cfg(not(target_os = "linux"))]
const SOCKET_PATH_MAX: usize = 103;

/// Whether sockets in `dir` fit a unix socket path (with ssh's temporary suffix).
pub fn control_dir_fits(dir: &Path) -> bool {
    dir.as_os_str().len() + 1 + CONTROL_NAME_LEN + CONTROL_TEMP_SUFFIX <= SOCKET_PATH_MAX
}

/// Makes `dir` (mode 0700) or checks that the one there is ours: a real directory owned by
/// this user that no one else can enter. Anyone who can write there could put a socket of
/// theirs where ssh looks for its master.
pub fn ensure_control_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Some(parent) = dir.parent() {
        create_private_dir(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} must be a directory of yours that only you can use (mode 0700, not a link); \
             remove it or fix its owner and mode",
            dir.display()
        ));
    }
    Ok(())
}

/// The `Host` block.
pub fn host_block(s: &BlockSettings) -> String {
    let mut proxy = vec![proxy_word(&s.exe.to_string_lossy())];
    proxy.extend(s.global_args.iter().map(|a| proxy_word(a)));
    // ssh runs the ProxyCommand with `sh -c` after putting the host and user in for %h
    // and %r as they were typed: quoted, `$(…)` or `;` in them stay text. (An OpenSSH
    // before 9.6 lets a name holding `'` through; `proxy` refuses such names, but the shell
    // has run by then.)
    proxy.extend(["proxy", "'%h'", "--port", "%p"].map(str::to_owned));
    if s.push_key {
        proxy.extend(["--user", "'%r'", "--push-key"].map(str::to_owned));
        if s.ephemeral {
            proxy.push("--ephemeral".to_owned());
        }
    }
    // ssh lower-cases the host name it matches; a pattern with spaces or pattern
    // characters would mean something else to ssh, so those aliases are left out.
    let (usable, skipped): (Vec<&String>, Vec<&String>) = s.aliases.iter().partition(|a| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
    let mut patterns = vec!["i-*".to_owned(), "mi-*".to_owned()];
    patterns.extend(usable.iter().map(|a| a.to_ascii_lowercase()));
    let mut out = String::from(
        "# Written by `sallyport config ssh`; run it again (with --install) rather than editing.\n",
    );
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|s| s.as_str()).collect();
        out.push_str(&format!(
            "# Aliases ssh cannot match as host names, left out: {}\n",
            names.join(", ")
        ));
    }
    out.push_str(&format!("Host {}\n", patterns.join(" ")));
    out.push_str(&format!("    ProxyCommand {}\n", proxy.join(" ")));
    out.push_str("    # Instance IDs and aliases are not DNS names: no canonicalisation.\n");
    out.push_str("    CanonicalizeHostname no\n");
    if let Some(dir) = &s.control_dir {
        out.push_str(
            "    # One session per host, reused by later ssh, scp, rsync and git for 10 minutes\n    # after the last one ends; `ssh -O exit HOST` ends it now.\n",
        );
        out.push_str("    ControlMaster auto\n");
        out.push_str(&format!(
            "    ControlPath {}\n",
            config_path(&format!("{}/%C", dir.to_string_lossy().replace('%', "%%")))
        ));
        out.push_str("    ControlPersist 10m\n");
    }
    out
}

/// A path as an ssh_config argument: in double quotes when it holds a space.
fn config_path(p: &str) -> String {
    if p.contains(char::is_whitespace) {
        format!("\"{p}\"")
    } else {
        p.to_owned()
    }
}

/// A word of the ProxyCommand: `%` doubled (ssh expands `%` tokens in it), and quoted for
/// the shell ssh runs it with when it holds anything but plain path characters.
fn proxy_word(w: &str) -> String {
    let w = w.replace('%', "%%");
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        w
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// What [`install`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub conf: PathBuf,
    pub config: PathBuf,
    /// `sallyport.conf` differed from the block (or was missing) and was written.
    pub conf_written: bool,
    /// The `Include` line was added (false: it was already there).
    pub include_added: bool,
    /// Where the old `config` was copied before the `Include` line went in.
    pub backup: Option<PathBuf>,
}

/// Why installing failed: the file and the OS's reason.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct InstallError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes `block` to `HOME/.ssh/sallyport.conf` and includes it from `HOME/.ssh/config`.
pub fn install(home: &Path, block: &str) -> Result<Installed, InstallError> {
    let at = |path: &Path| {
        let path = path.to_owned();
        move |source| InstallError { path, source }
    };
    let dir = home.join(".ssh");
    if !dir.exists() {
        create_private_dir(&dir).map_err(at(&dir))?;
    }
    let conf = dir.join("sallyport.conf");
    let conf_written = std::fs::read_to_string(&conf).ok().as_deref() != Some(block);
    if conf_written {
        let target = through_links(&conf).map_err(at(&conf))?;
        write_private(&target, block.as_bytes()).map_err(at(&target))?;
    }
    let config = dir.join("config");
    let include = format!("Include \"{}\"", conf.display());
    let old = match std::fs::read(&config) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(at(&config)(e)),
    };
    let (include_added, backup) = match old {
        None => {
            let target = through_links(&config).map_err(at(&config))?;
            write_private(&target, format!("{include}\n").as_bytes()).map_err(at(&target))?;
            (true, None)
        }
        Some(old) if includes_us(&String::from_utf8_lossy(&old), &conf) => (false, None),
        Some(old) => {
            let backup = dir.join("config.sallyport.bak");
            write_private(&backup, &old).map_err(at(&backup))?;
            let mut new = format!("{include}\n").into_bytes();
            new.extend_from_slice(&old);
            let target = through_links(&config).map_err(at(&config))?;
            write_keeping_mode(&target, &new).map_err(at(&target))?;
            (true, Some(backup))
        }
    };
    Ok(Installed {
        conf,
        config,
        conf_written,
        include_added,
        backup,
    })
}

/// Whether `config` already has an `Include` of `conf` (by absolute path, `~/.ssh/…` or
/// relative to `~/.ssh`), in any case and with `=` or spaces as ssh allows.
fn includes_us(config: &str, conf: &Path) -> bool {
    let absolute = conf.to_string_lossy();
    config.lines().any(|line| {
        let line = line.trim();
        let Some((key, rest)) = line.split_once(|c: char| c.is_whitespace() || c == '=') else {
            return false;
        };
        key.eq_ignore_ascii_case("include")
            && words(rest.trim_start_matches(|c: char| c.is_whitespace() || c == '='))
                .iter()
                .map(String::as_str)
                .any(|f| f == absolute || f == "sallyport.conf" || f == "~/.ssh/sallyport.conf")
    })
}

/// An ssh_config argument list: words split at whitespace, `"…"` quoting a word with
/// spaces (as ssh's own `argv_split` reads them).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => out.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

/// The file `path` names after following symlinks (a bounded number, as the kernel
/// does), whether or not that file exists yet: where a write must go so a link stays.
fn through_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut at = path.to_owned();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&at)?;
                at = match at.parent() {
                    Some(dir) => dir.join(to),
                    None => to,
                };
            }
            Ok(_) => return Ok(at),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(at),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes a new file readable only by us, through a temporary file and a rename so a
/// crash never leaves half a file.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, 0o600)
}

/// Replaces `path`, keeping its permission bits (ssh refuses a group-writable config).
fn write_keeping_mode(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    write_with_mode(path, bytes, mode)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.sallyport-tmp", name.unwrap_or_default()));
    let result = (|| {
        // Private while it is written; its final mode just before it goes into place.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `sallyport config ssh`.
pub struct ConfigSshRun {
    pub block: BlockSettings,
    pub install: bool,
}

/// `sallyport config ssh [--push-key [--ephemeral]] [--multiplex] [--install]`.
pub fn run(args: ConfigSshRun) -> Result<u8, CommandError> {
    if let Some(dir) = &args.block.control_dir {
        // ssh does not make the directory, and without it every connection is its own.
        ensure_control_dir(dir).map_err(super::CommandError::ControlDir)?;
    }
    let block = host_block(&args.block);
    if !args.install {
        super::stdout(block.as_bytes())?;
        return Ok(0);
    }
    let home = dirs::home_dir().ok_or(super::CommandError::NoHome)?;
    let done = install(&home, &block).map_err(super::CommandError::Install)?;
    let conf = done.conf.display();
    let config = done.config.display();
    match (done.conf_written, done.include_added, &done.backup) {
        (false, false, _) => eprintln!("sallyport: {conf} is up to date and {config} includes it"),
        (true, false, _) => eprintln!("sallyport: updated {conf}; {config} already includes it"),
        (_, true, Some(b)) => eprintln!(
            "sallyport: wrote {conf} and added `Include` at the top of {config} (the old one is kept as {})",
            b.display()
        ),
        (_, true, None) => eprintln!("sallyport: wrote {conf} and created {config} to include it"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BlockSettings {
        BlockSettings {
            exe: "/opt/my tools/sallyport".into(),
            global_args: vec!["--profile".into(), "dev%1".into()],
            aliases: vec!["Jupyter".into(), "web box".into(), "db-1".into()],
            push_key: false,
            ephemeral: false,
            control_dir: None,
        }
    }

    #[test]
    fn multiplex_adds_a_master_a_private_control_path_and_persistence() {
        assert!(!host_block(&settings()).contains("Control"));
        let mut s = settings();
        s.control_dir = Some("/home/al ice/.ssh/sallyport-mux%x".into());
        let b = host_block(&s);
        assert!(b.contains("\n    ControlMaster auto\n"), "{b}");
        // `%` of the path doubled (ssh expands tokens there), quoted for the space.
        assert!(
            b.contains("\n    ControlPath \"/home/al ice/.ssh/sallyport-mux%%x/%C\"\n"),
            "{b}"
        );
        assert!(b.contains("\n    ControlPersist 10m\n"), "{b}");
        // Inside the Host block: after its ProxyCommand, before anything else.
        assert!(b.find("ProxyCommand").unwrap() < b.find("ControlMaster").unwrap());
    }

    #[test]
    fn control_sockets_must_fit_a_unix_socket_path() {
        assert!(control_dir_fits(Path::new(
            "/home/alice/.ssh/sallyport-mux"
        )));
        // A directory of N characters leaves N + "/" + 40 + 17 for the socket.
        let longest = SOCKET_PATH_MAX - 1 - CONTROL_NAME_LEN - CONTROL_TEMP_SUFFIX;
        let fits = format!("/{}", "d".repeat(longest - 1));
        let too_long = format!("/{}", "d".repeat(longest));
        assert!(control_dir_fits(Path::new(&fits)));
        assert!(!control_dir_fits(Path::new(&too_long)));
    }

    #[test]
    fn the_control_directory_is_made_private_and_a_shared_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = sallyport_testbed::instance::sshd::TempDir::new("sallyport-mux").unwrap();
        let dir = tmp.path().join(".ssh/sallyport-mux");
        ensure_control_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        ensure_control_dir(&dir).expect("ours already: fine");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_control_dir(&dir).unwrap_err();
        assert!(e.contains("only you can use"), "{e}");
        std::fs::remove_dir(&dir).unwrap();
        // A link to a directory of someone else's choosing.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        assert!(ensure_control_dir(&dir).is_err());
        std::fs::remove_file(&dir).unwrap();
        // Owned by another user.
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
            assert!(ensure_control_dir(&dir).is_err());
        }
    }

    #[test]
    fn block_names_ids_aliases_and_this_binary() {
        let b = host_block(&settings());
        assert!(b.contains("\nHost i-* mi-* jupyter db-1\n"), "{b}");
        assert!(
            b.contains(
                "    ProxyCommand '/opt/my tools/sallyport' --profile 'dev%%1' proxy '%h' --port %p\n"
            ),
            "{b}"
        );
        assert!(b.contains("left out: web box"), "{b}");
        let b = host_block(&BlockSettings {
            push_key: true,
            ephemeral: true,
            ..settings()
        });
        assert!(
            b.contains("--port %p --user '%r' --push-key --ephemeral\n"),
            "{b}"
        );
    }

    #[test]
    fn include_is_recognised_in_its_spellings() {
        let conf = Path::new("/h/.ssh/sallyport.conf");
        for yes in [
            "Include /h/.ssh/sallyport.conf",
            "  include=sallyport.conf",
            "INCLUDE other.conf ~/.ssh/sallyport.conf",
            "Include \"/h/.ssh/sallyport.conf\"",
            "Include=\"other file.conf\" \"/h/.ssh/sallyport.conf\"",
        ] {
            assert!(includes_us(yes, conf), "{yes}");
        }
        for no in [
            "# Include sallyport.conf",
            "Include other.conf",
            "Host sallyport.conf",
            "Include \"/h/.ssh/sallyport.conf other\"",
        ] {
            assert!(!includes_us(no, conf), "{no}");
        }
    }

    #[test]
    fn install_is_idempotent_and_touches_nothing_else() {
        use std::os::unix::fs::PermissionsExt;
        let dir = sallyport_testbed::instance::sshd::TempDir::new("sallyport-ssh-config").unwrap();
        let home = dir.path();
        let ssh = home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let original = "# mine\nHost bastion\n    User me\n\nInclude other.conf\n";
        std::fs::write(ssh.join("config"), original).unwrap();
        std::fs::set_permissions(ssh.join("config"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let block = host_block(&settings());
        let first = install(home, &block).unwrap();
        assert!(first.conf_written && first.include_added);
        let config = std::fs::read_to_string(ssh.join("config")).unwrap();
        let include = format!("Include \"{}\"\n", ssh.join("sallyport.conf").display());
        assert_eq!(config, format!("{include}{original}"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ssh.join("config")), 0o644, "mode kept");
        assert_eq!(
            first.backup.as_deref(),
            Some(ssh.join("config.sallyport.bak").as_path())
        );
        assert_eq!(
            std::fs::read_to_string(ssh.join("config.sallyport.bak")).unwrap(),
            original
        );
        assert_eq!(std::fs::read_to_string(&first.conf).unwrap(), block);
        assert_eq!(mode(&first.conf), 0o600);

        let second = install(home, &block).unwrap();
        assert!(!second.conf_written && !second.include_added && second.backup.is_none());
        assert_eq!(std::fs::read_to_string(ssh.join("config")).unwrap(), config);
        // A changed block (new alias) rewrites only sallyport.conf.
        let other = host_block(&BlockSettings {
            push_key: true,
            ..settings()
        });
        let third = install(home, &other).unwrap();
        assert!(third.conf_written && !third.include_added);
        assert_eq!(std::fs::read_to_string(ssh.join("config")).unwrap(), config);
        let leftovers: Vec<_> = std::fs::read_dir(&ssh)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn install_creates_a_private_config() {
        use std::os::unix::fs::PermissionsExt;
        let dir = sallyport_testbed::instance::sshd::TempDir::new("sallyport-ssh-config").unwrap();
        let done = install(dir.path(), "Host i-*\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(".ssh")), 0o700);
        assert_eq!(mode(&done.config), 0o600);
        assert_eq!(
            std::fs::read_to_string(&done.config).unwrap(),
            format!("Include \"{}\"\n", done.conf.display())
        );
        assert_eq!(done.backup, None);
    }

    /// What ssh does with the ProxyCommand: `%h`/`%r` replaced by the name as typed, `%%`
    /// by `%`, and the line run by `sh -c`. Shell syntax in the name must stay text.
    #[test]
    fn a_hostile_host_or_user_name_stays_text_in_the_shell() {
        let dir = sallyport_testbed::instance::sshd::TempDir::new("sallyport-ssh-quote").unwrap();
        let made = dir.path().join("made");
        let block = host_block(&BlockSettings {
            exe: "/bin/echo".into(),
            push_key: true,
            ..Default::default()
        });
        let line = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("ProxyCommand "))
            .unwrap();
        let hostile = format!(
            "i-$(touch {})`touch {}`;touch {}",
            made.display(),
            made.display(),
            made.display()
        );
        let expanded = line
            .replace("%h", &hostile)
            .replace("%r", &format!("u$(touch {})", made.display()))
            .replace("%p", "22")
            .replace("%%", "%");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&expanded)
            .output()
            .unwrap();
        assert!(out.status.success(), "{expanded}");
        assert!(
            !made.exists(),
            "the shell ran what the name held: {expanded}"
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains(&hostile), "{printed}");
    }

    #[test]
    fn a_symlinked_config_is_written_through_to_its_target() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = sallyport_testbed::instance::sshd::TempDir::new("sallyport-ssh-link").unwrap();
        let home = dir.path().join("home");
        let ssh = home.join(".ssh");
        let dotfiles = dir.path().join("dotfiles");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::create_dir_all(&dotfiles).unwrap();
        let original = "Host bastion\n    User me\n";
        std::fs::write(dotfiles.join("ssh_config"), original).unwrap();
        std::fs::set_permissions(
            dotfiles.join("ssh_config"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        // A relative link, as stow makes.
        symlink("../../dotfiles/ssh_config", ssh.join("config")).unwrap();
        let done = install(&home, "Host i-*\n").unwrap();
        assert!(done.include_added);
        let meta = std::fs::symlink_metadata(ssh.join("config")).unwrap();
        assert!(meta.file_type().is_symlink(), "the link is kept");
        let target = std::fs::read_to_string(dotfiles.join("ssh_config")).unwrap();
        assert_eq!(
            target,
            format!("Include \"{}\"\n{original}", done.conf.display())
        );
        let mode = std::fs::metadata(dotfiles.join("ssh_config"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "mode kept");
        let names: Vec<_> = std::fs::read_dir(&dotfiles)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        assert!(!install(&home, "Host i-*\n").unwrap().include_added);

        // A dangling link: the file it names is created, the link stays.
        std::fs::remove_file(ssh.join("config")).unwrap();
        symlink(dotfiles.join("new_config"), ssh.join("config")).unwrap();
        install(&home, "Host i-*\n").unwrap();
        assert!(
            std::fs::symlink_metadata(ssh.join("config"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            std::fs::read_to_string(dotfiles.join("new_config"))
                .unwrap()
                .starts_with("Include ")
        );
    }

    #[test]
    fn a_home_with_a_space_is_included_and_recognised() {
        let dir = sallyport_testbed::instance::sshd::TempDir::new("sallyport-ssh-space").unwrap();
        let home = dir.path().join("Jane Doe");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/config"), "Host x\n").unwrap();
        let first = install(&home, "Host i-*\n").unwrap();
        assert!(first.include_added);
        let config = std::fs::read_to_string(&first.config).unwrap();
        assert!(
            config.starts_with(&format!(
                "Include \"{}/.ssh/sallyport.conf\"\n",
                home.display()
            )),
            "{config}"
        );
        let second = install(&home, "Host i-*\n").unwrap();
        assert!(!second.include_added, "idempotent");
        assert_eq!(std::fs::read_to_string(&first.config).unwrap(), config);
    }
}
