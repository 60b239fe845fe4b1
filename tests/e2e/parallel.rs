//! Striped `sallyport scp -j N`: several sessions, one file or many, identical
//! bytes, lazy session opening, a session killed mid-copy, Ctrl-C, `--verify`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Fixture, ok, random_bytes, run, sha256_file};

const LIMIT: Duration = Duration::from_secs(240);

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// StartSession calls the testbed has seen so far.
fn starts(fx: &Fixture) -> usize {
    fx.testbed
        .calls()
        .iter()
        .filter(|c| c.operation == "StartSession")
        .count()
}

pub(crate) fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn scp_j4_moves_20_mb_both_ways_over_4_sessions() {
    let fx = Fixture::instance_connect();
    let src = fx.path("big.bin");
    std::fs::write(&src, random_bytes(20_000_000, 1313)).unwrap();
    set_mode(&src, 0o640);
    let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    std::fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let remote = format!("root@{}:{}/", fx.instance, remote_dir.display());

    let t0 = Instant::now();
    let out = run(
        &mut fx.sallyport(&["scp", "-j", "4", "-p", src.to_str().unwrap(), &remote]),
        None,
        LIMIT,
    );
    ok(&out);
    let up = remote_dir.join("big.bin");
    eprintln!("upload -j 4: {:?}", t0.elapsed());
    assert_eq!(sha256_file(&up), sha256_file(&src));
    assert_eq!(mode(&up), 0o640);
    assert_eq!(std::fs::metadata(&up).unwrap().modified().unwrap(), mtime);
    assert_eq!(starts(&fx), 4, "20 MB at -j 4: four sessions");

    // Download over an existing, different file: replaced only once complete.
    let back = fx.path("back.bin");
    std::fs::write(&back, b"old contents").unwrap();
    let t0 = Instant::now();
    let remote_file = format!("root@{}:{}", fx.instance, up.display());
    let out = run(
        &mut fx.sallyport(&["scp", "-j", "4", "-p", &remote_file, back.to_str().unwrap()]),
        None,
        LIMIT,
    );
    ok(&out);
    eprintln!("download -j 4: {:?}", t0.elapsed());
    assert_eq!(sha256_file(&back), sha256_file(&src));
    assert_eq!(mode(&back), 0o640);
    assert_eq!(std::fs::metadata(&back).unwrap().modified().unwrap(), mtime);
    assert_eq!(starts(&fx), 8);
    assert!(
        stderr(&out)
            .lines()
            .all(|l| l.contains("permanently added")),
        "nothing but the first-use notice on a non-tty: {}",
        stderr(&out)
    );
    assert_no_temp_files(fx.path("").as_path());
}

fn assert_no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".sallyport-"), "temporary file left: {name}");
    }
}

/// 200 small files with awkward names and modes, in nested directories.
fn small_tree(root: &Path) {
    let names = [
        "plain",
        "with space",
        "-leading dash",
        "ünïcødé ✓",
        "quote'n\"double",
        "back\\slash",
        "日本語",
        "new\nline",
    ];
    for i in 0..200 {
        let dir = root.join(format!("dir {}", i % 5)).join(names[i % 3]);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("{} {i}.txt", names[i % names.len()]));
        std::fs::write(&p, random_bytes(100 + i * 37, i as u64)).unwrap();
        set_mode(&p, [0o644, 0o600, 0o755, 0o640][i % 4]);
    }
    set_mode(&root.join("dir 1"), 0o750);
}

/// Relative path → (mode, sha256 or "dir") for every entry under `root`.
fn summary(root: &Path) -> std::collections::BTreeMap<String, (u32, String)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(rel, (mode(&p), "dir".to_owned()));
                stack.push(p);
            } else {
                out.insert(rel, (mode(&p), sha256_file(&p)));
            }
        }
    }
    out
}

#[test]
fn scp_j4_copies_a_tree_of_200_small_files_both_ways() {
    let fx = Fixture::instance_connect();
    let local = fx.path("tree");
    small_tree(&local);
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let remote = format!("root@{}:{}", fx.instance, remote_dir.display());
    let out = run(
        &mut fx.sallyport(&[
            "scp",
            "-j",
            "4",
            "-r",
            "-p",
            local.to_str().unwrap(),
            &remote,
        ]),
        None,
        LIMIT,
    );
    ok(&out);
    assert_eq!(summary(&remote_dir.join("tree")), summary(&local));
    assert_eq!(summary(&local).len(), 200 + 5 + 15);
    let up_starts = starts(&fx);
    assert!(
        (2..=4).contains(&up_starts),
        "many small files spread over up to 4 sessions: {up_starts}"
    );

    let down = fx.path("down");
    std::fs::create_dir_all(&down).unwrap();
    let remote_tree = format!("root@{}:{}", fx.instance, remote_dir.join("tree").display());
    let out = run(
        &mut fx.sallyport(&[
            "scp",
            "-j",
            "4",
            "-r",
            "-p",
            &remote_tree,
            down.to_str().unwrap(),
        ]),
        None,
        LIMIT,
    );
    ok(&out);
    assert_eq!(summary(&down.join("tree")), summary(&local));
    eprintln!(
        "sessions: upload {up_starts}, download {}",
        starts(&fx) - up_starts
    );
}

#[test]
fn a_small_file_opens_one_session() {
    let fx = Fixture::instance_connect();
    let src = fx.path("small.txt");
    std::fs::write(&src, random_bytes(10_000, 3)).unwrap();
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let remote = format!("root@{}:{}/", fx.instance, remote_dir.display());
    let out = run(
        &mut fx.sallyport(&["scp", "-j", "8", src.to_str().unwrap(), &remote]),
        None,
        LIMIT,
    );
    ok(&out);
    assert_eq!(
        sha256_file(&remote_dir.join("small.txt")),
        sha256_file(&src)
    );
    assert_eq!(starts(&fx), 1, "lazy: one session for 10 KB at -j 8");
}

#[test]
fn a_session_killed_mid_download_is_redone_on_the_others() {
    // The second session started ends once it sent 3 MB (a piece is 2.5 MB at -j 4).
    let fx = Fixture::instance_connect_with(|c| {
        c.faults.kill_session = Some(sallyport_testbed::world::faults::KillSession::new(
            2, 3_000_000,
        ));
    });
    let src = fx.path("big.bin");
    std::fs::write(&src, random_bytes(20_000_000, 99)).unwrap();
    let back = fx.path("back.bin");
    let remote_file = format!("root@{}:{}", fx.instance, src.display());
    let out = run(
        &mut fx.sallyport(&["scp", "-j", "4", &remote_file, back.to_str().unwrap()]),
        None,
        LIMIT,
    );
    ok(&out);
    assert_eq!(sha256_file(&back), sha256_file(&src));
    let err = stderr(&out);
    let note = err
        .lines()
        .find(|l| l.contains("redone after a session failed"))
        .unwrap_or_else(|| panic!("no note of redone pieces: {err}"));
    eprintln!("{note}");
    assert_no_temp_files(&fx.path(""));
}

/// Waits (bounded) for `cond`.
pub(crate) fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) for the child to exit; kills it and fails otherwise.
pub(crate) fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::Output {
    if crate::harness::exit_within(child, limit).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("sallyport did not exit within {limit:?}");
    }
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_end(&mut stderr);
    }
    std::process::Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr,
    }
}

/// Sends SIGINT to the child.
pub(crate) fn interrupt(child: &std::process::Child) {
    signal(child, "INT");
}

/// Sends signal `name` (`INT`, `TERM`…) to the child, with the shell's builtin kill (no
/// procps needed).
pub(crate) fn signal(child: &std::process::Child, name: &str) {
    let pid = child.id().to_string();
    let sent = std::process::Command::new("sh")
        .args(["-c", &format!("kill -{name} {pid}")])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name}");
}

pub(crate) fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".sallyport-"))
        .collect()
}

#[test]
fn ctrl_c_mid_download_leaves_the_old_file_and_no_temp_file() {
    let fx = Fixture::instance_connect();
    let src = fx.path("big.bin");
    std::fs::write(&src, random_bytes(20_000_000, 5)).unwrap();
    // Readable by all: the temporary file is private all the same.
    set_mode(&src, 0o644);
    let dest_dir = fx.path("dest");
    std::fs::create_dir_all(&dest_dir).unwrap();
    let dest = dest_dir.join("big.bin");
    std::fs::write(&dest, b"the previous version\n").unwrap();
    let remote_file = format!("root@{}:{}", fx.instance, src.display());
    let mut child = fx
        .sallyport(&["scp", "-j", "2", &remote_file, dest.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-transfer: the temporary file exists and holds some of the new bytes.
    wait_for("a temporary file with data", LIMIT, || {
        temp_files(&dest_dir).iter().any(|n| {
            std::fs::read(dest_dir.join(n))
                .map(|b| b.iter().take(1 << 20).any(|&x| x != 0))
                .unwrap_or(false)
        })
    });
    for t in temp_files(&dest_dir) {
        assert_eq!(mode(&dest_dir.join(&t)), 0o600, "{t} is private");
    }
    interrupt(&child);
    let out = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), b"the previous version\n");
    assert!(
        temp_files(&dest_dir).is_empty(),
        "{:?}",
        temp_files(&dest_dir)
    );
    let calls = fx.testbed.calls();
    let terminated = calls
        .iter()
        .filter(|c| c.operation == "TerminateSession")
        .count();
    assert_eq!(terminated, starts(&fx), "every session ended");
}

/// `sftp -j 1` (unstriped) stopped while its session is up ends that session too, as a
/// striped one does, and exits 130.
#[test]
fn ctrl_c_in_an_unstriped_sftp_ends_its_session() {
    use std::io::{BufRead, Write};
    let fx = Fixture::instance_connect();
    let dest = format!("root@{}", fx.instance);
    let mut child = fx
        .sallyport(&["sftp", "-j", "1", &dest])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "pwd").unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The session is up once the command was answered; stdin stays open.
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("Remote working directory") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("no answer to pwd within {LIMIT:?}: {e}");
            }
        }
    }
    interrupt(&child);
    let out = wait_exit(&mut child, Duration::from_secs(60));
    drop(input);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let calls = fx.testbed.calls();
    let terminated = calls
        .iter()
        .filter(|c| c.operation == "TerminateSession")
        .count();
    assert_eq!(terminated, starts(&fx), "every session ended");
}

#[test]
fn verify_catches_a_file_changed_during_the_copy() {
    // A slow instance (2 MB/s): a 4 MB upload takes about two seconds.
    let fx = Fixture::instance_connect_with(|c| c.agent.instance_write_rate = Some(2_000_000));
    let src = fx.path("data.bin");
    let original = random_bytes(4_000_000, 8);
    std::fs::write(&src, &original).unwrap();
    let remote_file = format!("root@{}:{}", fx.instance, src.display());
    // Unchanged: verified, exit 0.
    let good = fx.path("good.bin");
    ok(&run(
        &mut fx.sallyport(&["scp", "--verify", &remote_file, good.to_str().unwrap()]),
        None,
        LIMIT,
    ));
    // Changed after its first bytes reached the instance: the copy there holds the old
    // first byte, the local file the new one; --verify must see it.
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let remote = format!("root@{}:{}/", fx.instance, remote_dir.display());
    let mut child = fx
        .sallyport(&["scp", "--verify", src.to_str().unwrap(), &remote])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first 64 KiB on the instance", LIMIT, || {
        holds_prefix(&remote_dir, &original[..64 * 1024])
    });
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::File::options().write(true).open(&src).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&[original[0] ^ 1]).unwrap();
    }
    let out = wait_exit(&mut child, LIMIT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(17), "{err}");
    assert!(
        err.contains("--verify failed") && err.contains("data.bin"),
        "names the file: {err}"
    );
}

/// Whether a file in `dir` (the destination or a temporary one) starts with `prefix`.
fn holds_prefix(dir: &Path, prefix: &[u8]) -> bool {
    use std::io::Read;
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let mut head = vec![0; prefix.len()];
        std::fs::File::open(e.path())
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && head == prefix
    })
}

#[test]
fn sftp_get_and_put_are_striped_too() {
    let fx = Fixture::instance_connect();
    let work = fx.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let local = fx.path("six.bin");
    std::fs::write(&local, random_bytes(6_000_000, 61)).unwrap();
    let fetched = fx.path("fetched.bin");
    let batch = fx.path("batch");
    std::fs::write(
        &batch,
        format!(
            "cd \"{}\"\nput \"{}\"\nget six.bin \"{}\"\n",
            work.display(),
            local.display(),
            fetched.display()
        ),
    )
    .unwrap();
    let dest = format!("root@{}", fx.instance);
    let out = run(
        &mut fx.sallyport(&["sftp", "-j", "3", "-b", batch.to_str().unwrap(), &dest]),
        None,
        LIMIT,
    );
    ok(&out);
    assert_eq!(sha256_file(&work.join("six.bin")), sha256_file(&local));
    assert_eq!(sha256_file(&fetched), sha256_file(&local));
    // 6 MB at -j 3: six pieces of 1 MiB; the lanes opened for `put` serve `get`.
    assert_eq!(starts(&fx), 3);
}

#[test]
fn compression_shrinks_what_the_session_carries_for_text() {
    let fx = Fixture::instance_connect();
    let text = fx.path("log.txt");
    let mut body = String::new();
    let mut i = 0u64;
    while body.len() < 2_000_000 {
        body.push_str(&format!(
            "2026-11-30T20:00:{:02}Z INFO request id={i:08x} status=200 bytes={}\n",
            i % 60,
            i * 7919 % 100_000
        ));
        i += 1;
    }
    std::fs::write(&text, &body).unwrap();
    let remote_file = format!("root@{}:{}", fx.instance, text.display());
    let agent_bytes = |fx: &Fixture| -> u64 {
        fx.testbed
            .data_stats()
            .iter()
            .map(|(_, s)| s.agent_bytes)
            .sum()
    };
    let plain = fx.path("plain.txt");
    ok(&run(
        &mut fx.sallyport(&["scp", "-j", "1", &remote_file, plain.to_str().unwrap()]),
        None,
        LIMIT,
    ));
    let without = agent_bytes(&fx);
    let packed = fx.path("packed.txt");
    ok(&run(
        &mut fx.sallyport(&[
            "scp",
            "-j",
            "1",
            "-C",
            &remote_file,
            packed.to_str().unwrap(),
        ]),
        None,
        LIMIT,
    ));
    let with = agent_bytes(&fx) - without;
    eprintln!("session bytes to the client: {without} without -C, {with} with -C");
    assert_eq!(sha256_file(&plain), sha256_file(&text));
    assert_eq!(sha256_file(&packed), sha256_file(&text));
    assert!(without >= 2_000_000, "{without}");
    assert!(
        with * 3 < without,
        "zlib was negotiated: {with} vs {without}"
    );
}

#[test]
fn upload_p_survives_the_first_session_dying() {
    // The first session (it also walked the tree) ends once it sent the client 10 kB:
    // SFTP statuses, early in the upload. Its pieces are redone, and -p's times and mode
    // are set through another session.
    let fx = Fixture::instance_connect_with(|c| {
        c.faults.kill_session = Some(sallyport_testbed::world::faults::KillSession::new(
            1, 10_000,
        ));
    });
    let src = fx.path("big.bin");
    std::fs::write(&src, random_bytes(20_000_000, 77)).unwrap();
    set_mode(&src, 0o604);
    let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_400_000_000);
    std::fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let remote = format!("root@{}:{}/", fx.instance, remote_dir.display());
    let out = run(
        &mut fx.sallyport(&["scp", "-j", "4", "-p", src.to_str().unwrap(), &remote]),
        None,
        LIMIT,
    );
    ok(&out);
    let up = remote_dir.join("big.bin");
    assert_eq!(sha256_file(&up), sha256_file(&src));
    assert_eq!(mode(&up), 0o604);
    assert_eq!(std::fs::metadata(&up).unwrap().modified().unwrap(), mtime);
    let err = stderr(&out);
    eprintln!("{err}");
    assert!(err.contains("redone after a session failed"), "{err}");
}

/// One file of `len` bytes up and down at `-j jobs` through the paced testbed (one
/// session moves ~0.5 MB/s, so idle lanes take over the backs of busy ones' pieces).
fn round_trip_at(len: usize, jobs: &str, seed: u64) {
    let fx = Fixture::instance_connect();
    let src = fx.path("src.bin");
    std::fs::write(&src, random_bytes(len, seed)).unwrap();
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let remote = format!("root@{}:{}/", fx.instance, remote_dir.display());
    let t0 = Instant::now();
    let out = run(
        &mut fx.sallyport(&["scp", "-j", jobs, src.to_str().unwrap(), &remote]),
        None,
        LIMIT,
    );
    ok(&out);
    eprintln!("upload {len} B at -j {jobs}: {:?}", t0.elapsed());
    let up = remote_dir.join("src.bin");
    assert_eq!(sha256_file(&up), sha256_file(&src));
    let uploads = starts(&fx);
    assert!(uploads <= jobs.parse().unwrap(), "{uploads} sessions");

    let back = fx.path("back.bin");
    let remote_file = format!("root@{}:{}", fx.instance, up.display());
    let t0 = Instant::now();
    let out = run(
        &mut fx.sallyport(&["scp", "-j", jobs, &remote_file, back.to_str().unwrap()]),
        None,
        LIMIT,
    );
    ok(&out);
    eprintln!("download {len} B at -j {jobs}: {:?}", t0.elapsed());
    assert_eq!(sha256_file(&back), sha256_file(&src));
    assert!(starts(&fx) - uploads <= jobs.parse().unwrap());
    assert_no_temp_files(&fx.path(""));
    assert_no_temp_files(&remote_dir);
}

#[test]
fn scp_j8_moves_12_mib_both_ways_intact() {
    round_trip_at(12 * 1024 * 1024, "8", 1212);
}

#[test]
fn scp_j4_moves_3_mib_both_ways_intact() {
    round_trip_at(3 * 1024 * 1024, "4", 333);
}
