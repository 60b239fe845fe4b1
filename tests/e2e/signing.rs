//! The signed data channel (docs/protocol.md §2.6) against a testbed that refuses unsigned
//! upgrades (its default): which key signed each dial, first and after a resume, and that a
//! presigned StreamUrl is dialled without signing headers.

use std::time::Duration;

use sallyport_testbed::aws_api::data_auth::{DialAuth, DialRecord, PRESIGN_ACCESS_KEY_ID};

use crate::harness::{Fixture, ok, run};
use crate::rotation::{NEW_KEY, rotate, rotating_profile};

fn lines(n: usize) -> String {
    (1..=n).map(|i| format!("line-{i}\n")).collect()
}

fn refused(dials: &[DialRecord]) -> Vec<&DialRecord> {
    dials.iter().filter(|d| d.refused.is_some()).collect()
}

/// ssh through `sallyport proxy`, recycled every 1.5 s; the keys rotate after 2.5 s. Every
/// dial is signed: the first with the testbed's key, a resume after the rotation with the
/// new one (the old one is expired by then, so nothing else could get in).
#[test]
fn every_dial_is_signed_and_a_resume_after_rotation_uses_the_new_key() {
    let f = Fixture::with_config(|c| c.faults.recycle_every = Some(Duration::from_millis(1500)));
    let old_key = f.testbed.access_key_id.clone();
    let mut cmd = f.ssh();
    rotating_profile(&f, &mut cmd);
    cmd.arg("for i in $(seq 1 12); do echo line-$i; sleep 0.5; done");
    let session = std::thread::spawn(move || run(&mut cmd, None, Duration::from_secs(60)));
    // Rotate only once the first dial is in (bounded wait, no fixed sleep for it).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while f.testbed.data_channel_dials().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no data channel dial within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(2500));
    rotate(&f);
    let out = session.join().unwrap();
    assert_eq!(ok(&out), lines(12));

    let dials = f.testbed.data_channel_dials();
    assert!(refused(&dials).is_empty(), "no dial refused: {dials:#?}");
    assert!(dials.len() >= 3, "first dial and resumes: {dials:#?}");
    assert!(
        dials.iter().all(|d| d.auth == DialAuth::Signed),
        "every dial signed: {dials:#?}"
    );
    assert_eq!(dials[0].access_key_id.as_deref(), Some(old_key.as_str()));
    let last = dials.last().unwrap();
    assert_eq!(
        last.access_key_id.as_deref(),
        Some(NEW_KEY),
        "the resume after the rotation was signed by the new key: {dials:#?}"
    );
    let session_ids: std::collections::BTreeSet<_> = dials.iter().map(|d| &d.session_id).collect();
    assert_eq!(session_ids.len(), 1, "one session, resumed: {dials:#?}");
}

/// StartSession and ResumeSession hand out presigned StreamUrls: sallyport dials them as
/// they are, without an Authorization header (else the testbed would record "signed").
#[test]
fn a_presigned_stream_url_is_dialled_without_signing_headers() {
    let f = Fixture::with_config(|c| {
        c.presign_stream_urls = true;
        c.faults.recycle_every = Some(Duration::from_millis(1000));
    });
    let mut cmd = f.ssh();
    cmd.arg("for i in $(seq 1 6); do echo line-$i; sleep 0.5; done");
    let out = run(&mut cmd, None, Duration::from_secs(60));
    assert_eq!(ok(&out), lines(6));
    let dials = f.testbed.data_channel_dials();
    assert!(dials.len() >= 2, "first dial and a resume: {dials:#?}");
    for d in &dials {
        assert_eq!(d.auth, DialAuth::Presigned, "{dials:#?}");
        assert_eq!(d.access_key_id.as_deref(), Some(PRESIGN_ACCESS_KEY_ID));
        assert_eq!(d.refused, None, "{dials:#?}");
    }
}
