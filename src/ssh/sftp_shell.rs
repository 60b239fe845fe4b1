//! `sallyport sftp`: OpenSSH sftp's command interpreter over an [`Sftp`] session.
//!
//! Lines are split like OpenSSH's sftp: whitespace separates words; `'…'` and `"…"` quote
//! (a backslash escapes only the closing quote, or `\\` within double quotes); outside
//! quotes a backslash escapes any character. `*`, `?` and `[…]` glob for `ls`, `get`,
//! `put`, `rm` and `chmod` unless quoted or escaped. Empty lines and `#` comments are
//! skipped. A `-` before a command ignores its failure, `@` does not echo it.
//!
//! Batch mode (`sftp -b`) echoes each command as `sftp> cmd` and stops at the first
//! failing command (exit 1). Otherwise failures are reported and the session goes on
//! (exit 0); input that is not a terminal is echoed like batch input. Command output goes
//! to `out`, problems to `err`, progress bars (`get`/`put`) to the process's stderr.
//! `ls` prints one name per line; `ls -l` times are UTC.

use std::path::{Path, PathBuf};

use russh_sftp::protocol::{FileAttributes, FileType};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::ssh::SshError;
use crate::ssh::glob::{self, escape_glob};
use crate::ssh::transfer::{
    Problem, Sftp, list_problem, printable, remote_join, resolve_remote, session_failure,
    sftp_problem,
};

/// How the session runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShellOptions {
    /// `-b`: stop at the first failing command (exit 1) unless it starts with `-`.
    pub batch: bool,
    /// A person types the commands: print the `sftp> ` prompt and do not echo.
    pub interactive: bool,
    /// Progress bars for `get`/`put` on stderr (the caller checks for a terminal).
    pub progress: bool,
}

/// Runs commands from `input` until EOF or `exit`/`quit`/`bye`; `Ok` is the exit code.
/// `Err` only when the SFTP session is lost or `out`/`err` cannot be written.
pub async fn run<R, W, E>(
    sftp: &Sftp,
    input: R,
    opts: &ShellOptions,
    out: &mut W,
    err: &mut E,
) -> Result<u8, SshError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    run_striped(sftp, None, input, opts, out, err).await
}

/// [`run`], with `get`/`put` spread over several sessions when `striping` is given.
pub async fn run_striped<R, W, E>(
    sftp: &Sftp,
    striping: Option<&Striping<'_>>,
    mut input: R,
    opts: &ShellOptions,
    out: &mut W,
    err: &mut E,
) -> Result<u8, SshError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let home = sftp
        .canonicalize(".")
        .await
        .map_err(|e| session_failure(&e))?;
    let lcwd = std::env::current_dir()
        .map_err(|e| SshError::LocalIo(format!("cannot read the current directory: {e}")))?;
    let mut shell = Shell {
        sftp,
        cwd: home.clone(),
        home,
        lcwd,
        opts: *opts,
        striping,
    };
    let mut raw = Vec::new();
    loop {
        if opts.interactive {
            write(out, b"sftp> ").await?;
        }
        raw.clear();
        let n = input
            .read_until(b'\n', &mut raw)
            .await
            .map_err(|e| SshError::LocalIo(format!("cannot read commands: {e}")))?;
        if n == 0 {
            if opts.interactive {
                write(out, b"\n").await?;
            }
            return Ok(0);
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        let mut cmd = line.trim_start();
        if cmd.is_empty() || cmd.starts_with('#') {
            continue;
        }
        let (mut ignore_errors, mut quiet) = (false, false);
        loop {
            if let Some(rest) = cmd.strip_prefix('-') {
                ignore_errors = true;
                cmd = rest;
            } else if let Some(rest) = cmd.strip_prefix('@') {
                quiet = true;
                cmd = rest;
            } else {
                break;
            }
        }
        if !opts.interactive && !quiet {
            write(out, format!("sftp> {cmd}\n").as_bytes()).await?;
        }
        let result = match split_line(cmd) {
            Ok(args) if args.is_empty() => continue,
            Ok(args) => shell.dispatch(&args, out, err).await,
            Err(message) => Err(Problem::Item(SshError::Internal(message))),
        };
        match result {
            Ok(Flow::Continue) => {}
            Ok(Flow::Quit) => return Ok(0),
            Err(Problem::Fatal(f)) => return Err(f),
            Err(Problem::Item(e)) => {
                let message = crate::error::Failure::from(e).message;
                write(err, format!("{message}\n").as_bytes()).await?;
                if opts.batch && !ignore_errors {
                    return Ok(1);
                }
            }
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), SshError> {
    let result = async {
        w.write_all(bytes).await?;
        w.flush().await
    };
    result
        .await
        .map_err(|e| SshError::LocalIo(format!("cannot write output: {e}")))
}

/// One word of a command line: as typed, and as a glob pattern (what was quoted or
/// escaped is quoted for [`glob::remote_glob`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub pattern: String,
}

/// Splits a command line into words, OpenSSH sftp style.
pub fn split_line(line: &str) -> Result<Vec<Word>, String> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut word: Option<Word> = None;
    let mut quote = Quote::None;
    let mut chars = line.chars().peekable();
    fn push(word: &mut Option<Word>, c: char, literal: bool) {
        let w = word.get_or_insert_with(|| Word {
            text: String::new(),
            pattern: String::new(),
        });
        w.text.push(c);
        if literal && matches!(c, '*' | '?' | '[' | ']' | '\\') {
            w.pattern.push('\\');
        }
        w.pattern.push(c);
    }
    while let Some(c) = chars.next() {
        match (&quote, c) {
            (Quote::None, c) if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            (Quote::None, '\'') => {
                quote = Quote::Single;
                word.get_or_insert_with(|| Word {
                    text: String::new(),
                    pattern: String::new(),
                });
            }
            (Quote::None, '"') => {
                quote = Quote::Double;
                word.get_or_insert_with(|| Word {
                    text: String::new(),
                    pattern: String::new(),
                });
            }
            (Quote::Single, '\'') | (Quote::Double, '"') => quote = Quote::None,
            (Quote::None, '\\') => match chars.next() {
                Some(next) => push(&mut word, next, true),
                None => return Err("Trailing backslash".to_owned()),
            },
            (Quote::Single, '\\') if chars.peek() == Some(&'\'') => {
                chars.next();
                push(&mut word, '\'', true);
            }
            (Quote::Double, '\\') if matches!(chars.peek(), Some('"') | Some('\\')) => {
                let next = chars.next().unwrap_or('\\');
                push(&mut word, next, true);
            }
            (Quote::None, c) => push(&mut word, c, false),
            (_, c) => push(&mut word, c, true),
        }
    }
    if quote != Quote::None {
        return Err("Unterminated quoted argument".to_owned());
    }
    words.extend(word);
    Ok(words)
}

enum Flow {
    Continue,
    Quit,
}

type CmdResult = Result<Flow, Problem>;

fn fail(message: String) -> Problem {
    Problem::Item(SshError::RemoteFile(message))
}

fn local_fail(message: String) -> Problem {
    Problem::Item(SshError::LocalIo(message))
}

/// Splits leading `-xyz` flags from the operands; `allowed` lists the flag letters.
fn flags<'a>(cmd: &str, args: &'a [Word], allowed: &str) -> Result<(String, &'a [Word]), Problem> {
    let mut set = String::new();
    let mut i = 0;
    while let Some(w) = args.get(i) {
        if w.text == "--" {
            i += 1;
            break;
        }
        let Some(letters) = w.text.strip_prefix('-') else {
            break;
        };
        if letters.is_empty() {
            break;
        }
        for c in letters.chars() {
            if !allowed.contains(c) {
                return Err(fail(format!("{cmd}: unknown option -{c}")));
            }
            set.push(c);
        }
        i += 1;
    }
    Ok((set, &args[i..]))
}

fn operands<'a>(
    cmd: &str,
    args: &'a [Word],
    min: usize,
    max: usize,
) -> Result<&'a [Word], Problem> {
    if args.len() < min {
        return Err(fail(format!("{cmd}: missing argument (see help)")));
    }
    if args.len() > max {
        return Err(fail(format!("{cmd}: too many arguments (see help)")));
    }
    Ok(args)
}

mod commands;
mod transfers;
pub use transfers::Striping;

struct Shell<'a> {
    sftp: &'a Sftp,
    cwd: String,
    home: String,
    lcwd: PathBuf,
    opts: ShellOptions,
    /// `get`/`put` over several sessions (`sallyport sftp -j N`).
    striping: Option<&'a Striping<'a>>,
}

impl Shell<'_> {
    /// A remote word as an absolute path (no globbing).
    async fn remote(&self, word: &Word) -> Result<String, Problem> {
        resolve_remote(self.sftp, &self.cwd, &word.text, false).await
    }

    /// A remote word's glob matches, as absolute paths (the word itself if none).
    async fn remote_matches(&self, word: &Word) -> Result<Vec<String>, Problem> {
        let pattern = resolve_remote(self.sftp, &self.cwd, &word.pattern, true).await?;
        glob::remote_glob(self.sftp, &pattern)
            .await
            .map(|g| g.paths)
            .map_err(|e| list_problem(&word.text, &e))
    }

    fn local(&self, text: &str) -> PathBuf {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        match (text, text.strip_prefix("~/"), home) {
            ("~", _, Some(home)) => home,
            (_, Some(rest), Some(home)) => home.join(rest),
            _ => self.lcwd.join(text),
        }
    }

    async fn cd(&mut self, word: Option<&Word>) -> Result<(), Problem> {
        let path = match word {
            Some(w) => self.remote(w).await?,
            None => self.home.clone(),
        };
        let canonical = self
            .sftp
            .canonicalize(path.as_str())
            .await
            .map_err(|e| in_cmd("cd", sftp_problem(&path, &e)))?;
        let attrs = self
            .sftp
            .metadata(canonical.as_str())
            .await
            .map_err(|e| in_cmd("cd", sftp_problem(&canonical, &e)))?;
        if !attrs.is_dir() {
            return Err(fail(format!(
                "cd: {}: not a directory",
                printable(&canonical)
            )));
        }
        self.cwd = canonical;
        Ok(())
    }

    fn lcd(&mut self, word: Option<&Word>) -> Result<(), Problem> {
        let path = match word {
            Some(w) => self.local(&w.text),
            None => self.local("~"),
        };
        let shown = printable(&path.to_string_lossy()).into_owned();
        let canonical = path
            .canonicalize()
            .map_err(|e| local_fail(format!("lcd: {shown}: {e}")))?;
        if !canonical.is_dir() {
            return Err(local_fail(format!("lcd: {shown}: not a directory")));
        }
        self.lcwd = canonical;
        Ok(())
    }

    /// How a path is shown: relative to the working directory when under it.
    fn shown(&self, path: &str) -> String {
        let prefix = if self.cwd.ends_with('/') {
            self.cwd.clone()
        } else {
            format!("{}/", self.cwd)
        };
        printable(path.strip_prefix(&prefix).unwrap_or(path)).into_owned()
    }

    async fn ls(&self, word: Option<&Word>, long: bool, all: bool) -> Result<String, Problem> {
        let mut text = String::new();
        let targets = match word {
            Some(w) => self.remote_matches(w).await?,
            None => vec![self.cwd.clone()],
        };
        let several = targets.len() > 1;
        for target in targets {
            let attrs = self
                .sftp
                .metadata(target.as_str())
                .await
                .map_err(|e| in_cmd("ls", sftp_problem(&target, &e)))?;
            // The prefix names are shown with: none for the working directory.
            let prefix = match word {
                None => String::new(),
                Some(_) => self.shown(&target),
            };
            if several || !attrs.is_dir() {
                text.push_str(&entry_line(&prefix, &attrs, long));
                continue;
            }
            let entries = self
                .sftp
                .list(&target)
                .await
                .map_err(|e| in_cmd("ls", list_problem(&target, &e)))?;
            let mut entries: Vec<(String, FileAttributes)> = entries
                .into_iter()
                .filter(|(n, _)| all || !n.starts_with('.'))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, attrs) in entries {
                let shown = if prefix.is_empty() {
                    printable(&name).into_owned()
                } else {
                    remote_join(&prefix, &printable(&name))
                };
                text.push_str(&entry_line(&shown, &attrs, long));
            }
        }
        Ok(text)
    }

    fn lls(&self, word: Option<&Word>, long: bool, all: bool) -> Result<String, Problem> {
        let dir = match word {
            Some(w) => self.local(&w.text),
            None => self.lcwd.clone(),
        };
        let shown = printable(&dir.to_string_lossy()).into_owned();
        let meta = std::fs::metadata(&dir).map_err(|e| local_fail(format!("lls: {shown}: {e}")))?;
        if !meta.is_dir() {
            let name = word.map_or(shown.clone(), |w| printable(&w.text).into_owned());
            return Ok(entry_line(&name, &local_attrs(&meta), long));
        }
        let rd = std::fs::read_dir(&dir).map_err(|e| local_fail(format!("lls: {shown}: {e}")))?;
        let mut entries: Vec<(String, FileAttributes)> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let meta = std::fs::symlink_metadata(e.path()).ok()?;
                Some((name, local_attrs(&meta)))
            })
            .filter(|(n, _)| all || !n.starts_with('.'))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries
            .iter()
            .map(|(n, a)| entry_line(&printable(n), a, long))
            .collect())
    }
}

/// Prefixes an item problem's message with the command's name.
fn in_cmd(cmd: &str, p: Problem) -> Problem {
    match p {
        Problem::Item(e) => Problem::Item(SshError::InCommand {
            cmd: cmd.to_owned(),
            source: Box::new(e),
        }),
        fatal => fatal,
    }
}

fn path_string(path: &Path) -> Result<String, Problem> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        local_fail(format!(
            "{}: the path is not UTF-8",
            printable(&path.to_string_lossy())
        ))
    })
}

fn local_attrs(meta: &std::fs::Metadata) -> FileAttributes {
    use std::os::unix::fs::MetadataExt;
    FileAttributes {
        size: Some(meta.len()),
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        permissions: Some(meta.mode()),
        atime: u32::try_from(meta.atime()).ok(),
        mtime: u32::try_from(meta.mtime()).ok(),
        ..FileAttributes::default()
    }
}

fn entry_line(name: &str, attrs: &FileAttributes, long: bool) -> String {
    if !long {
        return format!("{name}\n");
    }
    format!(
        "{} {:<8} {:<8} {:>12} {} {name}\n",
        mode_string(attrs),
        attrs.uid.map_or("?".to_owned(), |u| u.to_string()),
        attrs.gid.map_or("?".to_owned(), |g| g.to_string()),
        attrs.size.unwrap_or(0),
        attrs
            .mtime
            .map_or("?".to_owned(), |t| date_string(i64::from(t))),
    )
}

/// `ls -l`'s mode column, e.g. `drwxr-x---`.
pub fn mode_string(attrs: &FileAttributes) -> String {
    let mode = attrs.permissions.unwrap_or(0);
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => match attrs.file_type() {
            FileType::Dir => 'd',
            FileType::Symlink => 'l',
            _ => '-',
        },
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 0o7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let exec = bits & 1 != 0;
        s.push(match (mode & special != 0, exec) {
            (true, true) => special_char,
            (true, false) => special_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `YYYY-MM-DD HH:MM` in UTC (`?` past year 9999).
pub fn date_string(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "?".to_owned(),
    }
}

#[cfg(test)]
#[path = "sftp_shell_tests.rs"]
mod tests;
