//! `sallyport scp` says what it did not copy: a source that matches nothing is an error.

use std::time::Duration;

use crate::harness::{Fixture, run};

const LIMIT: Duration = Duration::from_secs(240);

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
