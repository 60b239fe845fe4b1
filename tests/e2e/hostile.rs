//! `sallyport scp` and `sallyport sftp` against a hostile instance: the testbed's lying
//! SSH/SFTP server (`sallyport_testbed::instance::hostile`) in place of sshd. Whatever it
//! claims, each command must
//! - write nothing outside its destination (a sibling directory stays empty, no file the
//!   server named with `..` or an absolute path appears),
//! - allocate nothing from a claim: sallyport runs under a hard address-space limit of
//!   [`AS_LIMIT`] (`prlimit --as`), so a client that believes a size or a listing dies
//!   fast instead of eating the machine,
//! - print no raw escape sequence or other control character the server sent,
//! - end within [`LIMIT`], with a non-zero exit and one line saying what went wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sallyport_testbed::instance::hostile::names::{ABSOLUTE_NAME, EVIL_NAMES, HONEST_LEN};
use sallyport_testbed::instance::sshd::TempDir;
use sallyport_testbed::world::hostile_ssh::HostileSsh;
use sallyport_testbed::{InstanceConfig, Testbed, TestbedConfig};

use crate::harness::{SALLYPORT, TLS_BY_DEFAULT, hermetic_env, run};

/// Every command ends within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(90);
/// The address-space bound sallyport runs under: 1 GiB of virtual memory (with glibc
/// kept to 2 malloc arenas). An honest copy needs far less: the control
/// `honest_copies_fit_in_the_memory_bound` passed at 64 MiB when measured (debug build);
/// a client that allocates from a claimed size of 2^64-1 or collects an endless listing
/// does not fit.
const AS_LIMIT: u64 = 1 << 30;
/// Lines on stderr a copy of one file may print: what went wrong, and the count of
/// files that could not be copied.
const ONE_PROBLEM: usize = 2;
/// Lines on stderr a recursive copy may print: one per refused name the server listed,
/// and the last.
const MAX_LINES: usize = EVIL_NAMES.len() + 4;
/// Lines of the changed-host-key warning (OpenSSH's text, on purpose).
const HOST_KEY_WARNING: usize = 16;
/// The line a `lying-status` server forges after its escape sequences.
const FORGED_LINE: &str = "sallyport: all files copied";

/// A testbed whose one instance's port 22 is the hostile server, and a directory with an
/// empty HOME, a destination and a sibling of it.
struct Hostile {
    // Field order is drop order: testbed and runtime before the temp dir.
    testbed: Testbed,
    _runtime: tokio::runtime::Runtime,
    instance: String,
    dir: TempDir,
}

impl Hostile {
    fn new(behaviours: &[HostileSsh]) -> Hostile {
        let dir = TempDir::new("sallyport-hostile").expect("temp dir");
        for sub in ["home", "tmp", "work/dest", "work/hostile-sibling"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("dirs");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        // Port 22 is replaced by the hostile server's; this address is never dialled.
        let mut instance = InstanceConfig::ssh_shortcut("127.0.0.1:9".parse().unwrap());
        instance.hostile = behaviours.to_vec();
        let mut config = TestbedConfig::new("127.0.0.1:0".parse().unwrap(), vec![instance]);
        config.eic_state_dir = Some(dir.path().join("eic-state"));
        config.tls = TLS_BY_DEFAULT;
        config.agent.pace = Duration::ZERO;
        let testbed = runtime
            .block_on(Testbed::start(config))
            .expect("start testbed");
        let instance = testbed.instance_ids[0].clone();
        let _ = std::fs::remove_file(ABSOLUTE_NAME);
        Hostile {
            testbed,
            _runtime: runtime,
            instance,
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn dest(&self) -> PathBuf {
        self.path("work/dest")
    }

    fn remote(&self, path: &str) -> String {
        format!("root@{}:{path}", self.instance)
    }

    /// `sallyport ARGS` under `prlimit --as=AS_LIMIT`, with the testbed's environment,
    /// HOME and TMPDIR in the fixture, the destination's parent as working directory.
    fn sallyport(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--as={AS_LIMIT}")).arg("--").arg(SALLYPORT);
        cmd.args(args);
        hermetic_env(&mut cmd, &self.testbed, self.dir.path());
        cmd.env("HOME", self.path("home"))
            .env("TMPDIR", self.path("tmp"))
            .env("MALLOC_ARENA_MAX", "2")
            .env_remove("SSH_AUTH_SOCK")
            .current_dir(self.path("work"));
        cmd
    }

    fn scp(&self, j: usize, extra: &[&str], from: &str, to: &str) -> Output {
        let j = j.to_string();
        let mut args = vec!["scp", "-q", "-j", &j];
        args.extend(extra);
        args.extend([from, to]);
        run(&mut self.sallyport(&args), None, LIMIT)
    }

    /// `sallyport sftp -b BATCH` with these commands.
    fn sftp(&self, batch: &str) -> Output {
        self.sftp_j(1, batch)
    }

    /// `sallyport sftp -j J -b BATCH` with these commands.
    fn sftp_j(&self, j: usize, batch: &str) -> Output {
        let file = self.path("batch");
        std::fs::write(&file, batch).unwrap();
        let dest = format!("root@{}", self.instance);
        let j = j.to_string();
        let args = ["sftp", "-j", &j, "-b", file.to_str().unwrap(), &dest];
        run(&mut self.sallyport(&args), None, LIMIT)
    }

    /// Nothing was written outside `work/dest`: `work` holds only `dest` and the sibling,
    /// the sibling is empty, nothing the server named exists above `work`, and the
    /// absolute path the server listed does not exist.
    fn assert_nothing_outside_dest(&self, what: &str) {
        let mut work: Vec<String> = std::fs::read_dir(self.path("work"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        work.sort();
        assert_eq!(
            work,
            ["dest", "hostile-sibling"],
            "{what}: written beside dest"
        );
        let sibling = std::fs::read_dir(self.path("work/hostile-sibling")).unwrap();
        assert_eq!(sibling.count(), 0, "{what}: written into the sibling");
        for name in ["hostile-up", "planted"] {
            assert!(
                !self.path(name).exists() && !self.dir.path().parent().unwrap().join(name).exists(),
                "{what}: {name} written above the destination"
            );
        }
        assert!(
            !Path::new(ABSOLUTE_NAME).exists(),
            "{what}: {ABSOLUTE_NAME} written (an absolute name from the server)"
        );
    }
}

/// stderr lines but the first-use host key notice.
fn message_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("permanently added"))
        .map(str::to_owned)
        .collect()
}

/// The first control character (C0 but tab and newline, DEL, C1) in `bytes`.
fn control_char(bytes: &[u8]) -> Option<char> {
    String::from_utf8_lossy(bytes)
        .chars()
        .find(|&c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{7f}')
}

/// No raw escape sequence or other control character reached the terminal.
fn assert_no_raw_control(out: &Output, what: &str) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !bytes.contains(&0x1b),
            "{what}: a raw ESC on {stream}: {:?}",
            String::from_utf8_lossy(bytes)
        );
        if let Some(c) = control_char(bytes) {
            panic!(
                "{what}: raw control character {c:?} on {stream}: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

/// The command failed cleanly: a non-zero exit (not a signal, such as the abort of a
/// failed allocation under the memory bound), between one and `max_lines` lines on
/// stderr, the last one not empty, and no raw control character anywhere.
fn assert_fails_cleanly(out: &Output, max_lines: usize, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "{what}: killed by a signal ({:?}; under the {AS_LIMIT}-byte address-space \
             limit an abort means an allocation from a claim); stderr: {stderr}",
            out.status
        )
    });
    assert_ne!(code, 0, "{what}: exit 0; stderr: {stderr}");
    assert_no_raw_control(out, what);
    let lines = message_lines(out);
    assert!(
        (1..=max_lines).contains(&lines.len()),
        "{what}: {} lines on stderr (want 1 to {max_lines}): {stderr}",
        lines.len()
    );
    assert!(
        lines.last().is_some_and(|l| !l.trim().is_empty()),
        "{what}: the last line is empty: {stderr:?}"
    );
    assert!(
        lines.iter().all(|l| l.len() <= 1000),
        "{what}: a line over 1000 bytes: {stderr}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.trim_start().starts_with(FORGED_LINE)),
        "{what}: the server's forged line stands as a line of its own: {stderr}"
    );
}

/// The files (not directories) under `dir`, recursively, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The honest 64 KiB file's bytes, as the server makes them.
fn honest_content() -> Vec<u8> {
    sallyport_testbed::instance::hostile::names::content(0, HONEST_LEN as usize)
}

#[test]
fn honest_copies_fit_in_the_memory_bound() {
    // Control: the hostile server's honest file, both ways, at -j 1 and -j 4, succeeds
    // under the same address-space limit (lying-status lies only in failures and writes
    // it drops; a download of /f is honest).
    let fx = Hostile::new(&[HostileSsh::LyingStatus]);
    for j in [1, 4] {
        let out = fx.scp(j, &[], &fx.remote("/f"), "dest/");
        assert!(
            out.status.success(),
            "-j {j}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(fx.dest().join("f")).unwrap(),
            honest_content()
        );
        std::fs::remove_file(fx.dest().join("f")).unwrap();
    }
    fx.assert_nothing_outside_dest("control");
}

/// Empties the destination between runs.
fn clear_dest(fx: &Hostile) {
    std::fs::remove_dir_all(fx.dest()).unwrap();
    std::fs::create_dir(fx.dest()).unwrap();
}

/// Checks that all run even when some fail, so one report says how each went.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, label: &str, check: impl FnOnce()) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
        if let Err(e) = result {
            let msg = (e.downcast_ref::<String>().cloned())
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            self.0.push(format!("{label}: {msg}"));
        }
    }

    fn finish(self) {
        assert!(self.0.is_empty(), "{}", self.0.join("\n---\n"));
    }
}

/// Runs `check` at `-j 1` and at `-j 4`, each with an empty destination.
fn at_j_1_and_4(fx: &Hostile, checks: &mut Checks, check: impl Fn(usize)) {
    for j in [1, 4] {
        clear_dest(fx);
        checks.check(&format!("-j {j}"), || check(j));
    }
}

/// The depth of the deepest directory under `dir` (0: none).
fn depth_under(dir: &Path) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        // A directory too deep to name (ENAMETOOLONG) still counts at its depth.
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    deepest
}

#[test]
fn evil_names_in_a_recursive_download_stay_inside_the_destination() {
    let fx = Hostile::new(&[HostileSsh::EvilNames]);
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -r -j {j} host:/d");
        let out = fx.scp(j, &["-r"], &fx.remote("/d"), "dest/");
        fx.assert_nothing_outside_dest(&what);
        assert_fails_cleanly(&out, MAX_LINES, &what);
        assert_eq!(
            std::fs::read(fx.dest().join("d/ok.txt")).ok(),
            Some(honest_content()),
            "{what}: the honest entry is still copied"
        );
    });
    checks.finish();
}

#[test]
fn evil_names_from_a_remote_glob_stay_inside_the_destination() {
    let fx = Hostile::new(&[HostileSsh::EvilNames]);
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -j {j} 'host:/d/*'");
        let out = fx.scp(j, &[], &fx.remote("/d/*"), "dest/");
        eprintln!("{what}: copied {:?}", files_under(&fx.dest()));
        fx.assert_nothing_outside_dest(&what);
        assert_fails_cleanly(&out, MAX_LINES, &what);
    });
    checks.finish();
}

#[test]
fn evil_names_through_sftp_ls_and_get_r_are_shown_as_text_and_stay_inside() {
    let fx = Hostile::new(&[HostileSsh::EvilNames]);
    let out = fx.sftp("-ls -l /d\nget -r /d dest\n");
    eprintln!("sftp said: {:?}", String::from_utf8_lossy(&out.stdout));
    eprintln!(
        "sftp complained: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    fx.assert_nothing_outside_dest("sftp get -r /d");
    assert_fails_cleanly(&out, MAX_LINES, "sftp ls -l /d; get -r /d");
}

#[test]
fn a_claimed_size_of_2_64_is_not_believed_downloading_a_file() {
    let fx = Hostile::new(&[HostileSsh::HugeSize]);
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -j {j} host:/f (claims u64::MAX)");
        let out = fx.scp(j, &[], &fx.remote("/f"), "dest/");
        assert_fails_cleanly(&out, ONE_PROBLEM, &what);
        assert_eq!(
            files_under(&fx.dest()),
            Vec::<String>::new(),
            "{what}: a partial file left"
        );
        fx.assert_nothing_outside_dest(&what);
    });
    checks.finish();
}

#[test]
fn a_claimed_size_of_2_64_is_not_believed_in_a_recursive_download() {
    let fx = Hostile::new(&[HostileSsh::HugeSize]);
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -r -j {j} host:/d (sizes u64::MAX)");
        let out = fx.scp(j, &["-r"], &fx.remote("/d"), "dest/");
        assert_fails_cleanly(&out, MAX_LINES, &what);
        fx.assert_nothing_outside_dest(&what);
    });
    checks.finish();
}

#[test]
fn an_upload_over_a_file_claiming_2_64_bytes_allocates_nothing() {
    // The destination exists and claims u64::MAX bytes; nothing about the upload needs
    // that size, so the copy must not allocate from it (the address-space limit) and must
    // end; whether it succeeds is the client's call (the server takes the bytes).
    let fx = Hostile::new(&[HostileSsh::HugeSize]);
    let src = fx.path("src.bin");
    std::fs::write(&src, crate::harness::random_bytes(3_000_000, 21)).unwrap();
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -j {j} src host:/f (claims u64::MAX)");
        let out = fx.scp(j, &[], src.to_str().unwrap(), &fx.remote("/f"));
        assert!(
            out.status.code().is_some(),
            "{what}: killed by a signal ({:?}; an allocation from the claim under the \
             address-space limit); stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_raw_control(&out, &what);
        eprintln!("{what}: {:?}", out.status);
    });
    checks.finish();
}

#[test]
fn an_endless_listing_ends_a_recursive_download() {
    let fx = Hostile::new(&[HostileSsh::EndlessListing]);
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -r -j {j} host:/d (endless listing)");
        let out = fx.scp(j, &["-r"], &fx.remote("/d"), "dest/");
        assert_fails_cleanly(&out, MAX_LINES, &what);
        fx.assert_nothing_outside_dest(&what);
    });
    checks.finish();
}

#[test]
fn an_endless_listing_ends_a_remote_glob_and_sftp_ls() {
    let fx = Hostile::new(&[HostileSsh::EndlessListing]);
    let mut checks = Checks::default();
    checks.check("scp glob", || {
        let out = fx.scp(1, &[], &fx.remote("/d/*"), "dest/");
        assert_fails_cleanly(&out, MAX_LINES, "scp 'host:/d/*' (endless listing)");
        fx.assert_nothing_outside_dest("scp glob");
    });
    checks.check("sftp ls", || {
        let out = fx.sftp("ls /d\n");
        assert_fails_cleanly(&out, MAX_LINES, "sftp ls /d (endless listing)");
    });
    checks.finish();
}

#[test]
fn a_file_that_ends_before_its_size_is_an_error_not_a_short_copy() {
    // 1 MiB claimed, at most 1000 bytes per READ, EOF at 300 000.
    let fx = Hostile::new(&[HostileSsh::ShortRead]);
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -j {j} host:/f (short reads, early EOF)");
        let out = fx.scp(j, &[], &fx.remote("/f"), "dest/");
        assert_fails_cleanly(&out, ONE_PROBLEM, &what);
        assert_eq!(
            files_under(&fx.dest()),
            Vec::<String>::new(),
            "{what}: a truncated file left as if complete"
        );
        let what = format!("scp -r -j {j} host:/d (short reads, early EOF)");
        let out = fx.scp(j, &["-r"], &fx.remote("/d"), "dest/");
        assert_fails_cleanly(&out, MAX_LINES, &what);
        assert!(
            !fx.dest().join("d/ok.txt").exists(),
            "{what}: a truncated file left as if complete"
        );
        fx.assert_nothing_outside_dest(&what);
    });
    checks.finish();
}

#[test]
fn escape_sequences_in_status_messages_never_reach_the_terminal() {
    let fx = Hostile::new(&[HostileSsh::LyingStatus]);
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -j {j} host:/missing (lying status)");
        let out = fx.scp(j, &[], &fx.remote("/missing"), "dest/");
        assert_fails_cleanly(&out, ONE_PROBLEM, &what);
        let what = format!("scp -r -j {j} host:/missing (lying status)");
        let out = fx.scp(j, &["-r"], &fx.remote("/missing"), "dest/");
        assert_fails_cleanly(&out, ONE_PROBLEM, &what);
        fx.assert_nothing_outside_dest(&what);
    });
    checks.check("sftp", || {
        let out = fx.sftp("get /missing dest\n");
        assert_fails_cleanly(&out, ONE_PROBLEM, "sftp get /missing (lying status)");
    });
    checks.finish();
}

#[test]
fn an_upload_whose_writes_are_acknowledged_and_dropped_fails() {
    // WRITE answers OK and keeps nothing; closing the file fails with escape sequences.
    let fx = Hostile::new(&[HostileSsh::LyingStatus]);
    let src = fx.path("src.bin");
    std::fs::write(&src, crate::harness::random_bytes(3_000_000, 5)).unwrap();
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -j {j} src host:/up/ (writes dropped)");
        let out = fx.scp(j, &[], src.to_str().unwrap(), &fx.remote("/up/"));
        assert_fails_cleanly(&out, ONE_PROBLEM, &what);
    });
    checks.check("sftp", || {
        let out = fx.sftp(&format!("put {} /up/x\n", src.display()));
        assert_fails_cleanly(&out, ONE_PROBLEM, "sftp put (writes dropped)");
    });
    checks.finish();
}

#[test]
fn a_symlink_loop_the_server_hides_ends_a_recursive_download() {
    // `loop` is a symlink to a directory holding `loop` again, and REALPATH answers each
    // path as asked, so the client cannot see the cycle; it must stop by depth (OpenSSH's
    // sftp stops at 64 levels).
    let fx = Hostile::new(&[HostileSsh::SymlinkLoop]);
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        let what = format!("scp -r -j {j} host:/d (symlink loop)");
        let out = fx.scp(j, &["-r"], &fx.remote("/d"), "dest/");
        let depth = depth_under(&fx.dest());
        assert!(depth <= 65, "{what}: followed the loop {depth} levels deep");
        assert_fails_cleanly(&out, MAX_LINES, &what);
        fx.assert_nothing_outside_dest(&what);
    });
    clear_dest(&fx);
    checks.check("sftp", || {
        let out = fx.sftp("get -r /d dest\n");
        let depth = depth_under(&fx.dest());
        assert!(
            depth <= 65,
            "sftp get -r followed the loop {depth} levels deep"
        );
        assert_fails_cleanly(&out, MAX_LINES, "sftp get -r /d (symlink loop)");
    });
    checks.finish();
}

#[test]
fn a_host_key_that_changes_within_a_striped_copy_is_refused() {
    // Every connection presents a new host key. Within one striped copy: the first
    // session records its key (first use), the next sessions present others, and the copy
    // must stop with exit 15, not take them.
    let fx = Hostile::new(&[HostileSsh::NewHostKey]);
    let out = fx.scp(4, &[], &fx.remote("/big"), "dest/");
    let what = "scp -j 4 host:/big, first use (new host key per session)";
    let carried: Vec<u64> = (fx.testbed.data_stats().iter())
        .map(|(_, s)| s.agent_bytes)
        .filter(|&b| b > 1_000_000)
        .collect();
    eprintln!("{what}: sessions that carried over 1 MB: {carried:?}");
    assert_fails_cleanly(&out, HOST_KEY_WARNING, what);
    assert_eq!(out.status.code(), Some(15), "{what}");
    assert_eq!(files_under(&fx.dest()), Vec::<String>::new(), "{what}");
}

#[test]
fn a_host_key_that_changes_within_a_striped_sftp_get_is_refused() {
    // As above through `sftp -j 4`: the refusal ends the shell with exit 15, even for a
    // command whose errors the batch ignores (`-get`), and the next command never runs.
    let fx = Hostile::new(&[HostileSsh::NewHostKey]);
    let out = fx.sftp_j(4, "-get /big dest\nget /big dest/again\n");
    let what = "sftp -j 4: -get /big, first use (new host key per session)";
    assert_fails_cleanly(&out, HOST_KEY_WARNING, what);
    assert_eq!(out.status.code(), Some(15), "{what}");
    assert_eq!(files_under(&fx.dest()), Vec::<String>::new(), "{what}");
}

#[test]
fn a_host_key_that_changes_between_connections_is_refused() {
    // The first copy records one key; every later connection, down or up, at -j 1 or
    // -j 4, must be refused with exit 15.
    let fx = Hostile::new(&[HostileSsh::NewHostKey]);
    let first = fx.scp(1, &[], &fx.remote("/f"), "dest/");
    assert!(
        first.status.success(),
        "first use: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    clear_dest(&fx);
    let src = fx.path("src.bin");
    std::fs::write(&src, crate::harness::random_bytes(100_000, 7)).unwrap();
    let mut checks = Checks::default();
    at_j_1_and_4(&fx, &mut checks, |j| {
        for (what, out) in [
            (
                format!("scp -j {j} host:/f (new host key)"),
                fx.scp(j, &[], &fx.remote("/f"), "dest/"),
            ),
            (
                format!("scp -j {j} src host:/up/ (new host key)"),
                fx.scp(j, &[], src.to_str().unwrap(), &fx.remote("/up/")),
            ),
        ] {
            assert_fails_cleanly(&out, HOST_KEY_WARNING, &what);
            assert_eq!(out.status.code(), Some(15), "{what}");
            assert_eq!(files_under(&fx.dest()), Vec::<String>::new(), "{what}");
        }
    });
    checks.check("sftp", || {
        let out = fx.sftp("get /f dest\n");
        assert_fails_cleanly(&out, HOST_KEY_WARNING, "sftp (new host key)");
        assert_eq!(out.status.code(), Some(15), "sftp (new host key)");
    });
    checks.finish();
}

/// `sallyport ssh` to a server that refuses commands and shells (this one runs neither),
/// which keeps the channel open: said at once, with the exit for a connection problem.
/// It waited for output that never came.
#[test]
fn ssh_says_when_the_server_refuses_the_command_or_the_shell() {
    // Any lie makes port 22 the testbed's server; this one touches only listings.
    let fx = Hostile::new(&[HostileSsh::EvilNames]);
    let dest = format!("root@{}", fx.instance);
    let quick = Duration::from_secs(30);
    for (what, args, says) in [
        (
            "a command",
            vec!["ssh", dest.as_str(), "true"],
            "the server refused to run the command",
        ),
        (
            "a shell",
            vec!["ssh", "-n", dest.as_str()],
            "the server refused to start a shell",
        ),
    ] {
        let out = run(&mut fx.sallyport(&args), None, quick);
        assert_fails_cleanly(&out, ONE_PROBLEM, what);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{what}: {err}");
    }
}

/// A server that never answers whether it runs the command: a stop signal still ends
/// `sallyport ssh` at once (the wait for the answer races the signals).
#[test]
fn ssh_stops_while_the_server_says_nothing() {
    let fx = Hostile::new(&[HostileSsh::Mute]);
    let dest = format!("root@{}", fx.instance);
    let mut child = fx
        .sallyport(&["ssh", &dest, "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until the host key was accepted: the client is then authenticating,
    // opening the channel or waiting for the answer that never comes.
    let known_hosts = fx.path("home/.ssh/known_hosts");
    crate::parallel::wait_for("the SSH connection", Duration::from_secs(30), || {
        std::fs::read_to_string(&known_hosts).is_ok_and(|k| !k.is_empty())
    });
    let stopped = std::time::Instant::now();
    crate::parallel::interrupt(&child);
    let out = crate::parallel::wait_exit(&mut child, Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}: {err}",
        stopped.elapsed()
    );
    let terminated = (fx.testbed.calls().iter())
        .filter(|c| c.operation == "TerminateSession")
        .count();
    assert_eq!(terminated, 1, "the session was ended: {err}");
}
