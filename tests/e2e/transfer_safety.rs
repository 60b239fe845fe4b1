//! `sallyport scp` loses nothing: an interrupted striped upload leaves every destination
//! as it was or complete, a source that matches nothing is an error, and so is a server
//! that has SFTP turned off (at once, not after a request timeout).

use std::path::Path;
use std::time::Duration;

use crate::harness::{Fixture, random_bytes, run, sha256_file};
use crate::parallel::{interrupt, stderr, temp_files, wait_exit, wait_for};

const LIMIT: Duration = Duration::from_secs(240);

/// Whether a file in `dir` (under any name) starts with one of `prefixes`.
fn any_starts_with(dir: &Path, prefixes: &[Vec<u8>]) -> bool {
    use std::io::Read;
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let mut head = vec![0; prefixes[0].len()];
        std::fs::File::open(e.path())
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && prefixes.contains(&head)
    })
}

#[test]
fn ctrl_c_mid_upload_leaves_every_file_old_or_new() {
    // A slow instance (2 MB/s a session): 8 files of 4 MB or 0.6 MB take seconds at -j 4.
    let fx = Fixture::instance_connect_with(|c| c.agent.instance_write_rate = Some(2_000_000));
    let local = fx.path("new");
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&remote_dir).unwrap();
    let mut sources = Vec::new();
    let mut heads = Vec::new();
    let mut old = Vec::new();
    let mut new = Vec::new();
    for i in 0..8u64 {
        let name = format!("f{i}.bin");
        // Large files are cut in pieces (their temporary files made first); small ones
        // are one piece each (made by the session that copies them).
        let size = if i % 2 == 0 { 4_000_000 } else { 600_000 };
        let data = random_bytes(size, 100 + i);
        heads.push(data[..64 * 1024].to_vec());
        std::fs::write(local.join(&name), &data).unwrap();
        std::fs::write(remote_dir.join(&name), random_bytes(3_000_000, 200 + i)).unwrap();
        old.push(sha256_file(&remote_dir.join(&name)));
        new.push(sha256_file(&local.join(&name)));
        sources.push(local.join(&name).to_str().unwrap().to_owned());
    }
    let remote = format!("root@{}:{}/", fx.instance, remote_dir.display());
    let mut args = vec!["scp", "-j", "4"];
    args.extend(sources.iter().map(String::as_str));
    args.push(&remote);
    let mut child = fx
        .sallyport(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // New bytes have reached the instance (under whatever name they are written).
    wait_for("new bytes on the instance", LIMIT, || {
        any_starts_with(&remote_dir, &heads)
    });
    interrupt(&child);
    let out = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let mut olds = 0;
    for i in 0..8 {
        let got = sha256_file(&remote_dir.join(format!("f{i}.bin")));
        assert!(
            got == old[i] || got == new[i],
            "f{i}.bin is neither the old file nor the new one"
        );
        olds += usize::from(got == old[i]);
    }
    assert!(olds > 0, "the copy was interrupted before it ended");
    assert!(
        temp_files(&remote_dir).is_empty(),
        "temporary files left: {:?}",
        temp_files(&remote_dir)
    );
}

#[test]
fn a_source_that_matches_nothing_is_an_error() {
    let fx = Fixture::instance_connect();
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    std::fs::write(remote_dir.join("present.txt"), b"here\n").unwrap();
    let dest = fx.path("dest");
    std::fs::create_dir_all(&dest).unwrap();
    for lanes in ["1", "2"] {
        let none = format!("root@{}:{}/nomatch*", fx.instance, remote_dir.display());
        let some = format!("root@{}:{}/pres*", fx.instance, remote_dir.display());
        let out = run(
            &mut fx.sallyport(&["scp", "-j", lanes, &none, &some, dest.to_str().unwrap()]),
            None,
            LIMIT,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(17), "-j {lanes}: {err}");
        let line = err
            .lines()
            .find(|l| l.contains("nomatch*"))
            .unwrap_or_else(|| panic!("-j {lanes}: names the source: {err}"));
        assert!(line.contains("matches nothing"), "{line}");
        // The other source still copies.
        assert_eq!(std::fs::read(dest.join("present.txt")).unwrap(), b"here\n");
        std::fs::remove_file(dest.join("present.txt")).unwrap();
    }
}

#[test]
fn a_striped_upload_keeps_the_mode_rules_of_a_copy_in_place() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let fx = Fixture::instance_connect();
    let local = fx.path("local");
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&remote_dir).unwrap();
    let mut sources = Vec::new();
    for (name, seed) in [("new.bin", 1), ("old.bin", 2)] {
        let p = local.join(name);
        std::fs::write(&p, random_bytes(3_000_000, seed)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        sources.push(p.to_str().unwrap().to_owned());
    }
    let existing = remote_dir.join("old.bin");
    std::fs::write(&existing, b"old").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o600)).unwrap();
    let remote = format!("root@{}:{}/", fx.instance, remote_dir.display());
    let out = run(
        &mut fx.sallyport(&["scp", "-j", "2", &sources[0], &sources[1], &remote]),
        None,
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["new.bin", "old.bin"] {
        assert_eq!(
            sha256_file(&remote_dir.join(name)),
            sha256_file(&local.join(name))
        );
    }
    // A new file: the source's bits minus sftp-server's umask (022 here); an existing
    // one keeps its mode.
    assert_eq!(mode(&remote_dir.join("new.bin")), 0o640);
    assert_eq!(mode(&existing), 0o600);
    assert!(
        temp_files(&remote_dir).is_empty(),
        "{:?}",
        temp_files(&remote_dir)
    );
    let probes: Vec<_> = std::fs::read_dir(&remote_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("umask"))
        .collect();
    assert!(probes.is_empty(), "the umask probe is removed");
}

/// A server with no `Subsystem sftp` line refuses the subsystem and keeps the channel open
/// (OpenSSH): `scp` (one lane or striped, either way) and `sftp` say so at once, with
/// what to do, instead of waiting out the SFTP request timeout (120 s).
#[test]
fn a_server_without_sftp_is_named_at_once() {
    let fx = Fixture::instance_connect_sshd(|o| o.no_sftp = true);
    let remote_dir = fx.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let local = fx.path("local.bin");
    std::fs::write(&local, random_bytes(10_000, 7)).unwrap();
    let remote = format!("root@{}:{}/f.bin", fx.instance, remote_dir.display());
    let down = fx.path("down.bin");
    let (local, down) = (local.to_str().unwrap(), down.to_str().unwrap());
    let target = format!("root@{}", fx.instance);
    // Well under the SFTP request timeout: the old wait would overrun it.
    let limit = Duration::from_secs(30);
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("upload -j 1", vec!["scp", "-j", "1", local, &remote]),
        ("upload -j 4", vec!["scp", "-j", "4", local, &remote]),
        ("download -j 1", vec!["scp", "-j", "1", &remote, down]),
        ("download -j 4", vec!["scp", "-j", "4", &remote, down]),
        ("sftp", vec!["sftp", &target]),
    ];
    for (what, args) in cases {
        let out = run(&mut fx.sallyport(&args), Some(b"ls\n"), limit);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: succeeded: {err}");
        assert!(
            err.contains("refused the sftp subsystem") && err.contains("Subsystem sftp"),
            "{what}: names the cause and the fix: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
    assert!(!remote_dir.join("f.bin").exists());
    assert!(!Path::new(down).exists());
}
