//! Credentials that change under a long session: ResumeSession must be signed with what
//! the provider returns now, not what the session started with (the plugin's hour-long
//! 403, docs/protocol.md §2.4).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Fixture, SALLYPORT, ok, run};

pub(crate) const NEW_KEY: &str = "AKIAROTATEDROTATED01";
pub(crate) const NEW_SECRET: &str = "rotatedSecretKeyRotatedSecretKeyRotated0";

/// A credential_process that prints whatever keys the files hold now, as short-lived
/// credentials (1 s): the SDK's cache refreshes 10-15 s before expiry, so every call asks
/// the provider again, as it does for role credentials near the end of their hour.
pub(crate) fn rotating_profile(f: &Fixture, cmd: &mut Command) {
    std::fs::write(f.path("akid"), &f.testbed.access_key_id).unwrap();
    std::fs::write(f.path("secret"), &f.testbed.secret_access_key).unwrap();
    let script = f.path("creds.sh");
    std::fs::write(
        &script,
        format!(
            "exp=$(date -u -d '+1 seconds' +%Y-%m-%dT%H:%M:%SZ)\n\
             printf '{{\"Version\":1,\"AccessKeyId\":\"%s\",\"SecretAccessKey\":\"%s\",\"Expiration\":\"%s\"}}\\n' \
             \"$(cat {d}/akid)\" \"$(cat {d}/secret)\" \"$exp\"\n",
            d = f.path("").display()
        ),
    )
    .unwrap();
    let config = f.path("aws-config-rotating");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = {}\ncredential_process = /bin/sh {}\n",
            f.testbed.region,
            script.display()
        ),
    )
    .unwrap();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .env("AWS_CONFIG_FILE", config);
}

/// Swaps the keys the provider hands out, then revokes the old ones at the testbed.
pub(crate) fn rotate(f: &Fixture) {
    f.testbed.add_credentials(NEW_KEY, NEW_SECRET);
    for (name, value) in [("akid", NEW_KEY), ("secret", NEW_SECRET)] {
        let tmp = f.path(&format!("{name}.tmp"));
        std::fs::write(&tmp, value).unwrap();
        std::fs::rename(&tmp, f.path(name)).unwrap();
    }
    f.testbed.expire_credentials(&f.testbed.access_key_id);
}

#[test]
fn resume_after_credential_rotation_succeeds() {
    let f = Fixture::with_config(|c| c.faults.recycle_every = Some(Duration::from_millis(1500)));
    let mut cmd = f.ssh();
    rotating_profile(&f, &mut cmd);
    cmd.arg("for i in $(seq 1 16); do echo line-$i; sleep 0.5; done");
    let session = std::thread::spawn(move || run(&mut cmd, None, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(2500));
    rotate(&f);
    let out = session.join().unwrap();
    let expected: String = (1..=16).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(ok(&out), expected);
    let calls = f.testbed.calls();
    let resumed_with_new_key = calls
        .iter()
        .any(|c| c.operation == "ResumeSession" && c.access_key_id == NEW_KEY);
    assert!(
        resumed_with_new_key,
        "a resume after the rotation used the new key: {calls:?}"
    );
}

/// Static keys that expire mid-session cannot be refreshed: one clear sentence, exit 3.
#[test]
fn expired_static_credentials_end_the_session_with_advice() {
    let f = Fixture::with_config(|c| c.faults.recycle_every = Some(Duration::from_millis(1500)));
    let mut cmd = Command::new(SALLYPORT);
    cmd.args(["proxy", &f.instance]);
    f.aws_env(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep stdin open (as ssh does) so only the failed resume can end the proxy.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"SSH-2.0-sallyport_test\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    f.testbed.expire_credentials(&f.testbed.access_key_id);
    let Some(status) = crate::harness::exit_within(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("proxy did not give up within 30 s");
    };
    drop(stdin);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("ExpiredTokenException"), "{stderr}");
    assert!(stderr.contains("could not be refreshed"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
