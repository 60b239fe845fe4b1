//! `-j 1` downloads read by the claimed size: the end is seen in the round trip of the
//! last bytes, and the bytes are right whatever the server does (short answers, a file
//! longer or shorter than its claim, empty answers).

use std::sync::Arc;
use std::time::Duration;

use russh_sftp::client::RawSftpSession;

use super::*;
use crate::ssh::transfer::sftp_config;
use crate::ssh::transfer::test_fixture::{self as fx, Files, LIMIT};

fn bytes(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8)
        .collect()
}

/// Reads `content` (claimed `claimed` bytes) with [`pump_raw`] over a link whose bytes
/// take `rtt / 2` each way, on tokio's paused clock: what was written, and how long the
/// reads took.
async fn read(served: Files, claimed: u64, rtt: Duration) -> (Vec<u8>, u64, Duration) {
    let (client, server) = tokio::io::duplex(1 << 20);
    russh_sftp::server::run(server, served).await;
    let (from_server, to_server) = tokio::io::split(client);
    let link = fx::delayed(from_server, to_server, rtt / 2);
    let raw = Arc::new(RawSftpSession::new_with_config(link, sftp_config()));
    raw.init().await.expect("init");
    let handle = raw
        .open("/f", OpenFlags::READ, FileAttributes::default())
        .await
        .expect("open")
        .handle;
    let dir = fx::TempDir::new("raw-read");
    let path = dir.path().join("f");
    let mut sink = tokio::fs::File::create(&path).await.unwrap();
    let started = tokio::time::Instant::now();
    let n = tokio::time::timeout(
        LIMIT,
        pump_raw(&raw, &handle, claimed, &mut sink, "/f", &path, None),
    )
    .await
    .expect("bounded");
    let took = started.elapsed();
    let n = match n {
        Ok(n) => n,
        Err(Problem::Item(e) | Problem::Fatal(e)) => panic!("{e}"),
    };
    drop(sink);
    (std::fs::read(&path).unwrap(), n, took)
}

const RTT: Duration = Duration::from_millis(100);

/// A [`Files`] server holding `content` at `/f`.
fn served(content: &[u8]) -> Files {
    let files = std::collections::HashMap::from([("/f".to_owned(), content.to_vec())]);
    Files::new(files, &Default::default())
}

#[tokio::test(start_paused = true)]
async fn a_file_as_claimed_is_read_with_its_end_in_one_round_trip() {
    for size in [0, 10_000, 64 * 1024, 200_000, 2 << 20] {
        let content = bytes(size);
        let (got, n, took) = read(served(&content), size as u64, RTT).await;
        assert_eq!((n, got.len()), (size as u64, size), "{size} bytes");
        assert!(got == content, "{size} bytes: content differs");
        // 2 MiB is 32 reads and the one at the end: two round trips' worth in flight.
        let trips = if size >= 2 << 20 { 2 } else { 1 };
        assert!(
            took >= trips * RTT && took < trips * RTT + RTT / 2,
            "{size} bytes took {took:?}, not {trips} round trips of {RTT:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn short_answers_and_wrong_claims_still_give_the_file() {
    let content = bytes(300_000);
    // A server answering at most 10 000 bytes a read.
    let mut short = served(&content);
    short.most = 10_000;
    let (got, n, _) = read(short, 300_000, RTT).await;
    assert_eq!(n, 300_000);
    assert!(got == content, "short answers: content differs");
    // The file grew after its stat: read on to its end.
    let (got, n, _) = read(served(&content), 5_000, RTT).await;
    assert_eq!(n, 300_000);
    assert!(got == content, "grown: content differs");
    // It shrank: what there is (the caller calls it shorter than claimed).
    let (got, n, _) = read(served(&content[..5_000]), 300_000, RTT).await;
    assert_eq!(n, 5_000);
    assert!(got == content[..5_000], "shrunk: content differs");
}

#[tokio::test(start_paused = true)]
async fn empty_answers_end_the_read_instead_of_asking_forever() {
    let mut lying = served(&bytes(50_000));
    lying.empty = true;
    let (got, n, took) = read(lying, 50_000, RTT).await;
    assert_eq!((n, got.len()), (0, 0));
    assert!(took < 2 * RTT, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_fast_link_gets_more_reads_in_flight_as_its_answers_show_it() {
    // 24 MiB over a 100 ms round trip and no rate limit: at the 2 MiB kept in flight at
    // first, twelve round trips and the end's; the reads in flight grow, up to 8 MiB, once
    // a round trip's answers show the link carries more.
    let size = 24 << 20;
    let content = bytes(size);
    let (got, n, took) = read(served(&content), size as u64, RTT).await;
    assert_eq!((n, got.len()), (size as u64, size));
    assert!(got == content, "content differs");
    assert!(
        took <= 7 * RTT,
        "{took:?}: the reads in flight did not grow past 2 MiB"
    );
}
