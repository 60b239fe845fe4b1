//! Striped `sallyport scp -j N` (issue 13): several sessions, one file or many, identical
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

fn stderr(out: &std::process::Output) -> String {
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
