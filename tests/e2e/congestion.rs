//! The client follows the rate its peer acknowledges: an upload to an instance
//! whose agent writes slowly runs at that rate, with few resends, through real OpenSSH.

use std::time::{Duration, Instant};

use crate::harness::{Fixture, ok, random_bytes, run, sha256_file};

/// The testbed agent writes to sshd at 2 MB/s and, like the real agent, reads and acks
/// nothing more from the websocket while a write is blocked. Before the congestion window
/// the client resent its whole 4 MiB window every RTO into that back-pressure.
#[test]
fn upload_to_a_slow_instance_runs_at_its_rate_with_few_resends() {
    const RATE: u64 = 2_000_000;
    const SIZE: usize = 50_000_000;
    let f = Fixture::with_config(|c| c.agent.instance_write_rate = Some(RATE));
    let local = f.path("slow-up.bin");
    std::fs::write(&local, random_bytes(SIZE, 91)).unwrap();
    let t = Instant::now();
    ok(&run(
        f.scp(false).arg(&local).arg(f.remote("slow-up.bin")),
        None,
        Duration::from_secs(120),
    ));
    let took = t.elapsed();
    assert_eq!(sha256_file(&f.path("slow-up.bin")), sha256_file(&local));
    let (_, stats) = f
        .testbed
        .data_stats()
        .into_iter()
        .max_by_key(|(_, s)| s.client_bytes)
        .expect("the testbed saw the session");
    let rate = SIZE as f64 / took.as_secs_f64();
    eprintln!(
        "50 MB up at {:.2} MB/s against a {:.1} MB/s instance in {took:.1?}; resent {} \
         messages, {} bytes ({:.2} % of the file)",
        rate / 1e6,
        RATE as f64 / 1e6,
        stats.client_dup_messages,
        stats.client_dup_bytes,
        stats.client_dup_bytes as f64 * 100.0 / SIZE as f64
    );
    assert!(
        stats.client_dup_bytes * 10 <= SIZE as u64,
        "resent {} bytes for a {SIZE}-byte file: {stats:?}",
        stats.client_dup_bytes
    );
    assert!(
        rate >= 0.8 * RATE as f64,
        "{:.2} MB/s is under 80 % of the instance's {:.1} MB/s",
        rate / 1e6,
        RATE as f64 / 1e6
    );
}
