use std::path::Path;

use crate::ssh::transfer::sftp_config;
use crate::ssh::transfer::test_fixture::{self as fx, LIMIT, TempDir, mode_of, write_file};

use super::*;

struct Ran {
    code: Result<u8, SshError>,
    out: String,
    err: String,
}

async fn shell(sftp: &crate::ssh::transfer::Sftp, script: &str, opts: ShellOptions) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = tokio::time::timeout(
        LIMIT,
        run(sftp, script.as_bytes(), &opts, &mut out, &mut err),
    )
    .await
    .expect("sftp shell timed out");
    Ran {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

const BATCH: ShellOptions = ShellOptions {
    batch: true,
    interactive: false,
    progress: false,
};

fn lcd(dir: &Path) -> String {
    format!("lcd \"{}\"\n", dir.to_str().unwrap())
}

macro_rules! server {
    ($dir:expr) => {
        match fx::start($dir, sftp_config(), None).await {
            Some(s) => s,
            None => return,
        }
    };
}

#[tokio::test]
async fn batch_file_round_trip() {
    let local = TempDir::new("sh-local");
    let remote = TempDir::new("sh-remote");
    let server = server!(remote.path());
    write_file(&local.path().join("a file.txt"), b"spaces", 0o750);
    write_file(&local.path().join("é 日本.txt"), b"unicode", 0o600);
    std::fs::create_dir(local.path().join("down")).unwrap();
    std::fs::create_dir(local.path().join("tree")).unwrap();
    write_file(&local.path().join("tree/inner"), b"inner", 0o644);

    let script = format!(
        "{}\
# a comment, then a blank line

mkdir up
cd up
pwd
put \"a file.txt\"
put -p 'é 日本.txt' later
rename later \"final name\"
put -r tree
ls
ls -l \"final name\"
lcd down
lpwd
get \"final name\"
get a\\ file.txt copy.txt
get -r tree
chmod 640 \"final name\"
rm \"a file.txt\"
rm tree/*
rmdir tree
rm \"final name\"
cd ..
rmdir up
bye
mkdir never
",
        lcd(local.path())
    );
    let ran = shell(&server.sftp, &script, BATCH).await;
    assert_eq!(
        ran.code.expect("runs"),
        0,
        "out:\n{}\nerr:\n{}",
        ran.out,
        ran.err
    );
    assert_eq!(ran.err, "");
    let up = remote.remote("up");
    for expected in [
        "sftp> mkdir up\n",
        "sftp> put \"a file.txt\"\n",
        &format!("Remote working directory: {up}\n"),
        &format!(
            "Uploading {}/a file.txt to {up}/a file.txt\n",
            local.path().display()
        ),
        "sftp> ls\na file.txt\nfinal name\ntree\n",
        &format!("Local working directory: {}/down\n", local.path().display()),
        &format!(
            "Fetching {up}/final name to {}/down/final name\n",
            local.path().display()
        ),
        &format!("Removing {up}/a file.txt\n"),
        &format!("Removing {up}/tree/inner\n"),
        "sftp> bye\n",
    ] {
        assert!(
            ran.out.contains(expected),
            "{expected:?} not in:\n{}",
            ran.out
        );
    }
    assert!(!ran.out.contains("never"));
    // `ls -l`: mode, uid, gid, size, UTC time, name.
    let long = ran
        .out
        .lines()
        .find(|l| l.ends_with(" final name") && l.starts_with('-'))
        .expect("ls -l line");
    assert!(long.starts_with("-rw------- "), "{long}");
    assert!(long.contains(" 7 "), "{long}");

    let down = local.path().join("down");
    assert_eq!(std::fs::read(down.join("final name")).unwrap(), b"unicode");
    assert_eq!(mode_of(&down.join("final name")), 0o600);
    assert_eq!(std::fs::read(down.join("copy.txt")).unwrap(), b"spaces");
    assert_eq!(std::fs::read(down.join("tree/inner")).unwrap(), b"inner");
    assert!(!remote.path().join("up").exists(), "cleaned up remotely");
    assert!(!remote.path().join("never").exists());
}

#[tokio::test]
async fn batch_stops_at_the_first_failure_unless_dashed() {
    let remote = TempDir::new("sh-abort");
    let server = server!(remote.path());
    let ran = shell(&server.sftp, "mkdir a\nrmdir missing\nmkdir b\n", BATCH).await;
    assert_eq!(ran.code.expect("runs"), 1);
    assert!(remote.path().join("a").is_dir());
    assert!(!remote.path().join("b").exists());
    assert!(ran.err.starts_with("rmdir: "), "{}", ran.err);
    assert!(ran.err.ends_with("missing: No such file\n"), "{}", ran.err);
    assert!(ran.out.ends_with("sftp> rmdir missing\n"), "{}", ran.out);

    let ran = shell(
        &server.sftp,
        "-rmdir missing\n@mkdir b\nbogus\nmkdir c\n",
        BATCH,
    )
    .await;
    assert_eq!(ran.code.expect("runs"), 1);
    assert!(remote.path().join("b").is_dir());
    assert!(!remote.path().join("c").exists());
    assert!(
        !ran.out.contains("mkdir b"),
        "@ suppresses the echo: {}",
        ran.out
    );
    assert!(ran.err.contains("bogus: invalid command"), "{}", ran.err);

    // Not batch: report and go on; prompts instead of echoes.
    let opts = ShellOptions {
        batch: false,
        interactive: true,
        progress: false,
    };
    let ran = shell(&server.sftp, "rmdir missing\nget\nmkdir c\n", opts).await;
    assert_eq!(ran.code.expect("runs"), 0);
    assert!(remote.path().join("c").is_dir());
    assert_eq!(ran.out, "sftp> sftp> sftp> sftp> \n");
    assert_eq!(ran.err.lines().count(), 2, "{}", ran.err);
}

#[tokio::test]
async fn quoted_names_and_globs() {
    let local = TempDir::new("sh-q-local");
    let remote = TempDir::new("sh-q-remote");
    let server = server!(remote.path());
    for name in ["one two", "it's", "star*", "x.txt", "y.txt"] {
        write_file(&remote.path().join(name), name.as_bytes(), 0o644);
    }
    let script = format!(
        "{}get \"one two\"\nget 'it\\'s'\nget it\\'s its\nget \"star*\"\nget *.txt\nls -1 *.txt\n",
        lcd(local.path())
    );
    let ran = shell(&server.sftp, &script, BATCH).await;
    assert_eq!(ran.code.expect("runs"), 0, "{}\n{}", ran.out, ran.err);
    for name in ["one two", "it's", "its", "star*", "x.txt", "y.txt"] {
        assert!(local.path().join(name).is_file(), "{name}");
    }
    assert!(
        ran.out.contains("sftp> ls -1 *.txt\nx.txt\ny.txt\n"),
        "{}",
        ran.out
    );
    // A quoted '*' is literal: only "star*" was fetched by that command.
    assert!(
        ran.out.contains("sftp> get \"star*\"\nFetching"),
        "{}",
        ran.out
    );
    assert_eq!(ran.out.matches("star*").count(), 3, "{}", ran.out);
}

#[test]
fn lines_split_like_openssh_sftp() {
    let words = |line: &str| -> Vec<String> {
        split_line(line)
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    };
    assert_eq!(words("  get  a   b "), ["get", "a", "b"]);
    assert_eq!(words(r#"put "a b" 'c d'"#), ["put", "a b", "c d"]);
    assert_eq!(words(r"put a\ b c\\d"), ["put", "a b", r"c\d"]);
    assert_eq!(
        words(r#"x "say \"hi\"" 'it\'s' "a\b""#),
        ["x", r#"say "hi""#, "it's", r"a\b"]
    );
    assert_eq!(words(r#"x "" ''"#), ["x", "", ""]);
    assert_eq!(words(r#"x a"b c"d"#), ["x", "ab cd"]);
    assert_eq!(words("x 'é 日本'"), ["x", "é 日本"]);
    assert_eq!(
        split_line("x \"open").unwrap_err(),
        "Unterminated quoted argument"
    );
    assert_eq!(split_line("x a\\").unwrap_err(), "Trailing backslash");
    let w = &split_line(r#"get "a*" b* c\*"#).unwrap()[1..];
    assert_eq!(
        w.iter().map(|w| w.pattern.as_str()).collect::<Vec<_>>(),
        [r"a\*", "b*", r"c\*"]
    );
}

#[test]
fn long_listing_columns() {
    let attrs = |mode| FileAttributes {
        permissions: Some(mode),
        ..FileAttributes::default()
    };
    assert_eq!(mode_string(&attrs(0o100750)), "-rwxr-x---");
    assert_eq!(mode_string(&attrs(0o040700)), "drwx------");
    assert_eq!(mode_string(&attrs(0o120777)), "lrwxrwxrwx");
    assert_eq!(mode_string(&attrs(0o104755)), "-rwsr-xr-x");
    assert_eq!(mode_string(&attrs(0o041777)), "drwxrwxrwt");
    assert_eq!(mode_string(&attrs(0o102644)), "-rw-r-Sr--");
    assert_eq!(date_string(0), "1970-01-01 00:00");
    assert_eq!(date_string(1_000_000_000), "2001-09-09 01:46");
    assert_eq!(date_string(951_782_400), "2000-02-29 00:00");
}
