//! A download lane keeps a file open across its pieces of that file and closes it when it
//! moves to another file (in the round trip of the next open) or a piece fails; handed
//! back, it keeps it open for the next copy on the lane to close (or the connection's end).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::ssh::transfer::sftp_config;
use crate::ssh::transfer::test_fixture::{self as fx, Files, LIMIT, Seen};

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[tokio::test]
async fn a_lane_opens_a_file_once_for_its_pieces_and_closes_what_it_opened() {
    const K: u64 = 100 * 1024;
    let a = bytes(3 * K as usize, 1);
    let b = bytes(K as usize, 2);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (client, server) = tokio::io::duplex(1 << 20);
    let handler = Files::new(
        HashMap::from([("/a".to_owned(), a.clone()), ("/b".to_owned(), b.clone())]),
        &seen,
    );
    russh_sftp::server::run(server, handler).await;
    let raw = RawSftpSession::new_with_config(client, sftp_config());
    raw.init().await.expect("init");

    let dir = fx::TempDir::new("lane-handles");
    let part = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, b"").unwrap();
        p
    };
    let job = |remote: &str, size: u64| FileJob {
        remote: remote.to_owned(),
        local: dir.path().join(&remote[1..]),
        size,
        mode: 0o644,
        times: None,
    };
    let jobs = |files: Vec<FileJob>, temps: Vec<Option<std::path::PathBuf>>| {
        Arc::new(Jobs {
            files,
            temps,
            remote_temps: Vec::new(),
            direction: Direction::Download,
            bar: None,
        })
    };
    let first = jobs(
        vec![job("/a", 3 * K), job("/b", K)],
        vec![Some(part("a.part")), Some(part("b.part"))],
    );
    let res = Resources::default();
    let mut lane = SftpLane::new(&res, IdleLane::new(raw), first);
    let piece = |file, offset, len| Piece {
        file,
        offset,
        len,
        whole: false,
    };
    let count = |seen: &Arc<Mutex<Seen>>| {
        let s = seen.lock().unwrap();
        (s.opens, s.closes)
    };

    tokio::time::timeout(LIMIT, async {
        // Three pieces of /a: one open, nothing closed yet.
        for i in 0..3 {
            lane.run(piece(0, i * K, K)).await.expect("piece of /a");
        }
        assert_eq!(count(&seen), (1, 0), "one open for three pieces");
        // A piece past the end of /a (the file got shorter) fails the file, through the
        // same handle, which is then closed.
        let short = lane.run(piece(0, 3 * K, K)).await;
        assert!(matches!(short, Err(PieceError::File(_))), "{short:?}");
        assert_eq!(count(&seen), (1, 1), "the failed piece's handle is closed");
        // /a again: opened anew. Then /b: /a is closed, /b opened.
        lane.run(piece(0, 0, K)).await.expect("/a again");
        assert_eq!(count(&seen), (2, 1));
        lane.run(piece(1, 0, K)).await.expect("piece of /b");
        assert_eq!(count(&seen), (3, 2), "moving to /b closes /a");
        // Handed back: /b stays open (no CLOSE to wait for at the end of a copy).
        let idle = lane.into_idle();
        assert!(idle.open.is_some());
        assert_eq!(count(&seen), (3, 2));
        // The next copy on the lane: its file 0 is /b, read through a handle of its own
        // (the old one is closed first, whatever file it was).
        let second = jobs(vec![job("/b", K)], vec![Some(part("b2.part"))]);
        let mut lane = SftpLane::new(&res, idle, second);
        lane.run(piece(0, 0, K)).await.expect("/b in the next copy");
        assert_eq!(count(&seen), (4, 3));
        drop(lane);
    })
    .await
    .expect("bounded");
    let s = seen.lock().unwrap();
    assert_eq!(s.open, ["h4"], "only the last copy's file is open");
    drop(s);
    assert_eq!(std::fs::read(dir.path().join("a.part")).unwrap(), a);
    assert_eq!(std::fs::read(dir.path().join("b.part")).unwrap(), b);
    assert_eq!(std::fs::read(dir.path().join("b2.part")).unwrap(), b);
}

#[tokio::test(start_paused = true)]
async fn moving_to_another_file_closes_the_last_in_the_same_round_trip_as_the_open() {
    // Each way takes 50 ms (a round trip is 100 ms), on tokio's paused clock.
    const RTT: std::time::Duration = std::time::Duration::from_millis(100);
    const K: u64 = 32 * 1024;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (client, server) = tokio::io::duplex(1 << 20);
    let handler = Files::new(
        HashMap::from([
            ("/a".to_owned(), bytes(K as usize, 1)),
            ("/b".to_owned(), bytes(K as usize, 2)),
        ]),
        &seen,
    );
    russh_sftp::server::run(server, handler).await;
    let (from_server, to_server) = tokio::io::split(client);
    let link = fx::delayed(from_server, to_server, RTT / 2);
    let raw = RawSftpSession::new_with_config(link, sftp_config());
    raw.init().await.expect("init");

    let dir = fx::TempDir::new("lane-close-with-open");
    let mut temps = Vec::new();
    let mut files = Vec::new();
    for name in ["a", "b"] {
        let part = dir.path().join(format!("{name}.part"));
        std::fs::write(&part, b"").unwrap();
        temps.push(Some(part));
        files.push(FileJob {
            remote: format!("/{name}"),
            local: dir.path().join(name),
            size: K,
            mode: 0o644,
            times: None,
        });
    }
    let jobs = Arc::new(Jobs {
        files,
        temps,
        remote_temps: Vec::new(),
        direction: Direction::Download,
        bar: None,
    });
    let res = Resources::default();
    let mut lane = SftpLane::new(&res, IdleLane::new(raw), jobs);
    let piece = |file| Piece {
        file,
        offset: 0,
        len: K,
        whole: true,
    };
    lane.run(piece(0)).await.expect("/a");
    // /b: /a's CLOSE and /b's OPEN in one round trip, then the read: two, not three.
    let started = tokio::time::Instant::now();
    lane.run(piece(1)).await.expect("/b");
    let took = started.elapsed();
    assert!(
        took >= 2 * RTT && took < 2 * RTT + RTT / 2,
        "{took:?} for the second file (a round trip is {RTT:?})"
    );
    let s = seen.lock().unwrap();
    assert_eq!((s.opens, s.closes), (2, 1));
    assert_eq!(s.open, ["h2"]);
}
