use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::test_fixture::{
    self as fx, LIMIT, TempDir, local_umask, make_dir, mode_of, pseudo_random, write_file,
};
use super::*;
use crate::error::{ExitCode, Failure};

fn plan(direction: Direction, sources: &[&str], destination: &str) -> CopyPlan {
    CopyPlan {
        direction,
        sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        destination: destination.to_owned(),
    }
}

fn opts(recursive: bool, preserve: bool) -> CopyOptions {
    CopyOptions {
        recursive,
        preserve,
        progress: false,
    }
}

/// Runs a copy with a bounded time, collecting the per-file reports.
async fn run(
    sftp: &Sftp,
    plan: &CopyPlan,
    opts: &CopyOptions,
) -> (Result<CopyStats, SshError>, Vec<String>) {
    let mut reports = Vec::new();
    let mut report = |f: &SshError| reports.push(f.to_string());
    let result = tokio::time::timeout(LIMIT, copy_reporting(sftp, plan, opts, &mut report))
        .await
        .expect("copy timed out");
    (result, reports)
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("read")).to_vec()
}

macro_rules! server {
    ($dir:expr) => {
        match fx::start($dir, sftp_config(), None).await {
            Some(s) => s,
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_megabytes_up_and_down_keep_their_sha256() {
    let local = TempDir::new("big-local");
    let remote = TempDir::new("big-remote");
    let server = server!(remote.path());
    let data = pseudo_random(20 * 1024 * 1024 + 12345, 7);
    let src = local.path().join("big.bin");
    write_file(&src, &data, 0o644);

    let up = plan(
        Direction::Upload,
        &[src.to_str().unwrap()],
        &remote.remote(""),
    );
    let (result, reports) = run(&server.sftp, &up, &opts(false, false)).await;
    let stats = result.expect("upload");
    assert!(reports.is_empty(), "{reports:?}");
    assert_eq!(stats.files, 1);
    assert_eq!(stats.bytes, data.len() as u64);
    assert_eq!(sha256(&remote.path().join("big.bin")), sha256(&src));

    let back = local.path().join("back.bin");
    let down = plan(
        Direction::Download,
        &[&remote.remote("big.bin")],
        back.to_str().unwrap(),
    );
    let (result, reports) = run(&server.sftp, &down, &opts(false, false)).await;
    assert_eq!(result.expect("download").bytes, data.len() as u64);
    assert!(reports.is_empty(), "{reports:?}");
    assert_eq!(sha256(&back), sha256(&src));
}

/// The odd tree both trees are built like: names with spaces, unicode, a leading dash and
/// a newline, an empty 0700 directory, files 0750 and 0600, a nested directory.
fn build_tree(root: &Path) {
    make_dir(root, 0o755);
    write_file(&root.join("a file with spaces.txt"), b"spaces\n", 0o750);
    write_file(&root.join("é 日本.txt"), "unicode ✓\n".as_bytes(), 0o600);
    write_file(&root.join("-leading-dash"), b"dash\n", 0o644);
    write_file(&root.join("new\nline"), b"newline\n", 0o640);
    write_file(&root.join("empty"), b"", 0o644);
    make_dir(&root.join("empty dir"), 0o700);
    make_dir(&root.join("sub"), 0o755);
    make_dir(&root.join("sub/deeper é"), 0o750);
    write_file(
        &root.join("sub/deeper é/x"),
        &pseudo_random(100_000, 3),
        0o644,
    );
}

/// Checks `copy` against `original`: same entries, contents and permission bits (minus
/// `umask`); with `mtimes`, the same mtimes.
fn assert_same_tree(original: &Path, copy: &Path, umask: u32, mtimes: bool) {
    let mut names: Vec<_> = std::fs::read_dir(original)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut copied: Vec<_> = std::fs::read_dir(copy)
        .unwrap_or_else(|e| panic!("{}: {e}", copy.display()))
        .map(|e| e.unwrap().file_name())
        .collect();
    copied.sort();
    assert_eq!(names, copied, "entries of {}", copy.display());
    for name in names {
        let (a, b) = (original.join(&name), copy.join(&name));
        let (ma, mb) = (
            std::fs::metadata(&a).unwrap(),
            std::fs::metadata(&b).unwrap(),
        );
        assert_eq!(ma.is_dir(), mb.is_dir(), "{}", b.display());
        assert_eq!(mode_of(&b), mode_of(&a) & !umask, "mode of {}", b.display());
        if mtimes {
            assert_eq!(mb.mtime(), ma.mtime(), "mtime of {}", b.display());
        }
        if ma.is_dir() {
            assert_same_tree(&a, &b, umask, mtimes);
        } else {
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{}",
                b.display()
            );
        }
    }
}

fn set_mtimes(root: &Path, secs: u64) {
    let when = UNIX_EPOCH + Duration::from_secs(secs);
    let times = std::fs::FileTimes::new()
        .set_accessed(when)
        .set_modified(when);
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            set_mtimes(&path, secs + 1);
        }
        std::fs::File::open(&path)
            .unwrap()
            .set_times(times)
            .unwrap();
    }
    std::fs::File::open(root).unwrap().set_times(times).unwrap();
}

#[tokio::test]
async fn recursive_tree_with_odd_names_round_trips_with_modes() {
    let local = TempDir::new("tree-local");
    let remote = TempDir::new("tree-remote");
    let server = server!(remote.path());
    let src = local.path().join("tree");
    build_tree(&src);

    // Upload into an existing directory: the tree lands inside it, 022 from sftp-server.
    // (Progress on: indicatif draws nothing when stderr is not a terminal.)
    let up = plan(
        Direction::Upload,
        &[src.to_str().unwrap()],
        &remote.remote(""),
    );
    let with_progress = CopyOptions {
        progress: true,
        ..opts(true, false)
    };
    let (result, reports) = run(&server.sftp, &up, &with_progress).await;
    let stats = result.unwrap_or_else(|f| panic!("{f}: {reports:?}"));
    assert_eq!((stats.files, stats.dirs), (6, 4));
    assert_same_tree(&src, &remote.path().join("tree"), 0o022, false);
    assert_eq!(
        mode_of(&remote.path().join("tree/a file with spaces.txt")),
        0o750
    );
    assert_eq!(mode_of(&remote.path().join("tree/é 日本.txt")), 0o600);
    assert_eq!(mode_of(&remote.path().join("tree/empty dir")), 0o700);

    // Download to a new name: the tree becomes that directory.
    let back = local.path().join("back");
    let down = plan(
        Direction::Download,
        &[&remote.remote("tree")],
        back.to_str().unwrap(),
    );
    let (result, reports) = run(&server.sftp, &down, &opts(true, false)).await;
    result.unwrap_or_else(|f| panic!("{f}: {reports:?}"));
    let umask = local_umask(local.path());
    assert_same_tree(&src, &back, umask | 0o022, false);
    assert_eq!(
        mode_of(&back.join("a file with spaces.txt")),
        0o750 & !umask
    );
    assert_eq!(mode_of(&back.join("é 日本.txt")), 0o600 & !umask);
    assert_eq!(mode_of(&back.join("empty dir")), 0o700 & !umask);
}

#[tokio::test]
async fn preserve_copies_modes_and_mtimes_both_ways() {
    let local = TempDir::new("p-local");
    let remote = TempDir::new("p-remote");
    let server = server!(remote.path());
    let src = local.path().join("tree");
    build_tree(&src);
    // Bits a umask would take, to see that -p sets modes exactly.
    write_file(&src.join("group-writable"), b"g+w\n", 0o664);
    set_mtimes(&src, 1_000_000_000);

    let up = plan(
        Direction::Upload,
        &[src.to_str().unwrap()],
        &remote.remote("copy"),
    );
    let (result, reports) = run(&server.sftp, &up, &opts(true, true)).await;
    result.unwrap_or_else(|f| panic!("{f}: {reports:?}"));
    assert_same_tree(&src, &remote.path().join("copy"), 0, true);
    assert_eq!(
        std::fs::metadata(remote.path().join("copy"))
            .unwrap()
            .mtime(),
        1_000_000_000
    );

    let back = local.path().join("back");
    let down = plan(
        Direction::Download,
        &[&remote.remote("copy")],
        back.to_str().unwrap(),
    );
    let (result, reports) = run(&server.sftp, &down, &opts(true, true)).await;
    result.unwrap_or_else(|f| panic!("{f}: {reports:?}"));
    assert_same_tree(&src, &back, 0, true);
    assert_eq!(std::fs::metadata(&back).unwrap().mtime(), 1_000_000_000);
    assert_eq!(mode_of(&back.join("group-writable")), 0o664);
}

#[tokio::test]
async fn single_files_keep_permission_bits_without_p() {
    let local = TempDir::new("m-local");
    let remote = TempDir::new("m-remote");
    let server = server!(remote.path());
    let umask = local_umask(local.path());
    for (name, mode) in [("x0750", 0o750), ("x0600", 0o600), ("x0400", 0o400)] {
        let src = local.path().join(name);
        write_file(&src, name.as_bytes(), mode);
        let up = plan(
            Direction::Upload,
            &[src.to_str().unwrap()],
            &remote.remote(""),
        );
        run(&server.sftp, &up, &opts(false, false))
            .await
            .0
            .expect("upload");
        assert_eq!(mode_of(&remote.path().join(name)), mode, "{name} up");
        let back = local.path().join(format!("{name}.back"));
        let down = plan(
            Direction::Download,
            &[&remote.remote(name)],
            back.to_str().unwrap(),
        );
        run(&server.sftp, &down, &opts(false, false))
            .await
            .0
            .expect("download");
        // The receiver keeps the file owner-writable while creating it (as OpenSSH does).
        assert_eq!(mode_of(&back), (mode | 0o200) & !umask, "{name} down");
    }
    // An existing destination file is truncated and keeps its mode.
    let src = local.path().join("x0750");
    write_file(&remote.path().join("existing"), &[b'z'; 1000], 0o640);
    let up = plan(
        Direction::Upload,
        &[src.to_str().unwrap()],
        &remote.remote("existing"),
    );
    run(&server.sftp, &up, &opts(false, false))
        .await
        .0
        .expect("upload");
    assert_eq!(
        std::fs::read(remote.path().join("existing")).unwrap(),
        b"x0750"
    );
    assert_eq!(mode_of(&remote.path().join("existing")), 0o640);
}

/// A copy with problems of several kinds exits with the first one's: a local directory
/// without -r (local), then a file the server cannot write (a directory is in the way).
#[tokio::test]
async fn the_first_problem_decides_the_exit_code() {
    let local = TempDir::new("k-local");
    let remote = TempDir::new("k-remote");
    let server = server!(remote.path());
    make_dir(&local.path().join("dir"), 0o755);
    write_file(&local.path().join("b"), b"b", 0o644);
    make_dir(&remote.path().join("b"), 0o755);
    let sources: Vec<String> = ["dir", "b"]
        .iter()
        .map(|n| local.path().join(n).to_str().unwrap().to_owned())
        .collect();
    let up = CopyPlan {
        direction: Direction::Upload,
        sources,
        destination: remote.remote(""),
    };
    let (result, reports) = run(&server.sftp, &up, &opts(false, false)).await;
    assert_eq!(reports.len(), 2, "{reports:?}");
    let failure = Failure::from(result.expect_err("fails"));
    assert_eq!(failure.code, ExitCode::LocalIo, "{reports:?}");
    assert_eq!(
        failure.message,
        "2 files or directories could not be copied"
    );
}

#[tokio::test]
async fn directory_without_r_is_reported_and_the_others_still_copy() {
    let local = TempDir::new("r-local");
    let remote = TempDir::new("r-remote");
    let server = server!(remote.path());
    make_dir(&local.path().join("dir"), 0o755);
    write_file(&local.path().join("a"), b"a", 0o644);
    write_file(&local.path().join("b"), b"b", 0o644);
    let sources: Vec<String> = ["a", "dir", "b"]
        .iter()
        .map(|n| local.path().join(n).to_str().unwrap().to_owned())
        .collect();
    let up = CopyPlan {
        direction: Direction::Upload,
        sources,
        destination: remote.remote(""),
    };
    let (result, reports) = run(&server.sftp, &up, &opts(false, false)).await;
    let failure = Failure::from(result.expect_err("a directory without -r fails the copy"));
    assert_eq!(failure.message, "1 file or directory could not be copied");
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0].ends_with("dir: is a directory (use -r)"),
        "{reports:?}"
    );
    assert!(remote.path().join("a").is_file() && remote.path().join("b").is_file());
    assert!(!remote.path().join("dir").exists());

    // The same on download, with a missing file as a second problem.
    make_dir(&remote.path().join("rdir"), 0o755);
    let dest = local.path().join("down");
    make_dir(&dest, 0o755);
    let down = plan(
        Direction::Download,
        &[
            &remote.remote("a"),
            &remote.remote("rdir"),
            &remote.remote("missing"),
            &remote.remote("b"),
        ],
        dest.to_str().unwrap(),
    );
    let (result, reports) = run(&server.sftp, &down, &opts(false, false)).await;
    let failure = Failure::from(result.expect_err("fails"));
    assert_eq!(failure.code, ExitCode::RemoteFile);
    assert_eq!(
        failure.message,
        "2 files or directories could not be copied"
    );
    assert!(
        reports[0].ends_with("rdir: is a directory (use -r)"),
        "{reports:?}"
    );
    assert!(reports[1].ends_with("missing: No such file"), "{reports:?}");
    assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"a");
    assert_eq!(std::fs::read(dest.join("b")).unwrap(), b"b");
}

#[tokio::test]
async fn several_sources_need_a_directory_destination() {
    let local = TempDir::new("s-local");
    let remote = TempDir::new("s-remote");
    let server = server!(remote.path());
    write_file(&local.path().join("a"), b"a", 0o644);
    write_file(&local.path().join("b"), b"b", 0o644);
    let a = local.path().join("a");
    let b = local.path().join("b");
    let up = plan(
        Direction::Upload,
        &[a.to_str().unwrap(), b.to_str().unwrap()],
        &remote.remote("nodir"),
    );
    let (result, _) = run(&server.sftp, &up, &opts(false, false)).await;
    assert!(
        result
            .expect_err("fails")
            .to_string()
            .contains("not a directory")
    );
    assert!(!remote.path().join("nodir").exists());

    write_file(&remote.path().join("c"), b"c", 0o644);
    let down = plan(
        Direction::Download,
        &[&remote.remote("c"), &remote.remote("c")],
        a.to_str().unwrap(),
    );
    let (result, _) = run(&server.sftp, &down, &opts(false, false)).await;
    assert_eq!(
        Failure::from(result.expect_err("fails")).code,
        ExitCode::LocalIo
    );
    assert_eq!(std::fs::read(&a).unwrap(), b"a");
}

#[tokio::test]
async fn empty_and_tilde_remote_paths_are_the_start_directory() {
    let local = TempDir::new("t-local");
    let remote = TempDir::new("t-remote");
    let server = server!(remote.path());
    let src = local.path().join("f");
    write_file(&src, b"f", 0o644);
    make_dir(&remote.path().join("sub"), 0o755);
    for (dest, landed) in [
        ("", "f"),
        ("~", "f"),
        ("~/", "f"),
        ("sub", "sub/f"),
        ("~/sub/g", "sub/g"),
        ("h", "h"),
    ] {
        let up = plan(Direction::Upload, &[src.to_str().unwrap()], dest);
        run(&server.sftp, &up, &opts(false, false))
            .await
            .0
            .expect(dest);
        assert!(remote.path().join(landed).is_file(), "{dest:?} -> {landed}");
        std::fs::remove_file(remote.path().join(landed)).unwrap();
    }
    // Download: relative remote sources, and a glob.
    for name in ["x.txt", "y.txt", "z.log"] {
        write_file(
            &remote.path().join("sub").join(name),
            name.as_bytes(),
            0o644,
        );
    }
    let down = plan(
        Direction::Download,
        &["sub/*.txt"],
        local.path().to_str().unwrap(),
    );
    let (result, reports) = run(&server.sftp, &down, &opts(false, false)).await;
    assert_eq!(result.expect("glob").files, 2, "{reports:?}");
    assert!(local.path().join("x.txt").is_file() && local.path().join("y.txt").is_file());
    assert!(!local.path().join("z.log").exists());
    // A quoted wildcard is a plain name.
    write_file(&remote.path().join("star*"), b"*", 0o644);
    let down = plan(
        Direction::Download,
        &["~/star\\*"],
        local.path().to_str().unwrap(),
    );
    run(&server.sftp, &down, &opts(false, false))
        .await
        .0
        .expect("quoted");
    assert_eq!(std::fs::read(local.path().join("star*")).unwrap(), b"*");
}

#[tokio::test]
async fn symlinks_are_followed_and_loops_skipped() {
    let local = TempDir::new("l-local");
    let remote = TempDir::new("l-remote");
    let server = server!(remote.path());
    let src = local.path().join("tree");
    make_dir(&src, 0o755);
    write_file(&src.join("real"), b"real", 0o644);
    std::os::unix::fs::symlink("real", src.join("link")).unwrap();
    make_dir(&src.join("d"), 0o755);
    write_file(&src.join("d/inner"), b"inner", 0o644);
    std::os::unix::fs::symlink("../d", src.join("d/loop")).unwrap();
    std::os::unix::fs::symlink("d", src.join("dlink")).unwrap();

    let up = plan(
        Direction::Upload,
        &[src.to_str().unwrap()],
        &remote.remote("up"),
    );
    let (result, reports) = run(&server.sftp, &up, &opts(true, false)).await;
    assert!(result.is_err());
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(
        reports.iter().all(|r| r.contains("directory loop")),
        "{reports:?}"
    );
    let up_root = remote.path().join("up");
    assert!(
        std::fs::symlink_metadata(up_root.join("link"))
            .unwrap()
            .is_file()
    );
    assert_eq!(std::fs::read(up_root.join("link")).unwrap(), b"real");
    assert_eq!(
        std::fs::read(up_root.join("dlink/inner")).unwrap(),
        b"inner"
    );

    // Remote symlinks (the same tree, now on the server side).
    let down_src = remote.path().join("tree");
    std::fs::rename(&src, &down_src).unwrap();
    let back = local.path().join("back");
    let down = plan(
        Direction::Download,
        &[&remote.remote("tree")],
        back.to_str().unwrap(),
    );
    let (result, reports) = run(&server.sftp, &down, &opts(true, false)).await;
    assert!(result.is_err());
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(
        reports.iter().all(|r| r.contains("directory loop")),
        "{reports:?}"
    );
    assert!(
        std::fs::symlink_metadata(back.join("link"))
            .unwrap()
            .is_file()
    );
    assert_eq!(std::fs::read(back.join("dlink/inner")).unwrap(), b"inner");
}

/// `root` and `levels - 1` directories `d` below it, each holding a file `f`.
fn chain(root: &Path, levels: usize) -> std::path::PathBuf {
    let mut dir = root.to_owned();
    for level in 0..levels {
        if level > 0 {
            dir = dir.join("d");
        }
        make_dir(&dir, 0o755);
        write_file(&dir.join("f"), b"f", 0o644);
    }
    dir
}

#[tokio::test]
async fn a_remote_walk_descends_64_levels_and_no_deeper() {
    let local = TempDir::new("deep-local");
    let remote = TempDir::new("deep-remote");
    let server = server!(remote.path());
    let deepest = chain(&remote.path().join("deep"), MAX_DIR_DEPTH);
    let down = plan(
        Direction::Download,
        &[&remote.remote("deep")],
        local.path().join("a").to_str().unwrap(),
    );
    let (result, reports) = run(&server.sftp, &down, &opts(true, false)).await;
    assert!(result.is_ok(), "{result:?} {reports:?}");
    let rel = deepest.strip_prefix(remote.path().join("deep")).unwrap();
    assert_eq!(
        std::fs::read(local.path().join("a").join(rel).join("f")).unwrap(),
        b"f"
    );

    // One level more: reported by name, and the walk of that tree ends there.
    make_dir(&deepest.join("d"), 0o755);
    let down = plan(
        Direction::Download,
        &[&remote.remote("deep")],
        local.path().join("b").to_str().unwrap(),
    );
    let (result, reports) = run(&server.sftp, &down, &opts(true, false)).await;
    assert_eq!(
        Failure::from(result.expect_err("too deep")).code,
        ExitCode::RemoteFile
    );
    assert_eq!(reports.len(), 1, "{reports:?}");
    let too_deep = remote.remote("deep") + &"/d".repeat(MAX_DIR_DEPTH);
    assert_eq!(
        reports[0],
        format!(
            "{too_deep}: maximum directory depth of 64 exceeded; the rest of the tree is not \
             copied"
        )
    );
    let made = local.path().join("b").join(rel);
    assert!(made.is_dir() && !made.join("d").exists());
}

#[tokio::test]
async fn a_lost_session_ends_the_copy_at_once() {
    let local = TempDir::new("lost-local");
    let remote = TempDir::new("lost-remote");
    let mut server = server!(remote.path());
    let src = local.path().join("f");
    write_file(&src, &pseudo_random(1 << 20, 5), 0o644);
    server.kill().await;
    let up = plan(
        Direction::Upload,
        &[src.to_str().unwrap(), src.to_str().unwrap()],
        &remote.remote(""),
    );
    let (result, reports) = run(&server.sftp, &up, &opts(false, false)).await;
    let failure = Failure::from(result.expect_err("no session"));
    assert_eq!(failure.code, ExitCode::Protocol);
    assert!(
        failure.message.starts_with("the SFTP session failed"),
        "{}",
        failure.message
    );
    assert!(reports.is_empty(), "{reports:?}");
}

#[test]
fn remote_paths_join_with_one_slash() {
    assert_eq!(remote_join("/a", "b"), "/a/b");
    assert_eq!(remote_join("/a/", "b c"), "/a/b c");
    assert_eq!(remote_join("/", "b"), "/b");
    assert_eq!(remote_join("/a", "/abs"), "/abs");
    assert_eq!(remote_join("/a", ""), "/a");
    assert_eq!(remote_basename("/a/b/"), Some("b"));
    assert_eq!(remote_basename("b"), Some("b"));
    assert_eq!(remote_basename("/"), None);
    assert_eq!(remote_basename("/a/.."), None);
    assert!(!is_plain_name("../x") && !is_plain_name("..") && is_plain_name("-x y"));
}

/// Not a check: prints upload/download times for 20 MB through a pipe adding 20 ms each
/// way, naive (one 32 KiB request at a time) against russh-sftp's defaults and
/// [`sftp_config`]. Run with `cargo test --lib transfer_timing -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing report, not a test"]
async fn transfer_timing() {
    let local = TempDir::new("bench-local");
    let remote = TempDir::new("bench-remote");
    let data = pseudo_random(20 * 1024 * 1024, 9);
    let src = local.path().join("bench.bin");
    write_file(&src, &data, 0o644);
    let naive = russh_sftp::client::Config {
        max_packet_len: 32 * 1024 + 64,
        max_concurrent_reads: 1,
        max_concurrent_writes: 1,
        max_write_packet_len: 32 * 1024 + 64,
        request_timeout_secs: 120,
    };
    let configs = [
        ("naive 1 x 32 KiB", naive),
        ("russh-sftp default", russh_sftp::client::Config::default()),
        ("sftp_config()", sftp_config()),
    ];
    for delay in [None, Some(Duration::from_millis(20))] {
        for (name, config) in configs.clone() {
            let Some(server) = fx::start(remote.path(), config, delay).await else {
                return;
            };
            let t = Instant::now();
            let up = plan(
                Direction::Upload,
                &[src.to_str().unwrap()],
                &remote.remote(""),
            );
            run(&server.sftp, &up, &opts(false, false))
                .await
                .0
                .expect("upload");
            let up_time = t.elapsed();
            let t = Instant::now();
            let back = local.path().join("back.bin");
            let down = plan(
                Direction::Download,
                &[&remote.remote("bench.bin")],
                back.to_str().unwrap(),
            );
            run(&server.sftp, &down, &opts(false, false))
                .await
                .0
                .expect("download");
            let down_time = t.elapsed();
            assert_eq!(sha256(&back), sha256(&src));
            eprintln!(
                "delay {:>5?} each way, {name:<20}: upload {:>7.2?}, download {:>7.2?}",
                delay.unwrap_or_default(),
                up_time,
                down_time
            );
        }
    }
}
